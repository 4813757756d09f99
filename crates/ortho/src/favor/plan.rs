//! The sizes of one call (problems, rows per group, chunks) and the scratch they take.

use super::*;

impl Plan {
    pub(super) fn width(&self) -> usize {
        self.dv + 1
    }

    pub(super) fn scratch_rows(&self) -> usize {
        self.chunk * self.group_chunks
    }

    /// Bytes of the largest scratch buffer and of all scratch (the state included).
    pub(super) fn scratch_bytes(&self) -> (u64, u64) {
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

    pub(super) fn scratch(&self, gpu: &Recording, p: &Plan) -> Scratch {
        let rows = p.z * p.scratch_rows();
        let get = |floats: usize| gpu.scratch(4 * floats as u64);
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
        let (largest, total) = self.scratch_bytes();
        let sizes = self.backward_sizes().map(|n| 4 * n as u64);
        (largest.max(sizes.into_iter().max().unwrap_or(0)), total + sizes.iter().sum::<u64>())
    }

    /// Floats of each buffer of [`Backward`] that this plan allocates.
    pub(super) fn backward_sizes(&self) -> [usize; 8] {
        let (rows, w, g) = (self.z * self.scratch_rows(), self.width(), self.group_chunks);
        let causal = |n: usize| if self.causal { n } else { 1 };
        [
            rows * w,
            rows * self.f,
            rows * self.f,
            rows * self.m,
            self.z * self.f * w,
            causal(self.z * g * self.chunk * self.chunk),
            causal(self.z * g * self.f * w),
            causal(rows * self.f),
        ]
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
        let fits = |p: &Plan| {
            let (largest, total) = p.backward_bytes();
            largest <= binding && total <= budget
        };
        let plan = if !o.causal {
            let most = o.chunk.unwrap_or(s.len).min(s.len).max(1);
            Plan { chunk: largest_fitting(most, |rows| fits(&Plan { chunk: rows, ..plan })), ..plan }
        } else {
            let chunks = s.len.div_ceil(plan.chunk);
            let with = |g| Plan { group_chunks: g, ..plan };
            let g = match o.schedule {
                Schedule::Sequential => plan.group_chunks,
                Schedule::Parallel | Schedule::Auto => largest_fitting(chunks, |g| fits(&with(g))),
            };
            let every = match o.checkpoints {
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
