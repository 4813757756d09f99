//! Batched LU factorisation with partial pivoting and the solves that use it (docs/math.md §7): one
//! workgroup per matrix (`common/lu`), one invocation per right-hand side (`common/lu_solve`). The CPU
//! twins are `ortho_ref::linalg::lu` and `lu_solve`.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::kernels;
use crate::operation::{Operation, run_batches};
use crate::pool::Recorded;
use crate::recording::Recording;
use crate::tensor::GpuTensor;
use ortho_ref::Tensor;
use ortho_ref::linalg;

/// The largest n the kernels take: the first step of `common/lu` then stays within a pass.
pub const LU_MAX_N: usize = 2048;
/// The largest n factored and solved one invocation per matrix (per column): below it a workgroup's
/// barriers cost more than its parallel work.
const PRIVATE_MAX_N: usize = 128;
/// Loop iterations one invocation may run in a dispatch (llvmpipe stops loops at 65,535).
const ITERATIONS_PER_PASS: usize = 32_768;

/// `(batch, n)` of `[n, n]` or `[batch, n, n]`, n at most [`LU_MAX_N`].
fn square(name: &str, shape: &[usize]) -> Result<(usize, usize)> {
    let (b, n) = match *shape {
        [r, c] if r == c && r > 0 => (1, r),
        [b, r, c] if r == c && r > 0 && b > 0 => (b, r),
        _ => return Err(ortho_ref::Error::shape(name, "[n, n] or [batch, n, n] with n >= 1", shape).into()),
    };
    if n > LU_MAX_N {
        return Err(Error::Unsupported(format!("{name}: n = {n}; the LU kernels take n <= {LU_MAX_N}")));
    }
    Ok((b, n))
}

/// Steps `0..steps` cut into consecutive ranges whose invocations each run at most
/// [`ITERATIONS_PER_PASS`] loop iterations, `cost(step)` per step and `start` before the first.
fn passes(steps: usize, start: usize, cost: impl Fn(usize) -> usize) -> Vec<(usize, usize)> {
    let (mut out, mut first, mut total) = (Vec::new(), 0, start);
    for step in 0..steps {
        if total + cost(step) > ITERATIONS_PER_PASS && step > first {
            out.push((first, step));
            (first, total) = (step, 0);
        }
        total += cost(step);
    }
    out.push((first, steps));
    out
}

/// The shape of a per-matrix output: `[batch, rest..]`, or `[rest..]` for one unbatched matrix.
fn per_matrix(batched: bool, batch: usize, rest: &[usize]) -> Vec<usize> {
    if batched { [&[batch], rest].concat() } else { rest.to_vec() }
}

/// `P A = L U` of every matrix of `a` (`[n, n]` or `[batch, n, n]`). Outputs: the factors (`L` below
/// the diagonal, unit diagonal implied, `U` on and above), the pivots (row `k` was swapped with row
/// `pivots[k]`, as f32) and `det = (sign, log |det A|)`. A matrix with an exactly zero pivot is
/// singular, and the host entry points refuse it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lu;

impl Operation for Lu {
    const NAME: &'static str = "lu";
    const INPUTS: &'static [&'static str] = &["a"];

    async fn run_split(&self, engine: &Engine, inputs: &[&Tensor<f32>]) -> Option<Result<Vec<Tensor<f32>>>> {
        run_batches(engine, self, inputs, &[3, 2]).await
    }

    fn output_shapes(&self, i: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let (b, n) = square("a", i[0])?;
        let batched = i[0].len() == 3;
        Ok(vec![i[0].to_vec(), per_matrix(batched, b, &[n]), per_matrix(batched, b, &[2])])
    }

    fn record(
        &self,
        engine: &Engine,
        enc: &mut wgpu::CommandEncoder,
        i: &[&GpuTensor],
        o: &[&GpuTensor],
    ) -> Result<Recorded> {
        engine.record_lu(enc, i[0], o[0], o[1], o[2])
    }

    fn reference(&self, i: &[Tensor<f64>]) -> Result<Vec<Tensor<f64>>> {
        let (_, n) = square("a", i[0].shape())?;
        let (mut factors, mut pivots, mut det) = (Vec::new(), Vec::new(), Vec::new());
        for a in i[0].data().chunks(n * n) {
            let lu = linalg::lu(a, n);
            factors.extend(lu.factors);
            pivots.extend(lu.pivots.iter().map(|&p| p as f64));
            det.extend([lu.sign, lu.log_abs_det]);
        }
        let shapes = self.output_shapes(&[i[0].shape()])?;
        Ok(vec![Tensor::new(&shapes[0], factors)?, Tensor::new(&shapes[1], pivots)?, Tensor::new(&shapes[2], det)?])
    }

    fn non_finite_cause(&self) -> &'static str {
        "some matrix is singular (an exactly zero pivot, log |det| = -inf)"
    }
}

/// `X = A^-1 B` from the outputs of [`Lu`]: inputs the factors and pivots of `[batch, n, n]` (or
/// `[n, n]`) and `b` of `[batch, n, r]` (or `[n, r]`).
#[derive(Debug, Clone, Copy, Default)]
pub struct LuSolve;

impl LuSolve {
    fn shapes(factors: &[usize], pivots: &[usize], b: &[usize]) -> Result<(usize, usize, usize)> {
        let (batch, n) = square("factors", factors)?;
        let batched = factors.len() == 3;
        if pivots != per_matrix(batched, batch, &[n]).as_slice() {
            return Err(
                ortho_ref::Error::shape("pivots", format!("{:?}", per_matrix(batched, batch, &[n])), pivots).into()
            );
        }
        match (batched, b) {
            (false, &[rows, r]) | (true, &[_, rows, r]) if rows == n && r > 0 && (!batched || b[0] == batch) => {
                Ok((batch, n, r))
            }
            _ => Err(ortho_ref::Error::shape(
                "b",
                format!("{}[{n}, r]", if batched { format!("[{batch}] + ") } else { String::new() }),
                b,
            )
            .into()),
        }
    }
}

impl Operation for LuSolve {
    const NAME: &'static str = "lu solve";
    const INPUTS: &'static [&'static str] = &["factors", "pivots", "b"];

    async fn run_split(&self, engine: &Engine, inputs: &[&Tensor<f32>]) -> Option<Result<Vec<Tensor<f32>>>> {
        if inputs[0].shape().len() != 3 {
            return None;
        }
        run_batches(engine, self, inputs, &[3, 2]).await
    }

    fn output_shapes(&self, i: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        Self::shapes(i[0], i[1], i[2])?;
        Ok(vec![i[2].to_vec()])
    }

    fn check_values(&self, i: &[&Tensor<f32>]) -> Result<()> {
        let n = i[0].shape()[i[0].shape().len() - 1];
        if let Some(k) = i[1].data().iter().position(|&p| p.fract() != 0.0 || p < 0.0 || p as usize >= n) {
            return Err(ortho_ref::Error::argument(
                "pivots",
                format!("entry {k} = {} is not a row index below {n}", i[1].data()[k]),
            )
            .into());
        }
        Ok(())
    }

    fn record(
        &self,
        engine: &Engine,
        enc: &mut wgpu::CommandEncoder,
        i: &[&GpuTensor],
        o: &[&GpuTensor],
    ) -> Result<Recorded> {
        engine.record_lu_solve(enc, i[0], i[1], i[2], o[0])
    }

    fn reference(&self, i: &[Tensor<f64>]) -> Result<Vec<Tensor<f64>>> {
        let (_, n, r) = Self::shapes(i[0].shape(), i[1].shape(), i[2].shape())?;
        let mut x = Vec::with_capacity(i[2].len());
        for ((f, p), b) in i[0].data().chunks(n * n).zip(i[1].data().chunks(n)).zip(i[2].data().chunks(n * r)) {
            let lu = linalg::Lu {
                n,
                factors: f.to_vec(),
                pivots: p.iter().map(|&q| q as usize).collect(),
                sign: 1.0,
                log_abs_det: 0.0,
            };
            x.extend(linalg::lu_solve(&lu, b, r));
        }
        Ok(vec![Tensor::new(i[2].shape(), x)?])
    }

    fn non_finite_cause(&self) -> &'static str {
        "the factored matrix is singular or too close to it"
    }
}

impl Engine {
    /// [`Lu`] of host tensors: `(factors, pivots, det)`.
    pub fn lu(&self, a: &Tensor<f32>) -> Result<(Tensor<f32>, Tensor<f32>, Tensor<f32>)> {
        let mut out = self.run(&Lu, &[a])?.into_iter();
        Ok((out.next().unwrap(), out.next().unwrap(), out.next().unwrap()))
    }

    /// [`LuSolve`] of host tensors.
    pub fn lu_solve(&self, factors: &Tensor<f32>, pivots: &Tensor<f32>, b: &Tensor<f32>) -> Result<Tensor<f32>> {
        Ok(self.run(&LuSolve, &[factors, pivots, b])?.remove(0))
    }

    /// Records [`Lu`] of `a` into `factors`, `pivots` and `det`.
    pub fn record_lu(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        a: &GpuTensor,
        factors: &GpuTensor,
        pivots: &GpuTensor,
        det: &GpuTensor,
    ) -> Result<Recorded> {
        let shapes = Lu.output_shapes(&[a.shape()])?;
        for (name, t, shape) in
            [("factors", factors, &shapes[0]), ("pivots", pivots, &shapes[1]), ("det", det, &shapes[2])]
        {
            if t.shape() != shape.as_slice() {
                return Err(ortho_ref::Error::shape(name, format!("{shape:?}"), t.shape()).into());
            }
        }
        let (batch, n) = square("a", a.shape())?;
        let gpu = self.recording("lu", &[a, factors, pivots, det])?;
        let mut pass =
            encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("lu"), timestamp_writes: None });
        record_factor(&gpu, &mut pass, (batch, n), [a.buffer(), factors.buffer(), pivots.buffer(), det.buffer()])?;
        drop(pass);
        Ok(gpu.finish())
    }

    /// Records [`LuSolve`]: `x = A^-1 b` from `factors` and `pivots`.
    pub fn record_lu_solve(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        factors: &GpuTensor,
        pivots: &GpuTensor,
        b: &GpuTensor,
        x: &GpuTensor,
    ) -> Result<Recorded> {
        let (batch, n, r) = LuSolve::shapes(factors.shape(), pivots.shape(), b.shape())?;
        if x.shape() != b.shape() {
            return Err(ortho_ref::Error::shape("x", format!("{:?}", b.shape()), x.shape()).into());
        }
        let gpu = self.recording("lu solve", &[factors, pivots, b, x])?;
        let mut pass = encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("lu solve"), timestamp_writes: None });
        record_solve(
            &gpu,
            &mut pass,
            (batch, n, r),
            false,
            [factors.buffer(), pivots.buffer(), b.buffer(), x.buffer()],
        )?;
        drop(pass);
        Ok(gpu.finish())
    }
}

/// Records `common/lu` of `batch` matrices of side `n`: buffers `a`, `factors`, `pivots`, `det`.
/// Matrices up to [`PRIVATE_MAX_N`] take `common/lu_private`, one invocation each.
pub(crate) fn record_factor(
    gpu: &Recording,
    pass: &mut wgpu::ComputePass<'_>,
    (batch, n): (usize, usize),
    bufs: [&wgpu::Buffer; 4],
) -> Result<()> {
    let private = n <= PRIVATE_MAX_N;
    // Per step and invocation: the pivot search and the row swap, the multipliers, the trailing update.
    let group = if private { 1 } else { 256 };
    let step = |k: usize| 3 * (n - k).div_ceil(group) + 8 + (n - k - 1).pow(2).div_ceil(group);
    let (shader, grid) = if private {
        (&kernels::LU_PRIVATE, gpu.grid(batch as u64, 64)?)
    } else {
        (&kernels::LU, gpu.grid(batch as u64, 1)?)
    };
    for (first, last) in passes(n, (n * n).div_ceil(group), step) {
        let params = kernels::Lu {
            batch: batch as u32,
            n: n as u32,
            first: first as u32,
            last: last as u32,
            ..Default::default()
        };
        gpu.dispatch(pass, shader, &params, &bufs, grid)?;
    }
    Ok(())
}

/// Records `common/lu_solve` for `r` right-hand sides per matrix: buffers `factors`, `pivots`, `b`
/// (`[n, r]` read by every matrix when `shared_b`, else `[batch, n, r]`) and `x`.
pub(crate) fn record_solve(
    gpu: &Recording,
    pass: &mut wgpu::ComputePass<'_>,
    (batch, n, r): (usize, usize, usize),
    shared_b: bool,
    bufs: [&wgpu::Buffer; 4],
) -> Result<()> {
    // Small matrices: one invocation per column, row `j` of the forward pass costing j iterations.
    let private = n <= PRIVATE_MAX_N;
    let group = 64;
    let (forward, backward) = if private {
        (passes(n, 0, |j| j + 2), passes(n, 0, |step| step + 2))
    } else {
        (passes(n, 0, |j| (n - j - 1).div_ceil(group) + 2), passes(n, 0, |step| (n - 1 - step).div_ceil(group) + 2))
    };
    let (shader, grid) = if private {
        (&kernels::LU_SOLVE_PRIVATE, gpu.grid((batch * r) as u64, 64)?)
    } else {
        (&kernels::LU_SOLVE, gpu.grid((batch * r) as u64, 1)?)
    };
    let phases = std::iter::once((0, (0, n)))
        .chain(forward.into_iter().map(|r| (1, r)))
        .chain(backward.into_iter().map(|r| (2, r)));
    for (phase, (first, last)) in phases {
        let params = kernels::Lu {
            batch: batch as u32,
            n: n as u32,
            columns: r as u32,
            phase,
            first: first as u32,
            last: last as u32,
            shared_b: shared_b as u32,
            ..Default::default()
        };
        gpu.dispatch(pass, shader, &params, &bufs, grid)?;
    }
    Ok(())
}
