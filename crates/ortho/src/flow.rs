//! Dispatch plans for batched matrix exponentials and flows on the orthogonal group (docs/math.md §3). The
//! CPU twins are `ortho_ref::expm` and `ortho_ref::flow`.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::gemm::{Gemm, Operand, record_gemm};
use crate::kernels;
use crate::operation::{Operation, run_batches};
use crate::pool::Recorded;
use crate::recording::Recording;
use crate::scratch::scratch_plan;
use crate::tensor::GpuTensor;
use ortho_ref::Tensor;

mod integrate;

/// The largest n the per-matrix kernels handle (one workgroup per matrix).
pub const FLOW_MAX_N: usize = 64;
/// The largest n that `flow/expm_private` maps, one matrix per invocation.
pub(crate) const PRIVATE_MAX_N: usize = 8;
/// Intermediate matrices the exponential keeps per input matrix.
pub(crate) const SLOTS: usize = 8;
/// The fewest workgroups a batch of small matrices must fill to be packed (see `MapPlan::lanes`).
const PACKED_GROUPS: usize = 4;
/// The most squarings a finite f32 matrix can need: `ceil(log2(64 * f32::MAX / theta_18))`.
const MAX_SQUARINGS: usize = 133;

scratch_plan! {
    /// Floats of a group map's scratch: the [`SLOTS`] intermediate matrices and the scaling plan of
    /// each matrix of one dispatch.
    pub(crate) struct MapSizes => MapScratch {
        work: usize,
        plans: usize,
    }
}

/// How the group maps cover `b` matrices of side `n`: up to [`PRIVATE_MAX_N`] in one dispatch of
/// `flow/expm_private`; larger ones with `flow/expm`, `chunk` at a time (as many as one binding of
/// their intermediate matrices holds), each in [`MapPlan::passes`] dispatches.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MapPlan {
    map: GroupMap,
    b: usize,
    n: usize,
    chunk: usize,
}

impl MapPlan {
    pub(crate) fn new(engine: &Engine, map: GroupMap, (b, n): (usize, usize)) -> Result<Self> {
        let per_matrix = (4 * SLOTS * n * n) as u64;
        let chunk = ((engine.binding_limit()? / per_matrix) as usize).clamp(1, b);
        Ok(MapPlan { map, b, n, chunk })
    }

    fn private(&self) -> bool {
        self.n <= PRIVATE_MAX_N
    }

    /// The scratch of `flow/expm` (`expm_private` needs none).
    pub(crate) fn sizes(&self) -> Option<MapSizes> {
        (!self.private()).then_some(MapSizes { work: SLOTS * self.n * self.n * self.chunk, plans: self.chunk })
    }

    /// Invocations of `flow/expm` that share a matrix: 16 (4 matrices of n <= 16 per workgroup) where
    /// the batch fills at least [`PACKED_GROUPS`] such workgroups; else a workgroup per matrix (a small
    /// batch packed would put a whole matrix's work on few invocations).
    fn lanes(&self) -> usize {
        if self.n <= 16 && self.b >= PACKED_GROUPS * 4 { 16 } else { 64 }
    }

    /// Squarings one pass performs at most: as many as keep a pass within ~32k inner iterations per
    /// invocation, a squaring taking `n` for each of an invocation's `n^2 / lanes` elements (8 at
    /// n = 64, where 11 were seen to fail on llvmpipe; all of them for small matrices, which take one
    /// pass).
    fn squarings_per_pass(&self) -> usize {
        (32_768 / ((self.n * self.n).div_ceil(self.lanes()) * (self.n + 2))).clamp(8, MAX_SQUARINGS)
    }

    /// Dispatches per chunk; every pass after the first only touches matrices with work still due,
    /// and the others return at once.
    fn passes(&self) -> usize {
        match self.map {
            GroupMap::Exp => MAX_SQUARINGS.div_ceil(self.squarings_per_pass()),
            GroupMap::Cayley => self.n.div_ceil(CAYLEY_COLUMNS_PER_PASS),
        }
    }
}

/// What `record_expm` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpmOutput {
    /// `exp(A)`.
    Exp = 0,
    /// `exp(A) - I`, evaluated directly.
    Increment = 1,
    /// `W + W (exp(A) - I)` in place of the `W` that `out` holds: one Lie–Euler step.
    Update = 2,
}

/// The map from the Lie algebra to the group that `flow/expm` evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupMap {
    Exp = 0,
    /// `cay(A) = (I - A/2)^(-1) (I + A/2)`.
    Cayley = 1,
}

/// Columns one pass of the Cayley elimination clears.
pub(crate) const CAYLEY_COLUMNS_PER_PASS: usize = 16;

/// `(batch, n)` of `[n, n]` or `[batch, n, n]` within the kernels' size.
fn square(name: &str, shape: &[usize]) -> Result<(usize, usize)> {
    let (b, n) = match *shape {
        [r, c] if r == c && r > 0 => (1, r),
        [b, r, c] if r == c && r > 0 && b > 0 => (b, r),
        _ => return Err(ortho_ref::Error::shape(name, "[n, n] or [batch, n, n] with n >= 1", shape).into()),
    };
    if n > FLOW_MAX_N {
        return Err(Error::Unsupported(format!(
            "{name}: n = {n}; the batched matrix kernels handle n <= {FLOW_MAX_N}"
        )));
    }
    Ok((b, n))
}

/// The group map of every matrix of `a` (`[n, n]` or `[batch, n, n]`, n <= 64): `exp(A)` (degree and
/// scaling chosen per matrix on the GPU with the f32 switch points; the CPU twin uses the f64 ones)
/// or `cay(A)` (`I - A/2` must be invertible, as it always is for skew-symmetric A).
#[derive(Debug, Clone, Copy)]
pub struct MatrixMap(pub GroupMap);

impl Operation for MatrixMap {
    const NAME: &'static str = "group map";
    const INPUTS: &'static [&'static str] = &["a"];

    async fn run_split(&self, engine: &Engine, inputs: &[&Tensor<f32>]) -> Option<Result<Vec<Tensor<f32>>>> {
        run_batches(engine, self, inputs, &[3]).await
    }

    fn output_shapes(&self, i: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        square("a", i[0])?;
        Ok(vec![i[0].to_vec()])
    }

    fn record(
        &self,
        engine: &Engine,
        enc: &mut wgpu::CommandEncoder,
        i: &[&GpuTensor],
        o: &[&GpuTensor],
    ) -> Result<Recorded> {
        engine.record_group_map(enc, self.0, i[0], o[0], ExpmOutput::Exp)
    }

    fn cpu(&self, i: &[&Tensor<f32>]) -> Option<Result<Vec<Tensor<f32>>>> {
        Some(Ok(vec![crate::cpu::group_map(i[0], self.0 == GroupMap::Cayley)]))
    }

    fn non_finite_cause(&self) -> &'static str {
        match self.0 {
            GroupMap::Exp => "exp(A) passes f32's range: some matrix's norm is too large",
            GroupMap::Cayley => "I - A/2 is singular, or too close to it, for some matrix",
        }
    }

    fn reference(&self, i: &[Tensor<f64>]) -> Result<Vec<Tensor<f64>>> {
        Ok(vec![match self.0 {
            GroupMap::Exp => ortho_ref::expm::expm(&i[0], &ortho_ref::expm::THETA_F64)?,
            GroupMap::Cayley => ortho_ref::expm::cayley(&i[0])?,
        }])
    }
}

impl Engine {
    /// `exp(A)` of every matrix of `a` (see [`MatrixMap`]).
    pub fn expm(&self, a: &Tensor<f32>) -> Result<Tensor<f32>> {
        Ok(self.run(&MatrixMap(GroupMap::Exp), &[a])?.remove(0))
    }

    /// [`Engine::expm`] on device-resident tensors.
    pub fn expm_gpu(&self, a: &GpuTensor) -> Result<GpuTensor> {
        Ok(self.run_gpu(&MatrixMap(GroupMap::Exp), &[a])?.remove(0))
    }

    /// The Cayley map of every matrix of `a` (see [`MatrixMap`]).
    pub fn cayley(&self, a: &Tensor<f32>) -> Result<Tensor<f32>> {
        Ok(self.run(&MatrixMap(GroupMap::Cayley), &[a])?.remove(0))
    }

    /// [`Engine::cayley`] on device-resident tensors.
    pub fn cayley_gpu(&self, a: &GpuTensor) -> Result<GpuTensor> {
        Ok(self.run_gpu(&MatrixMap(GroupMap::Cayley), &[a])?.remove(0))
    }

    /// Records `exp(A)`, `exp(A) - I` or a Lie–Euler update of `out` (see [`ExpmOutput`]).
    pub fn record_expm(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        a: &GpuTensor,
        out: &GpuTensor,
        output: ExpmOutput,
    ) -> Result<Recorded> {
        self.record_group_map(encoder, GroupMap::Exp, a, out, output)
    }

    /// Records `map(A)`, `map(A) - I` or `W + W (map(A) - I)` into `out` (see [`ExpmOutput`]).
    pub fn record_group_map(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        map: GroupMap,
        a: &GpuTensor,
        out: &GpuTensor,
        output: ExpmOutput,
    ) -> Result<Recorded> {
        let (b, n) = square("a", a.shape())?;
        if out.len() != a.len() {
            return Err(ortho_ref::Error::shape("out", format!("{:?}", a.shape()), out.shape()).into());
        }
        let gpu = self.recording("group map", &[a, out])?;
        let plan = MapPlan::new(self, map, (b, n))?;
        let scratch = gpu.allocate("the group map", &plan.sizes())?;
        let mut pass = encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("group map"), timestamp_writes: None });
        record_map(&gpu, &mut pass, &plan, &scratch, (a.buffer(), 0, 1.0), out.buffer(), output)?;
        drop(pass);
        Ok(gpu.finish())
    }
}

/// Records the group map of `alpha` times matrices `first..first + plan.b` of buffer `a` into `out`.
fn record_map(
    gpu: &Recording,
    pass: &mut wgpu::ComputePass<'_>,
    plan: &MapPlan,
    scratch: &Option<MapScratch>,
    (a, a_first, alpha): (&wgpu::Buffer, usize, f32),
    out: &wgpu::Buffer,
    output: ExpmOutput,
) -> Result<()> {
    let params = |first: usize, count: usize, pass_index: usize, lanes: usize| kernels::Expm {
        batch: count as u32,
        mode: output as u32,
        first: first as u32,
        pass_index: pass_index as u32,
        method: plan.map as u32,
        a_first: a_first as u32,
        alpha,
        lanes: lanes as u32,
    };
    let Some(scratch) = scratch else {
        let groups = gpu.grid(plan.b as u64, 64)?;
        let constants = [("N", plan.n as f64)];
        return gpu.dispatch_with(
            pass,
            &kernels::EXPM_PRIVATE,
            &constants,
            &params(0, plan.b, 0, 1),
            &[a, out],
            groups,
        );
    };
    let lanes = plan.lanes();
    let fixed = if lanes == 64 { 64.0 } else { 0.0 };
    let constants = [("N", plan.n as f64), ("SQUARINGS_PER_PASS", plan.squarings_per_pass() as f64), ("LANES", fixed)];
    let per_group = 64 / lanes;
    for first in (0..plan.b).step_by(plan.chunk) {
        let count = plan.chunk.min(plan.b - first);
        for pass_index in 0..plan.passes() {
            let bufs = [a, scratch.work.buffer(), out, scratch.plans.buffer()];
            let groups = gpu.grid(count.div_ceil(per_group) as u64, 1)?;
            gpu.dispatch_with(
                pass,
                &kernels::EXPM,
                &constants,
                &params(first, count, pass_index, lanes),
                &bufs,
                groups,
            )?;
        }
    }
    Ok(())
}

/// Records `out = sum_i c_i x_i` over `count` elements (`out` must differ from every `x_i`).
fn record_combine(
    gpu: &Recording,
    pass: &mut wgpu::ComputePass<'_>,
    count: usize,
    c: [f32; 4],
    x: [&wgpu::Buffer; 4],
    out: &wgpu::Buffer,
) -> Result<()> {
    let params = kernels::Combine { count: count as u32, c, ..Default::default() };
    let bufs = [x[0], x[1], x[2], x[3], out];
    gpu.dispatch(pass, &kernels::COMBINE, &params, &bufs, gpu.grid(count as u64, 256)?)
}

/// A batch of `n x n` matrices.
fn matrices(buffer: &wgpu::Buffer, n: usize) -> Operand<'_> {
    Operand::rows(buffer, n, n)
}

/// `[n, n]` read by every batch, or `[batch, n, n]`.
fn maybe_shared(t: &GpuTensor, n: usize) -> Operand<'_> {
    if t.shape().len() == 2 { matrices(t.buffer(), n).cycle(1) } else { matrices(t.buffer(), n) }
}
