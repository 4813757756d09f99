//! What a forward pass keeps for the gradients, and the forward pass that keeps it.

use super::*;

/// What a forward pass keeps for [`Engine::favor_backward_gpu`] besides its inputs and output: the
/// denominators `D_t` of every row (and, causal, the prefix maxima `gamma_t` of the key offsets), 8
/// bytes a token like FlashAttention's log-sum-exp, and the checkpointed states its options ask for.
pub struct FavorSaved {
    pub(super) options: FavorOptions,
    pub(super) shape: AttentionShape,
    pub(super) den: GpuTensor,
    pub(super) gamma: Option<GpuTensor>,
    pub(super) checkpoints: Option<GpuTensor>,
}

impl FavorSaved {
    pub fn options(&self) -> &FavorOptions {
        &self.options
    }

    pub(super) fn check(&self, s: &AttentionShape) -> Result<()> {
        if *s != self.shape {
            return Err(InputError::argument("saved", format!("kept for {:?}, not {s:?}", self.shape)).into());
        }
        Ok(())
    }

    pub(super) fn checkpointed(&self) -> Option<Checkpointed<'_>> {
        let every = match self.options.checkpoints {
            Checkpoints::Every(n) => n,
            Checkpoints::None => return None,
        };
        self.checkpoints.as_ref().map(|c| Checkpointed { states: c.buffer(), every, count: c.shape()[1] })
    }

    pub(super) fn tensors(&self) -> Vec<&GpuTensor> {
        [Some(&self.den), self.gamma.as_ref(), self.checkpoints.as_ref()].into_iter().flatten().collect()
    }

    /// Bytes held on the device.
    pub fn byte_len(&self) -> u64 {
        self.tensors().iter().map(|t| t.byte_len()).sum()
    }
}

/// Where [`Engine::record_favor_backward`] writes the gradients: `dq`, `dk`, `dv` shaped like q, k
/// and v, and, when present, `dw` shaped like the projection.
#[derive(Debug)]
pub struct FavorGrads {
    pub dq: GpuTensor,
    pub dk: GpuTensor,
    pub dv: GpuTensor,
    pub dw: Option<GpuTensor>,
}

impl Engine {
    /// The forward pass of [`Engine::favor_gpu`] that also returns what
    /// [`Engine::favor_backward_gpu`] needs: the denominators (and causal prefix maxima) of every
    /// row, and the states entering every `n`-th chunk under `o.checkpoints = Every(n)`.
    pub fn favor_forward_gpu(
        &self,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        w: &GpuTensor,
        o: &FavorOptions,
    ) -> Result<(GpuTensor, FavorSaved)> {
        let s = attention_shape(q.shape(), k.shape(), v.shape(), Some(w.shape()), None)?;
        let out = self.empty(&s.output_shape(q.shape().len()))?;
        let saved = self.favor_saved(&s, o)?;
        self.submit("favor forward", |enc| self.record_favor_forward(enc, q, k, v, w, &out, &saved))?;
        Ok((out, saved))
    }

    /// Device buffers for what a forward pass of shape `s` under `o` keeps, for
    /// [`Engine::record_favor_forward`].
    pub fn favor_saved(&self, s: &AttentionShape, o: &FavorOptions) -> Result<FavorSaved> {
        let plan = self.plan(s, o)?;
        let (z, l) = (s.problems(), s.len);
        let den = self.empty(&[z, l])?;
        let gamma = if o.causal { Some(self.empty(&[z, l])?) } else { None };
        let checkpoints = match (o.causal, o.checkpoints) {
            (true, Checkpoints::Every(n)) => {
                let shape = [z, l.div_ceil(plan.chunk).div_ceil(n), plan.f, plan.width()];
                let bytes = 4 * shape.iter().product::<usize>() as u64;
                self.check_binding(&format!("causal states kept every {n} chunks"), bytes)?;
                Some(self.empty(&shape)?)
            }
            _ => None,
        };
        Ok(FavorSaved { options: *o, shape: *s, den, gamma, checkpoints })
    }

    /// Records the forward pass of [`Engine::favor_forward_gpu`] into the caller's encoder, writing
    /// `out` and `saved` (made by [`Engine::favor_saved`], whose options it follows).
    #[allow(clippy::too_many_arguments)]
    pub fn record_favor_forward(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        w: &GpuTensor,
        out: &GpuTensor,
        saved: &FavorSaved,
    ) -> Result<Recorded> {
        let s = attention_shape(q.shape(), k.shape(), v.shape(), Some(w.shape()), Some(out.shape()))?;
        let state = self.unset_state(&s, saved.options.kernel)?;
        self.record_forward_sweep(encoder, [q, k, v, w, out], saved, &state, Sweep::WHOLE)
    }

    /// [`Engine::record_favor_forward`] through `state`, as `sweep` says.
    pub(super) fn record_forward_sweep(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        tensors: [&GpuTensor; 5],
        saved: &FavorSaved,
        state: &CausalState,
        sweep: Sweep,
    ) -> Result<Recorded> {
        let [q, k, v, w, _] = tensors;
        saved.check(&attention_shape(q.shape(), k.shape(), v.shape(), Some(w.shape()), None)?)?;
        let keep = Keep {
            den: saved.den.buffer(),
            gamma: saved.gamma.as_ref().map(|g| g.buffer()),
            checkpoints: saved.checkpointed(),
        };
        let sweep = Sweep { keep: Some(&keep), ..sweep };
        let recorded = self.record_attention(encoder, tensors, &saved.options, state, sweep)?;
        Ok(recorded.and(self.recording("favor forward", &saved.tensors())?.finish()))
    }
}
