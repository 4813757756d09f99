//! Dispatch plans for random-feature attention (bidirectional FAVOR+, FAVOR, ReLU) and exact softmax
//! attention. The CPU twins are `ortho_ref::favor::{favor, exact}`.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::gemm::{Gemm, Operand, record_gemm};
use crate::pool::BufferKind;
use crate::shaders::{dispatch, grid};
use crate::tensor::GpuTensor;
use ortho_ref::favor::{AttentionShape, Kernel};
use ortho_ref::{Error as InputError, Tensor};

/// Options of [`Engine::favor`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FavorOptions {
    pub kernel: Kernel,
    /// Causal (`j <= t`) attention through prefix sums.
    pub causal: bool,
}

impl FavorOptions {
    pub fn new(kernel: Kernel) -> Self {
        FavorOptions { kernel, causal: false }
    }
}

impl Default for FavorOptions {
    fn default() -> Self {
        FavorOptions::new(Kernel::Softmax)
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RowStatsParams {
    rows: u32,
    dim: u32,
    features: u32,
    subtract_half_sq: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ReduceParams {
    len: u32,
    segments: u32,
    _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct FeaturesParams {
    rows: u32,
    len: u32,
    features: u32,
    kernel: u32,
    is_key: u32,
    eps: f32,
    _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct NormalizeParams {
    rows: u32,
    value_dim: u32,
    _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ExactParams {
    len: u32,
    dim: u32,
    value_dim: u32,
    block: u32,
    causal: u32,
    z_base: u32,
    scale: f32,
    _pad: u32,
}

fn kernel_code(kernel: Kernel) -> (u32, f32) {
    match kernel {
        Kernel::Softmax => (0, 0.0),
        Kernel::Trig => (1, 0.0),
        Kernel::Relu { eps } => (2, eps as f32),
    }
}

/// The largest head dimension exact attention keeps in registers.
pub const EXACT_MAX_DIM: usize = 128;
const EXACT_ROWS: usize = 64;
/// vec4 slots of the key and value tile in workgroup memory (16 KiB).
const EXACT_TILE_VEC4: usize = 1024;

fn attention_shape(q: &[usize], k: &[usize], v: &[usize], w: Option<&[usize]>, out: Option<&[usize]>) -> Result<AttentionShape> {
    let s = AttentionShape::of(q, k, v, w)?;
    if let Some(out) = out {
        if out.iter().product::<usize>() != s.problems() * s.len * s.value_dim {
            return Err(InputError::shape("out", format!("{:?}", s.output_shape(q.len())), out).into());
        }
    }
    Ok(s)
}

fn not_yet_causal() -> Error {
    Error::Unsupported("causal random-feature attention is not implemented yet; use bidirectional FAVOR or exact causal attention".into())
}

impl Engine {
    /// Random-feature attention of host tensors: `q, k: [B, H, L, d]`, `v: [B, H, L, dv]` (or all
    /// `[L, ·]`), projection `w: [m, d]` or `[H, m, d]`. Returns `[B, H, L, dv]` (or `[L, dv]`).
    pub fn favor(&self, q: &Tensor<f32>, k: &Tensor<f32>, v: &Tensor<f32>, w: &Tensor<f32>, o: &FavorOptions) -> Result<Tensor<f32>> {
        pollster::block_on(self.favor_async(q, k, v, w, o))
    }

    pub async fn favor_async(&self, q: &Tensor<f32>, k: &Tensor<f32>, v: &Tensor<f32>, w: &Tensor<f32>, o: &FavorOptions) -> Result<Tensor<f32>> {
        attention_shape(q.shape(), k.shape(), v.shape(), Some(w.shape()), None)?;
        ortho_ref::favor::check_inputs(&[("q", q), ("k", k), ("v", v), ("projection", w)])?;
        if o.causal {
            return Err(not_yet_causal());
        }
        if !self.is_gpu() {
            let out = ortho_ref::favor::favor(&q.to_f64(), &k.to_f64(), &v.to_f64(), &w.to_f64(), o.kernel)?;
            return Ok(out.to_f32());
        }
        let (gq, gk, gv, gw) = (self.upload("q", q)?, self.upload("k", k)?, self.upload("v", v)?, self.upload("projection", w)?);
        let out = self.favor_gpu(&gq, &gk, &gv, &gw, o)?;
        self.download_async(&out).await
    }

    /// [`Engine::favor`] on device-resident tensors (not checked for non-finite values).
    pub fn favor_gpu(&self, q: &GpuTensor, k: &GpuTensor, v: &GpuTensor, w: &GpuTensor, o: &FavorOptions) -> Result<GpuTensor> {
        let s = attention_shape(q.shape(), k.shape(), v.shape(), Some(w.shape()), None)?;
        let out = self.empty(&s.output_shape(q.shape().len()))?;
        self.submit("favor", |enc| self.record_favor(enc, q, k, v, w, o, &out))?;
        Ok(out)
    }

    /// Records random-feature attention into the caller's encoder, writing `out`. Scratch buffers
    /// come from the pool and return to it when this call returns; the recorded commands keep them
    /// alive until they have run.
    #[allow(clippy::too_many_arguments)]
    pub fn record_favor(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        w: &GpuTensor,
        o: &FavorOptions,
        out: &GpuTensor,
    ) -> Result<()> {
        let s = attention_shape(q.shape(), k.shape(), v.shape(), Some(w.shape()), Some(out.shape()))?;
        if o.causal {
            return Err(not_yet_causal());
        }
        let gpu = self.gpu("favor")?;
        let (z, l, d, dv, m) = (s.problems(), s.len, s.dim, s.value_dim, s.features);
        let f = o.kernel.feature_count(m);
        let rows = z * l;
        let scratch = |what: &str, floats: usize| -> Result<_> {
            self.check_binding(what, 4 * floats as u64)?;
            Ok(gpu.pool.get(BufferKind::Storage, 4 * floats as u64))
        };
        let a = scratch("favor projections [B*H, L, m]", rows * m)?;
        let phi_q = scratch("favor query features [B*H, L, f]", rows * f)?;
        let phi_k = scratch("favor key features [B*H, L, f]", rows * f)?;
        let half_sq = scratch("favor row norms", rows)?;
        let row_max = scratch("favor row maxima", rows)?;
        let gamma = scratch("favor key offsets", z)?;
        let kv = scratch("favor key-value state [B*H, f, dv+1]", z * f * (dv + 1))?;
        let num = scratch("favor numerators [B*H, L, dv+1]", rows * (dv + 1))?;
        let (code, eps) = kernel_code(o.kernel);

        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("favor"),
            timestamp_writes: None,
        });
        let w_op = Operand::rows(w.buffer(), m, d).t().cycle(s.projection_heads);
        for (x, phi, is_key) in [(q, &phi_q, false), (k, &phi_k, true)] {
            let project = Gemm {
                alpha: (d as f32).powf(-0.25),
                ..Gemm::new(z, l, m, d)
            };
            record_gemm(gpu, &mut pass, &project, Operand::rows(x.buffer(), l, d), w_op, Operand::rows(a.buffer(), l, m))?;
            let stats = RowStatsParams {
                rows: rows as u32,
                dim: d as u32,
                features: m as u32,
                subtract_half_sq: is_key as u32,
            };
            let bufs = [x.buffer(), a.buffer(), half_sq.buffer(), row_max.buffer()];
            dispatch(&gpu.device, &gpu.pipelines, &mut pass, "favor/row_stats", bytemuck::bytes_of(&stats), &bufs, grid(rows as u64, 64)?)?;
            let key_offsets = match o.kernel {
                Kernel::Softmax => Some(&row_max),
                Kernel::Trig => Some(&half_sq),
                Kernel::Relu { .. } => None,
            };
            if let (true, Some(values)) = (is_key, key_offsets) {
                let reduce = ReduceParams {
                    len: l as u32,
                    segments: z as u32,
                    _pad: [0; 2],
                };
                let bufs = [values.buffer(), gamma.buffer()];
                dispatch(&gpu.device, &gpu.pipelines, &mut pass, "common/reduce_max", bytemuck::bytes_of(&reduce), &bufs, grid(z as u64, 1)?)?;
            }
            let feat = FeaturesParams {
                rows: rows as u32,
                len: l as u32,
                features: m as u32,
                kernel: code,
                is_key: is_key as u32,
                eps,
                _pad: [0; 2],
            };
            let bufs = [a.buffer(), half_sq.buffer(), row_max.buffer(), gamma.buffer(), phi.buffer()];
            dispatch(&gpu.device, &gpu.pipelines, &mut pass, "favor/features", bytemuck::bytes_of(&feat), &bufs, grid((rows * m) as u64, 256)?)?;
        }
        // kv = phi(K)^T [V | 1], then num = phi(Q) kv.
        let state = Gemm {
            ones_col: Some(dv),
            ..Gemm::new(z, f, dv + 1, l)
        };
        let v_op = Operand::rows(v.buffer(), l, dv);
        record_gemm(gpu, &mut pass, &state, Operand::rows(phi_k.buffer(), l, f).t(), v_op, Operand::rows(kv.buffer(), f, dv + 1))?;
        record_gemm(
            gpu,
            &mut pass,
            &Gemm::new(z, l, dv + 1, f),
            Operand::rows(phi_q.buffer(), l, f),
            Operand::rows(kv.buffer(), f, dv + 1),
            Operand::rows(num.buffer(), l, dv + 1),
        )?;
        let norm = NormalizeParams {
            rows: rows as u32,
            value_dim: dv as u32,
            _pad: [0; 2],
        };
        dispatch(&gpu.device, &gpu.pipelines, &mut pass, "favor/normalize", bytemuck::bytes_of(&norm), &[num.buffer(), out.buffer()], grid((rows * dv) as u64, 256)?)?;
        Ok(())
    }

    /// Exact softmax attention of host tensors (the baseline), bidirectional or causal.
    pub fn exact_attention(&self, q: &Tensor<f32>, k: &Tensor<f32>, v: &Tensor<f32>, causal: bool) -> Result<Tensor<f32>> {
        pollster::block_on(self.exact_attention_async(q, k, v, causal))
    }

    pub async fn exact_attention_async(&self, q: &Tensor<f32>, k: &Tensor<f32>, v: &Tensor<f32>, causal: bool) -> Result<Tensor<f32>> {
        attention_shape(q.shape(), k.shape(), v.shape(), None, None)?;
        ortho_ref::favor::check_inputs(&[("q", q), ("k", k), ("v", v)])?;
        if !self.is_gpu() {
            return Ok(ortho_ref::favor::exact(&q.to_f64(), &k.to_f64(), &v.to_f64(), causal)?.to_f32());
        }
        let (gq, gk, gv) = (self.upload("q", q)?, self.upload("k", k)?, self.upload("v", v)?);
        let out = self.exact_attention_gpu(&gq, &gk, &gv, causal)?;
        self.download_async(&out).await
    }

    pub fn exact_attention_gpu(&self, q: &GpuTensor, k: &GpuTensor, v: &GpuTensor, causal: bool) -> Result<GpuTensor> {
        let s = attention_shape(q.shape(), k.shape(), v.shape(), None, None)?;
        let out = self.empty(&s.output_shape(q.shape().len()))?;
        self.submit("exact attention", |enc| self.record_exact_attention(enc, q, k, v, causal, &out))?;
        Ok(out)
    }

    pub fn record_exact_attention(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        causal: bool,
        out: &GpuTensor,
    ) -> Result<()> {
        let s = attention_shape(q.shape(), k.shape(), v.shape(), None, Some(out.shape()))?;
        if s.dim > EXACT_MAX_DIM || s.value_dim > EXACT_MAX_DIM {
            return Err(Error::Unsupported(format!(
                "exact attention keeps a query row in registers: d = {} and dv = {} must be at most {EXACT_MAX_DIM}",
                s.dim, s.value_dim
            )));
        }
        let gpu = self.gpu("exact attention")?;
        let block = (EXACT_TILE_VEC4 / (s.dim.div_ceil(4) + s.value_dim.div_ceil(4))).min(64);
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("exact attention"),
            timestamp_writes: None,
        });
        let row_groups = s.len.div_ceil(EXACT_ROWS);
        if row_groups > 65_535 {
            return Err(Error::Limit {
                what: format!("exact attention over L = {}", s.len),
                needed: s.len as u64,
                limit_name: "65,535 workgroups of 64 query rows",
                limit: 65_535 * EXACT_ROWS as u64,
            });
        }
        let z = s.problems();
        for z_base in (0..z).step_by(65_535) {
            let params = ExactParams {
                len: s.len as u32,
                dim: s.dim as u32,
                value_dim: s.value_dim as u32,
                block: block as u32,
                causal: causal as u32,
                z_base: z_base as u32,
                scale: 1.0 / (s.dim as f32).sqrt(),
                _pad: 0,
            };
            let groups = [row_groups as u32, (z - z_base).min(65_535) as u32, 1];
            dispatch(&gpu.device, &gpu.pipelines, &mut pass, "favor/exact", bytemuck::bytes_of(&params), &[q.buffer(), k.buffer(), v.buffer(), out.buffer()], groups)?;
        }
        Ok(())
    }
}
