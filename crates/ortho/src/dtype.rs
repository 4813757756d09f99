//! f16 storage (docs/math.md §0): tensors of f16 in and out of every operation, the kernels in f32
//! between. An operation given f16 tensors converts them to f32 working copies on the device as it
//! starts (`common/from_f16`, exact) and rounds its f32 outputs into the f16 outputs as it ends
//! (`common/to_f16`, to nearest, ties to even, past 65504 to infinity); one that reads f16 itself
//! ([`Operation::READS_F16`]: the matrix product, on adapters with `SHADER_F16`) takes its inputs as
//! they are. The conversion is done on the bits with core WGSL, so it needs no `SHADER_F16` and
//! rounds alike on every adapter; the CPU fallback rounds the same way with `half`.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::kernels;
use crate::operation::{Operation, check_outputs, checked_shapes};
use crate::pool::Recorded;
use crate::tensor::{DType, GpuTensor};
use half::f16;
use ortho_ref::Tensor;

impl Engine {
    /// A pooled tensor of f16 storage; its contents are unspecified until written.
    pub fn empty_f16(&self, shape: &[usize]) -> Result<GpuTensor> {
        self.named_empty("a tensor", shape, DType::F16)
    }

    /// Copies a host f16 tensor to the GPU (2 bytes a value), rejecting non-finite values.
    pub fn upload_f16(&self, name: &str, t: &Tensor<f16>) -> Result<GpuTensor> {
        t.check_finite(name)?;
        let out = self.named_empty(name, t.shape(), DType::F16)?;
        let gpu = self.gpu("upload")?;
        if !t.is_empty() {
            let mut words = t.data().to_vec();
            words.resize(2 * t.len().div_ceil(2), f16::ZERO);
            gpu.queue.write_buffer(out.buffer(), 0, bytemuck::cast_slice(&words));
        }
        Ok(out)
    }

    pub fn download_f16(&self, t: &GpuTensor) -> Result<Tensor<f16>> {
        self.block_on(self.download_f16_async(t))
    }

    /// Reads an f16 tensor back (driven as [`Engine::download_async`] is).
    pub async fn download_f16_async(&self, t: &GpuTensor) -> Result<Tensor<f16>> {
        if t.dtype() != DType::F16 {
            return Err(Error::Unsupported(format!(
                "download_f16 of {t:?}: the tensor holds {} values; read it with Engine::download",
                t.dtype().name()
            )));
        }
        let decode = |bytes: &[u8]| bytemuck::cast_slice::<u8, f16>(bytes)[..t.len()].to_vec();
        Ok(Tensor::new(t.shape(), self.read_back(t, decode).await?)?)
    }

    /// `t` as a new tensor of `dtype` (f32 to f16 rounds to nearest, ties to even; f16 to f32 is
    /// exact), converted on the device.
    pub fn convert_gpu(&self, t: &GpuTensor, dtype: DType) -> Result<GpuTensor> {
        let out = self.named_empty("a converted tensor", t.shape(), dtype)?;
        self.block_on(self.submit_async("conversion", |enc| self.record_convert(enc, &[t], &[&out])))?;
        Ok(out)
    }

    /// Records the conversion of each `sources[i]` into `targets[i]` (same shapes), skipping pairs
    /// of one dtype, which must be the same tensor. Keep the guard until the encoder is submitted.
    pub fn record_convert(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        sources: &[&GpuTensor],
        targets: &[&GpuTensor],
    ) -> Result<Recorded> {
        if sources.iter().zip(targets).all(|(s, t)| s.buffer() == t.buffer() && s.dtype() == t.dtype()) {
            return Ok(Recorded::default());
        }
        let gpu = self.recording("conversion", &[])?;
        let mut pass = encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("conversion"), timestamp_writes: None });
        for (src, dst) in sources.iter().zip(targets) {
            if src.len() != dst.len() {
                return Err(
                    ortho_ref::Error::shape("conversion target", format!("{:?}", src.shape()), dst.shape()).into()
                );
            }
            let shader = match (src.dtype(), dst.dtype()) {
                (DType::F16, DType::F32) => &kernels::FROM_F16,
                (DType::F32, DType::F16) => &kernels::TO_F16,
                _ if src.buffer() == dst.buffer() => continue,
                (a, _) => {
                    return Err(Error::Unsupported(format!(
                        "converting {src:?} into {dst:?}: both hold {} values",
                        a.name()
                    )));
                }
            };
            gpu.keep(&[src, dst]);
            let params = kernels::Convert { count: src.len() as u32, ..Default::default() };
            let words = src.len().div_ceil(2) as u64;
            gpu.dispatch(&mut pass, shader, &params, &[src.buffer(), dst.buffer()], gpu.grid(words, 256)?)?;
        }
        drop(pass);
        Ok(gpu.finish())
    }

    /// f32 working copies for `tensors`: an f32 tensor itself, an f16 one a new pooled tensor.
    fn working_copies(&self, tensors: &[&GpuTensor]) -> Result<Vec<GpuTensor>> {
        tensors
            .iter()
            .map(|t| match t.dtype() {
                DType::F32 => Ok((*t).clone()),
                DType::F16 => self.empty(t.shape()),
            })
            .collect()
    }

    /// What `op` records from: `inputs` themselves where it reads f16 (see
    /// [`Operation::READS_F16`]), else their f32 working copies.
    fn recorded_inputs<O: Operation>(&self, inputs: &[&GpuTensor]) -> Result<Vec<GpuTensor>> {
        let all_f16 = !inputs.is_empty() && inputs.iter().all(|t| t.dtype() == DType::F16);
        if O::READS_F16 && all_f16 && self.has_shader_f16() {
            return Ok(inputs.iter().map(|t| (*t).clone()).collect());
        }
        self.working_copies(inputs)
    }

    /// Whether this engine's device has `SHADER_F16`: then [`crate::ops::Matmul`] (and
    /// [`Engine::record_matmul`]) reads f16 operands directly, without f32 working copies.
    pub fn has_shader_f16(&self) -> bool {
        self.gpu_opt().is_some_and(|g| g.device.features().contains(wgpu::Features::SHADER_F16))
    }

    /// [`Operation::submit`] for tensors of any dtype: the conversions in the operation's submission,
    /// or, for one that submits in pieces, f16 inputs converted to f32 working copies in a
    /// submission before them and its f32 outputs rounded into f16 outputs in one after.
    pub(crate) async fn submit_any<O: Operation>(
        &self,
        op: &O,
        inputs: &[&GpuTensor],
        outputs: &[&GpuTensor],
    ) -> Result<()> {
        if !O::SUBMITS_IN_PIECES {
            return self.submit_async(O::NAME, |enc| self.record_any(enc, op, inputs, outputs)).await;
        }
        let (wide_in, wide_out) = (self.working_copies(inputs)?, self.working_copies(outputs)?);
        let (wide_in, wide_out): (Vec<&GpuTensor>, Vec<&GpuTensor>) =
            (wide_in.iter().collect(), wide_out.iter().collect());
        if wide_in.iter().zip(inputs).any(|(w, t)| w.buffer() != t.buffer()) {
            self.submit_async(O::NAME, |enc| self.record_convert(enc, inputs, &wide_in)).await?;
        }
        op.submit(self, &wide_in, &wide_out).await?;
        if wide_out.iter().zip(outputs).any(|(w, t)| w.buffer() != t.buffer()) {
            self.submit_async(O::NAME, |enc| self.record_convert(enc, &wide_out, outputs)).await?;
        }
        Ok(())
    }

    /// [`Operation::record`] for tensors of any dtype, into one encoder (see [`Engine::submit_any`]).
    pub(crate) fn record_any<O: Operation>(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        op: &O,
        inputs: &[&GpuTensor],
        outputs: &[&GpuTensor],
    ) -> Result<Recorded> {
        let (wide_in, wide_out) = (self.recorded_inputs::<O>(inputs)?, self.working_copies(outputs)?);
        let (wide_in, wide_out): (Vec<&GpuTensor>, Vec<&GpuTensor>) =
            (wide_in.iter().collect(), wide_out.iter().collect());
        let recorded = self.record_convert(encoder, inputs, &wide_in)?;
        let recorded = recorded.and(op.record(self, encoder, &wide_in, &wide_out)?);
        Ok(recorded.and(self.record_convert(encoder, &wide_out, outputs)?))
    }

    /// [`Engine::run`] in f16 storage: f16 host tensors in and out, 2 bytes a value each way, the
    /// work in f32 between (see the module docs). Inputs are checked to be finite, and an output
    /// past f16's range (65504) is an [`Error::NonFinite`], not an infinity. On the CPU fallback, or
    /// where a tensor passes one binding and the operation splits it, the f32 path runs and its
    /// outputs are rounded alike.
    pub fn run_f16<O: Operation>(&self, op: &O, inputs: &[&Tensor<f16>]) -> Result<Vec<Tensor<f16>>> {
        self.block_on(self.run_f16_async(op, inputs))
    }

    /// [`Engine::run_f16`] without blocking (see [`Engine::poll_device`]).
    pub async fn run_f16_async<O: Operation>(&self, op: &O, inputs: &[&Tensor<f16>]) -> Result<Vec<Tensor<f16>>> {
        let shapes = checked_shapes(op, inputs)?;
        let wide: Vec<Tensor<f32>> = inputs.iter().map(|t| widen(t)).collect::<Result<_>>()?;
        let wide: Vec<&Tensor<f32>> = wide.iter().collect();
        let binding = self.gpu_opt().map(|_| self.binding_limit()).transpose()?;
        let sizes = inputs.iter().map(|t| t.len()).chain(shapes.iter().map(|s| s.iter().product()));
        let fits = sizes.map(|n| DType::F32.bytes(n)).all(|bytes| binding.is_some_and(|limit| bytes <= limit));
        if !fits {
            let outputs = self.run_async(op, &wide).await?;
            return check_outputs(op, outputs.iter().map(Tensor::to_f16).collect(), F16_OVERFLOW);
        }
        op.check_values(&wide)?;
        let ins = inputs.iter().zip(O::INPUTS).map(|(t, name)| self.upload_f16(name, t)).collect::<Result<Vec<_>>>()?;
        let outs = shapes.iter().map(|s| self.empty_f16(s)).collect::<Result<Vec<_>>>()?;
        self.submit_any(op, &ins.iter().collect::<Vec<_>>(), &outs.iter().collect::<Vec<_>>()).await?;
        let mut host = Vec::with_capacity(outs.len());
        for out in &outs {
            host.push(self.download_f16_async(out).await?);
        }
        check_outputs(op, host, F16_OVERFLOW)
    }
}

/// What a non-finite f16 output may mean besides the operation's own cause.
const F16_OVERFLOW: &str = "or a value past 65504, the largest f16";

/// `t` in f32 (exactly, by the slice conversion of `half`).
fn widen(t: &Tensor<f16>) -> Result<Tensor<f32>> {
    use half::slice::HalfFloatSliceExt;
    Ok(Tensor::new(t.shape(), t.data().to_f32_vec())?)
}
