//! Sparse skew-symmetric factorisation `K = L D L^T` with 2x2 pivots, the Pfaffian from it, and the
//! diagonal blocks of `K^-1` by selected inversion (docs/math.md §6.3).
//!
//! `K` has order 2n and its nodes come in pairs `(2i, 2i+1)` joined by a nonzero entry (for the
//! Kasteleyn matrix: the external edges, a perfect matching). Eliminating a whole pair at a time
//! pivots on the block `[[0, d], [-d, 0]]`, so `Pf K = prod d` up to sign and `|Pf K| = prod |d|`.
//! The pair graph is ordered by nested dissection and factorised multifrontally: each supernode
//! assembles a dense front, eliminates its pivots and hands the skew Schur complement to its parent.

use super::dissection::nested_dissection;
use super::skew_front::{self, eliminate_front};

/// A sparse skew-symmetric matrix of order 2n with a perfect pairing. `K[2i][2i+1] = diag[i]`, and
/// `K[a][b] = v`, `K[b][a] = -v` for each `(a, b, v)` in `off` (a and b in different pairs; entries
/// at the same position add up).
pub struct SkewPairs<'a> {
    pub diag: &'a [f64],
    pub off: &'a [(usize, usize, f64)],
}

/// The elimination a pivot block could not take: zero or non-finite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Breakdown {
    pub pair: usize,
    pub pivot: f64,
}

pub(super) struct Supernode {
    /// Pivot pairs, then the structure below them (new numbering, ascending).
    pub rows: Vec<usize>,
    pub columns: usize,
    pub parent: Option<usize>,
    pub children: Vec<usize>,
    /// Old pairs whose diagonal blocks, and indices of `off` entries, this front assembles.
    diagonal: Vec<usize>,
    entries: Vec<usize>,
}

/// The ordering, elimination tree and fronts of one sparsity pattern, shared by every matrix on it.
pub struct Symbolic {
    pairs: usize,
    /// `order[k]` is the old pair eliminated k-th.
    order: Vec<usize>,
    supernodes: Vec<Supernode>,
}

/// A nested dissection ordering of a pattern, its elimination tree and its fundamental supernodes
/// (children before parents), the analysis shared by the skew `L D L^T` and the frontal QR.
pub(super) struct Tree {
    /// `order[k]` is the old index eliminated k-th; `position` is its inverse.
    pub order: Vec<usize>,
    pub position: Vec<usize>,
    pub supernodes: Vec<Supernode>,
    /// The supernode eliminating each position.
    pub supernode_of: Vec<usize>,
}

impl Tree {
    pub fn new(adjacency: &[Vec<usize>]) -> Tree {
        let n = adjacency.len();
        let order = nested_dissection(adjacency);
        let mut position = vec![0; n];
        for (k, &old) in order.iter().enumerate() {
            position[old] = k;
        }
        let neighbours: Vec<Vec<usize>> = order
            .iter()
            .map(|&old| {
                let mut list: Vec<usize> = adjacency[old].iter().map(|&w| position[w]).collect();
                list.sort_unstable();
                list
            })
            .collect();
        let parent = elimination_tree(&neighbours);
        let mut supernodes = fronts(&neighbours, &parent);
        let mut supernode_of = vec![0; n];
        for (s, node) in supernodes.iter().enumerate() {
            for &column in &node.rows[..node.columns] {
                supernode_of[column] = s;
            }
        }
        for s in 0..supernodes.len() {
            let last = supernodes[s].rows[supernodes[s].columns - 1];
            if parent[last] != usize::MAX {
                let p = supernode_of[parent[last]];
                supernodes[s].parent = Some(p);
                supernodes[p].children.push(s);
            }
        }
        Tree { order, position, supernodes, supernode_of }
    }
}

/// One front after elimination: its nodes (old numbering) in the order the eliminations left them,
/// the first `eliminated` of which were eliminated here, pivot `t` on nodes `2t, 2t + 1`.
struct Front {
    nodes: Vec<usize>,
    eliminated: usize,
    /// The front's first `eliminated` columns after elimination, row-major.
    panel: Vec<f64>,
}

/// The numeric factorisation: pivots and, when kept, each front's eliminated columns for inversion.
pub struct Factor {
    /// `d` of each pivot, in elimination order.
    pub pivots: Vec<f64>,
    fronts: Option<Vec<Front>>,
}

impl Factor {
    pub fn log_abs_pfaffian(&self) -> f64 {
        self.pivots.iter().map(|d| d.abs().ln()).sum()
    }
}

impl Symbolic {
    /// Analyse the pattern given by the pair adjacency (symmetric, without self-loops) and the
    /// scalar entries' positions.
    pub fn new(adjacency: &[Vec<usize>], off: &[(usize, usize, f64)]) -> Self {
        let n = adjacency.len();
        let Tree { order, position, mut supernodes, supernode_of } = Tree::new(adjacency);
        for old in 0..n {
            supernodes[supernode_of[position[old]]].diagonal.push(old);
        }
        for (k, &(a, b, _)) in off.iter().enumerate() {
            supernodes[supernode_of[position[a / 2].min(position[b / 2])]].entries.push(k);
        }
        Symbolic { pairs: n, order, supernodes }
    }

    /// Scalars held by the panels when every pivot is taken where the ordering puts it: the
    /// factorisation's memory.
    pub fn factor_size(&self) -> usize {
        self.supernodes.iter().map(|s| 4 * s.rows.len() * s.columns).sum()
    }

    /// Factorise `matrix`; `keep` stores the panels that `inverse_diagonal` needs.
    pub fn factor(&self, matrix: &SkewPairs, keep: bool) -> Result<Factor, Breakdown> {
        self.run(matrix, keep, false).map(|(factor, _)| factor)
    }

    /// The root front before its own eliminations: the Schur complement of `matrix` onto the root's
    /// nodes (old numbering; its own pairs and any nodes delayed to it), row-major. Its inverse is
    /// `K^-1` restricted to those nodes.
    pub fn root_front(&self, matrix: &SkewPairs) -> Result<(Vec<usize>, Vec<f64>), Breakdown> {
        let (_, root) = self.run(matrix, false, true)?;
        Ok(root.expect("a connected pattern has a root front"))
    }

    #[allow(clippy::type_complexity)]
    fn run(
        &self,
        matrix: &SkewPairs,
        keep: bool,
        stop_at_root: bool,
    ) -> Result<(Factor, Option<(Vec<usize>, Vec<f64>)>), Breakdown> {
        let nodes = 2 * self.pairs;
        let mut local = vec![usize::MAX; nodes];
        let mut pivots = Vec::with_capacity(self.pairs);
        let mut kept = keep.then(Vec::new);
        // Each front's Schur complement and its nodes (delayed ones first), until the parent takes it.
        let mut updates: Vec<Option<(Vec<usize>, Vec<f64>)>> = (0..self.supernodes.len()).map(|_| None).collect();
        for (s, node) in self.supernodes.iter().enumerate() {
            let mut list: Vec<usize> = Vec::new();
            for &c in &node.children {
                let (child_nodes, _) = updates[c].as_ref().expect("children come first");
                let own = 2 * self.supernodes[c].rows.len() - 2 * self.supernodes[c].columns;
                list.extend_from_slice(&child_nodes[..child_nodes.len() - own]);
            }
            let fully_summed = list.len() + 2 * node.columns;
            for &pair in &node.rows {
                let old = self.order[pair];
                list.extend([2 * old, 2 * old + 1]);
            }
            let size = list.len();
            for (l, &g) in list.iter().enumerate() {
                local[g] = l;
            }
            let mut front = vec![0.0; size * size];
            for &old in &node.diagonal {
                let (a, b) = (local[2 * old], local[2 * old + 1]);
                front[a * size + b] += matrix.diag[old];
                front[b * size + a] -= matrix.diag[old];
            }
            for &k in &node.entries {
                let (a, b, v) = matrix.off[k];
                let (la, lb) = (local[a], local[b]);
                front[la * size + lb] += v;
                front[lb * size + la] -= v;
            }
            for &c in &node.children {
                let (child_nodes, update) = updates[c].take().unwrap();
                let map: Vec<usize> = child_nodes.iter().map(|&g| local[g]).collect();
                let m = map.len();
                for (i, &fi) in map.iter().enumerate() {
                    for (j, &fj) in map.iter().enumerate() {
                        front[fi * size + fj] += update[i * m + j];
                    }
                }
            }
            let root = node.parent.is_none();
            if root && stop_at_root {
                return Ok((Factor { pivots, fronts: kept }, Some((list, front))));
            }
            let done = eliminate_front(&mut front, &mut list, (size, fully_summed), root, &mut pivots)?;
            for &g in &list {
                local[g] = usize::MAX;
            }
            if let Some(kept) = kept.as_mut() {
                let panel = front.chunks(size).flat_map(|row| row[..done].iter().copied()).collect();
                kept.push(Front { nodes: list.clone(), eliminated: done, panel });
            }
            if !root {
                let update = front.chunks(size).skip(done).flat_map(|row| row[done..].iter().copied()).collect();
                updates[s] = Some((list[done..].to_vec(), update));
            }
        }
        Ok((Factor { pivots, fronts: kept }, None))
    }

    /// `z[i] = (K^-1)[2i][2i+1]` for every old pair `i` (each diagonal block of the skew `K^-1` is
    /// `[[0, z], [-z, 0]]`). Needs a factor made with `keep`.
    pub fn inverse_diagonal(&self, factor: &Factor) -> Vec<f64> {
        let fronts = factor.fronts.as_ref().expect("factor kept its panels");
        let mut z = vec![0.0; self.pairs];
        let count = self.supernodes.len();
        let mut local = vec![usize::MAX; 2 * self.pairs];
        let mut inverses: Vec<Option<Vec<f64>>> = (0..count).map(|_| None).collect();
        let mut first_pivot = Vec::with_capacity(count);
        let mut k = 0;
        for front in fronts {
            first_pivot.push(k);
            k += front.eliminated / 2;
        }
        for s in (0..count).rev() {
            let front = &fronts[s];
            let size = front.nodes.len();
            let done = front.eliminated;
            let mut inverse = vec![0.0; size * size];
            if let Some(p) = self.supernodes[s].parent {
                let parent = &fronts[p];
                for (l, &g) in parent.nodes.iter().enumerate() {
                    local[g] = l;
                }
                let from = inverses[p].as_ref().expect("parents come first");
                let map: Vec<usize> = front.nodes[done..].iter().map(|&g| local[g]).collect();
                for (i, &fi) in map.iter().enumerate() {
                    for (j, &fj) in map.iter().enumerate() {
                        inverse[(done + i) * size + done + j] = from[fi * parent.nodes.len() + fj];
                    }
                }
                for &g in &parent.nodes {
                    local[g] = usize::MAX;
                }
            }
            let pivots = &factor.pivots[first_pivot[s]..first_pivot[s] + done / 2];
            invert_pivots(&mut inverse, size, &front.panel, pivots);
            for (l, &g) in front.nodes.iter().enumerate() {
                local[g] = l;
            }
            for &g in &front.nodes[..done] {
                let (a, b) = (local[g & !1], local[g | 1]);
                if a != usize::MAX && b != usize::MAX {
                    z[g / 2] = inverse[a * size + b];
                }
            }
            for &g in &front.nodes {
                local[g] = usize::MAX;
            }
            if self.supernodes[s].children.iter().any(|&c| fronts[c].nodes.len() > fronts[c].eliminated) {
                inverses[s] = Some(inverse);
            }
            if let Some(p) = self.supernodes[s].parent
                && self.supernodes[p].children.first() == Some(&s)
            {
                inverses[p] = None;
            }
        }
        z
    }
}

/// Pivots per block of the selected inversion: the sums over the nodes past a block are one matrix
/// product per block.
const INVERT_BLOCK: usize = 32;

/// Selected inversion of a front's pivots, last first, with the inverse already known on the nodes
/// after them (`Z[r][t] = -sum_k Z[r][k] L[k][t]`, `Z[t][t] = D^-1 + Z[.][t]^T L[.][t]` with
/// `L[k][t] = x_k D_t^-1`, `x_k` the eliminated columns, the panel). A block of pivots at a time: for
/// rows and columns `k` past the block the sums are `W = Z[S][S] L[S][block]`, one product.
fn invert_pivots(inverse: &mut [f64], size: usize, panel: &[f64], pivots: &[f64]) {
    let width = 2 * pivots.len();
    // x D^-1 with D^-1 = [[0, -1/d], [1/d, 0]].
    let l_of = |k: usize, t: usize| [panel[k * width + 2 * t + 1] / pivots[t], -panel[k * width + 2 * t] / pivots[t]];
    let mut last = pivots.len();
    while last > 0 {
        let first = last.saturating_sub(INVERT_BLOCK);
        let (later, b) = (2 * last, 2 * (last - first));
        let s = size - later;
        let mut ls = vec![0.0; s * b];
        for k in later..size {
            for t in first..last {
                let l = l_of(k, t);
                ls[(k - later) * b + 2 * (t - first)..][..2].copy_from_slice(&l);
            }
        }
        let mut w = vec![0.0; s * b];
        if s > 0 {
            skew_front::gemm_add((&inverse[later * size + later..], size), &ls, (&mut w, b), (s, b, s));
        }
        for t in (first..last).rev() {
            let (r0, r1) = (2 * t, 2 * t + 1);
            let start = r1 + 1;
            let l: Vec<[f64; 2]> = (start..size).map(|k| l_of(k, t)).collect();
            let mut column = vec![[0.0; 2]; size - start];
            for (r, out) in (start..size).zip(column.iter_mut()) {
                // Rows past the block take the columns past it from W.
                let end = if r >= later { later } else { size };
                let row = &inverse[r * size + start..r * size + end];
                for (z, lk) in row.iter().zip(&l) {
                    out[0] -= z * lk[0];
                    out[1] -= z * lk[1];
                }
                if r >= later {
                    let wr = &w[(r - later) * b + 2 * (t - first)..];
                    out[0] -= wr[0];
                    out[1] -= wr[1];
                }
            }
            let d = pivots[t];
            let mut block = [[0.0, -1.0 / d], [1.0 / d, 0.0]];
            for (c, lk) in column.iter().zip(&l) {
                for i in 0..2 {
                    for j in 0..2 {
                        block[i][j] += c[i] * lk[j];
                    }
                }
            }
            let zt = 0.5 * (block[0][1] - block[1][0]);
            for (r, c) in (start..size).zip(&column) {
                inverse[r * size + r0] = c[0];
                inverse[r * size + r1] = c[1];
                inverse[r0 * size + r] = -c[0];
                inverse[r1 * size + r] = -c[1];
            }
            inverse[r0 * size + r1] = zt;
            inverse[r1 * size + r0] = -zt;
        }
        last = first;
    }
}

/// Liu's elimination tree of a symmetric pattern (neighbours in the new numbering).
fn elimination_tree(neighbours: &[Vec<usize>]) -> Vec<usize> {
    let n = neighbours.len();
    let mut parent = vec![usize::MAX; n];
    let mut ancestor = vec![usize::MAX; n];
    for i in 0..n {
        for &k in neighbours[i].iter().take_while(|&&k| k < i) {
            let mut r = k;
            while ancestor[r] != usize::MAX && ancestor[r] != i {
                let next = ancestor[r];
                ancestor[r] = i;
                r = next;
            }
            if ancestor[r] == usize::MAX {
                ancestor[r] = i;
                parent[r] = i;
            }
        }
    }
    parent
}

/// Column structures of `L`, grouped into fundamental supernodes (a column joins its predecessor's
/// supernode when it is that column's only child's parent and their structures nest exactly).
fn fronts(neighbours: &[Vec<usize>], parent: &[usize]) -> Vec<Supernode> {
    let n = neighbours.len();
    let mut children = vec![Vec::new(); n];
    for (j, &p) in parent.iter().enumerate() {
        if p != usize::MAX {
            children[p].push(j);
        }
    }
    let mut structure: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut mark = vec![usize::MAX; n];
    let mut supernodes: Vec<Supernode> = Vec::new();
    let mut columns: Vec<usize> = Vec::new();
    for j in 0..n {
        let mut rows: Vec<usize> = Vec::new();
        mark[j] = j;
        for &k in neighbours[j].iter().filter(|&&k| k > j) {
            if mark[k] != j {
                mark[k] = j;
                rows.push(k);
            }
        }
        for &c in &children[j] {
            for &k in &structure[c] {
                if mark[k] != j {
                    mark[k] = j;
                    rows.push(k);
                }
            }
        }
        rows.sort_unstable();
        let merges = j > 0 && parent[j - 1] == j && children[j].len() == 1 && structure[j - 1].len() == rows.len() + 1;
        if !merges && !columns.is_empty() {
            supernodes.push(close(&mut columns, &structure));
        }
        // A column's structure is read only by its parent and by `close`, both done now.
        for &c in &children[j] {
            structure[c] = Vec::new();
        }
        structure[j] = rows;
        columns.push(j);
    }
    if !columns.is_empty() {
        supernodes.push(close(&mut columns, &structure));
    }
    supernodes
}

fn close(columns: &mut Vec<usize>, structure: &[Vec<usize>]) -> Supernode {
    let last = *columns.last().unwrap();
    let mut rows = std::mem::take(columns);
    let count = rows.len();
    rows.extend_from_slice(&structure[last]);
    Supernode { rows, columns: count, parent: None, children: Vec::new(), diagonal: Vec::new(), entries: Vec::new() }
}
