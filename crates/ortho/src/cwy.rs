//! Dispatch plans for compact-WY Householder accumulation (docs/math.md §2): `S = striu(U^T U) +
//! diag(U^T U) / 2` from the engine's GEMM, `S^(-1)` by blocked triangular inversion (16 x 16 diagonal
//! blocks by substitution, then `X12 = -X11 S12 X22` merges with the GEMM, log2(L/16) levels), then
//! two GEMMs for Q, Omega or `Q X`. The CPU twins are `ortho_ref::cwy::{cwy, tcwy, apply,
//! householder_product}`; `householder_product` is also the GPU baseline (L sequential reflections).

use crate::engine::{Engine, Recording};
use crate::error::Result;
use crate::gemm::{Gemm, Operand, record_gemm};
use crate::kernels;
use crate::pool::{PooledBuffer, Recorded};
use crate::shaders::grid;
use crate::tensor::GpuTensor;
use ortho_ref::Error as InputError;

mod ops;
pub use ops::{Cwy, CwyApply, CwyApplyBackward, CwyBackward, HouseholderProduct};

/// Side of the diagonal blocks inverted by substitution.
pub(crate) const BLOCK: usize = 16;

/// `(batch, N, L)` of a device-resident U, shape checks only (values are not read back).
fn u_dims(u: &[usize]) -> Result<(usize, usize, usize)> {
    let (b, n, l) = match *u {
        [n, l] => (1, n, l),
        [b, n, l] => (b, n, l),
        _ => return Err(InputError::shape("u", "[N, L] or [batch, N, L]", u).into()),
    };
    if b == 0 || l == 0 || l > n {
        return Err(InputError::shape("u", "[batch, N, L] with batch >= 1 and 1 <= L <= N", u).into());
    }
    Ok((b, n, l))
}

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

/// The inverse `W = S^(-1)` of one batch of U, padded to `padded x padded` (read its top-left L x L).
struct Inverse {
    padded: usize,
    x: PooledBuffer,
}

fn record_inverse(
    gpu: &Recording,
    pass: &mut wgpu::ComputePass<'_>,
    u: &GpuTensor,
    b: usize,
    n: usize,
    l: usize,
) -> Result<Inverse> {
    let padded = l.next_power_of_two().max(BLOCK);
    let get = |floats: usize| gpu.scratch(4 * floats as u64);
    let gram = get(b * l * l);
    let s = get(b * padded * padded);
    let x = get(b * padded * padded);
    let ut = Operand::rows(u.buffer(), n, l).t();
    record_gemm(
        gpu,
        pass,
        &Gemm::new(b, l, l, n),
        ut,
        Operand::rows(u.buffer(), n, l),
        Operand::rows(gram.buffer(), l, l),
    )?;
    let params = kernels::SMatrix { batch: b as u32, l: l as u32, padded: padded as u32, _pad: 0 };
    let bufs = [gram.buffer(), s.buffer(), x.buffer()];
    gpu.dispatch(pass, &kernels::S_MATRIX, &params, &bufs, grid((b * padded * padded) as u64, 256)?)?;
    let params = kernels::Blocks { batch: b as u32, n: padded as u32, ..Default::default() };
    let blocks = b * padded / BLOCK;
    gpu.dispatch(pass, &kernels::TRI_INVERSE_BLOCKS, &params, &[s.buffer(), x.buffer()], grid(blocks as u64, 1)?)?;
    // Join pairs of inverted diagonal blocks of side `side`: X12 = -X11 (S12 X22).
    let mut side = BLOCK;
    while side < padded {
        let pairs = padded / (2 * side);
        let (t, joined) = (get(b * pairs * side * side), get(b * pairs * side * side));
        let pair = 2 * side * (padded + 1);
        let at = |buffer, first: usize| Operand::rows(buffer, padded, padded).at(first).chunks(0, pairs, pair);
        let g = Gemm::new(b * pairs, side, side, side);
        let (t_op, joined_op) = (Operand::rows(t.buffer(), side, side), Operand::rows(joined.buffer(), side, side));
        record_gemm(gpu, pass, &g, at(s.buffer(), side), at(x.buffer(), side * (padded + 1)), t_op)?;
        record_gemm(gpu, pass, &Gemm { alpha: -1.0, ..g }, at(x.buffer(), 0), t_op, joined_op)?;
        let params =
            kernels::Place { blocks: (b * pairs) as u32, side: side as u32, n: padded as u32, pairs: pairs as u32 };
        let bufs = [joined.buffer(), x.buffer()];
        let count = (b * pairs * side * side) as u64;
        gpu.dispatch(pass, &kernels::PLACE_BLOCKS, &params, &bufs, grid(count, 256)?)?;
        side *= 2;
    }
    Ok(Inverse { padded, x })
}

/// `dU = -GU W^T - GtU W + U (P + P^T)`, `B = W^T UtGU W^T` (docs/math.md §2.2), from `GU = G U`, the first
/// `gtu_rows` rows of `GtU = G^T U` (the rest are zero) and `UtGU = U^T G U`, all `[batch, ., L]`.
#[allow(clippy::too_many_arguments)]
fn record_du(
    gpu: &Recording,
    pass: &mut wgpu::ComputePass<'_>,
    (b, n, l): (usize, usize, usize),
    u: &wgpu::Buffer,
    w: &Inverse,
    gu: &wgpu::Buffer,
    gtu: (&wgpu::Buffer, usize),
    utgu: &wgpu::Buffer,
    du: &wgpu::Buffer,
) -> Result<()> {
    let get = |floats: usize| gpu.scratch(4 * floats as u64);
    let (t, bm, pp) = (get(b * l * l), get(b * l * l), get(b * l * l));
    let ll = |buf| Operand::rows(buf, l, l);
    let nl = |buf| Operand::rows(buf, n, l);
    let square = Gemm::new(b, l, l, l);
    record_gemm(gpu, pass, &square, w.operand(true), ll(utgu), ll(t.buffer()))?;
    record_gemm(gpu, pass, &square, ll(t.buffer()), w.operand(true), ll(bm.buffer()))?;
    let params = kernels::Mirror { count: (b * l * l) as u32, l: l as u32, ..Default::default() };
    let bufs = [bm.buffer(), pp.buffer()];
    gpu.dispatch(pass, &kernels::MIRROR_UPPER, &params, &bufs, grid((b * l * l) as u64, 256)?)?;
    let minus = Gemm { alpha: -1.0, ..Gemm::new(b, n, l, l) };
    record_gemm(gpu, pass, &minus, nl(gu), w.operand(true), nl(du))?;
    let (gtu, rows) = gtu;
    record_gemm(gpu, pass, &Gemm { beta: 1.0, m: rows, ..minus }, nl(gtu), w.operand(false), nl(du))?;
    record_gemm(gpu, pass, &Gemm { beta: 1.0, ..Gemm::new(b, n, l, l) }, nl(u), ll(pp.buffer()), nl(du))
}

impl Inverse {
    /// `W` (or `W^T`) as a GEMM operand: the top-left L x L block of each batch's padded inverse.
    fn operand(&self, transpose: bool) -> Operand<'_> {
        let w = Operand::rows(self.x.buffer(), self.padded, self.padded);
        if transpose { w.t() } else { w }
    }
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
        let (b, n, l) = u_dims(u.shape())?;
        let cols = if stiefel { l } else { n };
        if out.len() != b * n * cols {
            return Err(InputError::shape("out", format!("{:?}", batched(u.shape(), &[n, cols])), out.shape()).into());
        }
        let gpu = self.recording("cwy", &[u, out])?;
        let mut pass =
            encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("cwy"), timestamp_writes: None });
        let w = record_inverse(&gpu, &mut pass, u, b, n, l)?;
        // T = W U^T (restricted to the first L columns for Omega), then out = I - U T.
        let t = gpu.scratch(4 * (b * l * cols) as u64);
        let t_op = Operand::rows(t.buffer(), l, cols);
        record_gemm(
            &gpu,
            &mut pass,
            &Gemm::new(b, l, cols, l),
            w.operand(false),
            Operand::rows(u.buffer(), n, l).t(),
            t_op,
        )?;
        let g = Gemm { alpha: -1.0, diag: 1.0, ..Gemm::new(b, n, cols, l) };
        record_gemm(&gpu, &mut pass, &g, Operand::rows(u.buffer(), n, l), t_op, Operand::rows(out.buffer(), n, cols))?;
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
        let (b, n, l) = u_dims(u.shape())?;
        let k = apply_width(x.shape(), b, n)?;
        if out.shape() != x.shape() {
            return Err(InputError::shape("out", format!("{:?}", x.shape()), out.shape()).into());
        }
        let gpu = self.recording("cwy apply", &[u, x, out])?;
        encoder.copy_buffer_to_buffer(x.buffer(), 0, out.buffer(), 0, x.byte_len());
        let mut pass = encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("cwy apply"), timestamp_writes: None });
        let w = record_inverse(&gpu, &mut pass, u, b, n, l)?;
        let get = |floats: usize| gpu.scratch(4 * floats as u64);
        let (utx, wutx) = (get(b * l * k), get(b * l * k));
        let u_op = Operand::rows(u.buffer(), n, l);
        let lk = |buf| Operand::rows(buf, l, k);
        record_gemm(
            &gpu,
            &mut pass,
            &Gemm::new(b, l, k, n),
            u_op.t(),
            Operand::rows(x.buffer(), n, k),
            lk(utx.buffer()),
        )?;
        record_gemm(
            &gpu,
            &mut pass,
            &Gemm::new(b, l, k, l),
            w.operand(transpose),
            lk(utx.buffer()),
            lk(wutx.buffer()),
        )?;
        let g = Gemm { alpha: -1.0, beta: 1.0, ..Gemm::new(b, n, k, l) };
        record_gemm(&gpu, &mut pass, &g, u_op, lk(wutx.buffer()), Operand::rows(out.buffer(), n, k))?;
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
        let (b, n, l) = u_dims(u.shape())?;
        let cols = if stiefel { l } else { n };
        if g.len() != b * n * cols || du.len() != b * n * l {
            return Err(InputError::shape("grad", format!("{:?}", batched(u.shape(), &[n, cols])), g.shape()).into());
        }
        let gpu = self.recording("cwy backward", &[u, g, du])?;
        let mut pass = encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("cwy backward"), timestamp_writes: None });
        let w = record_inverse(&gpu, &mut pass, u, b, n, l)?;
        let get = |floats: usize| gpu.scratch(4 * floats as u64);
        let (gu, gtu, utgu) = (get(b * n * l), get(b * n * l), get(b * l * l));
        let u_op = Operand::rows(u.buffer(), n, l);
        let g_op = Operand::rows(g.buffer(), n, cols);
        // G = [G_Omega, 0] for Omega: G U = G_Omega U_1, and G^T U has rows only where G has columns.
        record_gemm(&gpu, &mut pass, &Gemm::new(b, n, l, cols), g_op, u_op, Operand::rows(gu.buffer(), n, l))?;
        record_gemm(&gpu, &mut pass, &Gemm::new(b, cols, l, n), g_op.t(), u_op, Operand::rows(gtu.buffer(), n, l))?;
        record_gemm(
            &gpu,
            &mut pass,
            &Gemm::new(b, l, l, n),
            u_op.t(),
            Operand::rows(gu.buffer(), n, l),
            Operand::rows(utgu.buffer(), l, l),
        )?;
        record_du(
            &gpu,
            &mut pass,
            (b, n, l),
            u.buffer(),
            &w,
            gu.buffer(),
            (gtu.buffer(), cols),
            utgu.buffer(),
            du.buffer(),
        )?;
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
        let (b, n, l) = u_dims(u.shape())?;
        let k = apply_width(x.shape(), b, n)?;
        if ybar.shape() != x.shape() || dx.shape() != x.shape() || du.len() != b * n * l {
            return Err(InputError::shape("grad", format!("{:?} (the shape of x)", x.shape()), ybar.shape()).into());
        }
        let applied = self.record_cwy_apply(encoder, u, ybar, dx, !transpose)?;
        let gpu = self.recording("cwy apply backward", &[u, x, ybar, du, dx])?;
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("cwy apply backward"),
            timestamp_writes: None,
        });
        let w = record_inverse(&gpu, &mut pass, u, b, n, l)?;
        let (left, right) = if transpose { (x.buffer(), ybar.buffer()) } else { (ybar.buffer(), x.buffer()) };
        let get = |floats: usize| gpu.scratch(4 * floats as u64);
        let (rtu, ltu, ltu_t, gu, gtu, utgu) =
            (get(b * k * l), get(b * k * l), get(b * l * k), get(b * n * l), get(b * n * l), get(b * l * l));
        let u_op = Operand::rows(u.buffer(), n, l);
        let kl = |buf| Operand::rows(buf, k, l);
        record_gemm(&gpu, &mut pass, &Gemm::new(b, k, l, n), Operand::rows(right, n, k).t(), u_op, kl(rtu.buffer()))?;
        record_gemm(&gpu, &mut pass, &Gemm::new(b, k, l, n), Operand::rows(left, n, k).t(), u_op, kl(ltu.buffer()))?;
        record_gemm(
            &gpu,
            &mut pass,
            &Gemm::new(b, n, l, k),
            Operand::rows(left, n, k),
            kl(rtu.buffer()),
            Operand::rows(gu.buffer(), n, l),
        )?;
        record_gemm(
            &gpu,
            &mut pass,
            &Gemm::new(b, n, l, k),
            Operand::rows(right, n, k),
            kl(ltu.buffer()),
            Operand::rows(gtu.buffer(), n, l),
        )?;
        record_gemm(
            &gpu,
            &mut pass,
            &Gemm::new(b, l, k, n),
            u_op.t(),
            Operand::rows(left, n, k),
            Operand::rows(ltu_t.buffer(), l, k),
        )?;
        record_gemm(
            &gpu,
            &mut pass,
            &Gemm::new(b, l, l, k),
            Operand::rows(ltu_t.buffer(), l, k),
            kl(rtu.buffer()),
            Operand::rows(utgu.buffer(), l, l),
        )?;
        record_du(
            &gpu,
            &mut pass,
            (b, n, l),
            u.buffer(),
            &w,
            gu.buffer(),
            (gtu.buffer(), n),
            utgu.buffer(),
            du.buffer(),
        )?;
        Ok(applied.and(gpu.finish()))
    }

    /// Records the sequential product `out = H(u_1) ... H(u_L)`: L dispatches of rank-1 updates.
    pub fn record_householder_product(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        u: &GpuTensor,
        out: &GpuTensor,
    ) -> Result<Recorded> {
        let (b, n, l) = u_dims(u.shape())?;
        if out.len() != b * n * n {
            return Err(InputError::shape("out", format!("{:?}", batched(u.shape(), &[n, n])), out.shape()).into());
        }
        let gpu = self.recording("householder product", &[u, out])?;
        let mut pass = encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("householder"), timestamp_writes: None });
        for column in 0..l {
            let params = kernels::Reflection { batch: b as u32, n: n as u32, l: l as u32, column: column as u32 };
            let bufs = [u.buffer(), out.buffer()];
            gpu.dispatch(&mut pass, &kernels::HOUSEHOLDER, &params, &bufs, grid((b * n) as u64, 64)?)?;
        }
        Ok(gpu.finish())
    }
}
