//! Multifrontal Householder QR of a sparse skew matrix with a perfect pairing: `|det K| = prod |R_jj|`,
//! so `log |Pf K| = (1/2) sum log |R_jj|` (docs/math.md §6.6). It needs no pivoting, so its fronts
//! have the same shapes for every matrix on one pattern; that is what lets the GPU factor a batch of
//! coupling sets front by front (`ortho::ising`, `shaders/ising/front_qr.wgsl`). This is its f64 twin,
//! computing the same fronts in the same order.
//!
//! The columns are ordered by nested dissection of the pattern of `K^T K` (pairs whose columns share a
//! row of `K`); the fronts are the fundamental supernodes of its Cholesky factor. A front holds, column
//! by column, the rows of `K` whose first column (in that order) it eliminates and the blocks its
//! children leave; one Householder reflection per pivot column zeroes it below the diagonal, the first
//! `pivots` rows are rows of `R`, and the rows below them, past the pivot columns, go to the parent.
//! The marginals are the gradient of `log |Pf K|`, by reverse-mode differentiation of those
//! reflections ([`FrontalQr::gradient`]).

use super::pfaffian::{SkewPairs, Tree};

/// Where an entry of `K` comes from: `K[2i][2i+1] = diag[i]` (`External`), `K[a][b] = v` for the
/// `index`-th off-pair entry `(a, b, v)` (`Intra`); `negate` for the transposed position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    External { pair: usize, negate: bool },
    Intra { index: usize, negate: bool },
}

impl Source {
    pub(super) fn value(&self, matrix: &SkewPairs) -> f64 {
        let (v, negate) = match *self {
            Source::External { pair, negate } => (matrix.diag[pair], negate),
            Source::Intra { index, negate } => (matrix.off[index].2, negate),
        };
        if negate { -v } else { v }
    }
}

/// An entry of `K` placed in its front: row and column are the front's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub row: usize,
    pub column: usize,
    pub source: Source,
}

/// A child's block in its parent: starting at parent row `row`, child block column `c` in parent
/// column `columns[c]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contribution {
    pub child: usize,
    pub row: usize,
    pub columns: Vec<usize>,
}

/// One dense front, `rows x columns`, of which the first `pivots` columns are eliminated here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrFront {
    pub rows: usize,
    pub columns: usize,
    pub pivots: usize,
    /// 0 for a leaf, else one more than its highest child: fronts of one level are independent.
    pub level: usize,
    pub parent: Option<usize>,
    pub entries: Vec<Entry>,
    pub children: Vec<Contribution>,
}

impl QrFront {
    /// Rows of the block the parent receives (its columns are the front's past the pivots).
    pub fn contribution_rows(&self) -> usize {
        self.rows - self.pivots
    }
}

/// The fronts of one pattern, children before parents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontalQr {
    pub fronts: Vec<QrFront>,
}

impl FrontalQr {
    /// Analyse a matrix of `pairs` pairs whose off-pair entries sit at `intra` (`(a, b)` in different
    /// pairs, `K[a][b]` and `K[b][a]`).
    pub fn new(pairs: usize, intra: &[(usize, usize)]) -> FrontalQr {
        let nodes = 2 * pairs;
        let mut row_entries: Vec<Vec<(usize, Source)>> = vec![Vec::new(); nodes];
        for i in 0..pairs {
            row_entries[2 * i].push((2 * i + 1, Source::External { pair: i, negate: false }));
            row_entries[2 * i + 1].push((2 * i, Source::External { pair: i, negate: true }));
        }
        for (index, &(a, b)) in intra.iter().enumerate() {
            row_entries[a].push((b, Source::Intra { index, negate: false }));
            row_entries[b].push((a, Source::Intra { index, negate: true }));
        }
        // The pattern of K^T K on pairs: the column pairs of every row form a clique.
        let mut adjacency = vec![Vec::new(); pairs];
        for row in &row_entries {
            for &(x, _) in row {
                adjacency[x / 2].extend(row.iter().map(|&(y, _)| y / 2).filter(|&y| y != x / 2));
            }
        }
        for list in &mut adjacency {
            list.sort_unstable();
            list.dedup();
        }
        let tree = Tree::new(&adjacency);
        let mut originals = vec![Vec::new(); tree.supernodes.len()];
        for (r, row) in row_entries.iter().enumerate() {
            let first = row.iter().map(|&(c, _)| tree.position[c / 2]).min().expect("every row has its pair entry");
            originals[tree.supernode_of[first]].push(r);
        }
        let mut local = vec![usize::MAX; nodes];
        let mut fronts: Vec<QrFront> = Vec::with_capacity(tree.supernodes.len());
        let column_nodes = |s: usize| -> Vec<usize> {
            tree.supernodes[s].rows.iter().flat_map(|&k| [2 * tree.order[k], 2 * tree.order[k] + 1]).collect()
        };
        for (s, node) in tree.supernodes.iter().enumerate() {
            let columns = column_nodes(s);
            for (l, &g) in columns.iter().enumerate() {
                local[g] = l;
            }
            let mut entries = Vec::new();
            for (i, &r) in originals[s].iter().enumerate() {
                entries.extend(row_entries[r].iter().map(|&(c, source)| Entry { row: i, column: local[c], source }));
            }
            let mut rows = originals[s].len();
            let mut children = Vec::with_capacity(node.children.len());
            let mut level = 0;
            for &c in &node.children {
                let child: &QrFront = &fronts[c];
                let passed = column_nodes(c)[child.pivots..].iter().map(|&g| local[g]).collect();
                children.push(Contribution { child: c, row: rows, columns: passed });
                rows += child.contribution_rows();
                level = level.max(child.level + 1);
            }
            let pivots = 2 * node.columns;
            // Column c's partner row holds c, and its columns (a clique of K^T K) lie on one path of
            // the tree, so its first column is in c's subtree: the rows entering a subtree are at
            // least its columns, and a front is left at least as many rows as it has pivots.
            debug_assert!(rows >= pivots, "front {s}: {rows} rows for {pivots} pivots");
            for &g in &columns {
                local[g] = usize::MAX;
            }
            let (width, parent) = (columns.len(), node.parent);
            fronts.push(QrFront { rows, columns: width, pivots, level, parent, entries, children });
        }
        FrontalQr { fronts }
    }

    /// Levels of the tree (the GPU's dispatches).
    pub fn levels(&self) -> usize {
        self.fronts.iter().map(|f| f.level + 1).max().unwrap_or(0)
    }

    /// `log |Pf K|` in f64: `-inf` when `K` is singular.
    pub(super) fn log_abs_pfaffian(&self, matrix: &SkewPairs) -> f64 {
        self.factor(matrix, false).0
    }

    /// `log |Pf K|` and its gradient: `(d log |Pf K| / d K_e) K_e` for every entry of every front
    /// (`entries` order, front by front), by reverse-mode differentiation of the fronts' Householder
    /// steps (docs/math.md §6.6), root first: a front's reverse pass turns the adjoint of its outputs
    /// (`1 / R_jj` on its pivots, its parent's adjoint on the block it passed up) into the adjoint of the
    /// front it assembled.
    pub(super) fn gradient(&self, matrix: &SkewPairs) -> (f64, Vec<Vec<f64>>) {
        let (log_pf, mut fronts) = self.factor(matrix, true);
        let mut bars: Vec<Vec<f64>> = vec![Vec::new(); self.fronts.len()];
        let mut out = vec![Vec::new(); self.fronts.len()];
        for (s, front) in self.fronts.iter().enumerate().rev() {
            let (m, n, p) = (front.rows, front.columns, front.pivots);
            let (f, heads) = &mut fronts[s];
            let mut bar = vec![0.0; m * n];
            for j in 0..p {
                bar[j * m + j] = 1.0 / f[j * m + j];
            }
            if let Some(parent) = front.parent {
                let c = self.fronts[parent].children.iter().find(|c| c.child == s).expect("a child of its parent");
                let mp = self.fronts[parent].rows;
                for (jc, &column) in c.columns.iter().enumerate() {
                    for r in 0..front.contribution_rows() {
                        bar[(p + jc) * m + p + r] = bars[parent][column * mp + c.row + r];
                    }
                }
            }
            triangularise_adjoint(f, heads, &mut bar, m);
            out[s] = front.entries.iter().map(|e| 0.5 * bar[e.column * m + e.row] * f[e.column * m + e.row]).collect();
            bars[s] = bar;
        }
        (log_pf, out)
    }

    /// The fronts factorised in order; with `keep` every front after its steps and the head of each
    /// step's column (`x_0` before the reflection), otherwise none.
    #[allow(clippy::type_complexity)]
    fn factor(&self, matrix: &SkewPairs, keep: bool) -> (f64, Vec<(Vec<f64>, Vec<f64>)>) {
        let mut left: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); self.fronts.len()];
        let mut log_det = 0.0;
        for (s, front) in self.fronts.iter().enumerate() {
            let m = front.rows;
            let mut f = vec![0.0; m * front.columns];
            for e in &front.entries {
                f[e.column * m + e.row] = e.source.value(matrix);
            }
            for c in &front.children {
                let child = &self.fronts[c.child];
                let data = &left[c.child].0;
                for (j, &column) in c.columns.iter().enumerate() {
                    for r in 0..child.contribution_rows() {
                        f[column * m + c.row + r] = data[(child.pivots + j) * child.rows + child.pivots + r];
                    }
                }
                if !keep {
                    left[c.child] = (Vec::new(), Vec::new());
                }
            }
            let mut heads = vec![0.0; front.pivots];
            log_det += triangularise(&mut f, &mut heads, m);
            left[s] = (f, heads);
        }
        (0.5 * log_det, if keep { left } else { Vec::new() })
    }
}

/// Householder reflections of the first `heads.len()` (the pivot) columns of a column-major front of
/// `m` rows; returns `sum log |R_jj|`. Column `j`'s reflection keeps `R_jj` on the diagonal and its
/// vector below it, and `heads[j]` its first entry before it, as `shaders/ising/front_qr.wgsl` does.
fn triangularise(f: &mut [f64], heads: &mut [f64], m: usize) -> f64 {
    let mut log_det = 0.0;
    for j in 0..heads.len() {
        let (done, rest) = f.split_at_mut((j + 1) * m);
        let x = &mut done[j * m + j..];
        // The scaled norm keeps entries up to exp(|J|) from overflowing when squared.
        let scale = x.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        let sigma = if scale > 0.0 { scale * x.iter().map(|v| (v / scale).powi(2)).sum::<f64>().sqrt() } else { 0.0 };
        let head = x[0];
        heads[j] = head;
        // alpha = -sign(head) sigma, so v0 = head - alpha adds magnitudes: v.v / 2 = sigma^2 + |head| sigma.
        let alpha = if head >= 0.0 { -sigma } else { sigma };
        let half_vv = sigma * sigma + head.abs() * sigma;
        x[0] = head - alpha;
        if half_vv > 0.0 {
            for column in rest.chunks_mut(m) {
                let y = &mut column[j..];
                let w = x.iter().zip(y.iter()).map(|(a, b)| a * b).sum::<f64>() / half_vv;
                y.iter_mut().zip(x.iter()).for_each(|(b, a)| *b -= w * a);
            }
        }
        x[0] = alpha;
        log_det += alpha.abs().ln();
    }
    log_det
}

/// The reverse of [`triangularise`]: with `f` the front after it and `bar` the adjoint of its
/// outputs, undo the reflections last first (each is its own inverse), leaving `f` as assembled and
/// `bar` its adjoint. For step `j`, `x` its column, `v = x - alpha e_0`, `h = v.v / 2` and each later
/// column `y' = y - (v.y / h) v`: `v.y = -v.y'`, `ybar = ybar' - (v.ybar' / h) v`,
/// `vbar = -sum (v.y ybar' + v.ybar' y) / h`, `hbar = sum v.y v.ybar' / h^2`; then through
/// `alpha = -sign(x_0) |x|` and `h = |x|^2 + |x_0| |x|` to `xbar`.
fn triangularise_adjoint(f: &mut [f64], heads: &[f64], bar: &mut [f64], m: usize) {
    for j in (0..heads.len()).rev() {
        let (alpha, head) = (f[j * m + j], heads[j]);
        let sigma = alpha.abs();
        let h = sigma * (sigma + head.abs());
        f[j * m + j] = head - alpha;
        let (done, rest) = f.split_at_mut((j + 1) * m);
        let (bar_done, bar_rest) = bar.split_at_mut((j + 1) * m);
        let v = &done[j * m + j..];
        let mut vbar = vec![0.0; m - j];
        let mut hbar = 0.0;
        if h > 0.0 {
            for (y, ybar) in rest.chunks_mut(m).zip(bar_rest.chunks_mut(m)) {
                let (y, ybar) = (&mut y[j..], &mut ybar[j..]);
                let c = -v.iter().zip(y.iter()).map(|(a, b)| a * b).sum::<f64>();
                let d = v.iter().zip(ybar.iter()).map(|(a, b)| a * b).sum::<f64>();
                for i in 0..m - j {
                    y[i] += c / h * v[i];
                    vbar[i] -= (c * ybar[i] + d * y[i]) / h;
                    ybar[i] -= d / h * v[i];
                }
                hbar += c * d / (h * h);
            }
        }
        let abar = bar_done[j * m + j] - vbar[0];
        let sign = if head >= 0.0 { 1.0 } else { -1.0 };
        let sigma_bar = hbar * (2.0 * sigma + head.abs()) - sign * abar;
        let x = &mut done[j * m + j..];
        x[0] = head;
        for i in 0..m - j {
            let through_sigma = if sigma > 0.0 { sigma_bar * x[i] / sigma } else { 0.0 };
            bar_done[j * m + j + i] = if h > 0.0 { vbar[i] + through_sigma } else { bar_done[j * m + j + i] };
        }
        if h > 0.0 {
            bar_done[j * m + j] += hbar * sign * sigma;
        }
    }
}
