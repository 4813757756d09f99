//! Dispatch plans for random-feature attention (FAVOR+, FAVOR, ReLU; bidirectional, causal and
//! streaming) and its gradients. The CPU twins are `ortho_ref::favor::{favor, favor_causal,
//! favor_backward}`.
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
//! The modules: `plan` (group sizes and scratch), `record` (the kernels of a group), `forward` and
//! `stream` (the entry points), `saved` (what a forward pass keeps for gradients) and `backward`.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::gemm::{Gemm, Operand, record_gemm};
use crate::kernels;
use crate::operation::{Operation, run_batches};
use crate::pool::{PooledBuffer, Recorded};
use crate::recording::{Blocks, Recording};
use crate::scratch::ScratchSize;
use crate::tensor::GpuTensor;
use ortho_ref::favor::{AttentionShape, Kernel};
use ortho_ref::{Error as InputError, Tensor};

mod backward;
mod causal_grads;
mod forward;
mod plan;
mod record;
mod saved;
mod segments;
mod stream;
use backward::Carried;
pub use backward::FavorBackward;
use causal_grads::Direction;
pub use forward::Favor;
use plan::*;
use record::*;
pub use saved::{FavorGrads, FavorSaved};

/// How causal attention walks its chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// The most parallel schedule whose scratch fits [`AUTO_SCRATCH_BYTES`].
    #[default]
    Auto,
    /// Every chunk at once, with a scan of chunk states: scratch grows like `L (3m + C + dv) +
    /// (L/C) m dv`; split into groups only where a buffer would pass the device's binding limit.
    Parallel,
    /// Chunks in order, [`SEQUENTIAL_ROWS`] rows a group, with the state held on chip by one
    /// workgroup per problem and tile of 4 state columns (docs/math.md §1.6): scratch independent of L.
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

/// The causal states a forward pass keeps for the backward pass (docs/math.md §1.6, SLiM).
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
pub(crate) const WALK_MAX_FEATURES: usize = 768;
const WALK_MAX_CHUNK: usize = 256;
pub(crate) const WALK_TILE: usize = 4;
/// Chunks one dispatch of the on-chip walk takes before handing its state to the next.
const WALK_CHUNKS_PER_DISPATCH: usize = 8;
/// The chunk size when none is given and nothing is tuned (`ORTHO_TUNE=off`, the CPU fallback).
pub const DEFAULT_CHUNK: usize = 64;

/// Options of [`Engine::favor`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FavorOptions {
    pub kernel: Kernel,
    /// Causal (`j <= t`) attention through prefix sums.
    pub causal: bool,
    /// Tokens per chunk of causal attention (default: tuned per adapter and class of shapes, or
    /// [`DEFAULT_CHUNK`] with tuning off and on the CPU). Bidirectional attention
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

/// The carried state of causal attention (docs/math.md §1.6): `S [B*H, f, dv + 1]` and the running key
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

/// The most negative finite f32: the running key offset before any token.
pub(crate) const LOWEST: f32 = f32::MIN;

pub(crate) fn attention_shape(
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
pub(crate) const QUERY_MAX: u32 = 0;
pub(crate) const KEY_MAX: u32 = 1;
pub(crate) const HALF_SQ: u32 = 2;
const ZERO: u32 = 3;

fn kernel_code(kernel: Kernel) -> (u32, f32) {
    match kernel {
        Kernel::Softmax => (0, 0.0),
        Kernel::Trig => (1, 0.0),
        Kernel::Relu { eps } => (2, eps as f32),
    }
}

/// The sizes of one call: problems, rows per group and chunks, and the features a scratch row holds.
#[derive(Debug, Clone, Copy)]
struct Plan {
    z: usize,
    l: usize,
    d: usize,
    dv: usize,
    /// Random features (and feature columns: `2m` for trig) of a scratch row: all of them, or, where a
    /// GEMM tile of rows of all of them would pass one binding (bidirectional only), a block of them
    /// from feature `first` (see [`Plan::blocks`]).
    m: usize,
    f: usize,
    first: usize,
    /// Random features (and state rows) of the whole problem.
    all_m: usize,
    all_f: usize,
    causal: bool,
    /// Tokens per chunk (bidirectional: the group).
    chunk: usize,
    /// Chunks per group.
    group_chunks: usize,
    /// Causal: the sequential schedule's walk with the state on chip instead of a scan of chunk states.
    walk: bool,
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
            w: Operand::rows(w.buffer(), plan.all_m, plan.d).t().cycle(s.projection_heads),
            out: out.buffer(),
            state_s: state_s.buffer(),
            state_gamma: state_gamma.buffer(),
        }
    }
}

/// Records one kernel over the rows of a group.
struct Recorder<'g, 'p, 'e> {
    gpu: &'g Recording<'g>,
    pass: &'p mut wgpu::ComputePass<'e>,
    plan: Plan,
    kernel: Kernel,
}

/// Where a forward pass leaves what the backward pass needs (see [`FavorSaved`]).
struct Keep<'a> {
    den: &'a wgpu::Buffer,
    gamma: Option<&'a wgpu::Buffer>,
    checkpoints: Option<Checkpointed<'a>>,
}

/// What one recording of attention does besides reading and advancing its state.
#[derive(Clone, Copy)]
pub(super) struct Sweep<'a> {
    /// Sets the state to "no tokens" first.
    reset: bool,
    /// Bidirectional: the keys, the queries or both.
    phase: Phase,
    keep: Option<&'a Keep<'a>>,
}

impl Sweep<'_> {
    /// A whole call: the state reset, keys then queries.
    const WHOLE: Self = Sweep { reset: true, phase: Phase::Both, keep: None };
    /// Continuing from the state as it is.
    const CONTINUE: Self = Sweep { reset: false, ..Self::WHOLE };
}

/// The part of a bidirectional sweep one recording makes: a sequence split into segments folds the
/// keys of every segment into the state before any segment's queries read it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Both,
    Keys,
    Queries,
}

/// The states entering every `every`-th chunk, `count` per problem (`[B*H, count, f, dv + 1]`).
#[derive(Clone, Copy)]
struct Checkpointed<'a> {
    states: &'a wgpu::Buffer,
    every: usize,
    count: usize,
}
