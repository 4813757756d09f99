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
use crate::tensor::DType;
use crate::tensor::GpuTensor;
use ortho_ref::tensor::Element;
use ortho_ref::{Error as InputError, Tensor};

/// An operation of the engine (see the module docs): its inputs, outputs, recording and CPU twin.
pub trait Operation {
    /// The operation's name in errors.
    const NAME: &'static str;
    /// The names of its tensor inputs, in order.
    const INPUTS: &'static [&'static str];
    /// Whether [`Operation::submit`] submits the work in several pieces (then f16 storage converts
    /// in submissions of their own; otherwise in the operation's one).
    const SUBMITS_IN_PIECES: bool = false;
    /// Whether [`Operation::record`] reads f16 inputs itself (all of them f16, on an adapter with
    /// `SHADER_F16`) instead of f32 working copies.
    const READS_F16: bool = false;

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

    /// The CPU fallback's fast path (`cpu.rs`: f32, blocked threaded products), where the operation
    /// has one; `None` runs [`Operation::reference`] instead.
    fn cpu(&self, _inputs: &[&Tensor<f32>]) -> Option<Result<Vec<Tensor<f32>>>> {
        None
    }

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

    /// Runs host inputs with a tensor (input or output) larger than one storage binding in pieces
    /// that fit (a sequence in segments, a batch a slice at a time), or `None` when the operation
    /// cannot split them and [`Engine::run`] reports the limit. Each piece goes through
    /// [`Engine::run_async`], which checks it and splits it further where needed.
    fn run_split(
        &self,
        _engine: &Engine,
        _inputs: &[&Tensor<f32>],
    ) -> impl std::future::Future<Output = Option<Result<Vec<Tensor<f32>>>>> {
        std::future::ready(None)
    }

    /// What a non-finite output means, for the error [`Engine::run`] returns then.
    fn non_finite_cause(&self) -> &'static str {
        "a value overflowed f32"
    }
}

/// [`Operation::run_split`] for an operation whose work is independent along the leading (batch)
/// axis of its inputs and outputs whose rank is one of `ranks` (the first: the rank that says the
/// call is batched, and gives the batch): as many batch indices a piece as keep each split tensor
/// within one binding. Inputs of other ranks are shared by every piece, and outputs of other ranks
/// (the gradient of a shared input) are summed over the pieces. `None` when no input has the first
/// rank, or one index is already too large.
pub(crate) async fn run_batches<O: Operation + Clone>(
    engine: &Engine,
    op: &O,
    inputs: &[&Tensor<f32>],
    ranks: &[usize],
) -> Option<Result<Vec<Tensor<f32>>>> {
    let batch = inputs.iter().find(|t| t.shape().len() == ranks[0])?.shape()[0];
    let split: Vec<bool> = inputs.iter().map(|t| ranks.contains(&t.shape().len())).collect();
    let outputs = op.output_shapes(&inputs.iter().map(|t| t.shape()).collect::<Vec<_>>()).ok()?;
    let per_index = inputs
        .iter()
        .filter(|t| ranks.contains(&t.shape().len()))
        .map(|t| t.len())
        .chain(outputs.iter().filter(|s| ranks.contains(&s.len())).map(|s| s.iter().product()))
        .max()?
        / batch.max(1);
    let step = batch_step(engine, per_index)?;
    if step >= batch {
        // The split tensors fit whole: what passes the limit is not along the batch.
        return None;
    }
    let joined = Joined::new(&outputs, outputs.iter().map(|s| ranks.contains(&s.len())).collect());
    Some(
        run_pieces(engine, inputs, batch, step, joined, |first, count| {
            (op.clone(), inputs.iter().zip(&split).map(|(t, s)| s.then(|| leading(t, first, count))).collect())
        })
        .await,
    )
}

/// Runs the pieces of `0..batch`, `step` indices at a time: `piece(first, count)` gives the
/// operation for those indices and their inputs (`None`: `inputs`' own, shared by every piece).
pub(crate) async fn run_pieces<O: Operation>(
    engine: &Engine,
    inputs: &[&Tensor<f32>],
    batch: usize,
    step: usize,
    mut joined: Joined,
    piece: impl Fn(usize, usize) -> (O, Vec<Option<Tensor<f32>>>),
) -> Result<Vec<Tensor<f32>>> {
    for first in (0..batch).step_by(step) {
        let (op, pieces) = piece(first, step.min(batch - first));
        let refs: Vec<&Tensor<f32>> = pieces.iter().zip(inputs).map(|(p, t)| p.as_ref().unwrap_or(t)).collect();
        joined.add(Box::pin(engine.run_async(&op, &refs)).await?);
    }
    joined.finish()
}

/// Batch indices a piece takes when each index holds up to `per_index` floats of some tensor;
/// `None` when a piece of one is still too large.
pub(crate) fn batch_step(engine: &Engine, per_index: usize) -> Option<usize> {
    let step = (engine.binding_limit().ok()? / (4 * per_index.max(1) as u64)) as usize;
    (step > 0).then_some(step)
}

/// The outputs of pieces of a split call: those marked `concatenated` joined along their leading
/// axis, the others summed.
pub(crate) struct Joined {
    shapes: Vec<Vec<usize>>,
    concatenated: Vec<bool>,
    data: Vec<Vec<f32>>,
}

impl Joined {
    pub(crate) fn new(shapes: &[Vec<usize>], concatenated: Vec<bool>) -> Self {
        let size = |s: &Vec<usize>| s.iter().product::<usize>();
        let data = shapes
            .iter()
            .zip(&concatenated)
            .map(|(s, &c)| if c { Vec::with_capacity(size(s)) } else { vec![0.0; size(s)] })
            .collect();
        Joined { shapes: shapes.to_vec(), concatenated, data }
    }

    pub(crate) fn add(&mut self, outputs: Vec<Tensor<f32>>) {
        for ((data, &concatenated), piece) in self.data.iter_mut().zip(&self.concatenated).zip(outputs) {
            if concatenated {
                data.extend_from_slice(piece.data());
            } else {
                data.iter_mut().zip(piece.data()).for_each(|(sum, x)| *sum += x);
            }
        }
    }

    pub(crate) fn finish(self) -> Result<Vec<Tensor<f32>>> {
        self.data.into_iter().zip(&self.shapes).map(|(data, shape)| Ok(Tensor::new(shape, data)?)).collect()
    }
}

/// Indices `first..first + count` of the leading axis of `t`.
pub(crate) fn leading(t: &Tensor<f32>, first: usize, count: usize) -> Tensor<f32> {
    t.slice_axis(0, first, count)
}

/// Refuses outputs holding NaN or infinity: the host entry points never return one. `also` adds to
/// the operation's own cause (f16 storage: a value past f16's range).
pub(crate) fn check_outputs<O: Operation, T: Element>(
    op: &O,
    outputs: Vec<Tensor<T>>,
    also: &str,
) -> Result<Vec<Tensor<T>>> {
    for (output, t) in outputs.iter().enumerate() {
        let count = t.data().iter().filter(|x| !x.is_finite()).count();
        if count > 0 {
            let cause = [op.non_finite_cause(), also].join(" ").trim_end().to_string();
            return Err(Error::NonFinite { op: O::NAME.to_string(), output, count, total: t.len(), cause });
        }
    }
    Ok(outputs)
}

/// The shapes of `op`'s outputs, once its inputs are as many as it takes, of shapes it takes, and
/// finite.
pub(crate) fn checked_shapes<O: Operation, T: Element>(op: &O, inputs: &[&Tensor<T>]) -> Result<Vec<Vec<usize>>> {
    let outputs = op.output_shapes(&input_shapes::<O>(inputs.iter().map(|t| t.shape()).collect())?)?;
    for (t, name) in inputs.iter().zip(O::INPUTS) {
        t.check_finite(name)?;
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
        let outputs = checked_shapes(op, inputs)?;
        op.check_values(inputs)?;
        if !self.is_gpu() {
            if !self.is_reference()
                && let Some(outputs) = op.cpu(inputs)
            {
                return check_outputs(op, outputs?, "");
            }
            let inputs: Vec<Tensor<f64>> = inputs.iter().map(|t| t.to_f64()).collect();
            return check_outputs(op, op.reference(&inputs)?.iter().map(Tensor::to_f32).collect(), "");
        }
        let binding = self.binding_limit()?;
        let sizes = inputs.iter().map(|t| t.len()).chain(outputs.iter().map(|s| s.iter().product()));
        if sizes.map(|n| 4 * n as u64).any(|bytes| bytes > binding)
            && let Some(outputs) = Box::pin(op.run_split(self, inputs)).await
        {
            return check_outputs(op, outputs?, "");
        }
        let inputs = inputs.iter().zip(O::INPUTS).map(|(t, name)| self.upload(name, t)).collect::<Result<Vec<_>>>()?;
        let outputs = outputs.iter().map(|s| self.empty(s)).collect::<Result<Vec<_>>>()?;
        let (ins, outs) = (inputs.iter().collect::<Vec<_>>(), outputs.iter().collect::<Vec<_>>());
        op.submit(self, &ins, &outs).await?;
        let mut host = Vec::with_capacity(outputs.len());
        for out in &outputs {
            host.push(self.download_async(out).await?);
        }
        check_outputs(op, host, "")
    }

    /// Runs `op` on device-resident tensors into new device tensors (neither inputs nor outputs are
    /// read back, so their values are not checked). Given any f16 input, the outputs are f16 too
    /// (f16 storage: see [`crate::DType::F16`]).
    pub fn run_gpu<O: Operation>(&self, op: &O, inputs: &[&GpuTensor]) -> Result<Vec<GpuTensor>> {
        let outputs = op.output_shapes(&input_shapes::<O>(inputs.iter().map(|t| t.shape()).collect())?)?;
        let dtype = if inputs.iter().any(|t| t.dtype() == DType::F16) { DType::F16 } else { DType::F32 };
        let outputs = outputs.iter().map(|s| self.named_empty("an output", s, dtype)).collect::<Result<Vec<_>>>()?;
        let outs = outputs.iter().collect::<Vec<_>>();
        self.gpu(O::NAME)?;
        match dtype {
            DType::F32 => self.block_on(op.submit(self, inputs, &outs))?,
            DType::F16 => self.block_on(self.submit_any(op, inputs, &outs))?,
        }
        Ok(outputs)
    }

    /// Records `op` into the caller's encoder, writing `outputs`; keep the returned guard until the
    /// encoder is submitted. Inputs and outputs may be f16 storage, each on its own: f32 working
    /// copies are converted in the same encoder.
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
        if inputs.iter().chain(outputs).any(|t| t.dtype() != DType::F32) {
            return self.record_any(encoder, op, inputs, outputs);
        }
        op.record(self, encoder, inputs, outputs)
    }
}
