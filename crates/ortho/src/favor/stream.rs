//! Streaming causal attention: a state carried from one call to the next (docs/math.md §1.6).

use super::*;

impl Engine {
    /// A causal state for `s`'s problems whose contents are set when recorded.
    pub(super) fn unset_state(&self, s: &AttentionShape, kernel: Kernel) -> Result<CausalState> {
        let (z, f, dv) = (s.problems(), kernel.feature_count(s.features), s.value_dim);
        Ok(CausalState::Gpu {
            s: self.empty(&[z, f, dv + 1])?,
            gamma: self.empty(&[z])?,
            problems: z,
            features: f,
            value_dim: dv,
        })
    }
}

impl Engine {
    /// A causal state before any token, for `s`'s problems under `kernel`.
    pub fn causal_state(&self, s: &AttentionShape, kernel: Kernel) -> Result<CausalState> {
        let (z, f, dv) = (s.problems(), kernel.feature_count(s.features), s.value_dim);
        if !self.is_gpu() {
            return Ok(CausalState::Cpu(ortho_ref::favor::CausalState::new(z, f, dv)));
        }
        let state = self.unset_state(s, kernel)?;
        let CausalState::Gpu { s: values, gamma, .. } = &state else { unreachable!("a GPU engine makes GPU states") };
        self.submit("causal state", |enc| {
            let gpu = self.recording("causal state", &[values, gamma])?;
            let mut pass = enc.begin_compute_pass(&Default::default());
            record_reset(&gpu, &mut pass, values, gamma)?;
            Ok(gpu.finish())
        })?;
        Ok(state)
    }

    /// The state as the f64 reference holds it (a download on the GPU).
    pub fn causal_state_values(&self, state: &CausalState) -> Result<ortho_ref::favor::CausalState> {
        match state {
            CausalState::Cpu(s) => Ok(s.clone()),
            CausalState::Gpu { s, gamma, problems, features, value_dim } => {
                let gamma: Vec<f64> = self
                    .download(gamma)?
                    .data()
                    .iter()
                    .map(|&g| if g == LOWEST { f64::NEG_INFINITY } else { g as f64 })
                    .collect();
                Ok(ortho_ref::favor::CausalState {
                    problems: *problems,
                    features: *features,
                    value_dim: *value_dim,
                    s: self.download(s)?.data().iter().map(|&x| x as f64).collect(),
                    gamma,
                })
            }
        }
    }

    /// Causal attention that continues from `state` and leaves the state after its last token
    /// there: token-by-token (or chunk-by-chunk) decoding. `o.causal` is implied.
    pub fn favor_stream(
        &self,
        q: &Tensor<f32>,
        k: &Tensor<f32>,
        v: &Tensor<f32>,
        w: &Tensor<f32>,
        o: &FavorOptions,
        state: &mut CausalState,
    ) -> Result<Tensor<f32>> {
        self.block_on(self.favor_stream_async(q, k, v, w, o, state))
    }

    pub async fn favor_stream_async(
        &self,
        q: &Tensor<f32>,
        k: &Tensor<f32>,
        v: &Tensor<f32>,
        w: &Tensor<f32>,
        o: &FavorOptions,
        state: &mut CausalState,
    ) -> Result<Tensor<f32>> {
        let s = attention_shape(q.shape(), k.shape(), v.shape(), Some(w.shape()), None)?;
        ortho_ref::favor::check_inputs(&[("q", q), ("k", k), ("v", v), ("projection", w)])?;
        state.check(&s, o.kernel)?;
        match state {
            CausalState::Cpu(st) => {
                let chunk = o.chunk.unwrap_or(DEFAULT_CHUNK);
                let out = ortho_ref::favor::favor_causal(
                    &q.to_f64(),
                    &k.to_f64(),
                    &v.to_f64(),
                    &w.to_f64(),
                    o.kernel,
                    chunk,
                    Some(st),
                )?;
                Ok(out.to_f32())
            }
            CausalState::Gpu { .. } => {
                let (gq, gk, gv, gw) =
                    (self.upload("q", q)?, self.upload("k", k)?, self.upload("v", v)?, self.upload("projection", w)?);
                let out = self.empty(&s.output_shape(q.shape().len()))?;
                self.submit_async("favor", |enc| self.record_favor_stream(enc, &gq, &gk, &gv, &gw, o, state, &out))
                    .await?;
                self.download_async(&out).await
            }
        }
    }

    /// [`Engine::favor_stream`] on device-resident tensors.
    pub fn favor_stream_gpu(
        &self,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        w: &GpuTensor,
        o: &FavorOptions,
        state: &mut CausalState,
    ) -> Result<GpuTensor> {
        let s = attention_shape(q.shape(), k.shape(), v.shape(), Some(w.shape()), None)?;
        let out = self.empty(&s.output_shape(q.shape().len()))?;
        self.submit("favor", |enc| self.record_favor_stream(enc, q, k, v, w, o, state, &out))?;
        Ok(out)
    }

    /// Records causal attention that continues from `state` and advances it.
    #[allow(clippy::too_many_arguments)]
    pub fn record_favor_stream(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        w: &GpuTensor,
        o: &FavorOptions,
        state: &CausalState,
        out: &GpuTensor,
    ) -> Result<Recorded> {
        let o = FavorOptions { causal: true, ..*o };
        self.record_attention(encoder, [q, k, v, w, out], &o, state, Sweep::CONTINUE)
    }
}
