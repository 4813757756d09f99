//! The sizes of one call (problems, rows per group, chunks) and the scratch they take.

use super::*;
use crate::scratch::{ScratchSize, scratch_plan};

/// Chunks and rows a group takes at most: `favor/state_scan` walks a group's chunks, and
/// `common/scan_max` its rows in blocks of 256, in one invocation, which Mesa's llvmpipe ends
/// silently past 65,535 loop iterations.
const MAX_GROUP_CHUNKS: usize = 16_384;
const MAX_GROUP_ROWS: usize = 1 << 20;

fn group_chunks_cap(chunk: usize) -> usize {
    MAX_GROUP_CHUNKS.min(MAX_GROUP_ROWS / chunk).max(1)
}

impl Plan {
    pub(super) fn width(&self) -> usize {
        self.dv + 1
    }

    pub(super) fn scratch_rows(&self) -> usize {
        self.chunk * self.group_chunks
    }

    /// The blocks of features a group takes in turn, each a plan of its own `m` features from `first`
    /// (one block: this plan). The state keeps each block's rows together, `[cos | sin]` for trig.
    pub(super) fn blocks(&self) -> Vec<Plan> {
        let per_feature = self.f / self.m;
        (0..self.all_m)
            .step_by(self.m)
            .map(|first| {
                let m = self.m.min(self.all_m - first);
                Plan { m, f: m * per_feature, first, ..*self }
            })
            .collect()
    }

    /// The first row of the state that the block's features take.
    pub(super) fn first_state_row(&self) -> usize {
        self.first * (self.f / self.m)
    }

    /// `S` (or `R`) of the block's features, `[f, dv + 1]` of every problem's `[all_f, dv + 1]`.
    pub(super) fn state_rows<'a>(&self, buffer: &'a wgpu::Buffer) -> Operand<'a> {
        let w = self.width();
        Operand { outer: self.all_f * w, ..Operand::rows(buffer, self.f, w) }.at(self.first_state_row() * w)
    }

    /// Floats of every scratch buffer of a group: what [`Engine::scratch`] allocates.
    pub(super) fn scratch_sizes(&self) -> ScratchSizes {
        let (z, c, w, g) = (self.z, self.chunk, self.width(), self.group_chunks);
        let rows = z * g * c;
        ScratchSizes {
            a: rows * self.m,
            phi_q: rows * self.f,
            phi_k: rows * self.f,
            row_max: rows,
            offset: rows,
            gamma: rows,
            before: z,
            scores: if self.causal { z * g * c * c } else { 1 },
            num: rows * w,
            deltas: if self.walk { 1 } else { z * g * self.f * w },
            lost: if self.walk { z * self.f * w } else { 1 },
        }
    }

    /// Bytes of the largest scratch buffer and of all scratch, the carried state (`S` and the
    /// running key offset) included.
    pub(super) fn scratch_bytes(&self) -> (u64, u64) {
        let (sizes, state) = (self.scratch_sizes(), [self.z * self.all_f * self.width(), self.z]);
        (sizes.largest_bytes().max(state.largest_bytes()), sizes.total_bytes() + state.total_bytes())
    }
}

impl Engine {
    pub(super) fn plan(&self, s: &AttentionShape, o: &FavorOptions) -> Result<Plan> {
        let binding = self.binding_limit()?;
        let base = Plan {
            z: s.problems(),
            l: s.len,
            d: s.dim,
            dv: s.value_dim,
            m: s.features,
            f: o.kernel.feature_count(s.features),
            first: 0,
            all_m: s.features,
            all_f: o.kernel.feature_count(s.features),
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
            let chunk = match o.chunk {
                Some(chunk) => chunk,
                None => self.default_chunk(s, o)?,
            };
            let chunk = chunk.min(s.len);
            let with = |g| Plan { chunk, group_chunks: g, ..base };
            let chunks = s.len.div_ceil(chunk).min(group_chunks_cap(chunk));
            let group_chunks = match o.schedule {
                Schedule::Sequential => (SEQUENTIAL_ROWS / chunk).clamp(1, chunks),
                Schedule::Parallel => largest_fitting(chunks, |g| fits(&with(g), u64::MAX)),
                Schedule::Auto => largest_fitting(chunks, |g| fits(&with(g), AUTO_SCRATCH_BYTES)),
            };
            let walk = o.schedule == Schedule::Sequential && base.f <= WALK_MAX_FEATURES && chunk <= WALK_MAX_CHUNK;
            Plan { walk, ..with(group_chunks) }
        } else {
            // Bidirectional: one chunk per group, as many rows as the scratch budget allows.
            let most = o.chunk.unwrap_or(s.len).min(s.len).clamp(1, MAX_GROUP_ROWS);
            let base = feature_blocks(base, |p| fits(p, u64::MAX));
            Plan { chunk: group_rows(most, |rows, budget| fits(&Plan { chunk: rows, ..base }, budget)), ..base }
        };
        if !fits(&plan, u64::MAX) {
            let hint = if plan.causal {
                let one_chunk = |c| fits(&Plan { chunk: c, group_chunks: 1, ..plan }, u64::MAX);
                match largest_fitting(plan.chunk, one_chunk) {
                    c if one_chunk(c) => format!(" (chunks of {c} tokens or fewer fit)"),
                    _ => " (fewer features or problems a call would fit)".into(),
                }
            } else {
                " (the state of every feature takes more than one binding: fewer features or problems a call would fit)"
                    .into()
            };
            return Err(Error::Limit {
                what: format!(
                    "random-feature attention over {} problems in groups of {} rows{hint}",
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
}

/// The largest `n` in `1..=max` with `fits(n)` (1 when none fits; the caller reports the limit).
pub(super) fn largest_fitting(max: usize, fits: impl Fn(usize) -> bool) -> usize {
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

/// Rows of a bidirectional group: as many as `fits(rows, AUTO_SCRATCH_BYTES)` allows, but at least a
/// GEMM tile's worth where one binding holds them (`fits(rows, u64::MAX)`). Every group pays for the
/// whole `[f, dv + 1]` state (its scan, and the query product's tile over all `f` features); with
/// groups shrinking like `1 / m` under a fixed budget, the total cost would grow like `m^2`.
fn group_rows(most: usize, fits: impl Fn(usize, u64) -> bool) -> usize {
    let rows = largest_fitting(most, |rows| fits(rows, AUTO_SCRATCH_BYTES));
    let least = most.min(crate::gemm::TILE);
    if rows >= least { rows } else { largest_fitting(least, |rows| fits(rows, u64::MAX)) }
}

/// `base` with its features in blocks (the largest that fits one binding) where a GEMM tile's rows of
/// every feature would not: groups then keep a tile of rows, and the cost stays linear in m. Decided
/// at a whole tile whatever the length, so that the segments of a long sequence (`segments.rs`) agree
/// on the blocks, which order the state's rows.
fn feature_blocks(base: Plan, fits: impl Fn(&Plan) -> bool) -> Plan {
    let tile = Plan { chunk: crate::gemm::TILE, group_chunks: 1, ..base };
    if fits(&tile) {
        return base;
    }
    let per_feature = base.f / base.m;
    let m = largest_fitting(base.m, |m| fits(&Plan { m, f: m * per_feature, ..tile }));
    Plan { m, f: m * per_feature, ..base }
}

/// `(first chunk, chunks, rows per chunk)`: the full chunks of `rows`, then the shorter last one, so
/// that a product over a chunk's tokens never reads past the sequence.
pub(super) fn chunk_batches(rows: usize, chunk: usize) -> Vec<(usize, usize, usize)> {
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

impl Plan {
    /// Bytes of the largest buffer and of all scratch of a backward pass, the forward's included.
    pub(super) fn backward_bytes(&self) -> (u64, u64) {
        let ((largest, total), sizes) = (self.scratch_bytes(), self.backward_sizes());
        (largest.max(sizes.largest_bytes()), total + sizes.total_bytes())
    }

    /// Floats of each scratch buffer of a backward pass beside the forward's.
    pub(super) fn backward_sizes(&self) -> BackwardSizes {
        let (rows, w, g) = (self.z * self.scratch_rows(), self.width(), self.group_chunks);
        let causal = |n: usize| if self.causal { n } else { 1 };
        BackwardSizes {
            gt: rows * w,
            dphi_q: rows * self.f,
            dphi_k: rows * self.f,
            da: rows * self.m,
            r: self.z * self.all_f * w,
            masked: causal(self.z * g * self.chunk * self.chunk),
            query_deltas: causal(self.z * g * self.f * w),
            phi_k_decayed: causal(rows * self.f),
        }
    }
}

impl Engine {
    /// The plan of a backward pass: groups as the schedule asks (`Auto`: forward and backward
    /// scratch within [`AUTO_SCRATCH_BYTES`]), under `Every(n)` checkpoints rounded to whole segments
    /// of `n` chunks (at least one) so that every group starts at a checkpoint; every buffer must
    /// fit one binding.
    pub(super) fn backward_plan(&self, s: &AttentionShape, o: &FavorOptions) -> Result<Plan> {
        // The backward pass scans its chunk states (dq needs the state entering every chunk).
        let plan = Plan { walk: false, ..self.plan(s, o)? };
        let binding = self.binding_limit()?;
        let budget = if o.schedule == Schedule::Parallel { u64::MAX } else { AUTO_SCRATCH_BYTES };
        let fits = |p: &Plan, budget: u64| {
            let (largest, total) = p.backward_bytes();
            largest <= binding && total <= budget
        };
        let plan = if !o.causal {
            let most = o.chunk.unwrap_or(s.len).min(s.len).clamp(1, MAX_GROUP_ROWS);
            Plan { chunk: group_rows(most, |rows, budget| fits(&Plan { chunk: rows, ..plan }, budget)), ..plan }
        } else {
            let chunks = s.len.div_ceil(plan.chunk).min(group_chunks_cap(plan.chunk));
            let with = |g| Plan { group_chunks: g, ..plan };
            let g = match o.schedule {
                Schedule::Sequential => plan.group_chunks,
                Schedule::Parallel | Schedule::Auto => largest_fitting(chunks, |g| fits(&with(g), budget)),
            };
            let every = match o.checkpoints {
                Checkpoints::Every(n) if n > chunks && s.len.div_ceil(plan.chunk) > chunks => {
                    return Err(InputError::argument(
                        "checkpoints",
                        format!("a checkpoint every {n} chunks leaves groups longer than {chunks} chunks; keep more"),
                    )
                    .into());
                }
                Checkpoints::Every(n) => n,
                Checkpoints::None => 1,
            };
            with(((g / every).max(1) * every).min(chunks))
        };
        let (largest, _) = plan.backward_bytes();
        if largest > binding {
            return Err(Error::Limit {
                what: format!(
                    "attention gradients over groups of {} rows (fewer chunks between checkpoints need less)",
                    plan.scratch_rows()
                ),
                needed: largest,
                limit_name: "max_storage_buffer_binding_size",
                limit: binding,
            });
        }
        Ok(plan)
    }
}

scratch_plan! {
    /// Floats of the scratch buffers of a forward group (see `record.rs`): planned, reported and
    /// allocated from this one struct.
    pub(super) struct ScratchSizes => Scratch {
        a: usize,
        phi_q: usize,
        phi_k: usize,
        row_max: usize,
        offset: usize,
        gamma: usize,
        before: usize,
        scores: usize,
        num: usize,
        deltas: usize,
        // The sequential walk's compensation of its state (`favor/state_walk.wgsl`).
        lost: usize,
    }
}

scratch_plan! {
    /// Floats of the scratch buffers of a backward pass beside the forward's (see `backward.rs`).
    pub(super) struct BackwardSizes => BackwardScratch {
        gt: usize,
        dphi_q: usize,
        dphi_k: usize,
        da: usize,
        r: usize,
        masked: usize,
        query_deltas: usize,
        phi_k_decayed: usize,
    }
}
