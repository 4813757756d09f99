//! Attention over host tensors longer than one storage binding holds: the sequence in segments,
//! each uploaded, run and read back in turn, with the state carried between them (docs/math.md
//! §1.6). Causal segments continue the state as streaming does; bidirectional ones fold the keys of
//! every segment into the state before any segment's queries read it. Gradients sweep the segments
//! twice: dq in order (bidirectional: from the whole key state; causal: from the state entering each
//! segment), then dk and dv from `R`, the queries' `Phi(Q)^T gt` (bidirectional: summed over every
//! segment; causal: over the later segments, so that sweep runs last segment first).

use super::*;

/// Bytes of each segment tensor (q, k, v and the output) at most, within the binding limit.
pub const SEGMENT_BYTES: u64 = 32 << 20;

/// Writes `segment` (rows `start..` of every problem) into `out` (`len` rows a problem).
fn put_rows(out: &mut [f32], segment: &Tensor<f32>, len: usize, start: usize) {
    let width = segment.shape()[segment.shape().len() - 1];
    let n = segment.shape()[segment.shape().len() - 2];
    for (problem, rows) in out.chunks_mut(len * width).zip(segment.data().chunks(n * width)) {
        problem[start * width..(start + n) * width].copy_from_slice(rows);
    }
}

/// One sequence cut into segments of rows.
struct Segments<'e> {
    engine: &'e Engine,
    shape: AttentionShape,
    /// `(first row, rows)` of each segment.
    spans: Vec<(usize, usize)>,
}

impl Segments<'_> {
    /// Rows `at..at + n` of every problem of `t`: the second-to-last axis of `[L, w]` or `[B, H, L, w]`.
    fn piece(&self, t: &Tensor<f32>, name: &str, (at, n): (usize, usize)) -> Result<GpuTensor> {
        self.engine.upload(name, &t.slice_axis(t.shape().len() - 2, at, n))
    }

    /// An uninitialised device tensor shaped like `t` with `n` rows a problem.
    fn empty_like(&self, t: &Tensor<f32>, n: usize) -> Result<GpuTensor> {
        let mut shape = t.shape().to_vec();
        let rank = shape.len();
        shape[rank - 2] = n;
        self.engine.empty(&shape)
    }

    /// Device gradients of a segment of `n` rows.
    fn grads(&self, [q, k, v, w]: [&Tensor<f32>; 4], n: usize) -> Result<FavorGrads> {
        Ok(FavorGrads {
            dq: self.empty_like(q, n)?,
            dk: self.empty_like(k, n)?,
            dv: self.empty_like(v, n)?,
            dw: Some(self.engine.empty(w.shape())?),
        })
    }

    /// Folds the keys of every segment into `state` (bidirectional attention's first phase). The key
    /// phase reads only k and v: k stands in for q, and the output tensor is not written.
    async fn fold_keys(
        &self,
        [k, v]: [&Tensor<f32>; 2],
        gw: &GpuTensor,
        o: &FavorOptions,
        state: &CausalState,
    ) -> Result<()> {
        for &span in &self.spans {
            let (gk, gv) = (self.piece(k, "k", span)?, self.piece(v, "v", span)?);
            let unused = self.empty_like(v, span.1)?;
            let sweep = Sweep { reset: false, phase: Phase::Keys, keep: None };
            let e = self.engine;
            e.submit_async("favor", |enc| e.record_attention(enc, [&gk, &gk, &gv, gw, &unused], o, state, sweep))
                .await?;
        }
        Ok(())
    }
}

impl Engine {
    /// `s`'s sequence in segments: every segment tensor within [`SEGMENT_BYTES`] and the binding
    /// limit, causal segments whole chunks; `None` when one row (or chunk) of every problem is
    /// already too much, or the inputs are not attention's.
    fn segments(&self, [q, k, v, w]: [&Tensor<f32>; 4], o: &FavorOptions) -> Option<Segments<'_>> {
        let s = attention_shape(q.shape(), k.shape(), v.shape(), Some(w.shape()), None).ok()?;
        let row_bytes = 4 * (s.problems() * s.dim.max(s.value_dim)) as u64;
        let rows = (self.binding_limit().ok()?.min(SEGMENT_BYTES) / row_bytes) as usize;
        let chunk = match (o.causal, o.chunk) {
            (false, _) => 1,
            (true, Some(chunk)) => chunk.clamp(1, s.len),
            (true, None) => self.default_chunk(&s, o).ok()?.clamp(1, s.len),
        };
        let rows = (rows >= chunk).then(|| rows / chunk * chunk)?;
        let spans = (0..s.len).step_by(rows).map(|at| (at, rows.min(s.len - at))).collect();
        Some(Segments { engine: self, shape: s, spans })
    }

    /// [`Engine::favor`] a segment of the sequence at a time (see the module docs); `None` where
    /// [`Engine::segments`] is.
    pub(super) async fn favor_segments(
        &self,
        [q, k, v, w]: [&Tensor<f32>; 4],
        o: &FavorOptions,
    ) -> Option<Result<Tensor<f32>>> {
        let segments = self.segments([q, k, v, w], o)?;
        Some(self.favor_segments_of(&segments, [q, k, v, w], o).await)
    }

    async fn favor_segments_of(
        &self,
        seg: &Segments<'_>,
        [q, k, v, w]: [&Tensor<f32>; 4],
        o: &FavorOptions,
    ) -> Result<Tensor<f32>> {
        let s = &seg.shape;
        let mut out = vec![0.0f32; s.problems() * s.len * s.value_dim];
        let gw = self.upload("projection", w)?;
        let state = self.causal_state(s, o.kernel)?;
        if !o.causal {
            seg.fold_keys([k, v], &gw, o, &state).await?;
        }
        for &span in &seg.spans {
            let gq = seg.piece(q, "q", span)?;
            let gout = seg.empty_like(v, span.1)?;
            if o.causal {
                let (gk, gv) = (seg.piece(k, "k", span)?, seg.piece(v, "v", span)?);
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
            put_rows(&mut out, &self.download_async(&gout).await?, s.len, span.0);
        }
        Ok(Tensor::new(&s.output_shape(q.shape().len()), out)?)
    }

    /// [`FavorBackward`] a segment of the sequence at a time (see the module docs); `None` where
    /// [`Engine::segments`] is. Checkpoints are a schedule of the one-recording pass: segments sweep
    /// twice instead.
    pub(super) async fn favor_backward_segments(
        &self,
        [q, k, v, w, grad]: [&Tensor<f32>; 5],
        o: &FavorOptions,
    ) -> Option<Result<Vec<Tensor<f32>>>> {
        let o = FavorOptions { checkpoints: Checkpoints::None, ..*o };
        let seg = self.segments([q, k, v, w], &o)?;
        Some(self.favor_backward_segments_of(&seg, [q, k, v, w, grad], &o).await)
    }

    async fn favor_backward_segments_of(
        &self,
        seg: &Segments<'_>,
        [q, k, v, w, grad]: [&Tensor<f32>; 5],
        o: &FavorOptions,
    ) -> Result<Vec<Tensor<f32>>> {
        let s = &seg.shape;
        let mut grads = SegmentGrads::new([q, k, v, w]);
        let gw = self.upload("projection", w)?;
        let (f, width) = (o.kernel.feature_count(s.features), s.value_dim + 1);
        let r = self.upload("R", &Tensor::zeros(&[s.problems(), f, width]))?;
        // Bidirectional: one state, every key folded in first. Causal: the forward pass's state runs
        // ahead of the dq sweep's, each continued segment by segment.
        let state = self.causal_state(s, o.kernel)?;
        let ahead = if o.causal { Some(self.causal_state(s, o.kernel)?) } else { None };
        if !o.causal {
            seg.fold_keys([k, v], &gw, o, &state).await?;
        }
        let mut kept = Vec::with_capacity(seg.spans.len());
        for &span in &seg.spans {
            let (gq, gk, gv) = (seg.piece(q, "q", span)?, seg.piece(k, "k", span)?, seg.piece(v, "v", span)?);
            let gg = seg.piece(grad, "grad", span)?;
            let out = seg.empty_like(v, span.1)?;
            let saved = self.favor_saved(&AttentionShape { len: span.1, ..*s }, o)?;
            let part = seg.grads([q, k, v, w], span.1)?;
            let carried = Carried { state: &state, r: &r, previous_gamma: None };
            let (forward_state, sweep) = match &ahead {
                Some(ahead) => (ahead, Sweep::CONTINUE),
                None => (&state, Sweep { reset: false, phase: Phase::Queries, keep: None }),
            };
            self.submit_async("favor backward", |enc| {
                let forward =
                    self.record_forward_sweep(enc, [&gq, &gk, &gv, &gw, &out], &saved, forward_state, sweep)?;
                let parts = [&gq, &gk, &gv, &gw, &out, &gg];
                let backward = self.record_backward(enc, parts, &saved, &part, Some((Direction::Queries, &carried)))?;
                Ok(forward.and(backward))
            })
            .await?;
            grads.add(self, &part, span, [true, false, false]).await?;
            let out = if o.causal { Some(self.download_async(&out).await?) } else { None };
            kept.push((saved, out));
        }
        for (i, &span) in seg.spans.iter().enumerate().rev() {
            let (gq, gk, gv) = (seg.piece(q, "q", span)?, seg.piece(k, "k", span)?, seg.piece(v, "v", span)?);
            let (saved, out) = &kept[i];
            // Bidirectional dk and dv read neither the output nor its gradient: v stands in for both.
            let (out, gg) = match out {
                Some(out) => (self.upload("out", out)?, seg.piece(grad, "grad", span)?),
                None => (gv.clone(), gv.clone()),
            };
            let previous_gamma = i.checked_sub(1).and_then(|j| kept[j].0.gamma.as_ref());
            let carried = Carried { state: &state, r: &r, previous_gamma };
            let part = seg.grads([q, k, v, w], span.1)?;
            self.submit_async("favor backward", |enc| {
                let parts = [&gq, &gk, &gv, &gw, &out, &gg];
                self.record_backward(enc, parts, saved, &part, Some((Direction::Keys, &carried)))
            })
            .await?;
            grads.add(self, &part, span, [false, true, true]).await?;
        }
        grads.finish()
    }
}

/// The gradients of a segmented backward pass, gathered on the host.
struct SegmentGrads {
    /// `dq, dk, dv` with their shapes.
    rows: [(Vec<usize>, Vec<f32>); 3],
    len: usize,
    dw_shape: Vec<usize>,
    dw: Vec<f64>,
}

impl SegmentGrads {
    fn new([q, k, v, w]: [&Tensor<f32>; 4]) -> Self {
        let rows = [q, k, v].map(|t| (t.shape().to_vec(), vec![0.0f32; t.len()]));
        let len = q.shape()[q.shape().len() - 2];
        SegmentGrads { rows, len, dw_shape: w.shape().to_vec(), dw: vec![0.0; w.len()] }
    }

    /// Puts the rows of the gradients `which` (of dq, dk, dv) of a segment in place and adds its share
    /// of dW.
    async fn add(
        &mut self,
        engine: &Engine,
        part: &FavorGrads,
        (at, _): (usize, usize),
        which: [bool; 3],
    ) -> Result<()> {
        for ((rows, x), take) in self.rows.iter_mut().zip([&part.dq, &part.dk, &part.dv]).zip(which) {
            if take {
                put_rows(&mut rows.1, &engine.download_async(x).await?, self.len, at);
            }
        }
        let dw = part.dw.as_ref().expect("segment gradients include dW");
        for (sum, x) in self.dw.iter_mut().zip(engine.download_async(dw).await?.data()) {
            *sum += *x as f64;
        }
        Ok(())
    }

    fn finish(self) -> Result<Vec<Tensor<f32>>> {
        let rows = self.rows.into_iter().map(|(shape, data)| Tensor::new(&shape, data));
        let dw = Tensor::new(&self.dw_shape, self.dw.iter().map(|&x| x as f32).collect());
        Ok(rows.chain([dw]).collect::<std::result::Result<_, _>>()?)
    }
}
