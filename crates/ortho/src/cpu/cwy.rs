//! CWY on the CPU fallback (docs/math.md §2): `Q` and `Omega`, `Q X` without Q, and the gradients
//! of both, each batch's columns first made unit as on the GPU, every product through
//! `matrixmultiply`.

use super::{View, gemm};
use ortho_ref::Tensor;

/// `Q = I - U S^(-1) U^T` (`[.., N, N]`), or with `stiefel` its first L columns
/// `Omega = [I_L; 0] - U S^(-1) U_1^T` (`[.., N, L]`), `S = striu(U^T U) + diag(U^T U) / 2`
/// (docs/math.md §2), for `u: [N, L]` or `[batch, N, L]` already checked (no zero column), its columns
/// first made unit as on the GPU. `S^(-1)` is never formed: a blocked triangular solve gives
/// `S^(-1) U^T`.
pub(crate) fn cwy(u: &Tensor<f32>, stiefel: bool) -> ortho_ref::Result<Tensor<f32>> {
    let (b, n, l) = match *u.shape() {
        [n, l] => (1, n, l),
        [b, n, l] => (b, n, l),
        _ => return Err(ortho_ref::Error::shape("u", "[N, L] or [batch, N, L]", u.shape())),
    };
    let cols = if stiefel { l } else { n };
    let mut out = vec![0.0; b * n * cols];
    for (z, q) in out.chunks_mut(n * cols).enumerate() {
        let (uz, _) = &unit_columns(&u.data()[z * n * l..(z + 1) * n * l], n, l);
        let s = s_matrix(uz, n, l);
        // Y = S^(-1) U^T, or S^(-1) U_1^T: the first `cols` columns of U^T.
        let mut y = vec![0.0; l * cols];
        for (i, row) in y.chunks_mut(cols).enumerate() {
            row.iter_mut().enumerate().for_each(|(j, x)| *x = uz[j * l + i]);
        }
        solve_upper(&s, l, &mut y, cols);
        for i in 0..cols {
            q[i * cols + i] = 1.0;
        }
        gemm((n, l, cols), -1.0, View::new(uz, l), View::new(&y, cols), 1.0, q);
    }
    let mut shape = u.shape()[..u.shape().len() - 2].to_vec();
    shape.extend([n, cols]);
    Tensor::new(&shape, out)
}

/// The columns of `u: [n, l]` divided by their lengths, and the lengths, each taken as
/// `max|u_i| * |u / max|u_i||` so that no square overflows or underflows (docs/math.md §2.3).
fn unit_columns(u: &[f32], n: usize, l: usize) -> (Vec<f32>, Vec<f32>) {
    let mut top = vec![0.0f32; l];
    for row in u.chunks(l).take(n) {
        top.iter_mut().zip(row).for_each(|(t, x)| *t = t.max(x.abs()));
    }
    let mut sums = vec![0.0f32; l];
    for row in u.chunks(l).take(n) {
        sums.iter_mut().zip(row).zip(&top).for_each(|((s, x), t)| *s += (x / t).powi(2));
    }
    let norms: Vec<f32> = top.iter().zip(&sums).map(|(t, s)| t * s.sqrt()).collect();
    let mut out = u[..n * l].to_vec();
    for row in out.chunks_mut(l) {
        row.iter_mut().zip(&norms).for_each(|(x, norm)| *x /= norm);
    }
    (out, norms)
}

/// Rows of a triangular solve's diagonal blocks; the rest of the work is products.
const SOLVE_BLOCK: usize = 64;

/// `y <- S^(-1) y` for upper-triangular `s: [l, l]` and `y: [l, cols]`, bottom block first: each
/// block of rows loses the product of its part of S with the rows already solved, then is solved by
/// back substitution.
fn solve_upper(s: &[f32], l: usize, y: &mut [f32], cols: usize) {
    for r0 in (0..l).step_by(SOLVE_BLOCK).rev() {
        let r1 = (r0 + SOLVE_BLOCK).min(l);
        let (head, solved) = y.split_at_mut(r1 * cols);
        let block = &mut head[r0 * cols..];
        if r1 < l {
            gemm((r1 - r0, l - r1, cols), -1.0, View::new(&s[r0 * l + r1..], l), View::new(solved, cols), 1.0, block);
        }
        for i in (0..r1 - r0).rev() {
            let (row, below) = block.split_at_mut((i + 1) * cols);
            let row = &mut row[i * cols..];
            for k in i + 1..r1 - r0 {
                let f = s[(r0 + i) * l + r0 + k];
                row.iter_mut().zip(&below[(k - i - 1) * cols..(k - i) * cols]).for_each(|(x, y)| *x -= f * y);
            }
            let inverse = 1.0 / s[(r0 + i) * l + r0 + i];
            row.iter_mut().for_each(|x| *x *= inverse);
        }
    }
}

/// `S = striu(U^T U) + diag(U^T U) / 2` of unit columns `u: [n, l]`, a block of columns at a time
/// (rows up to the block's last).
fn s_matrix(u: &[f32], n: usize, l: usize) -> Vec<f32> {
    let mut s = vec![0.0; l * l];
    let mut block = vec![0.0; l * SOLVE_BLOCK];
    for r0 in (0..l).step_by(SOLVE_BLOCK) {
        let r1 = (r0 + SOLVE_BLOCK).min(l);
        let w = r1 - r0;
        gemm((r1, n, w), 1.0, View::new(u, l).t(), View::new(&u[r0..], l), 0.0, &mut block[..r1 * w]);
        for (i, row) in block.chunks(w).take(r1).enumerate() {
            s[i * l + r0..i * l + r1].copy_from_slice(row);
        }
    }
    for i in 0..l {
        s[i * l..i * l + i].fill(0.0);
        s[i * l + i] /= 2.0;
    }
    s
}

/// One batch's unit columns `[n, l]`, their lengths and `W = S^(-1)` (upper triangular, `[l, l]`).
struct Factored {
    unit: Vec<f32>,
    norms: Vec<f32>,
    w: Vec<f32>,
}

impl Factored {
    fn new(u: &[f32], n: usize, l: usize) -> Self {
        let (unit, norms) = unit_columns(u, n, l);
        let mut w: Vec<f32> = (0..l * l).map(|e| if e / l == e % l { 1.0 } else { 0.0 }).collect();
        solve_upper(&s_matrix(&unit, n, l), l, &mut w, l);
        Factored { unit, norms, w }
    }

    /// `W` or (`transpose`) `W^T` as a product operand.
    fn w(&self, l: usize, transpose: bool) -> View<'_> {
        let w = View::new(&self.w, l);
        if transpose { w.t() } else { w }
    }
}

/// `(batch, N, L)` of `u` and the columns `K` of `x` (`[N, K]` or `[batch, N, K]`), shapes checked.
fn apply_sizes(u: &Tensor<f32>, x: &Tensor<f32>) -> (usize, usize, usize, usize) {
    let (n, l) = (u.shape()[u.shape().len() - 2], u.shape()[u.shape().len() - 1]);
    (u.len() / (n * l), n, l, *x.shape().last().unwrap_or(&0))
}

/// `Q X = X - U W (U^T X)`, or `Q^T X` with `W^T` (`transpose`), for shapes already checked.
pub(crate) fn cwy_apply(u: &Tensor<f32>, x: &Tensor<f32>, transpose: bool) -> ortho_ref::Result<Tensor<f32>> {
    let (_, n, l, k) = apply_sizes(u, x);
    let mut out = x.data().to_vec();
    let (mut utx, mut wutx) = (vec![0.0; l * k], vec![0.0; l * k]);
    for (z, y) in out.chunks_mut(n * k).enumerate() {
        let f = Factored::new(&u.data()[z * n * l..(z + 1) * n * l], n, l);
        let xz = &x.data()[z * n * k..(z + 1) * n * k];
        gemm((l, n, k), 1.0, View::new(&f.unit, l).t(), View::new(xz, k), 0.0, &mut utx);
        gemm((l, l, k), 1.0, f.w(l, transpose), View::new(&utx, k), 0.0, &mut wutx);
        gemm((n, l, k), -1.0, View::new(&f.unit, l), View::new(&wutx, k), 1.0, y);
    }
    Tensor::new(x.shape(), out)
}

/// `dloss/dU` for `Q = cwy(U)` (or `Omega`, `stiefel`: `G = [G_Omega, 0]`) given `G`, shapes
/// already checked.
pub(crate) fn cwy_backward(u: &Tensor<f32>, g: &Tensor<f32>, stiefel: bool) -> ortho_ref::Result<Tensor<f32>> {
    let (n, l) = (u.shape()[u.shape().len() - 2], u.shape()[u.shape().len() - 1]);
    let cols = if stiefel { l } else { n };
    let mut du = vec![0.0; u.len()];
    let mut gz = vec![0.0; n * n];
    let (mut gu, mut gtu, mut utgu) = (vec![0.0; n * l], vec![0.0; n * l], vec![0.0; l * l]);
    for (z, du) in du.chunks_mut(n * l).enumerate() {
        let f = Factored::new(&u.data()[z * n * l..(z + 1) * n * l], n, l);
        for (row, grad) in gz.chunks_mut(n).zip(g.data()[z * n * cols..(z + 1) * n * cols].chunks(cols)) {
            row[..cols].copy_from_slice(grad);
        }
        let (gv, unit) = (View::new(&gz, n), View::new(&f.unit, l));
        gemm((n, n, l), 1.0, gv, unit, 0.0, &mut gu);
        gemm((n, n, l), 1.0, gv.t(), unit, 0.0, &mut gtu);
        gemm((l, n, l), 1.0, unit.t(), View::new(&gu, l), 0.0, &mut utgu);
        unit_gradient(&f, (n, l), [&gu, &gtu, &utgu], du);
    }
    Tensor::new(u.shape(), du)
}

/// `(dloss/dU, dloss/dX)` for `Y = Q X` (or `Q^T X`) given `Ybar`, never forming G (docs/math.md
/// §2.2), shapes already checked.
pub(crate) fn cwy_apply_backward(
    u: &Tensor<f32>,
    x: &Tensor<f32>,
    ybar: &Tensor<f32>,
    transpose: bool,
) -> ortho_ref::Result<[Tensor<f32>; 2]> {
    let (b, n, l, k) = apply_sizes(u, x);
    let mut du = vec![0.0; u.len()];
    let (mut xtu, mut ytu, mut uty) = (vec![0.0; k * l], vec![0.0; k * l], vec![0.0; l * k]);
    let (mut gu, mut gtu, mut utgu) = (vec![0.0; n * l], vec![0.0; n * l], vec![0.0; l * l]);
    for (z, du) in du.chunks_mut(n * l).enumerate().take(b) {
        let f = Factored::new(&u.data()[z * n * l..(z + 1) * n * l], n, l);
        // d<Ybar, Q X> = <Ybar X^T, dQ>; for Q^T X it is <X Ybar^T, dQ>.
        let (xs, ys) = (&x.data()[z * n * k..(z + 1) * n * k], &ybar.data()[z * n * k..(z + 1) * n * k]);
        let (xz, yz) =
            if transpose { (View::new(ys, k), View::new(xs, k)) } else { (View::new(xs, k), View::new(ys, k)) };
        let unit = View::new(&f.unit, l);
        gemm((k, n, l), 1.0, xz.t(), unit, 0.0, &mut xtu);
        gemm((k, n, l), 1.0, yz.t(), unit, 0.0, &mut ytu);
        gemm((n, k, l), 1.0, yz, View::new(&xtu, l), 0.0, &mut gu);
        gemm((n, k, l), 1.0, xz, View::new(&ytu, l), 0.0, &mut gtu);
        gemm((l, n, k), 1.0, unit.t(), yz, 0.0, &mut uty);
        gemm((l, k, l), 1.0, View::new(&uty, k), View::new(&xtu, l), 0.0, &mut utgu);
        unit_gradient(&f, (n, l), [&gu, &gtu, &utgu], du);
    }
    let dx = cwy_apply(u, ybar, !transpose)?;
    Ok([Tensor::new(u.shape(), du)?, dx])
}

/// `dU = -GU W^T - GtU W + U (P + P^T)`, `P = striu(B) + diag(B) / 2`, `B = W^T UtGU W^T`, for the
/// unit columns, then carried back through the normalisation: `(dU - u (u . dU)) / |u|` per column.
fn unit_gradient(f: &Factored, (n, l): (usize, usize), [gu, gtu, utgu]: [&[f32]; 3], du: &mut [f32]) {
    gemm((n, l, l), -1.0, View::new(gu, l), f.w(l, true), 0.0, du);
    gemm((n, l, l), -1.0, View::new(gtu, l), f.w(l, false), 1.0, du);
    let (mut half, mut b) = (vec![0.0; l * l], vec![0.0; l * l]);
    gemm((l, l, l), 1.0, View::new(utgu, l), f.w(l, true), 0.0, &mut half);
    gemm((l, l, l), 1.0, f.w(l, true), View::new(&half, l), 0.0, &mut b);
    let mirrored: Vec<f32> = (0..l * l).map(|e| if e / l <= e % l { b[e] } else { b[(e % l) * l + e / l] }).collect();
    gemm((n, l, l), 1.0, View::new(&f.unit, l), View::new(&mirrored, l), 1.0, du);
    let mut along = vec![0.0f32; l];
    for (row, unit) in du.chunks(l).zip(f.unit.chunks(l)) {
        along.iter_mut().zip(row.iter().zip(unit)).for_each(|(a, (d, u))| *a += d * u);
    }
    for (row, unit) in du.chunks_mut(l).zip(f.unit.chunks(l)) {
        for (j, x) in row.iter_mut().enumerate() {
            *x = (*x - unit[j] * along[j]) / f.norms[j];
        }
    }
}
