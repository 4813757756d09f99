//! One shape for every operation: check the inputs, record the work (its recording plans its scratch
//! and takes it from the pool), or run its CPU twin. The four entry points of every operation come
//! from here, so none lacks one and the CPU fallback is written once:
//! - [`Engine::run`] / [`Engine::run_async`]: host tensors in and out, every input validated, the CPU
//!   twin answering on an engine without a GPU;
//! - [`Engine::run_gpu`]: device-resident tensors in and out;
//! - [`Engine::record`]: into the caller's encoder, writing the caller's output tensors.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::pool::Recorded;
use crate::tensor::GpuTensor;
use ortho_ref::{Error as InputError, Tensor};

/// An operation of the engine (see the module docs): its inputs, outputs, recording and CPU twin.
pub trait Operation {
    /// The operation's name in errors.
    const NAME: &'static str;
    /// The names of its tensor inputs, in order.
    const INPUTS: &'static [&'static str];

    /// Checks the shapes of the inputs and returns those of the outputs.
    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>>;

    /// Checks what host values the device path does not (every input is also checked to be finite).
    fn check_values(&self, _inputs: &[&Tensor<f32>]) -> Result<()> {
        Ok(())
    }

    /// Records the work into `encoder`, writing `outputs` (shapes already checked).
    fn record(
        &self,
        engine: &Engine,
        encoder: &mut wgpu::CommandEncoder,
        inputs: &[&GpuTensor],
        outputs: &[&GpuTensor],
    ) -> Result<Recorded>;

    /// The CPU twin, in f64.
    fn reference(&self, inputs: &[Tensor<f64>]) -> Result<Vec<Tensor<f64>>>;

    /// Records and submits the work for [`Engine::run`] and [`Engine::run_gpu`]: one submission of
    /// [`Operation::record`], unless the operation splits work whose recording would grow without
    /// bound (a flow's steps) into several.
    fn submit(
        &self,
        engine: &Engine,
        inputs: &[&GpuTensor],
        outputs: &[&GpuTensor],
    ) -> impl std::future::Future<Output = Result<()>> {
        engine.submit_async(Self::NAME, move |enc| self.record(engine, enc, inputs, outputs))
    }

    /// What a non-finite output means, for the error [`Engine::run`] returns then.
    fn non_finite_cause(&self) -> &'static str {
        "a value overflowed f32"
    }
}

/// Refuses outputs holding NaN or infinity: the host entry points never return one.
fn check_outputs<O: Operation>(op: &O, outputs: Vec<Tensor<f32>>) -> Result<Vec<Tensor<f32>>> {
    for (output, t) in outputs.iter().enumerate() {
        let count = t.data().iter().filter(|x| !x.is_finite()).count();
        if count > 0 {
            let cause = op.non_finite_cause().to_string();
            return Err(Error::NonFinite { op: O::NAME.to_string(), output, count, total: t.len(), cause });
        }
    }
    Ok(outputs)
}

/// The inputs' shapes, once there are as many as `O` takes.
fn input_shapes<O: Operation>(shapes: Vec<&[usize]>) -> Result<Vec<&[usize]>> {
    if shapes.len() != O::INPUTS.len() {
        return Err(InputError::argument(
            O::NAME,
            format!("takes {} inputs ({}), not {}", O::INPUTS.len(), O::INPUTS.join(", "), shapes.len()),
        )
        .into());
    }
    Ok(shapes)
}

impl Engine {
    /// Runs `op` on host tensors: validated inputs, the CPU twin on an engine without a GPU, and an
    /// [`Error::NonFinite`] rather than an output holding NaN or infinity.
    pub fn run<O: Operation>(&self, op: &O, inputs: &[&Tensor<f32>]) -> Result<Vec<Tensor<f32>>> {
        self.block_on(self.run_async(op, inputs))
    }

    /// [`Engine::run`] without blocking (see [`Engine::poll_device`]).
    pub async fn run_async<O: Operation>(&self, op: &O, inputs: &[&Tensor<f32>]) -> Result<Vec<Tensor<f32>>> {
        let outputs = op.output_shapes(&input_shapes::<O>(inputs.iter().map(|t| t.shape()).collect())?)?;
        for (t, name) in inputs.iter().zip(O::INPUTS) {
            t.check_finite(name)?;
        }
        op.check_values(inputs)?;
        if !self.is_gpu() {
            let inputs: Vec<Tensor<f64>> = inputs.iter().map(|t| t.to_f64()).collect();
            return check_outputs(op, op.reference(&inputs)?.iter().map(Tensor::to_f32).collect());
        }
        let inputs = inputs.iter().zip(O::INPUTS).map(|(t, name)| self.upload(name, t)).collect::<Result<Vec<_>>>()?;
        let outputs = outputs.iter().map(|s| self.empty(s)).collect::<Result<Vec<_>>>()?;
        let (ins, outs) = (inputs.iter().collect::<Vec<_>>(), outputs.iter().collect::<Vec<_>>());
        op.submit(self, &ins, &outs).await?;
        let mut host = Vec::with_capacity(outputs.len());
        for out in &outputs {
            host.push(self.download_async(out).await?);
        }
        check_outputs(op, host)
    }

    /// Runs `op` on device-resident tensors into new device tensors (neither inputs nor outputs are
    /// read back, so their values are not checked).
    pub fn run_gpu<O: Operation>(&self, op: &O, inputs: &[&GpuTensor]) -> Result<Vec<GpuTensor>> {
        let outputs = op.output_shapes(&input_shapes::<O>(inputs.iter().map(|t| t.shape()).collect())?)?;
        let outputs = outputs.iter().map(|s| self.empty(s)).collect::<Result<Vec<_>>>()?;
        let outs = outputs.iter().collect::<Vec<_>>();
        self.gpu(O::NAME)?;
        self.block_on(op.submit(self, inputs, &outs))?;
        Ok(outputs)
    }

    /// Records `op` into the caller's encoder, writing `outputs`; keep the returned guard until the
    /// encoder is submitted.
    pub fn record<O: Operation>(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        op: &O,
        inputs: &[&GpuTensor],
        outputs: &[&GpuTensor],
    ) -> Result<Recorded> {
        let want = op.output_shapes(&input_shapes::<O>(inputs.iter().map(|t| t.shape()).collect())?)?;
        if outputs.len() != want.len() {
            return Err(
                InputError::argument(O::NAME, format!("writes {} outputs, not {}", want.len(), outputs.len())).into()
            );
        }
        for (i, (out, shape)) in outputs.iter().zip(&want).enumerate() {
            if out.len() != shape.iter().product::<usize>() {
                return Err(InputError::shape(&format!("output {i}"), format!("{shape:?}"), out.shape()).into());
            }
        }
        self.gpu(O::NAME)?;
        op.record(self, encoder, inputs, outputs)
    }
}
