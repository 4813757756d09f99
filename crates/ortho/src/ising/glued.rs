//! The GPU path of [`super::IsingBatch`] for graphs glued from planar and small pieces along
//! separators of at most three vertices (docs/math.md §6.5): the dynamic programming of
//! `ortho_ref::ising::Glued` for a batch of coupling sets. Bottom-up, children first, each piece's
//! couplings become one row per (set, separator state) of its contracted graph (`ising/glued_gather`),
//! solved as a planar graph ([`PlanarPlan`]) or, for a small non-planar piece, by enumeration (two
//! products with the `+-1` matrix of its edges' spin products around `ising/enumerated_rows`);
//! `ising/glued_fold` adds the piece's part of `log Z` and its separator terms to the parent's
//! couplings, from the Hadamard combinations of the states' `log Z` ([`SeparatorStates`]; front by
//! front on the frontal path, so that fronts no state changes cancel exactly). The marginals come top-down, each piece weighting its states' conditional marginals by
//! the separator's distribution from its parent's (`ising/glued_marginals`).

use super::{Factorisation, NO_EDGE, PlanarPlan};
use crate::error::Result;
use crate::gemm::{Gemm, Operand, record_gemm};
use crate::kernels;
use crate::pool::PooledBuffer;
use crate::recording::Recording;
use ortho_ref::ising::{Contracted, Glued, Piece, signs, states};
use std::f64::consts::LN_2;

/// The pieces of a glued graph and the shaders' table: per piece edge (every piece's, one row)
/// `(graph edge, merged contracted edge, sign bits per state)`, then each piece's gather columns.
pub(crate) struct GluedPlan {
    table: Vec<u32>,
    /// Edges of all pieces (a set's row of couplings and marginals by piece edge).
    stride: usize,
    pieces: Vec<PiecePlan>,
    marginals: bool,
}

struct PiecePlan {
    /// The piece's fields of the shaders' uniform block (sets, first and edges are the call's).
    params: kernels::IsingGlued,
    solver: Solver,
}

enum Solver {
    Planar(PlanarPlan),
    /// `products[c][j]`: the spin product across contracted edge `j` in configuration `c` (spin 0
    /// up, bit `i` of `c` is spin `i + 1` down).
    Enumerated {
        configs: usize,
        products: Vec<f32>,
    },
}

impl GluedPlan {
    pub fn new(glued: &Glued, marginals: bool, factorisation: Factorisation) -> Result<GluedPlan> {
        let pieces = glued.pieces();
        let mut offsets = Vec::with_capacity(pieces.len());
        let mut stride = 0;
        for piece in pieces {
            offsets.push(stride);
            stride += piece.edges.len();
        }
        let mut table = vec![0u32; 3 * stride];
        let mut plans = Vec::with_capacity(pieces.len());
        for (p, (piece, contracted)) in pieces.iter().zip(glued.contracted()).enumerate() {
            let columns = edge_records(piece, contracted, &mut table[3 * offsets[p]..]);
            let gather_at = append_columns(&mut table, &columns);
            let k = piece.separator.len();
            let [t01, t02, t12] = pair_edges(pieces, piece, &offsets);
            let solver = match &contracted.planar {
                Some(planar) => Solver::Planar(PlanarPlan::new(planar, marginals, factorisation)?),
                None => enumerated(contracted),
            };
            let params = kernels::IsingGlued {
                stride: stride as u32,
                offset: offsets[p] as u32,
                piece_edges: piece.edges.len() as u32,
                states: states(k).len() as u32,
                contracted: contracted.graph.edges.len() as u32,
                gather_at: gather_at as u32,
                separator: k as u32,
                pairs: (k * k.saturating_sub(1) / 2) as u32,
                t01,
                t02,
                t12,
                fixed: if k == 0 { 0.0 } else { LN_2 as f32 },
                configs: match &solver {
                    Solver::Enumerated { configs, .. } => *configs as u32,
                    Solver::Planar(_) => 0,
                },
                ..Default::default()
            };
            plans.push(PiecePlan { params, solver });
        }
        Ok(GluedPlan { table, stride, pieces: plans, marginals })
    }

    /// Floats one coupling set takes in the largest of the call's buffers.
    fn per_set(&self) -> usize {
        let piece = |q: &PiecePlan| {
            let rows = q.params.states as usize;
            rows * (q.params.contracted as usize + 1).max(q.params.configs as usize)
        };
        self.pieces.iter().map(piece).max().unwrap_or(0).max(self.stride).max(1)
    }

    /// Records `log_z[i]` (and with marginals `marginals[i]`) for the `batch` coupling sets of
    /// `couplings` (`[batch, edges]`), as many sets at a time as the largest buffer fits a binding.
    pub fn record(
        &self,
        gpu: &Recording,
        pass: &mut wgpu::ComputePass<'_>,
        (edges, batch): (usize, usize),
        couplings: &wgpu::Buffer,
        (log_z, marginals): (&wgpu::Buffer, Option<&wgpu::Buffer>),
    ) -> Result<()> {
        let marginals = marginals.filter(|_| self.marginals);
        let chunk = ((gpu.binding_limit() / (4 * self.per_set() as u64)) as usize).clamp(1, batch.max(1));
        let table = gpu.upload(bytemuck::cast_slice(&self.table));
        let most = |f: &dyn Fn(&kernels::IsingGlued) -> u32| {
            chunk * self.pieces.iter().map(|q| f(&q.params) as usize).max().unwrap_or(0)
        };
        let rows = most(&|q| q.states);
        let sizes = [
            chunk * self.stride,
            if marginals.is_some() { chunk * self.stride } else { 1 },
            most(&|q| q.states * q.contracted),
            rows,
            rows,
            most(&|q| q.states * q.configs),
        ];
        let [agg, piece_marginals, x, constant, piece_log_z, energies] = gpu.allocate("ising", &sizes)?;
        let solved = Solved { x: &x, piece_log_z: &piece_log_z, energies: &energies };
        let mut conditional = Vec::new();
        let mut products = Vec::new();
        for q in &self.pieces {
            let size = if marginals.is_some() { chunk * (q.params.states * q.params.contracted) as usize } else { 1 };
            conditional.push(gpu.allocate("ising", &size)?);
            products.push(match &q.solver {
                Solver::Enumerated { products, .. } => Some(gpu.upload(bytemuck::cast_slice(products))),
                Solver::Planar(_) => None,
            });
        }
        let zero = kernels::Fill { count: batch as u32, ..Default::default() };
        gpu.dispatch(pass, &kernels::FILL, &zero, &[log_z], gpu.grid(batch as u64, 256)?)?;
        for first in (0..batch).step_by(chunk) {
            let count = chunk.min(batch - first);
            let call = kernels::IsingGlued {
                sets: count as u32,
                first: first as u32,
                edges: edges as u32,
                stride: self.stride as u32,
                ..Default::default()
            };
            let bufs = [couplings, table.buffer(), agg.buffer()];
            gpu.dispatch(pass, &kernels::GLUED_COUPLINGS, &call, &bufs, gpu.grid((count * self.stride) as u64, 256)?)?;
            for (q, piece) in self.pieces.iter().enumerate().rev() {
                let params =
                    kernels::IsingGlued { sets: call.sets, first: call.first, edges: call.edges, ..piece.params };
                let width = (params.contracted + 1) as usize;
                let bufs = [table.buffer(), agg.buffer(), x.buffer(), constant.buffer()];
                let grid = gpu.grid((count * params.states as usize * width) as u64, 256)?;
                gpu.dispatch(pass, &kernels::GLUED_GATHER, &params, &bufs, grid)?;
                let cond = marginals.map(|_| conditional[q].buffer());
                // The solve's own scratch serves the next pieces.
                gpu.reusing(|| piece.solve(gpu, pass, &params, &solved, products[q].as_ref(), cond))?;
                let bufs = [piece_log_z.buffer(), constant.buffer(), log_z, agg.buffer()];
                let grid = gpu.grid((count * (1 + params.pairs as usize)) as u64, 64)?;
                gpu.dispatch(pass, &kernels::GLUED_FOLD, &params, &bufs, grid)?;
            }
            let Some(marginals) = marginals else { continue };
            for (q, piece) in self.pieces.iter().enumerate() {
                let params =
                    kernels::IsingGlued { sets: call.sets, first: call.first, edges: call.edges, ..piece.params };
                let bufs = [table.buffer(), conditional[q].buffer(), piece_marginals.buffer(), marginals];
                let grid = gpu.grid((count * params.piece_edges as usize) as u64, 256)?;
                gpu.dispatch(pass, &kernels::GLUED_MARGINALS, &params, &bufs, grid)?;
            }
        }
        Ok(())
    }
}

/// The buffers a piece's solve reads and writes, shared by every piece (their dispatches run in
/// order).
struct Solved<'a> {
    x: &'a PooledBuffer,
    piece_log_z: &'a PooledBuffer,
    energies: &'a PooledBuffer,
}

impl PiecePlan {
    /// `piece_log_z[row]` (and `conditional[row]`, the contracted graph's marginals) for the rows
    /// `(set, state)` of couplings in `x`.
    fn solve(
        &self,
        gpu: &Recording,
        pass: &mut wgpu::ComputePass<'_>,
        params: &kernels::IsingGlued,
        solved: &Solved,
        products: Option<&PooledBuffer>,
        conditional: Option<&wgpu::Buffer>,
    ) -> Result<()> {
        let rows = (params.sets * params.states) as usize;
        let contracted = params.contracted as usize;
        let states = (params.states > 1).then_some(SeparatorStates(*params));
        match (&self.solver, products) {
            (Solver::Planar(plan), _) => {
                let outputs = (solved.piece_log_z.buffer(), conditional);
                plan.record(gpu, pass, (contracted, rows), solved.x.buffer(), outputs, states.as_ref())
            }
            (Solver::Enumerated { configs, .. }, Some(products)) => {
                let configs = *configs;
                let x = Operand::rows(solved.x.buffer(), rows, contracted);
                let pairs = Operand::rows(products.buffer(), configs, contracted);
                let energies = Operand::rows(solved.energies.buffer(), rows, configs);
                record_gemm(gpu, pass, &Gemm::new(1, rows, configs, contracted), x, pairs.t(), energies)?;
                let bufs = [solved.energies.buffer(), solved.piece_log_z.buffer()];
                gpu.dispatch(pass, &kernels::ENUMERATED_ROWS, params, &bufs, gpu.grid(rows as u64, 1)?)?;
                if let Some(states) = &states {
                    states.record(gpu, pass, solved.piece_log_z.buffer(), params.sets as usize, 1)?;
                }
                if let Some(conditional) = conditional {
                    let out = Operand::rows(conditional, rows, contracted);
                    record_gemm(gpu, pass, &Gemm::new(1, rows, contracted, configs), energies, pairs, out)?;
                }
                Ok(())
            }
            (Solver::Enumerated { .. }, None) => unreachable!("enumerated pieces have their products uploaded"),
        }
    }
}

/// The Hadamard combinations over a piece's separator states of values laid out `[sets, states,
/// width]` (`ising/separator_states`), in place: what the fold takes (docs/math.md §6.6).
pub(crate) struct SeparatorStates(kernels::IsingGlued);

impl SeparatorStates {
    pub fn states(&self) -> usize {
        self.0.states as usize
    }

    pub fn record(
        &self,
        gpu: &Recording,
        pass: &mut wgpu::ComputePass<'_>,
        values: &wgpu::Buffer,
        sets: usize,
        width: usize,
    ) -> Result<()> {
        let params = kernels::IsingGlued { sets: sets as u32, width: width as u32, ..self.0 };
        gpu.dispatch(pass, &kernels::SEPARATOR_STATES, &params, &[values], gpu.grid((sets * width) as u64, 256)?)
    }
}

/// Writes each piece edge's `(graph edge, merged contracted edge, sign bits)` into `records` and
/// returns the piece's gather columns: per contracted edge (and last, the edges inside the
/// separator) its `(piece edge, sign bits)`.
fn edge_records(piece: &Piece, contracted: &Contracted, records: &mut [u32]) -> Vec<Vec<[u32; 2]>> {
    let signs: Vec<Vec<i8>> = states(piece.separator.len()).iter().map(|state| signs(piece, state)).collect();
    let width = contracted.graph.edges.len();
    let mut columns = vec![Vec::new(); width + 1];
    for (i, &(u, v)) in piece.edges.iter().enumerate() {
        let bits = signs.iter().enumerate().filter(|(_, s)| s[u] * s[v] < 0).map(|(s, _)| 1u32 << s).sum::<u32>();
        let merged = contracted.input[i].map(|k| contracted.graph.merged[k]);
        records[3 * i] = piece.origin[i].map_or(NO_EDGE, |e| e as u32);
        records[3 * i + 1] = merged.map_or(NO_EDGE, |m| m as u32);
        records[3 * i + 2] = bits;
        columns[merged.unwrap_or(width)].push([i as u32, bits]);
    }
    columns
}

/// Appends the column starts (table positions of each column's entries, and the end) and the
/// entries; returns where the starts begin.
fn append_columns(table: &mut Vec<u32>, columns: &[Vec<[u32; 2]>]) -> usize {
    let at = table.len();
    let mut next = at + columns.len() + 1;
    for column in columns {
        table.push(next as u32);
        next += 2 * column.len();
    }
    table.push(next as u32);
    table.extend(columns.iter().flatten().flatten());
    at
}

/// Where the separator pairs (0, 1), (0, 2), (1, 2) of `piece` sit in a row of the pieces' edges
/// (their parent's edges); `NO_EDGE` for pairs the separator lacks.
fn pair_edges(pieces: &[Piece], piece: &Piece, offsets: &[usize]) -> [u32; 3] {
    let mut out = [NO_EDGE; 3];
    let Some(q) = piece.parent else { return out };
    let parent = &pieces[q];
    let k = piece.separator.len();
    for (slot, (a, b)) in [(0, 1), (0, 2), (1, 2)].into_iter().enumerate().filter(|&(_, (_, b))| b < k) {
        let local = |l: usize| parent.local(piece.vertices[piece.separator[l]]).expect("separator vertices are shared");
        let e = parent.edge(local(a), local(b)).expect("separator cliques are in both pieces");
        out[slot] = (offsets[q] + e) as u32;
    }
    out
}

/// The enumeration of a small piece's contracted graph: its configurations with spin 0 up.
fn enumerated(contracted: &Contracted) -> Solver {
    let graph = &contracted.graph;
    let configs = 1usize << graph.nodes.saturating_sub(1);
    let mut products = Vec::with_capacity(configs * graph.edges.len());
    for c in 0..configs {
        let spins = c << 1;
        products
            .extend(graph.edges.iter().map(|&(u, v)| if ((spins >> u) ^ (spins >> v)) & 1 == 0 { 1.0 } else { -1.0 }));
    }
    Solver::Enumerated { configs, products }
}
