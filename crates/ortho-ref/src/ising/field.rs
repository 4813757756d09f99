//! Square grids with a magnetic field (docs/math.md §6.8): the field becomes couplings to one extra
//! apex spin, which makes the model zero-field and non-planar; the exact answer by a transfer sweep
//! over the vertices (narrow grids), and the tractable parts whose combination bounds `log Z`.

use super::Graph;
use crate::error::{Error, Result};
use crate::random::Gaussian;

/// `p(s) ~ exp(sum_i h_i s_i + sum_(ij) J_ij s_i s_j)` on a `height x width` grid; vertex
/// `(r, c)` is `r * width + c`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldGrid {
    pub height: usize,
    pub width: usize,
    pub fields: Vec<f64>,
    /// `J` of `(r, c) -- (r, c + 1)`, row-major `[height, width - 1]`.
    pub horizontal: Vec<f64>,
    /// `J` of `(r, c) -- (r + 1, c)`, row-major `[height - 1, width]`.
    pub vertical: Vec<f64>,
}

/// Widest grid the transfer sweep takes (its state holds one row of spins).
pub const TRANSFER_MAX_WIDTH: usize = 20;

impl FieldGrid {
    /// Fields uniform in `[-field, field]` and couplings uniform in `[-coupling, coupling]`.
    pub fn random(height: usize, width: usize, field: f64, coupling: f64, seed: u64) -> FieldGrid {
        let mut rng = Gaussian::new(seed);
        let mut draw = |n: usize, scale: f64| (0..n).map(|_| scale * (2.0 * rng.uniform() - 1.0)).collect();
        let fields = draw(height * width, field);
        let horizontal = draw(height * (width - 1), coupling);
        let vertical = draw((height - 1) * width, coupling);
        FieldGrid { height, width, fields, horizontal, vertical }
    }

    /// The zero-field model on the grid plus an apex vertex `height * width` joined to every vertex
    /// with coupling `h_i`: its `log Z` is the grid's plus `log 2`, and `E[s_i s_apex] = E[s_i]`.
    /// Edges come as the apex edges (one per vertex), then the horizontal, then the vertical ones.
    pub fn apex_model(&self) -> (Graph, Vec<f64>) {
        let (h, w) = (self.height, self.width);
        let apex = (h * w) as i64;
        let mut edges: Vec<(i64, i64)> = (0..h * w).map(|v| (v as i64, apex)).collect();
        edges.extend((0..h).flat_map(|r| (0..w - 1).map(move |c| ((r * w + c) as i64, (r * w + c + 1) as i64))));
        edges.extend((0..h - 1).flat_map(|r| (0..w).map(move |c| ((r * w + c) as i64, ((r + 1) * w + c) as i64))));
        let graph = Graph::new(Some(h * w + 1), &edges).expect("grid edges are valid");
        let couplings = [&self.fields[..], &self.horizontal, &self.vertical].concat();
        (graph, couplings)
    }

    /// Exact `log Z` and `E[s_i]` per vertex by a forward-backward sweep over the vertices in row-major
    /// order, holding the last `width` spins: O(N 2^width).
    pub fn exact(&self) -> Result<(f64, Vec<f64>)> {
        let (h, w) = (self.height, self.width);
        if w > TRANSFER_MAX_WIDTH {
            return Err(Error::argument(
                "width",
                format!("the transfer sweep takes widths up to {TRANSFER_MAX_WIDTH}, got {w}"),
            ));
        }
        let states = 1usize << w;
        let n = h * w;
        // State bit j: the spin of vertex v - w + 1 + j after vertex v (bit w - 1 is v itself).
        let energy = |v: usize, s: usize, x: usize| {
            let spin = |bit: usize| if bit == 1 { 1.0 } else { -1.0 };
            let (r, c) = (v / w, v % w);
            let mut e = self.fields[v] * spin(x);
            if r > 0 {
                e += self.vertical[(r - 1) * w + c] * spin(s & 1) * spin(x);
            }
            if c > 0 {
                e += self.horizontal[r * (w - 1) + c - 1] * spin((s >> (w - 1)) & 1) * spin(x);
            }
            e
        };
        let mut forward = vec![vec![f64::NEG_INFINITY; states]; n];
        let mut previous = vec![f64::NEG_INFINITY; states];
        previous[0] = 0.0;
        for v in 0..n {
            let next = &mut forward[v];
            for (s, &p) in previous.iter().enumerate() {
                if p == f64::NEG_INFINITY {
                    continue;
                }
                for x in 0..2 {
                    let t = (s >> 1) | (x << (w - 1));
                    next[t] = log_add(next[t], p + energy(v, s, x));
                }
            }
            previous = next.clone();
        }
        let log_z = previous.iter().fold(f64::NEG_INFINITY, |a, &b| log_add(a, b));
        let mut backward = vec![0.0; states];
        let mut magnetisation = vec![0.0; n];
        for v in (0..n).rev() {
            let mut plus = f64::NEG_INFINITY;
            for (t, (&f, &b)) in forward[v].iter().zip(&backward).enumerate() {
                if t >> (w - 1) == 1 {
                    plus = log_add(plus, f + b);
                }
            }
            magnetisation[v] = 2.0 * (plus - log_z).exp() - 1.0;
            if v == 0 {
                break;
            }
            backward = (0..states)
                .map(|s| {
                    (0..2).fold(f64::NEG_INFINITY, |acc, x| {
                        let t = (s >> 1) | (x << (w - 1));
                        log_add(acc, energy(v, s, x) + backward[t])
                    })
                })
                .collect();
        }
        Ok((log_z, magnetisation))
    }

    /// Tractable parts of the apex model (edge indices of [`FieldGrid::apex_model`]): the star of apex
    /// edges, and one strip part per strip position in both orientations. `glued` strips are three
    /// columns wide, planar ones two (docs/math.md §6.8).
    pub fn parts(&self, glued: bool) -> Vec<Vec<usize>> {
        let (h, w) = (self.height, self.width);
        let mut out = vec![(0..h * w).collect::<Vec<usize>>()];
        for transposed in [false, true] {
            let (rows, cols) = if transposed { (w, h) } else { (h, w) };
            let width = if glued { 3 } else { 2 };
            for k in 0..=cols.saturating_sub(width) {
                let strip = Strip { rows, cols, first: k, width, glued };
                out.push(strip.edges().into_iter().filter_map(|e| self.index(e, transposed)).collect());
            }
        }
        out
    }

    /// Index in the apex model of an edge given in (possibly transposed) grid coordinates.
    fn index(&self, edge: StripEdge, transposed: bool) -> Option<usize> {
        let (h, w) = (self.height, self.width);
        let at = |(r, c): (usize, usize)| if transposed { (c, r) } else { (r, c) };
        Some(match edge {
            StripEdge::Apex(p) => {
                let (r, c) = at(p);
                r * w + c
            }
            StripEdge::Pair(a, b) => {
                let ((r1, c1), (r2, c2)) = (at(a), at(b));
                let ((r, c), horizontal) = if r1 == r2 { ((r1, c1.min(c2)), true) } else { ((r1.min(r2), c1), false) };
                if horizontal { h * w + r * (w - 1) + c } else { h * w + h * (w - 1) + r * w + c }
            }
        })
    }
}

/// An edge of a part in strip coordinates (rows x cols, strip across the columns).
enum StripEdge {
    Apex((usize, usize)),
    Pair((usize, usize), (usize, usize)),
}

/// A part around the columns `first .. first + width`: the strip with every vertex joined to the
/// apex, and the grid on each side with the apex joined to that side's boundary. A planar part drops
/// every edge between the strip and the sides; a glued one keeps two on each side in the middle
/// rows, and drops the vertical edges of the strip's last column between its 3-row blocks (the
/// strip is then 3 x 3 blocks plus apex, chained along triangles).
struct Strip {
    rows: usize,
    cols: usize,
    first: usize,
    width: usize,
    glued: bool,
}

impl Strip {
    fn edges(&self) -> Vec<StripEdge> {
        let (rows, cols, first, last) = (self.rows, self.cols, self.first, self.first + self.width - 1);
        let inside = |c: usize| (first..=last).contains(&c);
        let side = |c: usize| {
            if c < first {
                0
            } else if c > last {
                2
            } else {
                1
            }
        };
        // The middle rows joining the sides to the strip, inside one 3-row block.
        let middle = 3 * (rows / 3 / 2) + 1;
        let mut out = Vec::new();
        for r in 0..rows {
            for c in 0..cols {
                let boundary = if c < first {
                    c == 0 || c + 1 == first || r == 0 || r + 1 == rows
                } else if c > last {
                    c == last + 1 || c + 1 == cols || r == 0 || r + 1 == rows
                } else {
                    true
                };
                if boundary {
                    out.push(StripEdge::Apex((r, c)));
                }
                if c + 1 < cols {
                    let link = self.glued && middle + 1 < rows && (r == middle || r == middle + 1);
                    if side(c) == side(c + 1) || link {
                        out.push(StripEdge::Pair((r, c), (r, c + 1)));
                    }
                }
                if r + 1 < rows {
                    let block_gap = self.glued && c == last && r % 3 == 2;
                    if !(inside(c) && block_gap) {
                        out.push(StripEdge::Pair((r, c), (r + 1, c)));
                    }
                }
            }
        }
        out
    }
}

fn log_add(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY {
        return b;
    }
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    hi + (lo - hi).exp().ln_1p()
}
