//! Random-feature attention in one call: host tensors, device-resident tensors, or recorded into the
//! caller's encoder.

use super::*;

/// Random-feature attention (docs/math.md §1): `q, k: [B, H, L, d]`, `v: [B, H, L, dv]` (or all
/// `[L, ·]`), projection `[m, d]` or `[H, m, d]`; the output is `[B, H, L, dv]` (or `[L, dv]`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Favor(pub FavorOptions);

impl Operation for Favor {
    const NAME: &'static str = "favor";
    const INPUTS: &'static [&'static str] = &["q", "k", "v", "projection"];

    /// Batches a slice at a time where one batch entry fits a binding, else the sequence in
    /// segments (`segments.rs`).
    async fn run_split(&self, engine: &Engine, i: &[&Tensor<f32>]) -> Option<Result<Vec<Tensor<f32>>>> {
        if let Some(outputs) = run_batches(engine, self, i, &[4]).await {
            return Some(outputs);
        }
        Some(engine.favor_segments([i[0], i[1], i[2], i[3]], &self.0).await?.map(|out| vec![out]))
    }

    fn output_shapes(&self, i: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        Ok(vec![attention_shape(i[0], i[1], i[2], Some(i[3]), None)?.output_shape(i[0].len())])
    }

    fn record(
        &self,
        engine: &Engine,
        enc: &mut wgpu::CommandEncoder,
        i: &[&GpuTensor],
        o: &[&GpuTensor],
    ) -> Result<Recorded> {
        engine.record_favor(enc, i[0], i[1], i[2], i[3], &self.0, o[0])
    }

    fn cpu(&self, i: &[&Tensor<f32>]) -> Option<Result<Vec<Tensor<f32>>>> {
        let chunk = self.0.causal.then(|| self.0.chunk.unwrap_or(DEFAULT_CHUNK));
        Some(crate::cpu::favor([i[0], i[1], i[2], i[3]], self.0.kernel, chunk).map(|o| vec![o]).map_err(Into::into))
    }

    fn reference(&self, i: &[Tensor<f64>]) -> Result<Vec<Tensor<f64>>> {
        let (o, [q, k, v, w]) = (self.0, [&i[0], &i[1], &i[2], &i[3]]);
        Ok(vec![if o.causal {
            ortho_ref::favor::favor_causal(q, k, v, w, o.kernel, o.chunk.unwrap_or(DEFAULT_CHUNK), None)?
        } else {
            ortho_ref::favor::favor(q, k, v, w, o.kernel)?
        }])
    }
}

impl Engine {
    /// Random-feature attention of host tensors (see [`Favor`]).
    pub fn favor(
        &self,
        q: &Tensor<f32>,
        k: &Tensor<f32>,
        v: &Tensor<f32>,
        w: &Tensor<f32>,
        o: &FavorOptions,
    ) -> Result<Tensor<f32>> {
        Ok(self.run(&Favor(*o), &[q, k, v, w])?.remove(0))
    }

    pub async fn favor_async(
        &self,
        q: &Tensor<f32>,
        k: &Tensor<f32>,
        v: &Tensor<f32>,
        w: &Tensor<f32>,
        o: &FavorOptions,
    ) -> Result<Tensor<f32>> {
        Ok(self.run_async(&Favor(*o), &[q, k, v, w]).await?.remove(0))
    }

    /// [`Engine::favor`] on device-resident tensors (not checked for non-finite values).
    pub fn favor_gpu(
        &self,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        w: &GpuTensor,
        o: &FavorOptions,
    ) -> Result<GpuTensor> {
        Ok(self.run_gpu(&Favor(*o), &[q, k, v, w])?.remove(0))
    }

    /// Records random-feature attention into the caller's encoder, writing `out`. The returned guard
    /// holds the scratch and the tensors the commands use: keep it until the encoder is submitted.
    #[allow(clippy::too_many_arguments)]
    pub fn record_favor(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        w: &GpuTensor,
        o: &FavorOptions,
        out: &GpuTensor,
    ) -> Result<Recorded> {
        let s = attention_shape(q.shape(), k.shape(), v.shape(), Some(w.shape()), Some(out.shape()))?;
        let state = self.unset_state(&s, o.kernel)?;
        self.record_attention(encoder, [q, k, v, w, out], o, &state, Sweep::WHOLE)
    }

    /// Records attention through `state`, as `sweep` says (reset first or continued; keys, queries or
    /// both; keeping what the backward pass needs).
    pub(super) fn record_attention(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        [q, k, v, w, out]: [&GpuTensor; 5],
        o: &FavorOptions,
        state: &CausalState,
        sweep: Sweep,
    ) -> Result<Recorded> {
        let s = attention_shape(q.shape(), k.shape(), v.shape(), Some(w.shape()), Some(out.shape()))?;
        state.check(&s, o.kernel)?;
        let CausalState::Gpu { s: state_s, gamma, .. } = state else {
            return Err(Error::Unsupported("a CPU causal state cannot be used with device tensors".into()));
        };
        let gpu = self.recording("favor", &[q, k, v, w, out, state_s, gamma])?;
        let plan = self.plan(&s, o)?;
        let keep = sweep.keep;
        // Checkpoints are the scanned states entering chunks, which the on-chip walk never writes out.
        let walk = plan.walk && keep.is_none_or(|k| k.checkpoints.is_none());
        let plan = Plan { walk, ..plan };
        self.check_binding("the chunk states of a sequential group", plan.scratch_bytes().0)?;
        let sc = plan.scratch_sizes().allocate(&gpu);
        let io = Io::new(&plan, &s, [q, k, v, w, out], state_s, gamma);
        let mut pass =
            encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("favor"), timestamp_writes: None });
        if sweep.reset {
            record_reset(&gpu, &mut pass, state_s, gamma)?;
        }
        if plan.walk {
            gpu.fill(&mut pass, sc.lost.buffer(), plan.scratch_sizes().lost, 0.0)?;
        }
        let mut r = Recorder { gpu: &gpu, pass: &mut pass, plan, kernel: o.kernel };
        if !o.causal {
            r.bidirectional(&sc, &io, sweep)?;
        } else {
            let group = plan.scratch_rows();
            for start in (0..plan.l).step_by(group) {
                let rows = group.min(plan.l - start);
                r.causal_group(&sc, &io, start, rows)?;
                if let Some(keep) = keep {
                    r.keep(&sc, keep, start, rows)?;
                }
            }
        }
        drop(pass);
        Ok(gpu.finish())
    }
}
