//! Dispatch plans for batched matrix exponentials and flows on the orthogonal group (math.md §3). The
//! CPU twins are `ortho_ref::expm` and `ortho_ref::flow`.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::gemm::{Gemm, Operand, record_gemm};
use crate::pool::BufferKind;
use crate::shaders::{dispatch_with, grid};
use crate::tensor::GpuTensor;
use ortho_ref::Tensor;

/// The largest n the per-matrix kernels handle (one workgroup per matrix).
pub const FLOW_MAX_N: usize = 64;
/// Intermediate matrices the exponential keeps per input matrix.
const SLOTS: usize = 8;
/// Squarings one pass of `flow/expm` performs at most: as many as keep a pass within ~32k inner
/// iterations per invocation (8 at n = 64, where 11 were seen to fail on llvmpipe; all of them for
/// n <= 20, so small matrices take one pass).
fn squarings_per_pass(n: usize) -> usize {
    (32_768 / (n * n * n).div_ceil(64)).clamp(8, MAX_SQUARINGS)
}
/// The most squarings a finite f32 matrix can need: `ceil(log2(64 * f32::MAX / theta_18))`.
const MAX_SQUARINGS: usize = 133;

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

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ExpmParams {
    batch: u32,
    mode: u32,
    first: u32,
    pass_index: u32,
    method: u32,
    a_first: u32,
    alpha: f32,
    _pad: u32,
}

/// The map from the Lie algebra to the group that `flow/expm` evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupMap {
    Exp = 0,
    /// `cay(A) = (I - A/2)^(-1) (I + A/2)`.
    Cayley = 1,
}

/// Columns one pass of the Cayley elimination clears.
const CAYLEY_COLUMNS_PER_PASS: usize = 16;

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

impl Engine {
    /// `exp(A)` of every matrix of `a` (`[n, n]` or `[batch, n, n]`, n <= 64): degree and scaling
    /// chosen per matrix on the GPU (f32 switch points); the CPU reference uses the f64 ones.
    pub fn expm(&self, a: &Tensor<f32>) -> Result<Tensor<f32>> {
        square("a", a.shape())?;
        a.check_finite("a")?;
        if !self.is_gpu() {
            return Ok(ortho_ref::expm::expm(&a.to_f64(), &ortho_ref::expm::THETA_F64)?.to_f32());
        }
        let ga = self.upload("a", a)?;
        let out = self.empty(a.shape())?;
        self.submit("expm", |enc| self.record_expm(enc, &ga, &out, ExpmOutput::Exp))?;
        self.download(&out)
    }

    /// [`Engine::expm`] on device-resident tensors.
    pub fn expm_gpu(&self, a: &GpuTensor) -> Result<GpuTensor> {
        let out = self.empty(a.shape())?;
        self.submit("expm", |enc| self.record_expm(enc, a, &out, ExpmOutput::Exp))?;
        Ok(out)
    }

    /// Records `exp(A)`, `exp(A) - I` or a Lie–Euler update of `out` (see [`ExpmOutput`]).
    pub fn record_expm(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        a: &GpuTensor,
        out: &GpuTensor,
        output: ExpmOutput,
    ) -> Result<()> {
        self.record_group_map(encoder, GroupMap::Exp, a, out, output)
    }

    /// The Cayley map of every matrix of `a` (`[n, n]` or `[batch, n, n]`, n <= 64). `I - A/2` must be
    /// invertible (it always is for skew-symmetric A); a singular one gives non-finite output.
    pub fn cayley(&self, a: &Tensor<f32>) -> Result<Tensor<f32>> {
        square("a", a.shape())?;
        a.check_finite("a")?;
        if !self.is_gpu() {
            return Ok(ortho_ref::expm::cayley(&a.to_f64())?.to_f32());
        }
        let ga = self.upload("a", a)?;
        let out = self.empty(a.shape())?;
        self.submit("cayley", |enc| self.record_group_map(enc, GroupMap::Cayley, &ga, &out, ExpmOutput::Exp))?;
        self.download(&out)
    }

    /// Records `map(A)`, `map(A) - I` or `W + W (map(A) - I)` into `out` (see [`ExpmOutput`]).
    pub fn record_group_map(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        map: GroupMap,
        a: &GpuTensor,
        out: &GpuTensor,
        output: ExpmOutput,
    ) -> Result<()> {
        let (b, n) = square("a", a.shape())?;
        if out.len() != a.len() {
            return Err(ortho_ref::Error::shape("out", format!("{:?}", a.shape()), out.shape()).into());
        }
        let mut pass = encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("group map"), timestamp_writes: None });
        self.record_map(&mut pass, map, (a.buffer(), 0, 1.0), (b, n), out.buffer(), output)
    }

    /// The group map of `alpha` times matrices `first..first + b` of buffer `a` into `out` (b, n x n).
    fn record_map(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        map: GroupMap,
        (a, a_first, alpha): (&wgpu::Buffer, usize, f32),
        (b, n): (usize, usize),
        out: &wgpu::Buffer,
        output: ExpmOutput,
    ) -> Result<()> {
        let gpu = self.gpu("group map")?;
        let binding = self.binding_limit()?;
        let per_matrix = (4 * SLOTS * n * n) as u64;
        let chunk = ((binding / per_matrix) as usize).clamp(1, b);
        let work = gpu.pool.get(BufferKind::Storage, per_matrix * chunk as u64);
        let plans = gpu.pool.get(BufferKind::Storage, 4 * chunk as u64);
        let per_pass = squarings_per_pass(n);
        let constants = [("N", n as f64), ("SQUARINGS_PER_PASS", per_pass as f64)];
        // Every pass after the first only touches matrices with squarings still due; the others
        // return at once.
        let passes = match map {
            GroupMap::Exp => MAX_SQUARINGS.div_ceil(per_pass),
            GroupMap::Cayley => n.div_ceil(CAYLEY_COLUMNS_PER_PASS),
        };
        for first in (0..b).step_by(chunk) {
            let count = chunk.min(b - first);
            for pass_index in 0..passes {
                let params = ExpmParams {
                    batch: count as u32,
                    mode: output as u32,
                    first: first as u32,
                    pass_index: pass_index as u32,
                    method: map as u32,
                    a_first: a_first as u32,
                    alpha,
                    _pad: 0,
                };
                let bufs = [a, work.buffer(), out, plans.buffer()];
                let groups = grid(count as u64, 1)?;
                dispatch_with(
                    &gpu.device,
                    &gpu.pipelines,
                    pass,
                    "flow/expm",
                    &constants,
                    bytemuck::bytes_of(&params),
                    &bufs,
                    groups,
                )?;
            }
        }
        Ok(())
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ActivateParams {
    count: u32,
    activation: u32,
    _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct CombineParams {
    count: u32,
    _pad: [u32; 3],
    c: [f32; 4],
}

impl Engine {
    /// Records `out = sum_i c_i x_i` over `count` elements (`out` must differ from every `x_i`).
    fn record_combine(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        count: usize,
        c: [f32; 4],
        x: [&wgpu::Buffer; 4],
        out: &wgpu::Buffer,
    ) -> Result<()> {
        let gpu = self.gpu("combine")?;
        let params = CombineParams { count: count as u32, _pad: [0; 3], c };
        let bufs = [x[0], x[1], x[2], x[3], out];
        crate::shaders::dispatch(
            &gpu.device,
            &gpu.pipelines,
            pass,
            "flow/combine",
            bytemuck::bytes_of(&params),
            &bufs,
            grid(count as u64, 256)?,
        )
    }
}

/// A batch of `n x n` matrices.
fn matrices(buffer: &wgpu::Buffer, n: usize) -> Operand<'_> {
    Operand::rows(buffer, n, n)
}

/// `[n, n]` read by every batch, or `[batch, n, n]`.
fn maybe_shared(t: &GpuTensor, n: usize) -> Operand<'_> {
    if t.shape().len() == 2 { matrices(t.buffer(), n).cycle(1) } else { matrices(t.buffer(), n) }
}

impl Engine {
    /// Integrates `flow` from `w0` (`[n, n]` or `[batch, n, n]`, n <= 64) and returns W after the last
    /// step and, with a nested state, x. On the GPU every step is recorded into one submission: the
    /// generator by the engine's GEMM, the group map applied in place in increment form, and the
    /// nested state by forward Euler (first-order methods) or RK4 over the RKMK4 stage matrices.
    pub fn flow(&self, flow: &ortho_ref::flow::Flow, w0: &Tensor<f32>) -> Result<(Tensor<f32>, Option<Tensor<f32>>)> {
        use ortho_ref::flow::{Activation, Generator, Method};
        let w64 = w0.to_f64();
        let (b, n) = flow.check(&w64)?;
        square("w0", w0.shape())?;
        if !self.is_gpu() {
            let (w, x) = flow.run(&w64)?;
            return Ok((w.to_f32(), x.map(|x| x.to_f32())));
        }
        let map = match flow.method {
            Method::CayleyEuler => GroupMap::Cayley,
            Method::LieEuler | Method::Rkmk4 => GroupMap::Exp,
        };
        let gpu = self.gpu("flow")?;
        let mut w = self.upload("w0", w0)?;
        let mut spare = self.empty(w0.shape())?;
        let h = flow.dt as f32;
        let (generator, qs_ns) = match &flow.generator {
            Generator::Given(omega) => (Some(self.upload("generators", &omega.to_f32())?), None),
            Generator::Isospectral { qs, ns } => {
                (None, Some((self.upload("qs", &qs.to_f32())?, self.upload("ns", &ns.to_f32())?)))
            }
        };
        let get = || gpu.pool.get(BufferKind::Storage, (4 * b * n * n) as u64);
        let (t1, t2) = (get(), get());
        let (stage, mix) = (get(), get());
        let fields = [get(), get(), get(), get()];
        let square_gemm = Gemm::new(b, n, n, n);
        let count = b * n * n;
        // The nested state x' = sigma(W x): x (and its next value), a stage input and W times it,
        // and the four stage slopes.
        let vectors = || gpu.pool.get(BufferKind::Storage, (4 * b * n) as u64);
        let nested = match &flow.state {
            Some((x0, activation)) => {
                let code = match activation {
                    Activation::Tanh => 0,
                    Activation::Relu => 1,
                    Activation::Identity => 2,
                };
                Some((
                    code,
                    [self.upload("x0", &x0.to_f32())?, self.empty(x0.shape())?],
                    [vectors(), vectors()],
                    [vectors(), vectors(), vectors(), vectors()],
                ))
            }
            None => None,
        };
        let mut x_index = 0;
        self.submit("flow", |enc| {
            let mut pass =
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("flow"), timestamp_writes: None });
            let pass = &mut pass;
            // h b(W) for the isospectral field: h (W^T Qs W) Ns - h Ns (W^T Qs W).
            let field = |pass: &mut wgpu::ComputePass<'_>, w: &wgpu::Buffer, out: &wgpu::Buffer| -> Result<()> {
                let Some((qs, ns)) = &qs_ns else { unreachable!("given generators need no field") };
                record_gemm(
                    gpu,
                    pass,
                    &square_gemm,
                    matrices(w, n).t(),
                    maybe_shared(qs, n),
                    matrices(t1.buffer(), n),
                )?;
                record_gemm(
                    gpu,
                    pass,
                    &square_gemm,
                    matrices(t1.buffer(), n),
                    matrices(w, n),
                    matrices(t2.buffer(), n),
                )?;
                record_gemm(
                    gpu,
                    pass,
                    &Gemm { alpha: h, ..square_gemm },
                    matrices(t2.buffer(), n),
                    maybe_shared(ns, n),
                    matrices(out, n),
                )?;
                let minus = Gemm { alpha: -h, beta: 1.0, ..square_gemm };
                record_gemm(gpu, pass, &minus, maybe_shared(ns, n), matrices(t2.buffer(), n), matrices(out, n))
            };
            // out += s [x, y].
            let commutator = |pass: &mut wgpu::ComputePass<'_>,
                              s: f32,
                              x: &wgpu::Buffer,
                              y: &wgpu::Buffer,
                              out: &wgpu::Buffer|
             -> Result<()> {
                record_gemm(
                    gpu,
                    pass,
                    &Gemm { alpha: s, beta: 1.0, ..square_gemm },
                    matrices(x, n),
                    matrices(y, n),
                    matrices(out, n),
                )?;
                record_gemm(
                    gpu,
                    pass,
                    &Gemm { alpha: -s, beta: 1.0, ..square_gemm },
                    matrices(y, n),
                    matrices(x, n),
                    matrices(out, n),
                )
            };
            // slopes[i] = sigma(stage_w (x + a slopes[j])), or sigma(stage_w x) without `from`.
            let slope = |pass: &mut wgpu::ComputePass<'_>,
                         stage_w: &wgpu::Buffer,
                         x_index: usize,
                         from: Option<(f32, usize)>,
                         i: usize|
             -> Result<()> {
                let Some((code, xs, [v, y], slopes)) = &nested else { return Ok(()) };
                let x = xs[x_index].buffer();
                let input = match from {
                    Some((a, j)) => {
                        self.record_combine(
                            pass,
                            b * n,
                            [1.0, a, 0.0, 0.0],
                            [x, slopes[j].buffer(), x, x],
                            v.buffer(),
                        )?;
                        v.buffer()
                    }
                    None => x,
                };
                let vec = |buf| Operand::rows(buf, n, 1);
                record_gemm(gpu, pass, &Gemm::new(b, n, 1, n), matrices(stage_w, n), vec(input), vec(y.buffer()))?;
                let params = ActivateParams { count: (b * n) as u32, activation: *code, _pad: [0; 2] };
                let bufs = [y.buffer(), slopes[i].buffer()];
                crate::shaders::dispatch(
                    &gpu.device,
                    &gpu.pipelines,
                    pass,
                    "flow/activate",
                    bytemuck::bytes_of(&params),
                    &bufs,
                    grid((b * n) as u64, 256)?,
                )
            };
            // x <- x + h sum_i weights_i slopes_i, into the other x buffer.
            let advance_state =
                |pass: &mut wgpu::ComputePass<'_>, x_index: &mut usize, weights: [f32; 4]| -> Result<()> {
                    let Some((_, xs, [v, _], slopes)) = &nested else { return Ok(()) };
                    let s = [slopes[0].buffer(), slopes[1].buffer(), slopes[2].buffer(), slopes[3].buffer()];
                    self.record_combine(pass, b * n, weights.map(|c| h * c), s, v.buffer())?;
                    let x = xs[*x_index].buffer();
                    self.record_combine(
                        pass,
                        b * n,
                        [1.0, 1.0, 0.0, 0.0],
                        [x, v.buffer(), x, x],
                        xs[1 - *x_index].buffer(),
                    )?;
                    *x_index = 1 - *x_index;
                    Ok(())
                };
            let rk4 = flow.method == Method::Rkmk4;
            for k in 0..flow.steps {
                slope(pass, w.buffer(), x_index, None, 0)?;
                match (&generator, &qs_ns) {
                    // Constant over the step: every RKMK4 stage sees h Omega_k, the commutators
                    // vanish and the step is exactly W exp(h Omega_k).
                    (Some(omega), _) => {
                        if rk4 && nested.is_some() {
                            // Stages W exp(h Omega / 2) (twice) and W exp(h Omega), the next W.
                            self.record_combine(pass, count, [1.0, 0.0, 0.0, 0.0], [w.buffer(); 4], stage.buffer())?;
                            self.record_map(
                                pass,
                                map,
                                (omega.buffer(), k * b, h / 2.0),
                                (b, n),
                                stage.buffer(),
                                ExpmOutput::Update,
                            )?;
                            slope(pass, stage.buffer(), x_index, Some((h / 2.0, 0)), 1)?;
                            slope(pass, stage.buffer(), x_index, Some((h / 2.0, 1)), 2)?;
                        }
                        self.record_map(pass, map, (omega.buffer(), k * b, h), (b, n), w.buffer(), ExpmOutput::Update)?;
                        if rk4 && nested.is_some() {
                            slope(pass, w.buffer(), x_index, Some((h, 2)), 3)?;
                        }
                    }
                    (None, Some(_)) if flow.method != Method::Rkmk4 => {
                        field(pass, w.buffer(), fields[0].buffer())?;
                        self.record_map(
                            pass,
                            map,
                            (fields[0].buffer(), 0, 1.0),
                            (b, n),
                            w.buffer(),
                            ExpmOutput::Update,
                        )?;
                    }
                    (None, Some(_)) => {
                        // RKMK4, right action: stages W exp(B1/2), W exp(B2/2 + [B1, B2]/8), W exp(B3),
                        // then W exp((B1 + 2 B2 + 2 B3 + B4)/6 + [B1, B4]/12).
                        let [b1, b2, b3, b4] =
                            [fields[0].buffer(), fields[1].buffer(), fields[2].buffer(), fields[3].buffer()];
                        field(pass, w.buffer(), b1)?;
                        self.record_combine(pass, count, [1.0, 0.0, 0.0, 0.0], [w.buffer(); 4], stage.buffer())?;
                        self.record_map(pass, map, (b1, 0, 0.5), (b, n), stage.buffer(), ExpmOutput::Update)?;
                        slope(pass, stage.buffer(), x_index, Some((h / 2.0, 0)), 1)?;
                        field(pass, stage.buffer(), b2)?;
                        self.record_combine(pass, count, [0.5, 0.0, 0.0, 0.0], [b2; 4], mix.buffer())?;
                        commutator(pass, 1.0 / 8.0, b1, b2, mix.buffer())?;
                        self.record_combine(pass, count, [1.0, 0.0, 0.0, 0.0], [w.buffer(); 4], stage.buffer())?;
                        self.record_map(pass, map, (mix.buffer(), 0, 1.0), (b, n), stage.buffer(), ExpmOutput::Update)?;
                        slope(pass, stage.buffer(), x_index, Some((h / 2.0, 1)), 2)?;
                        field(pass, stage.buffer(), b3)?;
                        self.record_combine(pass, count, [1.0, 0.0, 0.0, 0.0], [w.buffer(); 4], stage.buffer())?;
                        self.record_map(pass, map, (b3, 0, 1.0), (b, n), stage.buffer(), ExpmOutput::Update)?;
                        slope(pass, stage.buffer(), x_index, Some((h, 2)), 3)?;
                        field(pass, stage.buffer(), b4)?;
                        let sixth = 1.0 / 6.0;
                        self.record_combine(
                            pass,
                            count,
                            [sixth, 2.0 * sixth, 2.0 * sixth, sixth],
                            [b1, b2, b3, b4],
                            mix.buffer(),
                        )?;
                        commutator(pass, 1.0 / 12.0, b1, b4, mix.buffer())?;
                        self.record_map(pass, map, (mix.buffer(), 0, 1.0), (b, n), w.buffer(), ExpmOutput::Update)?;
                    }
                    (None, None) => unreachable!("every generator is handled above"),
                }
                let sixth = 1.0 / 6.0;
                let weights = if rk4 { [sixth, 2.0 * sixth, 2.0 * sixth, sixth] } else { [1.0, 0.0, 0.0, 0.0] };
                advance_state(pass, &mut x_index, weights)?;
                if flow.newton_schulz_every.is_some_and(|every| (k + 1) % every == 0) {
                    // W <- W (3I - W^T W) / 2, into the spare buffer, then the two swap.
                    let half = Gemm { alpha: -0.5, diag: 1.5, ..square_gemm };
                    record_gemm(
                        gpu,
                        pass,
                        &half,
                        matrices(w.buffer(), n).t(),
                        matrices(w.buffer(), n),
                        matrices(t1.buffer(), n),
                    )?;
                    record_gemm(
                        gpu,
                        pass,
                        &square_gemm,
                        matrices(w.buffer(), n),
                        matrices(t1.buffer(), n),
                        matrices(spare.buffer(), n),
                    )?;
                    std::mem::swap(&mut w, &mut spare);
                }
            }
            Ok(())
        })?;
        let x = match &nested {
            Some((_, xs, _, _)) => Some(self.download(&xs[x_index])?),
            None => None,
        };
        Ok((self.download(&w)?, x))
    }
}
