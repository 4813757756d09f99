//! Random-feature attention in one call: host tensors, device-resident tensors, or recorded into the
//! caller's encoder.

use super::*;

impl Engine {
    /// Random-feature attention of host tensors: `q, k: [B, H, L, d]`, `v: [B, H, L, dv]` (or all
    /// `[L, ·]`), projection `w: [m, d]` or `[H, m, d]`. Returns `[B, H, L, dv]` (or `[L, dv]`).
    pub fn favor(
        &self,
        q: &Tensor<f32>,
        k: &Tensor<f32>,
        v: &Tensor<f32>,
        w: &Tensor<f32>,
        o: &FavorOptions,
    ) -> Result<Tensor<f32>> {
        self.block_on(self.favor_async(q, k, v, w, o))
    }

    pub async fn favor_async(
        &self,
        q: &Tensor<f32>,
        k: &Tensor<f32>,
        v: &Tensor<f32>,
        w: &Tensor<f32>,
        o: &FavorOptions,
    ) -> Result<Tensor<f32>> {
        let s = attention_shape(q.shape(), k.shape(), v.shape(), Some(w.shape()), None)?;
        if o.causal {
            let mut state = self.causal_state(&s, o.kernel)?;
            return self.favor_stream_async(q, k, v, w, o, &mut state).await;
        }
        ortho_ref::favor::check_inputs(&[("q", q), ("k", k), ("v", v), ("projection", w)])?;
        if !self.is_gpu() {
            let out = ortho_ref::favor::favor(&q.to_f64(), &k.to_f64(), &v.to_f64(), &w.to_f64(), o.kernel)?;
            return Ok(out.to_f32());
        }
        let (gq, gk, gv, gw) =
            (self.upload("q", q)?, self.upload("k", k)?, self.upload("v", v)?, self.upload("projection", w)?);
        let out = self.empty(&s.output_shape(q.shape().len()))?;
        self.submit_async("favor", |enc| self.record_favor(enc, &gq, &gk, &gv, &gw, o, &out)).await?;
        self.download_async(&out).await
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
        let s = attention_shape(q.shape(), k.shape(), v.shape(), Some(w.shape()), None)?;
        let out = self.empty(&s.output_shape(q.shape().len()))?;
        self.submit("favor", |enc| self.record_favor(enc, q, k, v, w, o, &out))?;
        Ok(out)
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
        self.record(encoder, q, k, v, w, o, &state, true, out, None)
    }

    /// Records attention through `state`, first reset to "no tokens" when `reset`, leaving what the
    /// backward pass needs where `keep` says.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        w: &GpuTensor,
        o: &FavorOptions,
        state: &CausalState,
        reset: bool,
        out: &GpuTensor,
        keep: Option<&Keep>,
    ) -> Result<Recorded> {
        let s = attention_shape(q.shape(), k.shape(), v.shape(), Some(w.shape()), Some(out.shape()))?;
        state.check(&s, o.kernel)?;
        let CausalState::Gpu { s: state_s, gamma, .. } = state else {
            return Err(Error::Unsupported("a CPU causal state cannot be used with device tensors".into()));
        };
        let gpu = self.recording("favor", &[q, k, v, w, out, state_s, gamma])?;
        let plan = self.plan(&s, o)?;
        // Checkpoints are the scanned states entering chunks, which the on-chip walk never writes out.
        let walk = plan.walk && keep.is_none_or(|k| k.checkpoints.is_none());
        let plan = Plan { walk, ..plan };
        self.check_binding("the chunk states of a sequential group", plan.scratch_bytes().0)?;
        let sc = self.scratch(&gpu, &plan);
        let io = Io::new(&plan, &s, [q, k, v, w, out], state_s, gamma);
        let mut pass =
            encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("favor"), timestamp_writes: None });
        if reset {
            record_reset(&gpu, &mut pass, state_s, gamma)?;
        }
        let mut r = Recorder { gpu: &gpu, pass: &mut pass, plan, kernel: o.kernel };
        if !o.causal {
            r.bidirectional(&sc, &io, keep)?;
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
