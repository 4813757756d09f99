//! Attention over host tensors longer than one storage binding holds: the sequence in segments,
//! each uploaded, run and read back in turn, with the state carried between them (docs/math.md
//! §1.6). Causal segments continue the state as streaming does; bidirectional ones fold the keys of
//! every segment into the state before any segment's queries read it.

use super::*;

/// Bytes of each segment tensor (q, k, v and the output) at most, within the binding limit.
pub const SEGMENT_BYTES: u64 = 32 << 20;

/// `shape` (`[L, w]` or `[B, H, L, w]`) with `n` rows a problem.
fn with_rows(shape: &[usize], n: usize) -> Vec<usize> {
    let mut shape = shape.to_vec();
    let rank = shape.len();
    shape[rank - 2] = n;
    shape
}

/// Writes `segment` (rows `start..` of every problem) into `out` (`len` rows a problem).
fn put_rows(out: &mut [f32], segment: &Tensor<f32>, len: usize, start: usize) {
    let width = segment.shape()[segment.shape().len() - 1];
    let n = segment.shape()[segment.shape().len() - 2];
    for (problem, rows) in out.chunks_mut(len * width).zip(segment.data().chunks(n * width)) {
        problem[start * width..(start + n) * width].copy_from_slice(rows);
    }
}

impl Engine {
    /// Rows a segment of `s` takes: every segment tensor within [`SEGMENT_BYTES`] and the binding
    /// limit, causal segments whole chunks; `None` when one row of every problem is already too much.
    fn segment_rows(&self, s: &AttentionShape, o: &FavorOptions) -> Result<Option<usize>> {
        let row_bytes = 4 * (s.problems() * s.dim.max(s.value_dim)) as u64;
        let rows = (self.binding_limit()?.min(SEGMENT_BYTES) / row_bytes) as usize;
        let chunk = if o.causal { o.chunk.unwrap_or(DEFAULT_CHUNK).clamp(1, s.len) } else { 1 };
        Ok((rows >= chunk).then(|| rows / chunk * chunk))
    }

    /// [`Engine::favor`] a segment of the sequence at a time (see the module docs); `None` when a
    /// segment cannot hold one row (or chunk) of every problem.
    pub(super) async fn favor_segments(
        &self,
        [q, k, v, w]: [&Tensor<f32>; 4],
        o: &FavorOptions,
    ) -> Option<Result<Tensor<f32>>> {
        let s = attention_shape(q.shape(), k.shape(), v.shape(), Some(w.shape()), None).ok()?;
        let rows = self.segment_rows(&s, o).ok()??;
        Some(self.favor_segments_of(&s, [q, k, v, w], o, rows).await)
    }

    async fn favor_segments_of(
        &self,
        s: &AttentionShape,
        [q, k, v, w]: [&Tensor<f32>; 4],
        o: &FavorOptions,
        rows: usize,
    ) -> Result<Tensor<f32>> {
        let shape = s.output_shape(q.shape().len());
        let mut out = vec![0.0f32; s.problems() * s.len * s.value_dim];
        let gw = self.upload("projection", w)?;
        let state = self.causal_state(s, o.kernel)?;
        let segments: Vec<(usize, usize)> = (0..s.len).step_by(rows).map(|at| (at, rows.min(s.len - at))).collect();
        // Rows `at..at + n` of every problem: the second-to-last axis of `[L, w]` or `[B, H, L, w]`.
        let piece = |t: &Tensor<f32>, name: &str, (at, n): (usize, usize)| {
            self.upload(name, &t.slice_axis(t.shape().len() - 2, at, n))
        };
        let empty_like = |t: &Tensor<f32>, n: usize| self.empty(&with_rows(t.shape(), n));
        if !o.causal {
            // Keys first. The key phase reads only k and v: k stands in for q, and the output tensor
            // is not written.
            for &(at, n) in &segments {
                let (gk, gv) = (piece(k, "k", (at, n))?, piece(v, "v", (at, n))?);
                let unused = empty_like(v, n)?;
                let sweep = Sweep { reset: false, phase: Phase::Keys, keep: None };
                self.submit_async("favor", |enc| {
                    self.record_attention(enc, [&gk, &gk, &gv, &gw, &unused], o, &state, sweep)
                })
                .await?;
            }
        }
        for &(at, n) in &segments {
            let gq = piece(q, "q", (at, n))?;
            let gout = empty_like(v, n)?;
            if o.causal {
                let (gk, gv) = (piece(k, "k", (at, n))?, piece(v, "v", (at, n))?);
                self.submit_async("favor", |enc| {
                    self.record_attention(enc, [&gq, &gk, &gv, &gw, &gout], o, &state, Sweep::CONTINUE)
                })
                .await?;
            } else {
                // The query phase reads only q and the state: q stands in for k, the output for v.
                let sweep = Sweep { reset: false, phase: Phase::Queries, keep: None };
                self.submit_async("favor", |enc| {
                    self.record_attention(enc, [&gq, &gq, &gout, &gw, &gout], o, &state, sweep)
                })
                .await?;
            }
            put_rows(&mut out, &self.download_async(&gout).await?, s.len, at);
        }
        Ok(Tensor::new(&shape, out)?)
    }
}
