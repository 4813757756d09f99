//! The sparse GPU path of [`super::IsingBatch`]: the multifrontal QR of `ortho_ref::ising::frontal_qr`
//! for a batch of coupling sets (docs/math.md §6.6). `ising/front_qr` runs once per level of the
//! front tree (every front of a level and every set of a chunk at once), then `log Z += (1/2) sum` of
//! the fronts' `log |R_jj|` is one product with a ones column. For the marginals every front is
//! kept, `ising/front_qr_adjoint` differentiates the reflections level by level from the root, and
//! `ising/front_marginals` gathers each edge's derivative.

use super::NO_EDGE;
use super::glued::SeparatorStates;
use crate::error::{Error, Result};
use crate::gemm::{Gemm, Operand, record_gemm};
use crate::kernels;
use crate::recording::Recording;
use ortho_ref::ising::DenseKasteleyn;
use ortho_ref::ising::frontal_qr::{FrontalQr, QrFront, Source};

/// Words per front, child and entry in the table (`shaders/ising/front_qr.wgsl` gives the layout).
pub(crate) const FRONT_WORDS: usize = 10;
pub(crate) const CHILD_WORDS: usize = 8;
pub(crate) const ENTRY_WORDS: usize = 5;
/// The child record of a front without a parent.
pub(crate) const ROOT_FRONT: u32 = u32::MAX;
/// Invocations of the front kernels per front (`FRONT_GROUP` in `shaders/ising/front.wgsl`): 8 on
/// CPU adapters, 64 elsewhere.
const FRONT_GROUPS: [usize; 2] = [8, 64];
/// Loop iterations one invocation may run in a dispatch (llvmpipe ends an invocation's loops after
/// 65,535 in all).
const ITERATIONS_PER_PASS: usize = 32_768;

/// The fronts of one level and the reflection steps `(first, last)` of each of its dispatches, for
/// the factorisation and (root first, last steps first) for its adjoint, for each of
/// [`FRONT_GROUPS`].
struct Level {
    first: usize,
    fronts: usize,
    passes: [Vec<(usize, usize)>; 2],
    adjoint_passes: [Vec<(usize, usize)>; 2],
}

/// The fronts of every component, sorted by level, as the shaders' table.
pub(crate) struct FrontalPlan {
    table: Vec<u32>,
    entries_at: usize,
    children_at: usize,
    pairs_at: usize,
    terms_at: usize,
    /// Pairs with a graph edge (the marginals' invocations).
    pairs: usize,
    levels: Vec<Level>,
    fronts: usize,
    /// f32 words of one set's fronts (those alive at once share them unless marginals keep all)
    /// and of its adjoint blocks.
    arena: usize,
    adjoint: usize,
    marginals: bool,
}

/// A front of component `c` as `(level, component, front)`, in level order.
type Placed = (usize, usize, usize);

impl FrontalPlan {
    pub fn new(components: &[(&FrontalQr, &DenseKasteleyn)], marginals: bool) -> FrontalPlan {
        let mut all: Vec<Placed> = Vec::new();
        for (c, (qr, _)) in components.iter().enumerate() {
            all.extend((0..qr.fronts.len()).map(|f| (qr.fronts[f].level, c, f)));
        }
        // A stable sort: children stay before parents.
        all.sort_by_key(|&(level, _, _)| level);
        let mut slot: Vec<Vec<usize>> = components.iter().map(|(qr, _)| vec![0; qr.fronts.len()]).collect();
        for (s, &(_, c, f)) in all.iter().enumerate() {
            slot[c][f] = s;
        }
        let front = |s: usize| &components[all[s].1].0.fronts[all[s].2];
        let size = |f: &QrFront| f.rows * f.columns + f.pivots;
        let offsets = if marginals { prefix(all.len(), |s| size(front(s))) } else { allocate(components, &all) };
        let adjoint_size = |f: &QrFront| f.rows * f.columns + 2 * f.columns + f.rows;
        let adjoint_offsets =
            if marginals { prefix(all.len(), |s| adjoint_size(front(s))) } else { vec![0; all.len()] };
        let (table, sections) = build_table(components, &all, &slot, (&offsets, &adjoint_offsets));
        let mut levels: Vec<Level> = Vec::new();
        for (s, &(level, _, _)) in all.iter().enumerate() {
            if levels.len() <= level {
                levels.push(Level {
                    first: s,
                    fronts: 0,
                    passes: Default::default(),
                    adjoint_passes: Default::default(),
                });
            }
            levels[level].fronts += 1;
        }
        for level in &mut levels {
            let fronts: Vec<&QrFront> = (level.first..level.first + level.fronts).map(front).collect();
            level.passes = FRONT_GROUPS.map(|group| passes(&fronts, group));
            level.adjoint_passes = FRONT_GROUPS.map(|group| adjoint_passes(&fronts, group));
        }
        let end = |offsets: &[usize], size: &dyn Fn(&QrFront) -> usize| {
            (0..all.len()).map(|s| offsets[s] + size(front(s))).max().unwrap_or(0)
        };
        let arena = end(&offsets, &size);
        let adjoint = if marginals { end(&adjoint_offsets, &adjoint_size) } else { 0 };
        let fronts = all.len();
        FrontalPlan {
            table,
            entries_at: sections.entries_at,
            children_at: sections.children_at,
            pairs_at: sections.pairs_at,
            terms_at: sections.terms_at,
            pairs: sections.pairs,
            levels,
            fronts,
            arena,
            adjoint,
            marginals,
        }
    }

    /// Records `log_z[first + i] += (1/2) log |det K|` summed over the components for `batch` sets,
    /// and with marginals each edge's `E[s_u s_v]`. With `states` (the rows of a glued piece, one per
    /// separator state), the sums are of the fronts' Hadamard combinations over the states.
    pub fn record(
        &self,
        gpu: &Recording,
        pass: &mut wgpu::ComputePass<'_>,
        (edges, batch): (usize, usize),
        couplings: &wgpu::Buffer,
        (log_z, marginals): (&wgpu::Buffer, Option<&wgpu::Buffer>),
        states: Option<&SeparatorStates>,
    ) -> Result<()> {
        let per_set = 4 * self.arena.max(self.adjoint).max(self.fronts) as u64;
        if per_set > gpu.binding_limit() {
            return Err(Error::Limit {
                what: "the fronts of one coupling set (use the CPU solver, --backend cpu)".into(),
                needed: per_set,
                limit_name: "max_storage_buffer_binding_size",
                limit: gpu.binding_limit(),
            });
        }
        let chunk = ((gpu.binding_limit() / per_set) as usize).clamp(1, batch.min(gpu.max_groups()));
        // A glued piece's rows of one coupling set (one per separator state) stay in one chunk.
        let per_problem = states.map_or(1, SeparatorStates::states);
        let chunk = (chunk / per_problem).max(1) * per_problem;
        let table = gpu.upload(bytemuck::cast_slice(&self.table));
        let sizes = [chunk * self.arena.max(1), chunk * self.fronts, chunk * self.adjoint.max(1)];
        let [arena, slots, adjoint] = gpu.allocate("ising", &sizes)?;
        for first in (0..batch).step_by(chunk) {
            let count = chunk.min(batch - first);
            let params = kernels::IsingFronts {
                first: first as u32,
                edges: edges as u32,
                arena: self.arena as u32,
                fronts: self.fronts as u32,
                entries_at: self.entries_at as u32,
                children_at: self.children_at as u32,
                adjoint: self.adjoint as u32,
                sets: count as u32,
                pairs: self.pairs as u32,
                pairs_at: self.pairs_at as u32,
                terms_at: self.terms_at as u32,
                ..Default::default()
            };
            let bufs = [couplings, table.buffer(), arena.buffer(), slots.buffer()];
            let group = usize::from(!gpu.is_cpu_adapter());
            for level in &self.levels {
                let passes = (FRONT_GROUPS[group], &level.passes[group][..]);
                self.record_level(gpu, pass, &kernels::FRONT_QR, params, level, passes, count, &bufs)?;
            }
            if let Some(states) = states {
                states.record(gpu, pass, slots.buffer(), count / per_problem, self.fronts)?;
            }
            let sum = Gemm { alpha: 0.5, beta: 1.0, ones_col: Some(0), ..Gemm::new(1, count, 1, self.fronts) };
            let a = Operand::rows(slots.buffer(), count, self.fronts);
            let ones = Operand::rows(slots.buffer(), self.fronts, 1);
            record_gemm(gpu, pass, &sum, a, ones, Operand::rows(log_z, count, 1).at(first))?;
            if let (true, Some(marginals)) = (self.marginals, marginals) {
                let bufs = [table.buffer(), arena.buffer(), adjoint.buffer()];
                for level in self.levels.iter().rev() {
                    let shader = &kernels::FRONT_QR_ADJOINT;
                    let passes = (FRONT_GROUPS[group], &level.adjoint_passes[group][..]);
                    self.record_level(gpu, pass, shader, params, level, passes, count, &bufs)?;
                }
                let bufs = [couplings, table.buffer(), adjoint.buffer(), marginals];
                let grid = gpu.grid((count * self.pairs) as u64, 256)?;
                gpu.dispatch(pass, &kernels::FRONT_MARGINALS, &params, &bufs, grid)?;
            }
        }
        Ok(())
    }

    /// One level's dispatches of `shader` in workgroups of `group`, a pass of steps at a time, its
    /// fronts split by the device's workgroups per dimension.
    #[allow(clippy::too_many_arguments)]
    fn record_level(
        &self,
        gpu: &Recording,
        pass: &mut wgpu::ComputePass<'_>,
        shader: &kernels::Shader<kernels::IsingFronts>,
        params: kernels::IsingFronts,
        level: &Level,
        (group, passes): (usize, &[(usize, usize)]),
        count: usize,
        bufs: &[&wgpu::Buffer],
    ) -> Result<()> {
        for &(step_first, step_last) in passes {
            for part in (0..level.fronts).step_by(gpu.max_groups()) {
                let params = kernels::IsingFronts {
                    level_first: (level.first + part) as u32,
                    step_first: step_first as u32,
                    step_last: step_last as u32,
                    ..params
                };
                let groups = [(level.fronts - part).min(gpu.max_groups()) as u32, count as u32, 1];
                gpu.dispatch_with(pass, shader, &[("FRONT_GROUP", group as f64)], &params, bufs, groups)?;
            }
        }
        Ok(())
    }
}

/// Where each section of the table starts.
struct Sections {
    entries_at: usize,
    children_at: usize,
    pairs_at: usize,
    terms_at: usize,
    pairs: usize,
}

/// The shaders' table: fronts, entries, children, column maps, pairs and their terms (the layouts
/// are in `shaders/ising/front_qr.wgsl` and `front_marginals.wgsl`). `slot[c][f]` is front `f` of
/// component `c` in level order; `offsets` and `adjoint_offsets` are by level order.
fn build_table(
    components: &[(&FrontalQr, &DenseKasteleyn)],
    all: &[Placed],
    slot: &[Vec<usize>],
    (offsets, adjoint_offsets): (&[usize], &[usize]),
) -> (Vec<u32>, Sections) {
    let mut record_of = vec![ROOT_FRONT; all.len()];
    let mut records = 0;
    for &(_, c, f) in all {
        for contribution in &components[c].0.fronts[f].children {
            record_of[slot[c][contribution.child]] = records;
            records += 1;
        }
    }
    let pair_base: Vec<usize> =
        components.iter().scan(0, |n, (_, d)| Some(std::mem::replace(n, *n + d.pair_edges.len()))).collect();
    let mut terms: Vec<Vec<[u32; 5]>> = vec![Vec::new(); components.iter().map(|(_, d)| d.pair_edges.len()).sum()];
    let (mut fronts, mut entries, mut children, mut maps) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (s, &(_, c, f)) in all.iter().enumerate() {
        let (qr, dense) = components[c];
        let front = &qr.fronts[f];
        let edge = |pair: usize| dense.pair_edges[pair].map_or(NO_EDGE, |e| e as u32);
        fronts.extend(
            [offsets[s], front.rows, front.columns, front.pivots, entries.len() / ENTRY_WORDS, front.entries.len()]
                .map(|x| x as u32),
        );
        fronts.extend([children.len() / CHILD_WORDS, front.children.len(), adjoint_offsets[s]].map(|x| x as u32));
        fronts.push(record_of[s]);
        for e in &front.entries {
            // d K_e / d J: K_e itself for the pair's external entries, -K_e / 2 for each pair an intra
            // entry joins; log Z = log |det K| / 2 + constants.
            let (ja, jb, kind, touched, coefficient) = match e.source {
                Source::External { pair, negate } => {
                    let positive = (dense.sign[pair] > 0.0) != negate;
                    (edge(pair), edge(pair), if positive { 1 } else { 2 }, vec![pair], 0.5f32)
                }
                Source::Intra { index, negate } => {
                    let (a, b) = dense.intra[index];
                    (edge(a / 2), edge(b / 2), if negate { 3 } else { 0 }, vec![a / 2, b / 2], -0.25)
                }
            };
            entries.extend([e.row as u32, e.column as u32, ja, jb, kind]);
            let position = (adjoint_offsets[s] + e.column * front.rows + e.row) as u32;
            for pair in touched {
                terms[pair_base[c] + pair].push([position, ja, jb, kind, coefficient.to_bits()]);
            }
        }
        for contribution in &front.children {
            let child = &qr.fronts[contribution.child];
            children.extend(
                [
                    offsets[slot[c][contribution.child]],
                    child.rows,
                    child.pivots,
                    child.contribution_rows(),
                    child.columns - child.pivots,
                    contribution.row,
                    maps.len(),
                    s,
                ]
                .map(|x| x as u32),
            );
            maps.extend(contribution.columns.iter().map(|&x| x as u32));
        }
    }
    let entries_at = fronts.len();
    let children_at = entries_at + entries.len();
    let maps_at = children_at + children.len();
    for record in children.chunks_mut(CHILD_WORDS) {
        record[6] += maps_at as u32;
    }
    let (pairs, flat) = pair_records(components, &terms);
    let pairs_at = maps_at + maps.len();
    let terms_at = pairs_at + pairs.len();
    let sections = Sections { entries_at, children_at, pairs_at, terms_at, pairs: pairs.len() / 3 };
    ([fronts, entries, children, maps, pairs, flat].concat(), sections)
}

/// Per pair with a graph edge its record (edge, first term, terms), and the terms laid end to end.
fn pair_records(components: &[(&FrontalQr, &DenseKasteleyn)], terms: &[Vec<[u32; 5]>]) -> (Vec<u32>, Vec<u32>) {
    let (mut pairs, mut flat) = (Vec::new(), Vec::new());
    let edges = components.iter().flat_map(|(_, d)| d.pair_edges.iter());
    for (list, e) in terms.iter().zip(edges) {
        if let Some(e) = e {
            pairs.extend([*e as u32, (flat.len() / 5) as u32, list.len() as u32]);
            flat.extend(list.iter().flatten());
        }
    }
    (pairs, flat)
}

/// Offsets of consecutive blocks of `size(s)` words.
fn prefix(count: usize, size: impl Fn(usize) -> usize) -> Vec<usize> {
    (0..count).scan(0, |at, s| Some(std::mem::replace(at, *at + size(s)))).collect()
}

/// The reflection steps of a level cut into dispatches whose invocations each loop at most
/// [`ITERATIONS_PER_PASS`] times, in the order given (`steps`); `start(front)` is the extra work of
/// a front's first step in that order and `restart(front, j)` of each pass's first step.
fn cut(
    fronts: &[&QrFront],
    steps: impl Iterator<Item = usize>,
    start: impl Fn(&QrFront) -> usize,
    restart: impl Fn(&QrFront, usize) -> usize,
    step: impl Fn(&QrFront, usize) -> usize,
    first_step: impl Fn(&QrFront) -> usize,
) -> Vec<Vec<usize>> {
    let mut spent = vec![0; fronts.len()];
    let mut out: Vec<Vec<usize>> = vec![Vec::new()];
    for j in steps {
        let cost = |f: &QrFront, s: usize, fresh: bool| {
            if j >= f.pivots {
                return s;
            }
            let setup = if j == first_step(f) {
                start(f)
            } else if fresh {
                restart(f, j)
            } else {
                0
            };
            s + setup + step(f, j)
        };
        let over =
            fronts.iter().zip(&spent).any(|(f, &s)| cost(f, s, out.last().unwrap().is_empty()) > ITERATIONS_PER_PASS);
        if over && !out.last().unwrap().is_empty() {
            out.push(Vec::new());
            spent.iter_mut().for_each(|s| *s = 0);
        }
        let fresh = out.last().unwrap().is_empty();
        for (s, f) in spent.iter_mut().zip(fronts) {
            *s = cost(f, *s, fresh);
        }
        out.last_mut().unwrap().push(j);
    }
    out.retain(|steps| !steps.is_empty());
    out
}

/// `front_qr`'s passes in workgroups of `group`: a front's first step also assembles it; every pass
/// measures its first column; step `j` costs the owner of the most columns its dot products and
/// updates.
fn passes(fronts: &[&QrFront], group: usize) -> Vec<(usize, usize)> {
    let share = |count: usize| count.div_ceil(group);
    let steps = fronts.iter().map(|f| f.pivots).max().unwrap_or(0);
    let start = |f: &QrFront| {
        let children: usize = f.children.iter().map(|c| 1 + share(c.columns.len() * f.rows)).sum();
        share(f.rows * f.columns) + share(f.entries.len()) + children + 2 * f.rows
    };
    let step = |f: &QrFront, j: usize| share(f.columns - j - 1) * (2 * (f.rows - j) + 2) + 2 * (f.rows - j) + 1;
    let cuts = cut(fronts, 0..steps, start, |f, j| 2 * (f.rows - j), step, |_| 0);
    cuts.iter().map(|c| (c[0], c[c.len() - 1] + 1)).collect()
}

/// `front_qr_adjoint`'s passes in workgroups of `group`, last steps first: a front's last step also
/// seeds its adjoint; step `j` costs two dot products and two updates per owned column and a sum
/// over the later columns per owned row.
fn adjoint_passes(fronts: &[&QrFront], group: usize) -> Vec<(usize, usize)> {
    let share = |count: usize| count.div_ceil(group);
    let steps = fronts.iter().map(|f| f.pivots).max().unwrap_or(0);
    let start = |f: &QrFront| share(f.rows * f.columns) + share(f.pivots) + share(f.rows * f.columns) + 2;
    let step = |f: &QrFront, j: usize| {
        let (rows, later) = (f.rows - j, f.columns - j - 1);
        share(later) * (4 * rows + 4) + later + share(rows) * (later + 2) + 4
    };
    let cuts = cut(fronts, (0..steps).rev(), start, |_, _| 0, step, |f| f.pivots - 1);
    cuts.iter().map(|c| (c[c.len() - 1], c[0] + 1)).collect()
}

/// Arena offsets of the fronts (in level order) when only `log Z` is asked for: a front lives from
/// its level until its parent's, whose assembly reads its block; first fit in a free list merged as
/// blocks return.
fn allocate(components: &[(&FrontalQr, &DenseKasteleyn)], all: &[Placed]) -> Vec<usize> {
    let mut offsets = vec![0; all.len()];
    let mut free: Vec<(usize, usize)> = vec![(0, usize::MAX)];
    // (last level, offset, size) of the blocks in use.
    let mut live: Vec<(usize, usize, usize)> = Vec::new();
    for (s, &(level, c, f)) in all.iter().enumerate() {
        let front = &components[c].0.fronts[f];
        live.retain(|&(last, offset, size)| {
            if last < level {
                give_back(&mut free, offset, size);
            }
            last >= level
        });
        let size = front.rows * front.columns + front.pivots;
        let slot = free.iter().position(|&(_, room)| room >= size).expect("the last block is unbounded");
        let (offset, room) = free[slot];
        if room == size {
            free.remove(slot);
        } else {
            free[slot] = (offset + size, room - size);
        }
        offsets[s] = offset;
        let last = front.parent.map_or(level, |p| components[c].0.fronts[p].level);
        live.push((last, offset, size));
    }
    offsets
}

/// Returns a block to the free list (sorted by offset), merging it with free neighbours.
fn give_back(free: &mut Vec<(usize, usize)>, offset: usize, size: usize) {
    let at = free.partition_point(|&(o, _)| o < offset);
    free.insert(at, (offset, size));
    if at + 1 < free.len() && free[at].0 + free[at].1 == free[at + 1].0 {
        free[at].1 = free[at].1.saturating_add(free[at + 1].1);
        free.remove(at + 1);
    }
    if at > 0 && free[at - 1].0 + free[at - 1].1 == free[at].0 {
        free[at - 1].1 = free[at - 1].1.saturating_add(free[at].1);
        free.remove(at);
    }
}
