//! The engine's one matrix product: every kernel that multiplies matrices records it through
//! [`record_gemm`], with strides for transposes and broadcasting, the ones-column prologue and the
//! `alpha`, `beta`, `diag` epilogue. It has several [`GemmVariant`]s (`shaders/common/gemm*.wgsl`),
//! chosen per adapter and shape class by `tune.rs`, each reading f32 operands or (on adapters with
//! `SHADER_F16`) f16 ones, with f32 sums and output either way.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::kernels;
use crate::operation::{Operation, run_batches};
use crate::pool::Recorded;
use crate::recording::Recording;
use crate::tensor::{DType, GpuTensor};
use crate::tune::GemmClass;
use ortho_ref::{Error as InputError, Tensor};

/// Element `(i, p)` of batch `z` sits at `base(z) + i * row_stride + p * col_stride` (in elements
/// of `dtype`), with `base(z) = offset + (z / inner) * outer + (z % inner) * inner_stride`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Operand<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: usize,
    pub outer: usize,
    pub inner: usize,
    pub inner_stride: usize,
    pub row_stride: usize,
    pub col_stride: usize,
    /// f32, or f16 for A and B of a product on an adapter with `SHADER_F16` (C is always f32).
    pub dtype: DType,
}

impl<'a> Operand<'a> {
    /// A batch of row-major `[rows, cols]` f32 matrices, one per batch index.
    pub fn rows(buffer: &'a wgpu::Buffer, rows: usize, cols: usize) -> Self {
        let (inner, inner_stride, row_stride, col_stride, dtype) = (1, 0, cols, 1, DType::F32);
        Operand { buffer, offset: 0, outer: rows * cols, inner, inner_stride, row_stride, col_stride, dtype }
    }

    /// The same matrices holding `dtype` values.
    pub fn holding(self, dtype: DType) -> Self {
        Operand { dtype, ..self }
    }

    /// The same matrices with their rows `stride` elements apart (inside wider rows).
    pub fn with_row_stride(self, stride: usize) -> Self {
        Operand { row_stride: stride, ..self }
    }

    /// The same matrices read transposed.
    pub fn t(self) -> Self {
        Operand { row_stride: self.col_stride, col_stride: self.row_stride, ..self }
    }

    /// Batch `z` reads matrix `z % n` (1 broadcasts one matrix to every batch).
    pub fn cycle(self, n: usize) -> Self {
        Operand { inner: n, inner_stride: self.outer, outer: 0, ..self }
    }

    /// Starts `elements` further into the buffer.
    pub fn at(self, elements: usize) -> Self {
        Operand { offset: self.offset + elements, ..self }
    }

    /// Batch `z * count + c` reads chunk `first + c` of problem `z`, chunks `stride` elements apart
    /// (the problem stride stays `outer`).
    pub fn chunks(self, first: usize, count: usize, stride: usize) -> Self {
        Operand { offset: self.offset + first * stride, inner: count, inner_stride: stride, ..self }
    }
}

/// `C = alpha A B + beta C + diag I`, with `B`'s column `ones_col` and `A`'s column `a_ones_col`
/// read as ones.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gemm {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub batch: usize,
    pub alpha: f32,
    pub beta: f32,
    pub diag: f32,
    pub ones_col: Option<usize>,
    pub a_ones_col: Option<usize>,
    /// Only C's entries on and above the diagonal are wanted (a Gram matrix that is read as its
    /// upper triangle): tiles wholly below it are skipped and their entries left unwritten.
    pub upper: bool,
    /// A's zeros: a triangular A's rows skip the part of K that holds only zeros.
    pub a_triangle: Triangle,
}

/// Where a matrix may be nonzero: everywhere, on and above the diagonal, or on and below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Triangle {
    Full = 0,
    Upper = 1,
    Lower = 2,
}

impl Triangle {
    /// The triangle of the block of a matrix that starts at row `i0`, column `k0`, as far as the
    /// kernels use it: they skip `k < i` (upper) or `k > i` (lower) in the block's own indices,
    /// which holds only zeros when the block starts on or below (above) the diagonal.
    fn of_block(self, i0: usize, k0: usize) -> Triangle {
        match self {
            Triangle::Upper if i0 >= k0 => Triangle::Upper,
            Triangle::Lower if i0 <= k0 => Triangle::Lower,
            _ => Triangle::Full,
        }
    }
}

impl Gemm {
    pub fn new(batch: usize, m: usize, n: usize, k: usize) -> Self {
        let (ones_col, a_ones_col, upper, a_triangle) = (None, None, false, Triangle::Full);
        Gemm { m, n, k, batch, alpha: 1.0, beta: 0.0, diag: 0.0, ones_col, a_ones_col, upper, a_triangle }
    }
}

/// A way to compute the product: the same result up to float rounding, at a speed that depends on
/// the adapter and the shape (see `ortho tune`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GemmVariant {
    /// `gemm.wgsl`: 64 x 64 tiles of C staged through workgroup memory, `depth` (8, 16 or 32) steps
    /// of K at a time, 8 x 8 per invocation.
    Tiled { depth: u32 },
    /// `gemm_rows.wgsl`, or `gemm_rows_subgroup.wgsl` on adapters with subgroups of 8 or more: no
    /// workgroup memory or barriers; groups of `lanes` (64 or 8) invocations each take `rows` (a
    /// multiple of 8, at most 64) rows of C by 8 columns per invocation, of one product or (`packed`)
    /// of 64 / `lanes` products of the batch.
    Rows { rows: u32, lanes: u32, subgroup: bool, packed: bool },
    /// `gemm_lanes.wgsl`: one element of C per invocation, a workgroup `rows x (64 / rows)` of one
    /// product (`rows` 1, 8 or 64): batches of small products.
    Lanes { rows: u32 },
}

impl GemmVariant {
    /// What the engine used before it had variants, and uses on GPUs with tuning off.
    pub const DEFAULT: GemmVariant = GemmVariant::Tiled { depth: 16 };

    /// Every variant, in the order tuning times them.
    pub const ALL: [GemmVariant; 14] = [
        GemmVariant::Tiled { depth: 16 },
        GemmVariant::Tiled { depth: 8 },
        GemmVariant::Tiled { depth: 32 },
        GemmVariant::Rows { rows: 64, lanes: 64, subgroup: false, packed: false },
        GemmVariant::Rows { rows: 64, lanes: 8, subgroup: false, packed: false },
        GemmVariant::Rows { rows: 16, lanes: 8, subgroup: false, packed: false },
        GemmVariant::Rows { rows: 32, lanes: 8, subgroup: false, packed: true },
        GemmVariant::Rows { rows: 64, lanes: 64, subgroup: true, packed: false },
        GemmVariant::Rows { rows: 64, lanes: 8, subgroup: true, packed: false },
        GemmVariant::Rows { rows: 16, lanes: 8, subgroup: true, packed: false },
        GemmVariant::Rows { rows: 32, lanes: 8, subgroup: true, packed: true },
        GemmVariant::Lanes { rows: 8 },
        GemmVariant::Lanes { rows: 64 },
        GemmVariant::Lanes { rows: 1 },
    ];

    /// `tiled-16`, `rows-64x512`, `rows-512x64-subgroup`, `lanes-8x8` (a workgroup's rows x columns
    /// of C), `rows-32x64-packed8` (of each of 8 products), ...
    pub fn name(&self) -> String {
        let (rows, cols) = self.tile();
        match *self {
            GemmVariant::Tiled { depth } => format!("tiled-{depth}"),
            GemmVariant::Lanes { .. } => format!("lanes-{rows}x{cols}"),
            GemmVariant::Rows { subgroup, .. } => {
                let pack = self.pack();
                let packed = if pack > 1 { format!("-packed{pack}") } else { String::new() };
                format!("rows-{rows}x{cols}{packed}{}", if subgroup { "-subgroup" } else { "" })
            }
        }
    }

    /// Products of the batch one workgroup takes.
    fn pack(&self) -> usize {
        match *self {
            GemmVariant::Rows { lanes, packed: true, .. } => (64 / lanes) as usize,
            _ => 1,
        }
    }

    /// The variant named `name` (see [`GemmVariant::name`]).
    pub fn parse(name: &str) -> Option<GemmVariant> {
        GemmVariant::ALL.into_iter().find(|v| v.name() == name)
    }

    /// Whether `device` (opened on an adapter described by `info`) can run it: the subgroup
    /// variants broadcast within the invocations that share rows, so their subgroups must hold 8 of
    /// them and not straddle two groups.
    pub fn supported(&self, device: &wgpu::Device, info: &wgpu::AdapterInfo) -> bool {
        match *self {
            GemmVariant::Tiled { .. } => device.limits().max_compute_workgroup_storage_size >= 16 * 1024,
            GemmVariant::Lanes { .. } => true,
            GemmVariant::Rows { lanes, subgroup, .. } => {
                !subgroup || (subgroups_of_8(device, info) && (lanes == 64 || info.subgroup_max_size <= lanes))
            }
        }
    }

    /// Rows and columns of C one workgroup computes.
    fn tile(&self) -> (usize, usize) {
        match *self {
            GemmVariant::Tiled { .. } => (TILE, TILE),
            GemmVariant::Rows { rows, lanes, packed: true, .. } => (rows as usize, 8 * lanes as usize),
            GemmVariant::Rows { rows, lanes, .. } => ((rows * 64 / lanes) as usize, 8 * lanes as usize),
            GemmVariant::Lanes { rows } => (rows as usize, 64 / rows as usize),
        }
    }
}

pub(crate) const TILE: usize = 64;
/// The longest inner dimension one dispatch walks. llvmpipe ends the loops of an invocation once
/// 65,535 iterations have run, counted over all of its loops (Mesa's `LP_MAX_TGSI_LOOP_ITERATIONS`),
/// and returns whatever was accumulated by then; a d-deep step of `gemm.wgsl` takes 2d + 3 of them
/// (35 at 16, 19 at 8: at depth 8, K past 27,500 would be silently wrong there), a 4-deep step of
/// `gemm_rows_body.wgsl` one. Longer products accumulate slices.
pub(crate) const MAX_K: usize = 16_384;
/// Workgroups a product should keep busy: one of fewer output tiles (a few rows of random features
/// against a narrow state) splits its inner dimension across workgroups instead, each writing a
/// partial product that `gemm_sum.wgsl` adds up (split-K).
const BUSY_GROUPS: usize = 256;
/// The shortest slice of the inner dimension a split gives a workgroup.
const MIN_SLICE: usize = 1024;
/// Floats of the partial products of one split product at most (4 MiB, or one binding; one buffer
/// per recording).
const PARTIAL_FLOATS: usize = 1 << 20;

fn partial_floats(gpu: &Recording) -> usize {
    PARTIAL_FLOATS.min(gpu.binding_limit() as usize / 4)
}

/// `(splits, slice)`: how many workgroups share the inner dimension of `g`, a product of `tiles`
/// output tiles, and the slice of K each takes (`splits = 1`: none).
fn split_k(gpu: &Recording, g: &Gemm, tiles: usize) -> (usize, usize) {
    let by_work = BUSY_GROUPS.div_ceil(tiles).min(g.k / MIN_SLICE).min(gpu.max_groups());
    let splits = by_work.min(partial_floats(gpu) / (g.batch * g.m * g.n).max(1));
    if splits < 2 {
        return (1, g.k.min(MAX_K));
    }
    (splits, g.k.div_ceil(splits).min(MAX_K))
}

fn operand(o: &Operand) -> kernels::GemmOperand {
    let u = |x: usize| x as u32;
    kernels::GemmOperand {
        off: u(o.offset),
        outer: u(o.outer),
        inner: u(o.inner),
        inner_stride: u(o.inner_stride),
        rs: u(o.row_stride),
        cs: u(o.col_stride),
        ..Default::default()
    }
}

/// Whether `device` has subgroups of at least 8 invocations: what the variants that load once per 8
/// lanes and broadcast need.
pub(crate) fn subgroups_of_8(device: &wgpu::Device, info: &wgpu::AdapterInfo) -> bool {
    device.features().contains(wgpu::Features::SUBGROUP) && info.subgroup_min_size >= 8
}

/// Records `g` in the variant the engine chose for its shape class (see `tune.rs`); an empty
/// product records nothing (and tunes nothing).
pub(crate) fn record_gemm(
    gpu: &Recording,
    pass: &mut wgpu::ComputePass<'_>,
    g: &Gemm,
    a: Operand,
    b: Operand,
    c: Operand,
) -> Result<()> {
    reads_f16(gpu, &a, &b, &c)?;
    if g.m == 0 || g.n == 0 || g.batch == 0 {
        return Ok(());
    }
    let variant = gpu.gemm_variant(GemmClass::of(g, &a, &b))?;
    record_gemm_as(gpu, pass, variant, g, a, b, c)
}

/// Records `g` as blocks of as many rows and columns as one dispatch's workgroups cover (65,535 tiles
/// on most devices) and slices of at most [`MAX_K`] of the inner dimension, each slice after the
/// first accumulating into C; a product of few tiles splits its slices across workgroups. `g` is
/// not empty.
pub(crate) fn record_gemm_as(
    gpu: &Recording,
    pass: &mut wgpu::ComputePass<'_>,
    variant: GemmVariant,
    g: &Gemm,
    a: Operand,
    b: Operand,
    c: Operand,
) -> Result<()> {
    let (tile_rows, tile_cols) = variant.tile();
    // Square blocks, so that C's diagonal (the `diag` term, added where a block's own row and column
    // agree) only crosses blocks that start on it.
    let side = gpu.max_groups() * tile_rows.min(tile_cols);
    let (rows_side, cols_side) = (side, side);
    let within =
        |index: Option<usize>, first: usize, len: usize| index.and_then(|x| x.checked_sub(first)).filter(|&x| x < len);
    for i0 in (0..g.m).step_by(rows_side) {
        // Blocks wholly below the diagonal of an upper product are not wanted at all.
        for j0 in (0..g.n).step_by(cols_side).filter(|&j0| !(g.upper && j0 < i0)) {
            let (m, n) = ((g.m - i0).min(rows_side), (g.n - j0).min(cols_side));
            let tiles = m.div_ceil(tile_rows) * n.div_ceil(tile_cols) * g.batch.div_ceil(variant.pack());
            let (splits, slice) = split_k(gpu, &Gemm { m, n, ..*g }, tiles);
            for k0 in (0..g.k.max(1)).step_by(splits * slice) {
                let k = (g.k - k0).min(splits * slice);
                let block = Gemm {
                    m,
                    n,
                    k,
                    beta: if k0 == 0 { g.beta } else { 1.0 },
                    // Blocks on C's diagonal start on the same row and column.
                    diag: if k0 == 0 && i0 == j0 { g.diag } else { 0.0 },
                    upper: g.upper && i0 == j0,
                    a_triangle: g.a_triangle.of_block(i0, k0),
                    ones_col: within(g.ones_col, j0, n),
                    a_ones_col: within(g.a_ones_col, k0, k),
                    ..*g
                };
                let a = a.at(i0 * a.row_stride + k0 * a.col_stride);
                let b = b.at(k0 * b.row_stride + j0 * b.col_stride);
                let c = c.at(i0 * c.row_stride + j0 * c.col_stride);
                if k > slice {
                    record_split(gpu, pass, variant, &block, slice, a, b, c)?;
                } else {
                    record_block(gpu, pass, variant, &block, (1, k), a, b, c)?;
                }
            }
        }
    }
    Ok(())
}

/// `g` with its inner dimension in slices of `slice`, one workgroup each, into the recording's
/// partial products, then their sum into C (with `g`'s beta and diag).
#[allow(clippy::too_many_arguments)]
fn record_split(
    gpu: &Recording,
    pass: &mut wgpu::ComputePass<'_>,
    variant: GemmVariant,
    g: &Gemm,
    slice: usize,
    a: Operand,
    b: Operand,
    c: Operand,
) -> Result<()> {
    let splits = g.k.div_ceil(slice);
    let partials = gpu.partials(4 * partial_floats(gpu) as u64);
    let partial = Operand::rows(partials.buffer(), g.m, g.n);
    record_block(gpu, pass, variant, &Gemm { beta: 0.0, diag: 0.0, ..*g }, (splits, slice), a, b, partial)?;
    let u = |x: usize| x as u32;
    let params = kernels::GemmSum {
        m: u(g.m),
        n: u(g.n),
        batch: u(g.batch),
        splits: u(splits),
        c: operand(&c),
        beta: g.beta,
        diag: g.diag,
        ..Default::default()
    };
    let groups = gpu.grid((g.batch * g.m * g.n) as u64, 256)?;
    gpu.dispatch(pass, &kernels::GEMM_SUM, &params, &[partials.buffer(), c.buffer], groups)
}

/// One dispatch per [`Recording::max_groups`] workgroups along z of a product within the dispatch
/// limits, its inner dimension in `splits` slices of `slice` (see `gemm.wgsl`).
#[allow(clippy::too_many_arguments)]
fn record_block(
    gpu: &Recording,
    pass: &mut wgpu::ComputePass<'_>,
    variant: GemmVariant,
    g: &Gemm,
    (splits, slice): (usize, usize),
    a: Operand,
    b: Operand,
    c: Operand,
) -> Result<()> {
    let f16 = reads_f16(gpu, &a, &b, &c)?;
    let (tile_rows, tile_cols) = variant.tile();
    let (gx, gy) = (g.n.div_ceil(tile_cols), g.m.div_ceil(tile_rows));
    let pack = variant.pack();
    let max = gpu.max_groups() / splits * pack;
    for z_base in (0..g.batch).step_by(max) {
        let params = kernels::Gemm {
            m: g.m as u32,
            n: g.n as u32,
            k: g.k as u32,
            z_base: z_base as u32,
            a: operand(&a),
            b: operand(&b),
            c: operand(&c),
            b_ones_col: g.ones_col.map_or(u32::MAX, |j| j as u32),
            alpha: g.alpha,
            beta: g.beta,
            diag: g.diag,
            a_ones_col: g.a_ones_col.map_or(u32::MAX, |j| j as u32),
            splits: splits as u32,
            k_slice: slice as u32,
            batch: (g.batch - z_base).min(max) as u32,
            upper: g.upper as u32,
            a_triangle: g.a_triangle as u32,
            ..Default::default()
        };
        let zs = (g.batch - z_base).min(max).div_ceil(pack) * splits;
        let groups = [gx as u32, gy as u32, zs as u32];
        let buffers = [a.buffer, b.buffer, c.buffer];
        let pick = |f32_shader, f16_shader| if f16 { f16_shader } else { f32_shader };
        match variant {
            GemmVariant::Tiled { depth } => {
                let shader = pick(&kernels::GEMM, &kernels::GEMM_F16);
                gpu.dispatch_with(pass, shader, &[("DEPTH", depth as f64)], &params, &buffers, groups)?
            }
            GemmVariant::Rows { rows, lanes, subgroup, packed } => {
                let shader = match subgroup {
                    true => pick(&kernels::GEMM_ROWS_SUBGROUP, &kernels::GEMM_ROWS_SUBGROUP_F16),
                    false => pick(&kernels::GEMM_ROWS, &kernels::GEMM_ROWS_F16),
                };
                let constants = [("ROWS", rows as f64), ("LANES", lanes as f64), ("PACKED", packed as u8 as f64)];
                gpu.dispatch_with(pass, shader, &constants, &params, &buffers, groups)?
            }
            GemmVariant::Lanes { rows } => {
                let shader = pick(&kernels::GEMM_LANES, &kernels::GEMM_LANES_F16);
                gpu.dispatch_with(pass, shader, &[("LANE_ROWS", rows as f64)], &params, &buffers, groups)?
            }
        }
    }
    Ok(())
}

/// Whether the product reads f16 operands (A and B both f16, on an adapter with `SHADER_F16`) or f32
/// ones; C is f32 either way.
fn reads_f16(gpu: &Recording, a: &Operand, b: &Operand, c: &Operand) -> Result<bool> {
    match (a.dtype, b.dtype, c.dtype) {
        (DType::F32, DType::F32, DType::F32) => Ok(false),
        (DType::F16, DType::F16, DType::F32) if gpu.shader_f16() => Ok(true),
        (DType::F16, DType::F16, DType::F32) => Err(Error::Unsupported(format!(
            "a product of f16 operands on {}, which lacks SHADER_F16: convert them with \
                 Engine::convert_gpu, or pass them to Engine::run_gpu or Engine::record with \
                 ortho::ops::Matmul, which convert them on the device",
            gpu.adapter_name()
        ))),
        (a, b, c) => Err(Error::Unsupported(format!(
            "a product of {} and {} operands into {}: A and B are both f32 or both f16, C f32",
            a.name(),
            b.name(),
            c.name()
        ))),
    }
}

/// Options of [`Engine::matmul`].
#[derive(Debug, Clone, Copy, Default)]
pub struct MatmulOptions {
    /// Use `A^T` (A stored `[.., k, m]`).
    pub transpose_a: bool,
    /// Use `B^T` (B stored `[.., n, k]`).
    pub transpose_b: bool,
}

/// `(batch, m, k, n)` of `a [.., m, k] x b [.., k, n]`, where `b` may be 2-D (broadcast).
fn matmul_shape(
    a: &[usize],
    b: &[usize],
    o: MatmulOptions,
) -> std::result::Result<(usize, usize, usize, usize, bool), InputError> {
    let split = |name: &str, s: &[usize]| match *s {
        [r, c] => Ok((1, r, c)),
        [z, r, c] => Ok((z, r, c)),
        _ => Err(InputError::shape(name, "[rows, cols] or [batch, rows, cols]", s)),
    };
    let (za, ra, ca) = split("a", a)?;
    let (zb, rb, cb) = split("b", b)?;
    let (m, k) = if o.transpose_a { (ca, ra) } else { (ra, ca) };
    let (kb, n) = if o.transpose_b { (cb, rb) } else { (rb, cb) };
    if kb != k {
        return Err(InputError::shape("b", format!("inner dimension {k} to match a {a:?}"), b));
    }
    if zb != za && zb != 1 {
        return Err(InputError::shape("b", format!("batch 1 or {za} to match a"), b));
    }
    Ok((za, m, k, n, a.len() == 3))
}

/// Batched `A B` (`a: [m, k]` or `[batch, m, k]`; `b` of rank 2 is shared by every batch).
#[derive(Debug, Clone, Copy, Default)]
pub struct Matmul(pub MatmulOptions);

impl Operation for Matmul {
    const NAME: &'static str = "matmul";
    const INPUTS: &'static [&'static str] = &["a", "b"];
    const READS_F16: bool = true;

    async fn run_split(&self, engine: &Engine, inputs: &[&Tensor<f32>]) -> Option<Result<Vec<Tensor<f32>>>> {
        run_batches(engine, self, inputs, &[3]).await
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let (z, m, _, n, batched) = matmul_shape(inputs[0], inputs[1], self.0)?;
        Ok(vec![if batched { vec![z, m, n] } else { vec![m, n] }])
    }

    fn record(
        &self,
        engine: &Engine,
        enc: &mut wgpu::CommandEncoder,
        i: &[&GpuTensor],
        o: &[&GpuTensor],
    ) -> Result<Recorded> {
        engine.record_matmul(enc, i[0], i[1], o[0], self.0)
    }

    fn cpu(&self, i: &[&Tensor<f32>]) -> Option<Result<Vec<Tensor<f32>>>> {
        let o = self.0;
        let product = |(z, m, k, n, batched)| {
            let shape = if batched { vec![z, m, n] } else { vec![m, n] };
            let c = crate::cpu::matmul(i[0], i[1], (z, m, k, n), (o.transpose_a, o.transpose_b));
            Ok(vec![Tensor::new(&shape, c)?])
        };
        Some(matmul_shape(i[0].shape(), i[1].shape(), o).map_err(Into::into).and_then(product))
    }

    fn reference(&self, inputs: &[Tensor<f64>]) -> Result<Vec<Tensor<f64>>> {
        let (a, b, o) = (&inputs[0], &inputs[1], self.0);
        let (z, m, k, n, batched) = matmul_shape(a.shape(), b.shape(), o)?;
        let zb = if b.shape().len() == 3 { b.shape()[0] } else { 1 };
        let take = |t: &Tensor<f64>, idx: usize, r: usize, c: usize, tr: bool| -> Vec<f64> {
            let s = &t.data()[idx * r * c..(idx + 1) * r * c];
            if tr { (0..r * c).map(|e| s[(e % r) * c + e / r]).collect() } else { s.to_vec() }
        };
        let mut out = Vec::with_capacity(z * m * n);
        for i in 0..z {
            let (ra, ca) = if o.transpose_a { (k, m) } else { (m, k) };
            let (rb, cb) = if o.transpose_b { (n, k) } else { (k, n) };
            let ai = take(a, i, ra, ca, o.transpose_a);
            let bi = take(b, i % zb, rb, cb, o.transpose_b);
            out.extend(ortho_ref::linalg::matmul(&ai, &bi, m, k, n));
        }
        let shape = if batched { vec![z, m, n] } else { vec![m, n] };
        Ok(vec![Tensor::new(&shape, out)?])
    }
}

impl Engine {
    /// Batched `A B` (`a: [m, k]` or `[batch, m, k]`; `b` of rank 2 is shared by every batch).
    pub fn matmul(&self, a: &Tensor<f32>, b: &Tensor<f32>, o: MatmulOptions) -> Result<Tensor<f32>> {
        Ok(self.run(&Matmul(o), &[a, b])?.remove(0))
    }

    /// [`Engine::matmul`] on device-resident tensors.
    pub fn matmul_gpu(&self, a: &GpuTensor, b: &GpuTensor, o: MatmulOptions) -> Result<GpuTensor> {
        Ok(self.run_gpu(&Matmul(o), &[a, b])?.remove(0))
    }

    /// Records `c = a b` into the caller's encoder; keep the returned guard until it is submitted.
    /// `a` and `b` are both f32 or, where the adapter has `SHADER_F16` ([`Engine::has_shader_f16`]),
    /// both f16 (read as f16, summed in f32); `c` is f32.
    pub fn record_matmul(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        a: &GpuTensor,
        b: &GpuTensor,
        c: &GpuTensor,
        o: MatmulOptions,
    ) -> Result<Recorded> {
        let (z, m, k, n, _) = matmul_shape(a.shape(), b.shape(), o)?;
        if c.len() != z * m * n {
            return Err(InputError::shape("c", format!("[{z}, {m}, {n}]"), c.shape()).into());
        }
        // A and B may be f16 (read as such where the adapter has SHADER_F16: `reads_f16`).
        let gpu = self.recording("matmul", &[c])?;
        gpu.keep(&[a, b]);
        let zb = if b.shape().len() == 3 { b.shape()[0] } else { 1 };
        let (a_rows, a_cols) = if o.transpose_a { (k, m) } else { (m, k) };
        let (b_rows, b_cols) = if o.transpose_b { (n, k) } else { (k, n) };
        let mut ao = Operand::rows(a.buffer(), a_rows, a_cols).holding(a.dtype());
        let mut bo = Operand::rows(b.buffer(), b_rows, b_cols).cycle(zb).holding(b.dtype());
        if o.transpose_a {
            ao = ao.t();
        }
        if o.transpose_b {
            bo = bo.t();
        }
        let mut pass =
            encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("matmul"), timestamp_writes: None });
        record_gemm(&gpu, &mut pass, &Gemm::new(z, m, n, k), ao, bo, Operand::rows(c.buffer(), m, n))?;
        drop(pass);
        Ok(gpu.finish())
    }
}
