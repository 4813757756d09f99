//! The dense elimination of one skew-symmetric front of the multifrontal `L D L^T` (docs/math.md §6.3):
//! 2x2 pivots chosen by rook search with a threshold, applied a panel at a time by matrix products.

use super::pfaffian::Breakdown;

/// A 2x2 pivot is taken only when its entry is at least this fraction of the largest entry in its two
/// rows; when no fully summed pair qualifies, the front's remaining nodes go up to the parent, whose
/// front holds more choices (the threshold partial pivoting of multifrontal solvers, on skew 2x2
/// blocks). Each accepted pivot multiplies entries by at most 1 + 2 / THRESHOLD.
const THRESHOLD: f64 = 0.1;

/// Pivots per panel: the rows and columns past a panel are brought up to date once per panel, by one
/// matrix product of rank `2 PANEL`.
const PANEL: usize = 32;

/// Rows the rook search moves through before it settles for the pair it holds.
const ROOK_STEPS: usize = 6;

/// Anchors the rook search tries, spread over the fully summed nodes, before the complete search (12
/// left 6,900 of the 197,000 pivots of a 256 x 256 glass to it; 4 side by side left 24,300).
const ANCHORS: usize = 12;

/// The pivots of the panel being eliminated, not yet applied to the rows after them: the current row
/// `r` is the stored one plus `sum_t d_t (u1_t[r] u0_t - u0_t[r] u1_t)`, with `u0_t, u1_t` the pivot
/// rows divided by `d_t` (full rows, indexed like the front's columns).
struct Panel {
    d: Vec<f64>,
    u0: Vec<Vec<f64>>,
    u1: Vec<Vec<f64>>,
}

impl Panel {
    /// Row `r` brought up to date on columns `from..` (the entries before `from` are stale).
    fn row(&self, front: &[f64], size: usize, r: usize, from: usize) -> Vec<f64> {
        let mut row = front[r * size..(r + 1) * size].to_vec();
        for ((d, u0), u1) in self.d.iter().zip(&self.u0).zip(&self.u1) {
            let (a, b) = (d * u1[r], d * u0[r]);
            if a == 0.0 && b == 0.0 {
                continue;
            }
            for ((x, v0), v1) in row[from..].iter_mut().zip(&u0[from..]).zip(&u1[from..]) {
                *x += a * v0 - b * v1;
            }
        }
        row
    }

    /// Swaps nodes `i` and `j` in the pivot rows.
    fn swap(&mut self, i: usize, j: usize) {
        for u in self.u0.iter_mut().chain(&mut self.u1) {
            u.swap(i, j);
        }
    }

    /// Applies the panel to rows `rows` on columns `columns..size`: one product of rank `2 t`.
    fn apply(&self, front: &mut [f64], size: usize, rows: std::ops::Range<usize>, columns: usize) {
        let (m, n, k) = (rows.len(), size - columns, 2 * self.d.len());
        if m == 0 || n == 0 || k == 0 {
            return;
        }
        let mut left = vec![0.0; m * k];
        let mut right = vec![0.0; k * n];
        for (t, ((d, u0), u1)) in self.d.iter().zip(&self.u0).zip(&self.u1).enumerate() {
            for (i, r) in rows.clone().enumerate() {
                left[i * k + 2 * t] = d * u1[r];
                left[i * k + 2 * t + 1] = -d * u0[r];
            }
            right[2 * t * n..(2 * t + 1) * n].copy_from_slice(&u0[columns..]);
            right[(2 * t + 1) * n..(2 * t + 2) * n].copy_from_slice(&u1[columns..]);
        }
        gemm_add((&left, k), &right, (&mut front[rows.start * size + columns..], size), (m, n, k));
    }
}

/// `c += a b`: `a` m x k with row stride `lda`, `b` k x n row-major, `c` m x n with row stride `ldc`.
pub(super) fn gemm_add(
    (a, lda): (&[f64], usize),
    b: &[f64],
    (c, ldc): (&mut [f64], usize),
    (m, n, k): (usize, usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(lda >= k && ldc >= n && b.len() >= k * n);
    assert!(a.len() >= (m - 1) * lda + k && c.len() >= (m - 1) * ldc + n);
    // SAFETY: the assertions bound every element the product reads and writes.
    unsafe {
        matrixmultiply::dgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            lda as isize,
            1,
            b.as_ptr(),
            n as isize,
            1,
            1.0,
            c.as_mut_ptr(),
            ldc as isize,
            1,
        );
    }
}

/// A pivot pair found by the rook search, with both rows up to date.
struct Pair {
    a: usize,
    b: usize,
    row_a: Vec<f64>,
    row_b: Vec<f64>,
}

/// Rook search among the fully summed nodes `done..fully_summed` from `anchor`: the largest entry of
/// the anchor's row, then of that column's row, until an entry is the largest of both its rows
/// (within the fully summed columns). Away from the root it must also pass the threshold against the
/// largest entries of both rows over every column; `None` when it does not.
fn rook(
    front: &[f64],
    panel: &Panel,
    (size, done, fully_summed): (usize, usize, usize),
    anchor: usize,
    root: bool,
) -> Option<Pair> {
    let largest_in = |row: &[f64], skip: usize| {
        (done..fully_summed)
            .filter(|&c| c != skip)
            .map(|c| (c, row[c].abs()))
            .fold((skip, -1.0), |best, x| if x.1 > best.1 { x } else { best })
    };
    let (mut a, mut row_a) = (anchor, panel.row(front, size, anchor, done));
    let (mut b, _) = largest_in(&row_a, a);
    let mut row_b = panel.row(front, size, b, done);
    for _ in 0..ROOK_STEPS {
        let (c, value) = largest_in(&row_b, b);
        if value <= row_b[a].abs() {
            break;
        }
        (a, row_a, b) = (b, row_b, c);
        row_b = panel.row(front, size, b, done);
    }
    if !root {
        let largest = |row: &[f64]| row[done..].iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let bound = THRESHOLD * largest(&row_a).max(largest(&row_b));
        if !(row_a[b].abs() >= bound && bound > 0.0) {
            return None;
        }
    }
    Some(Pair { a, b, row_a, row_b })
}

/// The fully summed pair whose entry is largest relative to the largest entries of its two rows (over
/// every column), when that ratio passes the threshold: the search a front falls back on when the rook
/// search finds nothing, with no panel pending (the rows are up to date).
fn complete(front: &[f64], (size, done, fully_summed): (usize, usize, usize)) -> Option<Pair> {
    let row = |r: usize| &front[r * size..(r + 1) * size];
    let largest: Vec<f64> =
        (done..fully_summed).map(|r| row(r)[done..].iter().fold(0.0f64, |m, v| m.max(v.abs()))).collect();
    let (mut best, mut a, mut b) = (0.0, done, done);
    for i in done..fully_summed {
        for j in i + 1..fully_summed {
            let scale = largest[i - done].max(largest[j - done]);
            let score = if scale > 0.0 { row(i)[j].abs() / scale } else { 0.0 };
            if score > best {
                (best, a, b) = (score, i, j);
            }
        }
    }
    (best >= THRESHOLD).then(|| Pair { a, b, row_a: row(a).to_vec(), row_b: row(b).to_vec() })
}

/// Swaps nodes `i` and `j` of the front (rows and columns), its node list, the panel's pivot rows
/// and the rows held up to date.
fn swap(
    front: &mut [f64],
    list: &mut [usize],
    size: usize,
    (i, j): (usize, usize),
    panel: &mut Panel,
    held: &mut Pair,
) {
    if i == j {
        return;
    }
    list.swap(i, j);
    for r in 0..size {
        front.swap(r * size + i, r * size + j);
    }
    for c in 0..size {
        front.swap(i * size + c, j * size + c);
    }
    panel.swap(i, j);
    held.row_a.swap(i, j);
    held.row_b.swap(i, j);
}

/// Eliminates a front's pivots, threshold pivoting among its `fully_summed` first nodes (§6.3), and
/// returns how many nodes it eliminated. Pivots are taken a panel at a time: the pivot search reads
/// the rows it needs brought up to date by the panel's earlier pivots, and the fully summed rows
/// past the panel are updated once per panel by a matrix product. The block past the fully summed
/// rows, most of a large front, is updated once at the end by one product of every pivot row
/// (its rows' entries are those columns' by skew symmetry): `F[r][c] += sum_t d_t (u1_t[r] u0_t[c]
/// - u0_t[r] u1_t[c])`. Eliminated columns are filled from the pivot rows, `F[r][c] = -F[c][r]`.
pub(super) fn eliminate_front(
    front: &mut [f64],
    list: &mut [usize],
    (size, fully_summed): (usize, usize),
    root: bool,
    pivots: &mut Vec<f64>,
) -> Result<usize, Breakdown> {
    let trailing = size - fully_summed;
    // Per pivot, the trailing parts of u0 then u1.
    let mut u: Vec<f64> = Vec::new();
    let mut taken: Vec<f64> = Vec::new();
    let mut done = 0;
    let mut delayed = false;
    while done < fully_summed && !delayed {
        let start = done;
        let mut panel = Panel { d: Vec::new(), u0: Vec::new(), u1: Vec::new() };
        while done < fully_summed && panel.d.len() < PANEL {
            let anchors = if root { 1 } else { ANCHORS };
            let step = ((fully_summed - done) / anchors).max(1);
            let found = (done..fully_summed)
                .step_by(step)
                .take(anchors)
                .find_map(|anchor| rook(front, &panel, (size, done, fully_summed), anchor, root));
            // Failing rook search, the complete one; with a panel pending, once it has been applied.
            let found = match found {
                None if panel.d.is_empty() => complete(front, (size, done, fully_summed)),
                found => found,
            };
            let Some(mut pair) = found else {
                delayed = panel.d.is_empty();
                break;
            };
            let (a, b) = (pair.a, pair.b);
            swap(front, list, size, (done, a), &mut panel, &mut pair);
            // Node b moved to a's place if it stood at done.
            swap(front, list, size, (done + 1, if b == done { a } else { b }), &mut panel, &mut pair);
            let d = 0.5 * (pair.row_a[done + 1] - pair.row_b[done]);
            if !(d.is_finite() && d != 0.0) {
                return Err(Breakdown { pair: list[done] / 2, pivot: d });
            }
            for (row, current) in [(done, &pair.row_a), (done + 1, &pair.row_b)] {
                front[row * size + done..(row + 1) * size].copy_from_slice(&current[done..]);
            }
            let (u0, u1): (Vec<f64>, Vec<f64>) =
                pair.row_a.iter().zip(&pair.row_b).map(|(x, y)| (x / d, y / d)).unzip();
            u.extend_from_slice(&u0[fully_summed..]);
            u.extend_from_slice(&u1[fully_summed..]);
            panel.d.push(d);
            panel.u0.push(u0);
            panel.u1.push(u1);
            taken.push(d);
            pivots.push(d);
            done += 2;
        }
        panel.apply(front, size, done..fully_summed, done);
        // The panel's columns below its pivot rows (the factor's entries), by skew symmetry.
        for r in start..fully_summed {
            for c in start..done.min(r) {
                front[r * size + c] = -front[c * size + r];
            }
        }
    }
    if trailing > 0 && !taken.is_empty() {
        let k = 2 * taken.len();
        let mut left = vec![0.0; trailing * k];
        for (t, &d) in taken.iter().enumerate() {
            let (u0, u1) = u[2 * t * trailing..(2 * t + 2) * trailing].split_at(trailing);
            for r in 0..trailing {
                left[r * k + 2 * t] = d * u1[r];
                left[r * k + 2 * t + 1] = -d * u0[r];
            }
        }
        let block = &mut front[fully_summed * size + fully_summed..];
        gemm_add((&left, k), &u, (block, size), (trailing, trailing, k));
        for r in fully_summed..size {
            for c in 0..fully_summed {
                front[r * size + c] = -front[c * size + r];
            }
        }
    }
    Ok(done)
}
