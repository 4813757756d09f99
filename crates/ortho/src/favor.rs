//! Dispatch plans for random-feature attention (FAVOR+, FAVOR, ReLU; bidirectional, causal and
//! streaming) and exact softmax attention. The CPU twins are `ortho_ref::favor::{favor,
//! favor_causal, exact}`.
//!
//! Both directions run over groups of rows so that scratch never holds more than a group:
//! - bidirectional: the keys of each group are folded into a state `S = phi^(K)^T [V | 1]` (rescaled
//!   whenever the running key offset grows), then the queries of each group read `S`;
//! - causal: each group is `G` chunks of `C` tokens; per chunk the masked `C x C` block with the
//!   decay `exp(g_j - gamma_t)`, the chunk's state delta, a scan of states across the group's chunks
//!   (seeded by the state carried from earlier groups and calls), and the inter-chunk term. `G` =
//!   every chunk is the parallel schedule; the sequential one holds [`SEQUENTIAL_ROWS`] rows a group
//!   (scratch independent of L) and walks their chunks in order with the state on chip instead of
//!   scanning chunk states.
//!
//! Gradients and what a forward pass keeps for them: `favor/backward.rs`.

use crate::engine::{Engine, Gpu};
use crate::error::{Error, Result};
use crate::gemm::{Gemm, Operand, record_gemm};
use crate::pool::{BufferKind, PooledBuffer};
use crate::shaders::{dispatch, dispatch_with, grid};
use crate::tensor::GpuTensor;
use ortho_ref::favor::{AttentionShape, Kernel};
use ortho_ref::{Error as InputError, Tensor};

mod backward;
pub use backward::{FavorGrads, FavorSaved};

/// How causal attention walks its chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Schedule {
    /// The most parallel schedule whose scratch fits [`AUTO_SCRATCH_BYTES`].
    #[default]
    Auto,
    /// Every chunk at once, with a scan of chunk states: scratch grows like `L (3m + C + dv) +
    /// (L/C) m dv`; split into groups only where a buffer would pass the device's binding limit.
    Parallel,
    /// Chunks in order, [`SEQUENTIAL_ROWS`] rows a group, with the state held on chip by one
    /// workgroup per problem and tile of 4 state columns (math.md §1.6): scratch independent of L.
    Sequential,
}

impl std::str::FromStr for Schedule {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Schedule::Auto),
            "parallel" => Ok(Schedule::Parallel),
            "sequential" => Ok(Schedule::Sequential),
            _ => {
                Err(InputError::argument("schedule", format!("'{s}' is not one of auto, parallel, sequential")).into())
            }
        }
    }
}

/// The causal states a forward pass keeps for the backward pass (math.md §1.6, SLiM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Checkpoints {
    /// No states: the backward pass rebuilds them in a second sweep over the chunks, with scratch
    /// independent of L (the schedule sets how many chunks a sweep holds at once).
    #[default]
    None,
    /// The state entering every `n`-th chunk (`Every(1)`: every chunk): the backward pass walks
    /// groups of whole segments of `n` chunks backwards in one sweep, rebuilding each segment's
    /// states from its checkpoint; the checkpoints take `(L / (n C)) f (dv + 1)` floats per problem.
    Every(usize),
}

impl std::str::FromStr for Checkpoints {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Checkpoints::None),
            "every" => Ok(Checkpoints::Every(1)),
            n => match n.parse::<usize>() {
                Ok(n) if n > 0 => Ok(Checkpoints::Every(n)),
                _ => Err(InputError::argument(
                    "checkpoints",
                    format!("'{s}' is not one of every, none or a number of chunks >= 1"),
                )
                .into()),
            },
        }
    }
}

/// Scratch the `Auto` schedule allows itself.
pub const AUTO_SCRATCH_BYTES: u64 = 64 << 20;
/// Rows a group of the sequential schedule holds (at least one chunk).
pub const SEQUENTIAL_ROWS: usize = 512;
/// Feature counts and chunk sizes up to which the sequential schedule keeps its state on chip
/// (`favor/state_walk.wgsl`: 16 KiB of workgroup memory).
const WALK_MAX_FEATURES: usize = 768;
const WALK_MAX_CHUNK: usize = 256;
const WALK_TILE: usize = 4;
/// Chunks one dispatch of the on-chip walk takes before handing its state to the next.
const WALK_CHUNKS_PER_DISPATCH: usize = 8;
/// The chunk size when none is given.
pub const DEFAULT_CHUNK: usize = 64;

/// Options of [`Engine::favor`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FavorOptions {
    pub kernel: Kernel,
    /// Causal (`j <= t`) attention through prefix sums.
    pub causal: bool,
    /// Tokens per chunk of causal attention (default [`DEFAULT_CHUNK`]). Bidirectional attention
    /// takes its rows in groups of at most this many (default: as many as [`AUTO_SCRATCH_BYTES`] of
    /// scratch holds).
    pub chunk: Option<usize>,
    pub schedule: Schedule,
    /// What [`Engine::favor_forward_gpu`] keeps for causal gradients.
    pub checkpoints: Checkpoints,
}

impl FavorOptions {
    pub fn new(kernel: Kernel) -> Self {
        FavorOptions { kernel, causal: false, chunk: None, schedule: Schedule::Auto, checkpoints: Checkpoints::None }
    }

    pub fn causal(kernel: Kernel) -> Self {
        FavorOptions { causal: true, ..FavorOptions::new(kernel) }
    }
}

impl Default for FavorOptions {
    fn default() -> Self {
        FavorOptions::new(Kernel::Softmax)
    }
}

/// The carried state of causal attention (math.md §1.6): `S [B*H, f, dv + 1]` and the running key
/// offset `gamma [B*H]`. Returned by one call and accepted by the next, it continues the sequence:
/// streaming L tokens in pieces of any sizes gives the one-shot result. On a GPU engine it stays on
/// the device.
pub enum CausalState {
    Gpu { s: GpuTensor, gamma: GpuTensor, problems: usize, features: usize, value_dim: usize },
    Cpu(ortho_ref::favor::CausalState),
}

impl CausalState {
    fn sizes(&self) -> (usize, usize, usize) {
        match self {
            CausalState::Gpu { problems, features, value_dim, .. } => (*problems, *features, *value_dim),
            CausalState::Cpu(s) => (s.problems, s.features, s.value_dim),
        }
    }

    fn check(&self, s: &AttentionShape, kernel: Kernel) -> Result<()> {
        Ok(ortho_ref::favor::check_state_sizes(self.sizes(), s, kernel)?)
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RowStatsParams {
    rows: u32,
    problems: u32,
    scratch_rows: u32,
    dim: u32,
    features: u32,
    kind: u32,
    x_off: u32,
    x_stride: u32,
}

/// `[rows, problems, scratch_rows, a, b, c, d, e]`: the layout every row kernel's uniform shares.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RowParams([u32; 8]);

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ScanParams {
    rows: u32,
    problems: u32,
    row_stride: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct FillParams {
    count: u32,
    off: u32,
    value: f32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ExactParams {
    len: u32,
    dim: u32,
    value_dim: u32,
    causal: u32,
    z_base: u32,
    scale: f32,
    key_first: u32,
    key_last: u32,
}

/// A kernel's uniform block of `u32` words.
fn words<const N: usize>(values: [usize; N]) -> [u32; N] {
    values.map(|x| x as u32)
}

/// The most negative finite f32: the running key offset before any token.
const LOWEST: f32 = f32::MIN;

/// The largest head dimension exact attention keeps in registers.
pub const EXACT_MAX_DIM: usize = 128;
const EXACT_ROWS: usize = 64;
/// Key blocks one dispatch of exact attention walks before handing its running sums to the next.
const EXACT_BLOCKS_PER_DISPATCH: usize = 16;
/// vec4 slots of the key and value tile in workgroup memory (16 KiB).
const EXACT_TILE_VEC4: usize = 1024;

fn attention_shape(
    q: &[usize],
    k: &[usize],
    v: &[usize],
    w: Option<&[usize]>,
    out: Option<&[usize]>,
) -> Result<AttentionShape> {
    let s = AttentionShape::of(q, k, v, w)?;
    if let Some(out) = out
        && out.iter().product::<usize>() != s.problems() * s.len * s.value_dim
    {
        return Err(InputError::shape("out", format!("{:?}", s.output_shape(q.len())), out).into());
    }
    Ok(s)
}

/// Row-stats offset kinds (see `favor/row_stats.wgsl`).
const QUERY_MAX: u32 = 0;
const KEY_MAX: u32 = 1;
const HALF_SQ: u32 = 2;
const ZERO: u32 = 3;

fn kernel_code(kernel: Kernel) -> (u32, f32) {
    match kernel {
        Kernel::Softmax => (0, 0.0),
        Kernel::Trig => (1, 0.0),
        Kernel::Relu { eps } => (2, eps as f32),
    }
}

/// The sizes of one call: problems, rows per group and chunks.
#[derive(Debug, Clone, Copy)]
struct Plan {
    z: usize,
    l: usize,
    d: usize,
    dv: usize,
    m: usize,
    f: usize,
    causal: bool,
    /// Tokens per chunk (bidirectional: the group).
    chunk: usize,
    /// Chunks per group.
    group_chunks: usize,
    /// Causal: the sequential schedule's walk with the state on chip instead of a scan of chunk states.
    walk: bool,
}

impl Plan {
    fn width(&self) -> usize {
        self.dv + 1
    }

    fn scratch_rows(&self) -> usize {
        self.chunk * self.group_chunks
    }

    /// Bytes of the largest scratch buffer and of all scratch (the state included).
    fn scratch_bytes(&self) -> (u64, u64) {
        let (z, c, w, g) = (self.z, self.chunk, self.width(), self.group_chunks);
        let rows = z * g * c;
        let sizes = [
            rows * self.m,                                  // projections
            rows * self.f,                                  // query features
            rows * self.f,                                  // key features
            4 * rows,                                       // half_sq, offset, gamma
            if self.causal { z * g * c * c } else { 0 },    // scores
            rows * w,                                       // numerators
            if self.walk { 0 } else { z * g * self.f * w }, // chunk states
            z * self.f * w,                                 // the state of a bidirectional call
            2 * z,                                          // gamma before the group, and carried
        ];
        let bytes = |n: usize| 4 * n as u64;
        (sizes.iter().map(|&n| bytes(n)).max().unwrap_or(0), sizes.iter().map(|&n| bytes(n)).sum())
    }
}

struct Scratch {
    a: PooledBuffer,
    phi_q: PooledBuffer,
    phi_k: PooledBuffer,
    half_sq: PooledBuffer,
    offset: PooledBuffer,
    gamma: PooledBuffer,
    before: PooledBuffer,
    scores: PooledBuffer,
    num: PooledBuffer,
    deltas: PooledBuffer,
}

/// The buffers of one call: inputs, projection, output and the state being carried.
struct Io<'a> {
    q: &'a wgpu::Buffer,
    k: &'a wgpu::Buffer,
    v: &'a wgpu::Buffer,
    w: Operand<'a>,
    out: &'a wgpu::Buffer,
    state_s: &'a wgpu::Buffer,
    state_gamma: &'a wgpu::Buffer,
}

impl<'a> Io<'a> {
    /// `[q, k, v, w, out]` and the carried state; `w` is read as `W^T`, per head or shared.
    fn new(
        plan: &Plan,
        s: &AttentionShape,
        [q, k, v, w, out]: [&'a GpuTensor; 5],
        state_s: &'a GpuTensor,
        state_gamma: &'a GpuTensor,
    ) -> Self {
        Io {
            q: q.buffer(),
            k: k.buffer(),
            v: v.buffer(),
            w: Operand::rows(w.buffer(), plan.m, plan.d).t().cycle(s.projection_heads),
            out: out.buffer(),
            state_s: state_s.buffer(),
            state_gamma: state_gamma.buffer(),
        }
    }
}

impl Engine {
    fn plan(&self, s: &AttentionShape, o: &FavorOptions) -> Result<Plan> {
        let binding = self.binding_limit()?;
        let base = Plan {
            z: s.problems(),
            l: s.len,
            d: s.dim,
            dv: s.value_dim,
            m: s.features,
            f: o.kernel.feature_count(s.features),
            causal: o.causal,
            chunk: s.len,
            group_chunks: 1,
            walk: false,
        };
        let fits = |p: &Plan, budget: u64| {
            let (largest, total) = p.scratch_bytes();
            largest <= binding && total <= budget
        };
        if o.chunk == Some(0) {
            return Err(InputError::argument("chunk", "the chunk size must be at least 1").into());
        }
        let plan = if o.causal {
            let chunk = o.chunk.unwrap_or(DEFAULT_CHUNK);
            let chunk = chunk.min(s.len);
            let with = |g| Plan { chunk, group_chunks: g, ..base };
            let group_chunks = match o.schedule {
                Schedule::Sequential => (SEQUENTIAL_ROWS / chunk).clamp(1, s.len.div_ceil(chunk)),
                Schedule::Parallel => largest_fitting(s.len.div_ceil(chunk), |g| fits(&with(g), u64::MAX)),
                Schedule::Auto => largest_fitting(s.len.div_ceil(chunk), |g| fits(&with(g), AUTO_SCRATCH_BYTES)),
            };
            let walk = o.schedule == Schedule::Sequential && base.f <= WALK_MAX_FEATURES && chunk <= WALK_MAX_CHUNK;
            Plan { walk, ..with(group_chunks) }
        } else {
            // Bidirectional: one chunk per group, as many rows as the scratch budget allows.
            let most = o.chunk.unwrap_or(s.len).min(s.len).max(1);
            let rows = largest_fitting(most, |rows| fits(&Plan { chunk: rows, ..base }, AUTO_SCRATCH_BYTES));
            Plan { chunk: rows, ..base }
        };
        if !fits(&plan, u64::MAX) {
            return Err(Error::Limit {
                what: format!(
                    "random-feature attention over {} problems in groups of {} rows",
                    plan.z,
                    plan.scratch_rows()
                ),
                needed: plan.scratch_bytes().0,
                limit_name: "max_storage_buffer_binding_size",
                limit: binding,
            });
        }
        Ok(plan)
    }

    fn scratch(&self, gpu: &Gpu, p: &Plan) -> Scratch {
        let rows = p.z * p.scratch_rows();
        let get = |floats: usize| gpu.pool.get(BufferKind::Storage, 4 * floats.max(1) as u64);
        Scratch {
            a: get(rows * p.m),
            phi_q: get(rows * p.f),
            phi_k: get(rows * p.f),
            half_sq: get(rows),
            offset: get(rows),
            gamma: get(rows),
            before: get(p.z),
            scores: get(if p.causal { p.z * p.group_chunks * p.chunk * p.chunk } else { 1 }),
            num: get(rows * p.width()),
            deltas: get(if p.walk { 1 } else { p.z * p.group_chunks * p.f * p.width() }),
        }
    }
}

/// The largest `n` in `1..=max` with `fits(n)` (1 when none fits; the caller reports the limit).
fn largest_fitting(max: usize, fits: impl Fn(usize) -> bool) -> usize {
    if fits(max) {
        return max;
    }
    let (mut lo, mut hi) = (1, max);
    while lo + 1 < hi {
        let mid = (lo + hi) / 2;
        if fits(mid) { lo = mid } else { hi = mid }
    }
    lo
}

/// Records one kernel over the rows of a group.
struct Recorder<'g, 'p, 'e> {
    gpu: &'g Gpu,
    pass: &'p mut wgpu::ComputePass<'e>,
    plan: Plan,
    kernel: Kernel,
}

impl Recorder<'_, '_, '_> {
    fn run(
        &mut self,
        name: &str,
        params: &[u8],
        buffers: &[&wgpu::Buffer],
        invocations: usize,
        group: u32,
    ) -> Result<()> {
        dispatch(
            &self.gpu.device,
            &self.gpu.pipelines,
            self.pass,
            name,
            params,
            buffers,
            grid(invocations as u64, group)?,
        )
    }

    /// A row kernel whose uniform block is `(rows, problems, scratch rows, extra...)`, one invocation
    /// per element of `invocations`.
    fn rows_kernel(
        &mut self,
        name: &str,
        rows: usize,
        extra: [u32; 5],
        buffers: &[&wgpu::Buffer],
        n: usize,
    ) -> Result<()> {
        let p = self.plan;
        let [a, b, c, d, e] = extra;
        let params = RowParams([rows as u32, p.z as u32, p.scratch_rows() as u32, a, b, c, d, e]);
        self.run(name, bytemuck::bytes_of(&params), buffers, n, 256)
    }

    fn gemm(&mut self, g: &Gemm, a: Operand, b: Operand, c: Operand) -> Result<()> {
        record_gemm(self.gpu, self.pass, g, a, b, c)
    }

    /// Projections, row statistics and features of `rows` rows from `start` of `x` (queries or keys)
    /// into `phi`; keys leave their offsets g_j in `offset`.
    #[allow(clippy::too_many_arguments)]
    fn features(
        &mut self,
        sc: &Scratch,
        io: &Io,
        x: &wgpu::Buffer,
        phi: &wgpu::Buffer,
        is_key: bool,
        start: usize,
        rows: usize,
    ) -> Result<()> {
        let p = self.plan;
        let sr = p.scratch_rows();
        self.project(sc, io, x, start, rows)?;
        let kind = match (self.kernel, is_key) {
            (Kernel::Softmax, false) => QUERY_MAX,
            (Kernel::Softmax, true) => KEY_MAX,
            (Kernel::Trig, true) => HALF_SQ,
            _ => ZERO,
        };
        let stats = RowStatsParams {
            rows: rows as u32,
            problems: p.z as u32,
            scratch_rows: sr as u32,
            dim: p.d as u32,
            features: p.m as u32,
            kind,
            x_off: (start * p.d) as u32,
            x_stride: (p.l * p.d) as u32,
        };
        let bufs = [x, sc.a.buffer(), sc.half_sq.buffer(), sc.offset.buffer()];
        self.run("favor/row_stats", bytemuck::bytes_of(&stats), &bufs, p.z * rows, 64)?;
        if is_key {
            // gamma_t = max(carried, g_0..=t): the prefix max of the key offsets.
            let scan = ScanParams { rows: rows as u32, problems: p.z as u32, row_stride: sr as u32, _pad: 0 };
            let bufs = [sc.offset.buffer(), sc.gamma.buffer(), sc.before.buffer(), io.state_gamma];
            self.run("common/scan_max", bytemuck::bytes_of(&scan), &bufs, p.z, 1)?;
        }
        let (code, eps) = kernel_code(self.kernel);
        let bufs = [sc.a.buffer(), sc.half_sq.buffer(), sc.offset.buffer(), phi];
        let extra = [p.m as u32, code, is_key as u32, eps.to_bits(), 0];
        self.rows_kernel("favor/features", rows, extra, &bufs, p.z * rows * p.m)
    }

    /// `a = x~ W^T` for `rows` rows from `start` of `x`, with `x~ = x d^(-1/4)`.
    fn project(&mut self, sc: &Scratch, io: &Io, x: &wgpu::Buffer, start: usize, rows: usize) -> Result<()> {
        let p = self.plan;
        let project = Gemm { alpha: (p.d as f32).powf(-0.25), ..Gemm::new(p.z, rows, p.m, p.d) };
        let a = Operand::rows(sc.a.buffer(), p.scratch_rows(), p.m);
        self.gemm(&project, Operand::rows(x, p.l, p.d).at(start * p.d), io.w, a)
    }

    /// Scales the rows of `x` (`width` floats each) by their decay: keys for their chunk's state
    /// delta, queries for the inter-chunk term (see `favor/row_scale.wgsl`).
    fn row_scale(&mut self, sc: &Scratch, x: &wgpu::Buffer, is_key: bool, rows: usize, width: usize) -> Result<()> {
        let p = self.plan;
        let bufs = [sc.offset.buffer(), sc.gamma.buffer(), sc.before.buffer(), x];
        let extra = [width as u32, p.chunk as u32, is_key as u32, 0, 0];
        self.rows_kernel("favor/row_scale", rows, extra, &bufs, p.z * p.scratch_rows() * width)
    }

    /// Chunk state deltas `phi~(K_c)^T [V_c | 1]` for the chunks of a group (the key features `phi`
    /// are decayed in place), then the scan that turns them into the states entering each chunk and
    /// carries the state past the group, restarting from the checkpoints in `restart`.
    fn fold_keys(
        &mut self,
        sc: &Scratch,
        io: &Io,
        phi: &wgpu::Buffer,
        start: usize,
        rows: usize,
        restart: Option<Checkpointed>,
    ) -> Result<()> {
        let p = self.plan;
        let (sr, w, chunk) = (p.scratch_rows(), p.width(), p.chunk);
        let chunks = rows.div_ceil(chunk);
        self.row_scale(sc, phi, true, rows, p.f)?;
        for (first, count, k) in chunk_batches(rows, chunk) {
            let g = Gemm { ones_col: Some(p.dv), ..Gemm::new(p.z * count, p.f, w, k) };
            let a = Operand::rows(phi, sr, p.f).t().chunks(first, count, chunk * p.f);
            let b = Operand::rows(io.v, p.l, p.dv).at(start * p.dv).chunks(first, count, chunk * p.dv);
            let c = Operand::rows(sc.deltas.buffer(), chunks * p.f, w).chunks(first, count, p.f * w);
            self.gemm(&g, a, b, c)?;
        }
        self.scan_states(sc, sc.deltas.buffer(), io.state_s, start, rows, false, restart)
    }

    /// `favor/state_scan` over the chunks of a group: forward (key states, optionally restarting
    /// from checkpoints) or reverse (the backward pass's query states).
    #[allow(clippy::too_many_arguments)]
    fn scan_states(
        &mut self,
        sc: &Scratch,
        deltas: &wgpu::Buffer,
        state: &wgpu::Buffer,
        start: usize,
        rows: usize,
        reverse: bool,
        restart: Option<Checkpointed>,
    ) -> Result<()> {
        let p = self.plan;
        let width = p.f * p.width();
        let (saved, every, count) = restart.map_or((sc.gamma.buffer(), 0, 0), |r| (r.states, r.every, r.count));
        let chunks = rows.div_ceil(p.chunk);
        let (first, reverse) = (start / p.chunk, reverse as usize);
        let params = words([rows, p.z, p.scratch_rows(), width, p.chunk, chunks, reverse, every, first, count, 0, 0]);
        let bufs = [sc.gamma.buffer(), sc.before.buffer(), saved, deltas, state];
        self.run("favor/state_scan", bytemuck::cast_slice(&params), &bufs, p.z * width, 256)
    }

    fn normalize(&mut self, sc: &Scratch, io: &Io, start: usize, rows: usize) -> Result<()> {
        let p = self.plan;
        let extra = [p.dv as u32, (start * p.dv) as u32, (p.l * p.dv) as u32, 0, 0];
        self.rows_kernel("favor/normalize", rows, extra, &[sc.num.buffer(), io.out], p.z * rows * p.dv)
    }

    /// One group of causal attention: rows `start..start + rows` in chunks of the plan's size.
    fn causal_group(&mut self, sc: &Scratch, io: &Io, start: usize, rows: usize) -> Result<()> {
        let p = self.plan;
        let (sr, w, c) = (p.scratch_rows(), p.width(), p.chunk);
        let chunks = rows.div_ceil(c);
        self.features(sc, io, io.q, sc.phi_q.buffer(), false, start, rows)?;
        self.features(sc, io, io.k, sc.phi_k.buffer(), true, start, rows)?;
        // Intra-chunk: scores phi^(Q_c) phi^(K_c)^T, masked and decayed, times [V_c | 1].
        let scores = Operand::rows(sc.scores.buffer(), c, c);
        let scores = Operand { outer: chunks * c * c, ..scores };
        let qc = Operand::rows(sc.phi_q.buffer(), sr, p.f).chunks(0, chunks, c * p.f);
        let kc = Operand::rows(sc.phi_k.buffer(), sr, p.f).t().chunks(0, chunks, c * p.f);
        self.gemm(&Gemm::new(p.z * chunks, c, c, p.f), qc, kc, scores.chunks(0, chunks, c * c))?;
        let bufs = [sc.offset.buffer(), sc.gamma.buffer(), sc.scores.buffer()];
        self.rows_kernel("favor/causal_mask", rows, [c as u32, chunks as u32, 0, 0, 0], &bufs, p.z * chunks * c * c)?;
        for (first, count, k) in chunk_batches(rows, c) {
            let g = Gemm { ones_col: Some(p.dv), ..Gemm::new(p.z * count, k, w, k) };
            let b = Operand::rows(io.v, p.l, p.dv).at(start * p.dv).chunks(first, count, c * p.dv);
            let out = Operand::rows(sc.num.buffer(), sr, w).chunks(first, count, c * w);
            self.gemm(&g, scores.chunks(first, count, c * c), b, out)?;
        }
        // Inter-chunk: the state entering each chunk, read by its decayed queries.
        if p.walk {
            self.row_scale(sc, sc.phi_k.buffer(), true, rows, p.f)?;
            self.row_scale(sc, sc.phi_q.buffer(), false, rows, p.f)?;
            self.state_walk(sc, io, start, rows)?;
        } else {
            self.fold_keys(sc, io, sc.phi_k.buffer(), start, rows, None)?;
            self.row_scale(sc, sc.phi_q.buffer(), false, rows, p.f)?;
            let states = Operand::rows(sc.deltas.buffer(), p.f, w);
            let out = Operand::rows(sc.num.buffer(), sr, w).chunks(0, chunks, c * w);
            self.gemm(&Gemm { beta: 1.0, ..Gemm::new(p.z * chunks, c, w, p.f) }, qc, states, out)?;
        }
        self.normalize(sc, io, start, rows)
    }

    /// The chunks of a group in order with the state on chip (`favor/state_walk.wgsl`): a workgroup
    /// per problem and tile of 4 state columns, [`WALK_CHUNKS_PER_DISPATCH`] chunks a dispatch.
    fn state_walk(&mut self, sc: &Scratch, io: &Io, start: usize, rows: usize) -> Result<()> {
        let p = self.plan;
        let chunks = rows.div_ceil(p.chunk);
        let bufs = [
            sc.phi_q.buffer(),
            sc.phi_k.buffer(),
            io.v,
            sc.gamma.buffer(),
            sc.before.buffer(),
            io.state_s,
            sc.num.buffer(),
        ];
        if p.z > 65_535 {
            return Err(Error::Limit {
                what: format!("the sequential schedule over {} problems", p.z),
                needed: p.z as u64,
                limit_name: "65,535 workgroups",
                limit: 65_535,
            });
        }
        for first in (0..chunks).step_by(WALK_CHUNKS_PER_DISPATCH) {
            let count = WALK_CHUNKS_PER_DISPATCH.min(chunks - first);
            let params = words([rows, p.z, p.scratch_rows(), p.f, p.dv, p.chunk, first, count, p.l, start, 0, 0]);
            let groups = [p.width().div_ceil(WALK_TILE) as u32, p.z as u32, 1];
            dispatch(
                &self.gpu.device,
                &self.gpu.pipelines,
                self.pass,
                "favor/state_walk",
                bytemuck::cast_slice(&params),
                &bufs,
                groups,
            )?;
        }
        Ok(())
    }

    /// Bidirectional: fold every key group into the state, then answer every query group from it.
    fn bidirectional(&mut self, sc: &Scratch, io: &Io, keep: Option<&Keep>) -> Result<()> {
        let p = self.plan;
        for start in (0..p.l).step_by(p.chunk) {
            let rows = p.chunk.min(p.l - start);
            self.features(sc, io, io.k, sc.phi_k.buffer(), true, start, rows)?;
            self.fold_keys(sc, io, sc.phi_k.buffer(), start, rows, None)?;
        }
        for start in (0..p.l).step_by(p.chunk) {
            let rows = p.chunk.min(p.l - start);
            self.features(sc, io, io.q, sc.phi_q.buffer(), false, start, rows)?;
            let g = Gemm::new(p.z, rows, p.width(), p.f);
            let a = Operand::rows(sc.phi_q.buffer(), p.scratch_rows(), p.f);
            let b = Operand::rows(io.state_s, p.f, p.width());
            self.gemm(&g, a, b, Operand::rows(sc.num.buffer(), p.scratch_rows(), p.width()))?;
            self.normalize(sc, io, start, rows)?;
            if let Some(keep) = keep {
                self.keep(sc, keep, start, rows)?;
            }
        }
        Ok(())
    }

    fn copy(&mut self, src: &wgpu::Buffer, dst: &wgpu::Buffer, b: Blocks) -> Result<()> {
        record_copy(self.gpu, self.pass, src, dst, b)
    }

    /// Keeps what the backward pass needs of a group: the denominators `D_t`, the prefix maxima
    /// `gamma_t` and the checkpointed states entering the group's chunks.
    fn keep(&mut self, sc: &Scratch, keep: &Keep, start: usize, rows: usize) -> Result<()> {
        let p = self.plan;
        let (sr, w, fw) = (p.scratch_rows(), p.width(), p.f * p.width());
        let den = Blocks { outer: p.z, inner: rows, len: 1, src: [p.dv, sr * w, w], dst: [start, p.l, 1] };
        self.copy(sc.num.buffer(), keep.den, den)?;
        if let Some(gamma) = keep.gamma {
            let rows_of_gamma = Blocks { outer: p.z, inner: 1, len: rows, src: [0, sr, 0], dst: [start, p.l, 0] };
            self.copy(sc.gamma.buffer(), gamma, rows_of_gamma)?;
        }
        if let Some(Checkpointed { states, every, count }) = keep.checkpoints {
            let (first, chunks) = (start / p.chunk, rows.div_ceil(p.chunk));
            let kept = first.div_ceil(every) * every;
            if kept < first + chunks {
                let n = (first + chunks - 1 - kept) / every + 1;
                let b = Blocks {
                    outer: p.z,
                    inner: n,
                    len: fw,
                    src: [(kept - first) * fw, chunks * fw, every * fw],
                    dst: [kept / every * fw, count * fw, fw],
                };
                self.copy(sc.deltas.buffer(), states, b)?;
            }
        }
        Ok(())
    }
}

/// Where a forward pass leaves what the backward pass needs (see [`FavorSaved`]).
struct Keep<'a> {
    den: &'a wgpu::Buffer,
    gamma: Option<&'a wgpu::Buffer>,
    checkpoints: Option<Checkpointed<'a>>,
}

/// The states entering every `every`-th chunk, `count` per problem (`[B*H, count, f, dv + 1]`).
#[derive(Clone, Copy)]
struct Checkpointed<'a> {
    states: &'a wgpu::Buffer,
    every: usize,
    count: usize,
}

/// `outer x inner` blocks of `len` floats; `src` and `dst` are `[offset, outer stride, inner
/// stride]` (see `common/copy.wgsl`).
#[derive(Clone, Copy)]
struct Blocks {
    outer: usize,
    inner: usize,
    len: usize,
    src: [usize; 3],
    dst: [usize; 3],
}

fn record_copy(
    gpu: &Gpu,
    pass: &mut wgpu::ComputePass<'_>,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    b: Blocks,
) -> Result<()> {
    let params = words([b.outer, b.inner, b.len, b.src[0], b.src[1], b.src[2], b.dst[0], b.dst[1], b.dst[2], 0, 0, 0]);
    let n = (b.outer * b.inner * b.len) as u64;
    dispatch(
        &gpu.device,
        &gpu.pipelines,
        pass,
        "common/copy",
        bytemuck::cast_slice(&params),
        &[src, dst],
        grid(n, 256)?,
    )
}

/// Sets a causal state to "no tokens": `S = 0`, `gamma = LOWEST`.
fn record_reset(gpu: &Gpu, pass: &mut wgpu::ComputePass<'_>, s: &GpuTensor, gamma: &GpuTensor) -> Result<()> {
    record_fill(gpu, pass, s.buffer(), s.len(), 0.0)?;
    record_fill(gpu, pass, gamma.buffer(), gamma.len(), LOWEST)
}

fn record_fill(
    gpu: &Gpu,
    pass: &mut wgpu::ComputePass<'_>,
    buffer: &wgpu::Buffer,
    count: usize,
    value: f32,
) -> Result<()> {
    let params = FillParams { count: count as u32, off: 0, value, _pad: 0 };
    let groups = grid(count as u64, 256)?;
    dispatch(&gpu.device, &gpu.pipelines, pass, "common/fill", bytemuck::bytes_of(&params), &[buffer], groups)
}

impl Engine {
    /// A causal state for `s`'s problems whose contents are set when recorded.
    fn unset_state(&self, s: &AttentionShape, kernel: Kernel) -> Result<CausalState> {
        let (z, f, dv) = (s.problems(), kernel.feature_count(s.features), s.value_dim);
        Ok(CausalState::Gpu {
            s: self.empty(&[z, f, dv + 1])?,
            gamma: self.empty(&[z])?,
            problems: z,
            features: f,
            value_dim: dv,
        })
    }
}

/// `(first chunk, chunks, rows per chunk)`: the full chunks of `rows`, then the shorter last one, so
/// that a product over a chunk's tokens never reads past the sequence.
fn chunk_batches(rows: usize, chunk: usize) -> Vec<(usize, usize, usize)> {
    let (full, tail) = (rows / chunk, rows % chunk);
    let mut batches = Vec::new();
    if full > 0 {
        batches.push((0, full, chunk));
    }
    if tail > 0 {
        batches.push((full, 1, tail));
    }
    batches
}

impl Engine {
    /// Random-feature attention of host tensors: `q, k: [B, H, L, d]`, `v: [B, H, L, dv]` (or all
    /// `[L, ·]`), projection `w: [m, d]` or `[H, m, d]`. Returns `[B, H, L, dv]` (or `[L, dv]`).
    pub fn favor(
        &self,
        q: &Tensor<f32>,
        k: &Tensor<f32>,
        v: &Tensor<f32>,
        w: &Tensor<f32>,
        o: &FavorOptions,
    ) -> Result<Tensor<f32>> {
        pollster::block_on(self.favor_async(q, k, v, w, o))
    }

    pub async fn favor_async(
        &self,
        q: &Tensor<f32>,
        k: &Tensor<f32>,
        v: &Tensor<f32>,
        w: &Tensor<f32>,
        o: &FavorOptions,
    ) -> Result<Tensor<f32>> {
        let s = attention_shape(q.shape(), k.shape(), v.shape(), Some(w.shape()), None)?;
        if o.causal {
            let mut state = self.causal_state(&s, o.kernel)?;
            return self.favor_stream_async(q, k, v, w, o, &mut state).await;
        }
        ortho_ref::favor::check_inputs(&[("q", q), ("k", k), ("v", v), ("projection", w)])?;
        if !self.is_gpu() {
            let out = ortho_ref::favor::favor(&q.to_f64(), &k.to_f64(), &v.to_f64(), &w.to_f64(), o.kernel)?;
            return Ok(out.to_f32());
        }
        let (gq, gk, gv, gw) =
            (self.upload("q", q)?, self.upload("k", k)?, self.upload("v", v)?, self.upload("projection", w)?);
        let out = self.favor_gpu(&gq, &gk, &gv, &gw, o)?;
        self.download_async(&out).await
    }

    /// [`Engine::favor`] on device-resident tensors (not checked for non-finite values).
    pub fn favor_gpu(
        &self,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        w: &GpuTensor,
        o: &FavorOptions,
    ) -> Result<GpuTensor> {
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
        let state = self.unset_state(&s, o.kernel)?;
        self.record(encoder, q, k, v, w, o, &state, true, out, None)
    }

    /// A causal state before any token, for `s`'s problems under `kernel`.
    pub fn causal_state(&self, s: &AttentionShape, kernel: Kernel) -> Result<CausalState> {
        let (z, f, dv) = (s.problems(), kernel.feature_count(s.features), s.value_dim);
        if !self.is_gpu() {
            return Ok(CausalState::Cpu(ortho_ref::favor::CausalState::new(z, f, dv)));
        }
        let state = self.unset_state(s, kernel)?;
        let CausalState::Gpu { s: values, gamma, .. } = &state else { unreachable!("a GPU engine makes GPU states") };
        self.submit("causal state", |enc| {
            let gpu = self.gpu("causal state")?;
            let mut pass = enc.begin_compute_pass(&Default::default());
            record_reset(gpu, &mut pass, values, gamma)
        })?;
        Ok(state)
    }

    /// The state as the f64 reference holds it (a download on the GPU).
    pub fn causal_state_values(&self, state: &CausalState) -> Result<ortho_ref::favor::CausalState> {
        match state {
            CausalState::Cpu(s) => Ok(s.clone()),
            CausalState::Gpu { s, gamma, problems, features, value_dim } => {
                let gamma: Vec<f64> = self
                    .download(gamma)?
                    .data()
                    .iter()
                    .map(|&g| if g == LOWEST { f64::NEG_INFINITY } else { g as f64 })
                    .collect();
                Ok(ortho_ref::favor::CausalState {
                    problems: *problems,
                    features: *features,
                    value_dim: *value_dim,
                    s: self.download(s)?.data().iter().map(|&x| x as f64).collect(),
                    gamma,
                })
            }
        }
    }

    /// Causal attention that continues from `state` and leaves the state after its last token
    /// there: token-by-token (or chunk-by-chunk) decoding. `o.causal` is implied.
    pub fn favor_stream(
        &self,
        q: &Tensor<f32>,
        k: &Tensor<f32>,
        v: &Tensor<f32>,
        w: &Tensor<f32>,
        o: &FavorOptions,
        state: &mut CausalState,
    ) -> Result<Tensor<f32>> {
        pollster::block_on(self.favor_stream_async(q, k, v, w, o, state))
    }

    pub async fn favor_stream_async(
        &self,
        q: &Tensor<f32>,
        k: &Tensor<f32>,
        v: &Tensor<f32>,
        w: &Tensor<f32>,
        o: &FavorOptions,
        state: &mut CausalState,
    ) -> Result<Tensor<f32>> {
        let s = attention_shape(q.shape(), k.shape(), v.shape(), Some(w.shape()), None)?;
        ortho_ref::favor::check_inputs(&[("q", q), ("k", k), ("v", v), ("projection", w)])?;
        state.check(&s, o.kernel)?;
        match state {
            CausalState::Cpu(st) => {
                let chunk = o.chunk.unwrap_or(DEFAULT_CHUNK);
                let out = ortho_ref::favor::favor_causal(
                    &q.to_f64(),
                    &k.to_f64(),
                    &v.to_f64(),
                    &w.to_f64(),
                    o.kernel,
                    chunk,
                    Some(st),
                )?;
                Ok(out.to_f32())
            }
            CausalState::Gpu { .. } => {
                let (gq, gk, gv, gw) =
                    (self.upload("q", q)?, self.upload("k", k)?, self.upload("v", v)?, self.upload("projection", w)?);
                let out = self.favor_stream_gpu(&gq, &gk, &gv, &gw, o, state)?;
                self.download_async(&out).await
            }
        }
    }

    /// [`Engine::favor_stream`] on device-resident tensors.
    pub fn favor_stream_gpu(
        &self,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        w: &GpuTensor,
        o: &FavorOptions,
        state: &mut CausalState,
    ) -> Result<GpuTensor> {
        let s = attention_shape(q.shape(), k.shape(), v.shape(), Some(w.shape()), None)?;
        let out = self.empty(&s.output_shape(q.shape().len()))?;
        self.submit("favor", |enc| self.record_favor_stream(enc, q, k, v, w, o, state, &out))?;
        Ok(out)
    }

    /// Records causal attention that continues from `state` and advances it.
    #[allow(clippy::too_many_arguments)]
    pub fn record_favor_stream(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        w: &GpuTensor,
        o: &FavorOptions,
        state: &CausalState,
        out: &GpuTensor,
    ) -> Result<()> {
        let o = FavorOptions { causal: true, ..*o };
        self.record(encoder, q, k, v, w, &o, state, false, out, None)
    }

    /// Records attention through `state`, first reset to "no tokens" when `reset`, leaving what the
    /// backward pass needs where `keep` says.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        w: &GpuTensor,
        o: &FavorOptions,
        state: &CausalState,
        reset: bool,
        out: &GpuTensor,
        keep: Option<&Keep>,
    ) -> Result<()> {
        let s = attention_shape(q.shape(), k.shape(), v.shape(), Some(w.shape()), Some(out.shape()))?;
        state.check(&s, o.kernel)?;
        let CausalState::Gpu { s: state_s, gamma, .. } = state else {
            return Err(Error::Unsupported("a CPU causal state cannot be used with device tensors".into()));
        };
        let gpu = self.gpu("favor")?;
        let plan = self.plan(&s, o)?;
        // Checkpoints are the scanned states entering chunks, which the on-chip walk never writes out.
        let walk = plan.walk && keep.is_none_or(|k| k.checkpoints.is_none());
        let plan = Plan { walk, ..plan };
        self.check_binding("the chunk states of a sequential group", plan.scratch_bytes().0)?;
        let sc = self.scratch(gpu, &plan);
        let io = Io::new(&plan, &s, [q, k, v, w, out], state_s, gamma);
        let mut pass =
            encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("favor"), timestamp_writes: None });
        if reset {
            record_reset(gpu, &mut pass, state_s, gamma)?;
        }
        let mut r = Recorder { gpu, pass: &mut pass, plan, kernel: o.kernel };
        if !o.causal {
            return r.bidirectional(&sc, &io, keep);
        }
        let group = plan.scratch_rows();
        for start in (0..plan.l).step_by(group) {
            let rows = group.min(plan.l - start);
            r.causal_group(&sc, &io, start, rows)?;
            if let Some(keep) = keep {
                r.keep(&sc, keep, start, rows)?;
            }
        }
        Ok(())
    }

    /// Exact softmax attention of host tensors (the baseline), bidirectional or causal.
    pub fn exact_attention(
        &self,
        q: &Tensor<f32>,
        k: &Tensor<f32>,
        v: &Tensor<f32>,
        causal: bool,
    ) -> Result<Tensor<f32>> {
        pollster::block_on(self.exact_attention_async(q, k, v, causal))
    }

    pub async fn exact_attention_async(
        &self,
        q: &Tensor<f32>,
        k: &Tensor<f32>,
        v: &Tensor<f32>,
        causal: bool,
    ) -> Result<Tensor<f32>> {
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
        let (d4, dv4) = (s.dim.div_ceil(4), s.value_dim.div_ceil(4));
        let block = (EXACT_TILE_VEC4 / (d4 + dv4)).min(64);
        let constants = [("D4", d4 as f64), ("DV4", dv4 as f64), ("BLOCK", block as f64)];
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
        let carry = gpu.pool.get(BufferKind::Storage, 16 * (z * s.len * (dv4 + 1)) as u64);
        let keys_per_dispatch = block * EXACT_BLOCKS_PER_DISPATCH;
        for z_base in (0..z).step_by(65_535) {
            for key_first in (0..s.len).step_by(keys_per_dispatch) {
                let params = ExactParams {
                    len: s.len as u32,
                    dim: s.dim as u32,
                    value_dim: s.value_dim as u32,
                    causal: causal as u32,
                    z_base: z_base as u32,
                    scale: 1.0 / (s.dim as f32).sqrt(),
                    key_first: key_first as u32,
                    key_last: (key_first + keys_per_dispatch).min(s.len) as u32,
                };
                let groups = [row_groups as u32, (z - z_base).min(65_535) as u32, 1];
                let bufs = [q.buffer(), k.buffer(), v.buffer(), out.buffer(), carry.buffer()];
                dispatch_with(
                    &gpu.device,
                    &gpu.pipelines,
                    &mut pass,
                    "favor/exact",
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
