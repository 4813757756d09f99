//! Dispatch plans for compact-WY Householder accumulation (math.md §2): `S = striu(U^T U) +
//! diag(U^T U) / 2` from the engine's GEMM, `S^(-1)` by blocked triangular inversion (16 x 16 diagonal
//! blocks by substitution, then `X12 = -X11 S12 X22` merges with the GEMM, log2(L/16) levels), then
//! two GEMMs for Q, Omega or `Q X`. The CPU twins are `ortho_ref::cwy::{cwy, tcwy, apply,
//! householder_product}`; `householder_product` is also the GPU baseline (L sequential reflections).

use crate::engine::{Engine, Gpu};
use crate::error::Result;
use crate::gemm::{Gemm, Operand, record_gemm};
use crate::pool::{BufferKind, PooledBuffer};
use crate::shaders::{dispatch, grid};
use crate::tensor::GpuTensor;
use ortho_ref::{Error as InputError, Tensor};

/// Side of the diagonal blocks inverted by substitution.
const BLOCK: usize = 16;

/// `(batch, N, L)` of a device-resident U, shape checks only (values are not read back).
fn gpu_shape(u: &GpuTensor) -> Result<(usize, usize, usize)> {
    let (b, n, l) = match *u.shape() {
        [n, l] => (1, n, l),
        [b, n, l] => (b, n, l),
        _ => return Err(InputError::shape("u", "[N, L] or [batch, N, L]", u.shape()).into()),
    };
    if b == 0 || l == 0 || l > n {
        return Err(InputError::shape("u", "[batch, N, L] with batch >= 1 and 1 <= L <= N", u.shape()).into());
    }
    Ok((b, n, l))
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

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params4([u32; 4]);

fn record_inverse(
    gpu: &Gpu,
    pass: &mut wgpu::ComputePass<'_>,
    u: &GpuTensor,
    b: usize,
    n: usize,
    l: usize,
) -> Result<Inverse> {
    let padded = l.next_power_of_two().max(BLOCK);
    let get = |floats: usize| gpu.pool.get(BufferKind::Storage, 4 * floats as u64);
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
    let params = Params4([b as u32, l as u32, padded as u32, 0]);
    let bufs = [gram.buffer(), s.buffer(), x.buffer()];
    dispatch(
        &gpu.device,
        &gpu.pipelines,
        pass,
        "cwy/s_matrix",
        bytemuck::bytes_of(&params),
        &bufs,
        grid((b * padded * padded) as u64, 256)?,
    )?;
    let params = Params4([b as u32, padded as u32, 0, 0]);
    let blocks = b * padded / BLOCK;
    dispatch(
        &gpu.device,
        &gpu.pipelines,
        pass,
        "cwy/tri_inverse_blocks",
        bytemuck::bytes_of(&params),
        &[s.buffer(), x.buffer()],
        grid(blocks as u64, 1)?,
    )?;
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
        let params = Params4([(b * pairs) as u32, side as u32, padded as u32, pairs as u32]);
        let bufs = [joined.buffer(), x.buffer()];
        let count = (b * pairs * side * side) as u64;
        dispatch(
            &gpu.device,
            &gpu.pipelines,
            pass,
            "cwy/place_blocks",
            bytemuck::bytes_of(&params),
            &bufs,
            grid(count, 256)?,
        )?;
        side *= 2;
    }
    Ok(Inverse { padded, x })
}

impl Inverse {
    /// `W` (or `W^T`) as a GEMM operand: the top-left L x L block of each batch's padded inverse.
    fn operand(&self, transpose: bool) -> Operand<'_> {
        let w = Operand::rows(self.x.buffer(), self.padded, self.padded);
        if transpose { w.t() } else { w }
    }
}

impl Engine {
    fn cwy_host(&self, u: &Tensor<f32>, stiefel: bool) -> Result<Tensor<f32>> {
        let u64_ = u.to_f64();
        ortho_ref::cwy::shape_of(&u64_)?;
        if !self.is_gpu() {
            let out = if stiefel { ortho_ref::cwy::tcwy(&u64_)? } else { ortho_ref::cwy::cwy(&u64_)? };
            return Ok(out.to_f32());
        }
        let gu = self.upload("u", u)?;
        let out = if stiefel { self.tcwy_gpu(&gu)? } else { self.cwy_gpu(&gu)? };
        self.download(&out)
    }

    /// `Q = H(u_1) ... H(u_L)` from `u: [N, L]` or `[batch, N, L]` by compact WY: `[.., N, N]`.
    pub fn cwy(&self, u: &Tensor<f32>) -> Result<Tensor<f32>> {
        self.cwy_host(u, false)
    }

    /// The Stiefel matrix `Omega`, the first L columns of Q (T-CWY): `[.., N, L]`, no `N x N` matrix.
    pub fn tcwy(&self, u: &Tensor<f32>) -> Result<Tensor<f32>> {
        self.cwy_host(u, true)
    }

    /// `Q X` (or `Q^T X` with `transpose`) without forming Q; `x: [.., N, K]`.
    pub fn cwy_apply(&self, u: &Tensor<f32>, x: &Tensor<f32>, transpose: bool) -> Result<Tensor<f32>> {
        let (u64_, x64) = (u.to_f64(), x.to_f64());
        if !self.is_gpu() {
            return Ok(ortho_ref::cwy::apply(&u64_, &x64, transpose)?.to_f32());
        }
        ortho_ref::cwy::shape_of(&u64_)?;
        x.check_finite("x")?;
        let (gu, gx) = (self.upload("u", u)?, self.upload("x", x)?);
        let out = self.cwy_apply_gpu(&gu, &gx, transpose)?;
        self.download(&out)
    }

    /// The sequential product of L reflections on the GPU (the baseline): `[.., N, N]`.
    pub fn householder_product(&self, u: &Tensor<f32>) -> Result<Tensor<f32>> {
        let u64_ = u.to_f64();
        ortho_ref::cwy::shape_of(&u64_)?;
        if !self.is_gpu() {
            return Ok(ortho_ref::cwy::householder_product(&u64_)?.to_f32());
        }
        let gu = self.upload("u", u)?;
        let (_, n, _) = gpu_shape(&gu)?;
        let out = self.empty(&batched(u.shape(), &[n, n]))?;
        self.submit("householder product", |enc| self.record_householder_product(enc, &gu, &out))?;
        self.download(&out)
    }

    /// [`Engine::cwy`] on a device-resident U (its columns are not checked for zeros).
    pub fn cwy_gpu(&self, u: &GpuTensor) -> Result<GpuTensor> {
        let (_, n, _) = gpu_shape(u)?;
        let out = self.empty(&batched(u.shape(), &[n, n]))?;
        self.submit("cwy", |enc| self.record_cwy(enc, u, &out, false))?;
        Ok(out)
    }

    /// [`Engine::tcwy`] on a device-resident U.
    pub fn tcwy_gpu(&self, u: &GpuTensor) -> Result<GpuTensor> {
        let (_, n, l) = gpu_shape(u)?;
        let out = self.empty(&batched(u.shape(), &[n, l]))?;
        self.submit("tcwy", |enc| self.record_cwy(enc, u, &out, true))?;
        Ok(out)
    }

    /// Records `Q` (`[.., N, N]`) or, with `stiefel`, `Omega` (`[.., N, L]`) into `out`.
    pub fn record_cwy(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        u: &GpuTensor,
        out: &GpuTensor,
        stiefel: bool,
    ) -> Result<()> {
        let (b, n, l) = gpu_shape(u)?;
        let cols = if stiefel { l } else { n };
        if out.len() != b * n * cols {
            return Err(InputError::shape("out", format!("{:?}", batched(u.shape(), &[n, cols])), out.shape()).into());
        }
        let gpu = self.gpu("cwy")?;
        let mut pass =
            encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("cwy"), timestamp_writes: None });
        let w = record_inverse(gpu, &mut pass, u, b, n, l)?;
        // T = W U^T (restricted to the first L columns for Omega), then out = I - U T.
        let t = gpu.pool.get(BufferKind::Storage, 4 * (b * l * cols) as u64);
        let t_op = Operand::rows(t.buffer(), l, cols);
        record_gemm(
            gpu,
            &mut pass,
            &Gemm::new(b, l, cols, l),
            w.operand(false),
            Operand::rows(u.buffer(), n, l).t(),
            t_op,
        )?;
        let g = Gemm { alpha: -1.0, diag: 1.0, ..Gemm::new(b, n, cols, l) };
        record_gemm(gpu, &mut pass, &g, Operand::rows(u.buffer(), n, l), t_op, Operand::rows(out.buffer(), n, cols))
    }

    /// [`Engine::cwy_apply`] on device-resident tensors.
    pub fn cwy_apply_gpu(&self, u: &GpuTensor, x: &GpuTensor, transpose: bool) -> Result<GpuTensor> {
        let out = self.empty(x.shape())?;
        self.submit("cwy apply", |enc| self.record_cwy_apply(enc, u, x, &out, transpose))?;
        Ok(out)
    }

    /// Records `out = Q x` (or `Q^T x`): `x - U (W (U^T x))`, with `W^T` for the transpose.
    pub fn record_cwy_apply(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        u: &GpuTensor,
        x: &GpuTensor,
        out: &GpuTensor,
        transpose: bool,
    ) -> Result<()> {
        let (b, n, l) = gpu_shape(u)?;
        let k = match *x.shape() {
            [xn, k] if xn == n && b == 1 => k,
            [xb, xn, k] if xb == b && xn == n => k,
            _ => {
                return Err(
                    InputError::shape("x", format!("[{b}, {n}, K] (or [{n}, K] for one batch)"), x.shape()).into()
                );
            }
        };
        if out.shape() != x.shape() {
            return Err(InputError::shape("out", format!("{:?}", x.shape()), out.shape()).into());
        }
        let gpu = self.gpu("cwy apply")?;
        encoder.copy_buffer_to_buffer(x.buffer(), 0, out.buffer(), 0, x.byte_len());
        let mut pass = encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("cwy apply"), timestamp_writes: None });
        let w = record_inverse(gpu, &mut pass, u, b, n, l)?;
        let get = |floats: usize| gpu.pool.get(BufferKind::Storage, 4 * floats as u64);
        let (utx, wutx) = (get(b * l * k), get(b * l * k));
        let u_op = Operand::rows(u.buffer(), n, l);
        let lk = |buf| Operand::rows(buf, l, k);
        record_gemm(
            gpu,
            &mut pass,
            &Gemm::new(b, l, k, n),
            u_op.t(),
            Operand::rows(x.buffer(), n, k),
            lk(utx.buffer()),
        )?;
        record_gemm(gpu, &mut pass, &Gemm::new(b, l, k, l), w.operand(transpose), lk(utx.buffer()), lk(wutx.buffer()))?;
        let g = Gemm { alpha: -1.0, beta: 1.0, ..Gemm::new(b, n, k, l) };
        record_gemm(gpu, &mut pass, &g, u_op, lk(wutx.buffer()), Operand::rows(out.buffer(), n, k))
    }

    /// Records the sequential product `out = H(u_1) ... H(u_L)`: L dispatches of rank-1 updates.
    pub fn record_householder_product(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        u: &GpuTensor,
        out: &GpuTensor,
    ) -> Result<()> {
        let (b, n, l) = gpu_shape(u)?;
        if out.len() != b * n * n {
            return Err(InputError::shape("out", format!("{:?}", batched(u.shape(), &[n, n])), out.shape()).into());
        }
        let gpu = self.gpu("householder product")?;
        let mut pass = encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("householder"), timestamp_writes: None });
        for column in 0..l {
            let params = Params4([b as u32, n as u32, l as u32, column as u32]);
            let bufs = [u.buffer(), out.buffer()];
            dispatch(
                &gpu.device,
                &gpu.pipelines,
                &mut pass,
                "cwy/householder",
                bytemuck::bytes_of(&params),
                &bufs,
                grid((b * n) as u64, 64)?,
            )?;
        }
        Ok(())
    }
}
