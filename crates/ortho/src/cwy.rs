//! Dispatch plans for compact-WY Householder accumulation (docs/math.md §2): `S = striu(U^T U) +
//! diag(U^T U) / 2` from the engine's GEMM, `S^(-1)` by blocked triangular inversion (16 x 16 diagonal
//! blocks by substitution, then `X12 = -X11 S12 X22` merges with the GEMM, log2(L/16) levels), then
//! two GEMMs for Q, Omega or `Q X`. The CPU twins are `ortho_ref::cwy::{cwy, tcwy, apply,
//! householder_product}`; `householder_product` is also the GPU baseline (L sequential reflections).

use crate::engine::Engine;
use crate::error::Result;
use crate::gemm::{Gemm, Operand, Triangle, record_gemm};
use crate::kernels;
use crate::pool::Recorded;
use crate::recording::Recording;
use crate::tensor::GpuTensor;
use ortho_ref::Error as InputError;

mod ops;
mod plan;
pub use ops::{Cwy, CwyApply, CwyApplyBackward, CwyBackward, HouseholderProduct};
use plan::*;

/// Side of the diagonal blocks inverted by substitution.
pub(crate) const BLOCK: usize = 16;
/// Modes of `cwy/unit_columns`: unit columns from U, or the gradient back through them.
pub(crate) const UNIT_FORWARD: u32 = 0;
pub(crate) const UNIT_BACKWARD: u32 = 1;

/// K of `x: [N, K]` or `[batch, N, K]` against U's batch and N.
fn apply_width(x: &[usize], b: usize, n: usize) -> Result<usize> {
    match *x {
        [xn, k] if xn == n && b == 1 => Ok(k),
        [xb, xn, k] if xb == b && xn == n => Ok(k),
        _ => Err(InputError::shape("x", format!("[{b}, {n}, K] (or [{n}, K] for one batch)"), x).into()),
    }
}

fn batched(u_shape: &[usize], inner: &[usize]) -> Vec<usize> {
    let mut shape = if u_shape.len() == 3 { vec![u_shape[0]] } else { vec![] };
    shape.extend_from_slice(inner);
    shape
}

/// U's unit columns `u` (every kernel works on them: a reflector does not depend on its vector's
/// length), their lengths, and the inverse `W = S^(-1)` of every batch, padded to `padded x padded`
/// (read its top-left L x L).
struct Inverse<'a> {
    u: &'a wgpu::Buffer,
    norms: &'a wgpu::Buffer,
    padded: usize,
    x: &'a wgpu::Buffer,
}

impl Inverse<'_> {
    /// `W` (or `W^T`) as a GEMM operand: the top-left L x L block of each batch's padded inverse.
    fn operand(&self, transpose: bool) -> Operand<'_> {
        let w = Operand::rows(self.x, self.padded, self.padded);
        if transpose { w.t() } else { w }
    }

    /// `g` with `W` (or `W^T`) as its A: upper (lower) triangular, as `S` is.
    fn times(g: Gemm, transpose: bool) -> Gemm {
        Gemm { a_triangle: if transpose { Triangle::Lower } else { Triangle::Upper }, ..g }
    }
}

/// `cwy/unit_columns` over every column of U: `mode` [`UNIT_FORWARD`] writes `units` from `src` = U
/// (`dst` is bound but not touched), [`UNIT_BACKWARD`] writes `dst` from `src` = the gradient with
/// respect to the unit columns.
fn record_unit_columns(
    gpu: &Recording,
    pass: &mut wgpu::ComputePass<'_>,
    plan: &CwyPlan,
    mode: u32,
    (src, dst): (&wgpu::Buffer, &wgpu::Buffer),
    units: (&wgpu::Buffer, &wgpu::Buffer),
) -> Result<()> {
    let CwyPlan { b, n, l, .. } = *plan;
    let params = kernels::UnitColumns { batch: b as u32, n: n as u32, l: l as u32, mode };
    let bufs = [src, units.0, units.1, dst];
    gpu.dispatch(pass, &kernels::UNIT_COLUMNS, &params, &bufs, gpu.grid((b * l) as u64, 1)?)
}

fn record_inverse<'a>(
    gpu: &Recording,
    pass: &mut wgpu::ComputePass<'_>,
    plan: &CwyPlan,
    u: &GpuTensor,
    scratch: &'a InverseScratch,
) -> Result<Inverse<'a>> {
    let CwyPlan { b, n, l, padded } = *plan;
    let InverseScratch { units, gram, s, x, level_t, level_joined } = scratch;
    let (unit, norms) = (units.unit.buffer(), units.norms.buffer());
    record_unit_columns(gpu, pass, plan, UNIT_FORWARD, (u.buffer(), gram.buffer()), (unit, norms))?;
    let ut = Operand::rows(unit, n, l).t();
    let gram_op = Operand::rows(gram.buffer(), l, l);
    // S reads the Gram matrix's upper triangle only.
    let upper = Gemm { upper: true, ..Gemm::new(b, l, l, n) };
    record_gemm(gpu, pass, &upper, ut, Operand::rows(unit, n, l), gram_op)?;
    let params = kernels::SMatrix { batch: b as u32, l: l as u32, padded: padded as u32, _pad: 0 };
    let bufs = [gram.buffer(), s.buffer(), x.buffer()];
    gpu.dispatch(pass, &kernels::S_MATRIX, &params, &bufs, gpu.grid((b * padded * padded) as u64, 256)?)?;
    let params = kernels::Blocks { batch: b as u32, n: padded as u32, ..Default::default() };
    let blocks = b * padded / BLOCK;
    gpu.dispatch(pass, &kernels::TRI_INVERSE_BLOCKS, &params, &[s.buffer(), x.buffer()], gpu.grid(blocks as u64, 1)?)?;
    // Join pairs of inverted diagonal blocks of side `side`: X12 = -X11 (S12 X22).
    let mut side = BLOCK;
    while side < padded {
        let pairs = padded / (2 * side);
        let pair = 2 * side * (padded + 1);
        let at = |buffer, first: usize| Operand::rows(buffer, padded, padded).at(first).chunks(0, pairs, pair);
        let g = Gemm::new(b * pairs, side, side, side);
        let t = Operand::rows(level_t.buffer(), side, side);
        let joined = Operand::rows(level_joined.buffer(), side, side);
        record_gemm(gpu, pass, &g, at(s.buffer(), side), at(x.buffer(), side * (padded + 1)), t)?;
        let upper = Gemm { alpha: -1.0, a_triangle: Triangle::Upper, ..g };
        record_gemm(gpu, pass, &upper, at(x.buffer(), 0), t, joined)?;
        let params =
            kernels::Place { blocks: (b * pairs) as u32, side: side as u32, n: padded as u32, pairs: pairs as u32 };
        let bufs = [level_joined.buffer(), x.buffer()];
        let count = (b * pairs * side * side) as u64;
        gpu.dispatch(pass, &kernels::PLACE_BLOCKS, &params, &bufs, gpu.grid(count, 256)?)?;
        side *= 2;
    }
    Ok(Inverse { u: unit, norms, padded, x: x.buffer() })
}

/// `G U`, the first `gtu_rows` rows of `G^T U` (the rest are zero) and `U^T G U`, all `[batch, ., L]`.
struct Products<'a> {
    gu: &'a wgpu::Buffer,
    gtu: &'a wgpu::Buffer,
    gtu_rows: usize,
    utgu: &'a wgpu::Buffer,
}

/// `dU = -GU W^T - GtU W + U (P + P^T)`, `B = W^T UtGU W^T` (docs/math.md §2.2), for the unit
/// columns, then back through their normalisation into `du`.
fn record_du(
    gpu: &Recording,
    pass: &mut wgpu::ComputePass<'_>,
    plan: &CwyPlan,
    w: &Inverse,
    p: &Products,
    scratch: &DuScratch,
    du: &wgpu::Buffer,
) -> Result<()> {
    let CwyPlan { b, n, l, .. } = *plan;
    let DuScratch { t, bm, pp, du_unit } = scratch;
    let (u, du_out, du) = (w.u, du, du_unit.buffer());
    let ll = |buf| Operand::rows(buf, l, l);
    let nl = |buf| Operand::rows(buf, n, l);
    let square = Gemm::new(b, l, l, l);
    record_gemm(gpu, pass, &Inverse::times(square, true), w.operand(true), ll(p.utgu), ll(t.buffer()))?;
    record_gemm(gpu, pass, &square, ll(t.buffer()), w.operand(true), ll(bm.buffer()))?;
    let params = kernels::Mirror { count: (b * l * l) as u32, l: l as u32, ..Default::default() };
    let bufs = [bm.buffer(), pp.buffer()];
    gpu.dispatch(pass, &kernels::MIRROR_UPPER, &params, &bufs, gpu.grid((b * l * l) as u64, 256)?)?;
    let minus = Gemm { alpha: -1.0, ..Gemm::new(b, n, l, l) };
    record_gemm(gpu, pass, &minus, nl(p.gu), w.operand(true), nl(du))?;
    record_gemm(gpu, pass, &Gemm { beta: 1.0, m: p.gtu_rows, ..minus }, nl(p.gtu), w.operand(false), nl(du))?;
    record_gemm(gpu, pass, &Gemm { beta: 1.0, ..Gemm::new(b, n, l, l) }, nl(u), ll(pp.buffer()), nl(du))?;
    record_unit_columns(gpu, pass, plan, UNIT_BACKWARD, (du, du_out), (w.u, w.norms))
}

impl Engine {
    /// Records `Q` (`[.., N, N]`) or, with `stiefel`, `Omega` (`[.., N, L]`) into `out`.
    pub fn record_cwy(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        u: &GpuTensor,
        out: &GpuTensor,
        stiefel: bool,
    ) -> Result<Recorded> {
        let plan = CwyPlan::new(u.shape())?;
        let CwyPlan { b, n, l, .. } = plan;
        let cols = if stiefel { l } else { n };
        if out.len() != b * n * cols {
            return Err(InputError::shape("out", format!("{:?}", batched(u.shape(), &[n, cols])), out.shape()).into());
        }
        let gpu = self.recording("cwy", &[u, out])?;
        let scratch = gpu.allocate("cwy", &CwySizes { inverse: plan.inverse(), t: b * l * cols })?;
        let mut pass =
            encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("cwy"), timestamp_writes: None });
        let w = record_inverse(&gpu, &mut pass, &plan, u, &scratch.inverse)?;
        // T = W U^T (restricted to the first L columns for Omega), then out = I - U T.
        let (u_op, t) = (Operand::rows(w.u, n, l), Operand::rows(scratch.t.buffer(), l, cols));
        record_gemm(&gpu, &mut pass, &Inverse::times(Gemm::new(b, l, cols, l), false), w.operand(false), u_op.t(), t)?;
        let g = Gemm { alpha: -1.0, diag: 1.0, ..Gemm::new(b, n, cols, l) };
        record_gemm(&gpu, &mut pass, &g, u_op, t, Operand::rows(out.buffer(), n, cols))?;
        drop(pass);
        Ok(gpu.finish())
    }

    /// Records `out = Q x` (or `Q^T x`): `x - U (W (U^T x))`, with `W^T` for the transpose.
    pub fn record_cwy_apply(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        u: &GpuTensor,
        x: &GpuTensor,
        out: &GpuTensor,
        transpose: bool,
    ) -> Result<Recorded> {
        let plan = CwyPlan::new(u.shape())?;
        let CwyPlan { b, n, l, .. } = plan;
        let k = apply_width(x.shape(), b, n)?;
        if out.shape() != x.shape() {
            return Err(InputError::shape("out", format!("{:?}", x.shape()), out.shape()).into());
        }
        let gpu = self.recording("cwy apply", &[u, x, out])?;
        let sizes = ApplySizes { inverse: plan.inverse(), utx: b * l * k, wutx: b * l * k };
        let ApplyScratch { inverse, utx, wutx } = gpu.allocate("cwy apply", &sizes)?;
        encoder.copy_buffer_to_buffer(x.buffer(), 0, out.buffer(), 0, x.byte_len());
        let mut pass = encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("cwy apply"), timestamp_writes: None });
        let w = record_inverse(&gpu, &mut pass, &plan, u, &inverse)?;
        let u_op = Operand::rows(w.u, n, l);
        let (utx, wutx) = (Operand::rows(utx.buffer(), l, k), Operand::rows(wutx.buffer(), l, k));
        record_gemm(&gpu, &mut pass, &Gemm::new(b, l, k, n), u_op.t(), Operand::rows(x.buffer(), n, k), utx)?;
        let g = Inverse::times(Gemm::new(b, l, k, l), transpose);
        record_gemm(&gpu, &mut pass, &g, w.operand(transpose), utx, wutx)?;
        let g = Gemm { alpha: -1.0, beta: 1.0, ..Gemm::new(b, n, k, l) };
        record_gemm(&gpu, &mut pass, &g, u_op, wutx, Operand::rows(out.buffer(), n, k))?;
        drop(pass);
        Ok(gpu.finish())
    }

    /// Records `du = dloss/dU` for Q (or, with `stiefel`, Omega) given its gradient `g`.
    pub fn record_cwy_backward(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        u: &GpuTensor,
        g: &GpuTensor,
        du: &GpuTensor,
        stiefel: bool,
    ) -> Result<Recorded> {
        let plan = CwyPlan::new(u.shape())?;
        let CwyPlan { b, n, l, .. } = plan;
        let cols = if stiefel { l } else { n };
        if g.len() != b * n * cols || du.len() != b * n * l {
            return Err(InputError::shape("grad", format!("{:?}", batched(u.shape(), &[n, cols])), g.shape()).into());
        }
        let gpu = self.recording("cwy backward", &[u, g, du])?;
        let sizes =
            BackwardSizes { inverse: plan.inverse(), gu: b * n * l, gtu: b * n * l, utgu: b * l * l, du: plan.du() };
        let scratch = gpu.allocate("cwy backward", &sizes)?;
        let mut pass = encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("cwy backward"), timestamp_writes: None });
        let w = record_inverse(&gpu, &mut pass, &plan, u, &scratch.inverse)?;
        let (u_op, g_op) = (Operand::rows(w.u, n, l), Operand::rows(g.buffer(), n, cols));
        let (gu, gtu) = (Operand::rows(scratch.gu.buffer(), n, l), Operand::rows(scratch.gtu.buffer(), n, l));
        // G = [G_Omega, 0] for Omega: G U = G_Omega U_1, and G^T U has rows only where G has columns.
        record_gemm(&gpu, &mut pass, &Gemm::new(b, n, l, cols), g_op, u_op, gu)?;
        record_gemm(&gpu, &mut pass, &Gemm::new(b, cols, l, n), g_op.t(), u_op, gtu)?;
        let utgu = Operand::rows(scratch.utgu.buffer(), l, l);
        record_gemm(&gpu, &mut pass, &Gemm::new(b, l, l, n), u_op.t(), gu, utgu)?;
        let products = Products {
            gu: scratch.gu.buffer(),
            gtu: scratch.gtu.buffer(),
            gtu_rows: cols,
            utgu: scratch.utgu.buffer(),
        };
        record_du(&gpu, &mut pass, &plan, &w, &products, &scratch.du, du.buffer())?;
        drop(pass);
        Ok(gpu.finish())
    }

    /// Records the gradients of `Y = Q X` (or `Q^T X`): `G U = Ybar (X^T U)`, `G^T U = X (Ybar^T U)`,
    /// `U^T G U = (U^T Ybar)(X^T U)` with `G = Ybar X^T` (`X Ybar^T` for the transpose), and
    /// `dX = Q^T Ybar` (`Q Ybar`).
    #[allow(clippy::too_many_arguments)]
    pub fn record_cwy_apply_backward(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        u: &GpuTensor,
        x: &GpuTensor,
        ybar: &GpuTensor,
        transpose: bool,
        du: &GpuTensor,
        dx: &GpuTensor,
    ) -> Result<Recorded> {
        let plan = CwyPlan::new(u.shape())?;
        let CwyPlan { b, n, l, .. } = plan;
        let k = apply_width(x.shape(), b, n)?;
        if ybar.shape() != x.shape() || dx.shape() != x.shape() || du.len() != b * n * l {
            return Err(InputError::shape("grad", format!("{:?} (the shape of x)", x.shape()), ybar.shape()).into());
        }
        let applied = self.record_cwy_apply(encoder, u, ybar, dx, !transpose)?;
        let gpu = self.recording("cwy apply backward", &[u, x, ybar, du, dx])?;
        let (kl, nl) = (b * k * l, b * n * l);
        let sizes = ApplyBackwardSizes {
            inverse: plan.inverse(),
            rtu: kl,
            ltu: kl,
            ltu_t: kl,
            gu: nl,
            gtu: nl,
            utgu: b * l * l,
            du: plan.du(),
        };
        let s = gpu.allocate("cwy apply backward", &sizes)?;
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("cwy apply backward"),
            timestamp_writes: None,
        });
        let w = record_inverse(&gpu, &mut pass, &plan, u, &s.inverse)?;
        let (left, right) = if transpose { (x.buffer(), ybar.buffer()) } else { (ybar.buffer(), x.buffer()) };
        let (left, right) = (Operand::rows(left, n, k), Operand::rows(right, n, k));
        let u_op = Operand::rows(w.u, n, l);
        let (rtu, ltu) = (Operand::rows(s.rtu.buffer(), k, l), Operand::rows(s.ltu.buffer(), k, l));
        let (gu, gtu) = (Operand::rows(s.gu.buffer(), n, l), Operand::rows(s.gtu.buffer(), n, l));
        let ltu_t = Operand::rows(s.ltu_t.buffer(), l, k);
        record_gemm(&gpu, &mut pass, &Gemm::new(b, k, l, n), right.t(), u_op, rtu)?;
        record_gemm(&gpu, &mut pass, &Gemm::new(b, k, l, n), left.t(), u_op, ltu)?;
        record_gemm(&gpu, &mut pass, &Gemm::new(b, n, l, k), left, rtu, gu)?;
        record_gemm(&gpu, &mut pass, &Gemm::new(b, n, l, k), right, ltu, gtu)?;
        record_gemm(&gpu, &mut pass, &Gemm::new(b, l, k, n), u_op.t(), left, ltu_t)?;
        record_gemm(&gpu, &mut pass, &Gemm::new(b, l, l, k), ltu_t, rtu, Operand::rows(s.utgu.buffer(), l, l))?;
        let products = Products { gu: s.gu.buffer(), gtu: s.gtu.buffer(), gtu_rows: n, utgu: s.utgu.buffer() };
        record_du(&gpu, &mut pass, &plan, &w, &products, &s.du, du.buffer())?;
        drop(pass);
        Ok(applied.and(gpu.finish()))
    }

    /// Records the sequential product `out = H(u_1) ... H(u_L)`: L dispatches of rank-1 updates.
    pub fn record_householder_product(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        u: &GpuTensor,
        out: &GpuTensor,
    ) -> Result<Recorded> {
        let plan = CwyPlan::new(u.shape())?;
        let CwyPlan { b, n, l, .. } = plan;
        if out.len() != b * n * n {
            return Err(InputError::shape("out", format!("{:?}", batched(u.shape(), &[n, n])), out.shape()).into());
        }
        let gpu = self.recording("householder product", &[u, out])?;
        let units = gpu.allocate("householder product", &plan.units())?;
        let mut pass = encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("householder"), timestamp_writes: None });
        let unit = (units.unit.buffer(), units.norms.buffer());
        record_unit_columns(&gpu, &mut pass, &plan, UNIT_FORWARD, (u.buffer(), out.buffer()), unit)?;
        for column in 0..l {
            let params = kernels::Reflection { batch: b as u32, n: n as u32, l: l as u32, column: column as u32 };
            let bufs = [unit.0, out.buffer()];
            gpu.dispatch(&mut pass, &kernels::HOUSEHOLDER, &params, &bufs, gpu.grid((b * n) as u64, 64)?)?;
        }
        Ok(gpu.finish())
    }
}
