//! Compact-WY (CWY) accumulation of Householder reflections, in f64 (docs/math.md §2).
//!
//! `U: [batch, N, L]`, `L <= N`, columns `u_1..u_L` of any nonzero norm, `H(u) = I - 2 u u^T / |u|^2`:
//! - [`householder_product`]: `Q = H(u_1) ... H(u_L)` by L sequential reflections (the ground truth);
//! - [`cwy`]: `Q = I - U S^(-1) U^T`, `S = striu(U^T U) + diag(U^T U) / 2`;
//! - [`tcwy`]: the Stiefel matrix `Omega = [I_L; 0] - U S^(-1) U_1^T`, the first L columns of Q;
//! - [`apply`]: `Q X` or `Q^T X` without forming Q;
//! - [`cwy_backward`], [`apply_backward`]: the gradients of docs/math.md §2.2.

use crate::error::{Error, Result};
use crate::linalg::matmul;
use crate::tensor::Tensor;

/// `(batch, N, L)` of `U` (`[N, L]` reads as batch 1), with `1 <= L <= N` and no zero column.
pub fn shape_of(u: &Tensor<f64>) -> Result<(usize, usize, usize)> {
    let (b, n, l) = match *u.shape() {
        [n, l] => (1, n, l),
        [b, n, l] => (b, n, l),
        _ => return Err(Error::shape("u", "[N, L] or [batch, N, L]", u.shape())),
    };
    if b == 0 || l == 0 || l > n {
        return Err(Error::shape("u", "[batch, N, L] with batch >= 1 and 1 <= L <= N", u.shape()));
    }
    u.check_finite("u")?;
    for z in 0..b {
        for j in 0..l {
            if (0..n).all(|i| u.data()[(z * n + i) * l + j] == 0.0) {
                return Err(Error::argument(
                    "u",
                    format!("Householder vector {j} of batch {z} is zero; every column of U must be nonzero"),
                ));
            }
        }
    }
    Ok((b, n, l))
}

/// The transpose of a row-major `[rows, cols]` matrix.
pub fn transpose_of(a: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    (0..rows * cols).map(|e| a[(e % rows) * cols + e / rows]).collect()
}

fn batch(t: &Tensor<f64>, z: usize, size: usize) -> &[f64] {
    &t.data()[z * size..(z + 1) * size]
}

/// `S = striu(U^T U) + diag(U^T U) / 2` of one `[N, L]` block.
pub fn s_matrix(u: &[f64], n: usize, l: usize) -> Vec<f64> {
    let mut s = matmul(&transpose_of(u, n, l), u, l, n, l);
    for i in 0..l {
        for j in 0..i {
            s[i * l + j] = 0.0;
        }
        s[i * l + i] /= 2.0;
    }
    s
}

/// The inverse of an upper-triangular `l x l` matrix by back substitution.
pub fn upper_inverse(s: &[f64], l: usize) -> Vec<f64> {
    let mut x = vec![0.0; l * l];
    for j in 0..l {
        for i in (0..=j).rev() {
            let mut acc = if i == j { 1.0 } else { 0.0 };
            for k in i + 1..=j {
                acc -= s[i * l + k] * x[k * l + j];
            }
            x[i * l + j] = acc / s[i * l + i];
        }
    }
    x
}

fn reshape_out(u: &Tensor<f64>, inner: &[usize], data: Vec<f64>) -> Result<Tensor<f64>> {
    let mut shape = if u.shape().len() == 3 { vec![u.shape()[0]] } else { vec![] };
    shape.extend_from_slice(inner);
    Tensor::new(&shape, data)
}

/// `Q = H(u_1) H(u_2) ... H(u_L)` by L rank-1 updates of the identity (u_1 is the left-most factor).
pub fn householder_product(u: &Tensor<f64>) -> Result<Tensor<f64>> {
    let (b, n, l) = shape_of(u)?;
    let mut out = Vec::with_capacity(b * n * n);
    for z in 0..b {
        let uz = batch(u, z, n * l);
        let mut q = vec![0.0; n * n];
        (0..n).for_each(|i| q[i * n + i] = 1.0);
        for j in 0..l {
            let col: Vec<f64> = (0..n).map(|i| uz[i * l + j]).collect();
            let norm2: f64 = col.iter().map(|x| x * x).sum();
            // Q <- Q H(u) = Q - (Q u)(2 u^T / |u|^2), row by row.
            for row in q.chunks_mut(n) {
                let f = 2.0 * row.iter().zip(&col).map(|(a, b)| a * b).sum::<f64>() / norm2;
                row.iter_mut().zip(&col).for_each(|(a, b)| *a -= f * b);
            }
        }
        out.extend(q);
    }
    reshape_out(u, &[n, n], out)
}

/// `Q = I - U S^(-1) U^T`.
pub fn cwy(u: &Tensor<f64>) -> Result<Tensor<f64>> {
    let (b, n, l) = shape_of(u)?;
    let mut out = Vec::with_capacity(b * n * n);
    for z in 0..b {
        let uz = batch(u, z, n * l);
        let w = upper_inverse(&s_matrix(uz, n, l), l);
        let wut = matmul(&w, &transpose_of(uz, n, l), l, l, n);
        let mut q = matmul(uz, &wut, n, l, n);
        q.iter_mut().for_each(|x| *x = -*x);
        (0..n).for_each(|i| q[i * n + i] += 1.0);
        out.extend(q);
    }
    reshape_out(u, &[n, n], out)
}

/// `Omega = [I_L; 0] - U S^(-1) U_1^T` (`[N, L]`), `U_1` the top `L x L` block of U.
pub fn tcwy(u: &Tensor<f64>) -> Result<Tensor<f64>> {
    let (b, n, l) = shape_of(u)?;
    let mut out = Vec::with_capacity(b * n * l);
    for z in 0..b {
        let uz = batch(u, z, n * l);
        let w = upper_inverse(&s_matrix(uz, n, l), l);
        let wu1t = matmul(&w, &transpose_of(&uz[..l * l], l, l), l, l, l);
        let mut omega = matmul(uz, &wu1t, n, l, l);
        omega.iter_mut().for_each(|x| *x = -*x);
        (0..l).for_each(|i| omega[i * l + i] += 1.0);
        out.extend(omega);
    }
    reshape_out(u, &[n, l], out)
}

/// `(batch, K)` of `X: [N, K]` or `[batch, N, K]` against `U`'s `(batch, N)`.
fn x_shape(x: &Tensor<f64>, b: usize, n: usize) -> Result<usize> {
    match *x.shape() {
        [xn, k] if xn == n && b == 1 => Ok(k),
        [xb, xn, k] if xb == b && xn == n => Ok(k),
        _ => Err(Error::shape("x", format!("[{b}, {n}, K] (or [{n}, K] for one batch)"), x.shape())),
    }
}

/// `Y = Q X = X - U S^(-1) U^T X`, or `Q^T X = X - U S^(-T) U^T X` when `transpose`.
pub fn apply(u: &Tensor<f64>, x: &Tensor<f64>, transpose_q: bool) -> Result<Tensor<f64>> {
    let (b, n, l) = shape_of(u)?;
    let k = x_shape(x, b, n)?;
    x.check_finite("x")?;
    let mut out = Vec::with_capacity(b * n * k);
    for z in 0..b {
        let uz = batch(u, z, n * l);
        let xz = batch(x, z, n * k);
        let mut w = upper_inverse(&s_matrix(uz, n, l), l);
        if transpose_q {
            w = transpose_of(&w, l, l);
        }
        let utx = matmul(&transpose_of(uz, n, l), xz, l, n, k);
        let correction = matmul(uz, &matmul(&w, &utx, l, l, k), n, l, k);
        out.extend(xz.iter().zip(&correction).map(|(a, c)| a - c));
    }
    Tensor::new(x.shape(), out)
}

/// `P + P^T` with `P = striu(B) + diag(B) / 2`: `B` above the diagonal mirrored below it.
fn mirror_upper(bm: &[f64], l: usize) -> Vec<f64> {
    (0..l * l).map(|e| if e / l <= e % l { bm[e] } else { bm[(e % l) * l + e / l] }).collect()
}

/// The gradient terms shared by every CWY backward pass, from `GU = G U`, `GtU = G^T U` and
/// `UtGU = U^T G U` of one batch: `dU = -GU W^T - GtU W + U (P + P^T)`, `B = W^T UtGU W^T`.
fn du_from(uz: &[f64], w: &[f64], gu: &[f64], gtu: &[f64], utgu: &[f64], n: usize, l: usize) -> Vec<f64> {
    let wt = transpose_of(w, l, l);
    let bm = matmul(&matmul(&wt, utgu, l, l, l), &wt, l, l, l);
    let pp = mirror_upper(&bm, l);
    let a = matmul(gu, &wt, n, l, l);
    let c = matmul(gtu, w, n, l, l);
    let d = matmul(uz, &pp, n, l, l);
    (0..n * l).map(|e| -a[e] - c[e] + d[e]).collect()
}

/// `dloss/dU` for `Q = cwy(U)` given `G = dloss/dQ` (`[batch, N, N]`).
pub fn cwy_backward(u: &Tensor<f64>, g: &Tensor<f64>) -> Result<Tensor<f64>> {
    let (b, n, l) = shape_of(u)?;
    if g.len() != b * n * n {
        return Err(Error::shape("grad", format!("[{b}, {n}, {n}]"), g.shape()));
    }
    g.check_finite("grad")?;
    let mut out = Vec::with_capacity(b * n * l);
    for z in 0..b {
        let (uz, gz) = (batch(u, z, n * l), batch(g, z, n * n));
        let w = upper_inverse(&s_matrix(uz, n, l), l);
        let gu = matmul(gz, uz, n, n, l);
        let gtu = matmul(&transpose_of(gz, n, n), uz, n, n, l);
        let utgu = matmul(&transpose_of(uz, n, l), &gu, l, n, l);
        out.extend(du_from(uz, &w, &gu, &gtu, &utgu, n, l));
    }
    Tensor::new(u.shape(), out)
}

/// `dloss/dU` for `Omega = tcwy(U)` given `dloss/dOmega` (`[batch, N, L]`): the CWY gradient with
/// `G = [G_Omega, 0]`.
pub fn tcwy_backward(u: &Tensor<f64>, g_omega: &Tensor<f64>) -> Result<Tensor<f64>> {
    let (b, n, l) = shape_of(u)?;
    if g_omega.len() != b * n * l {
        return Err(Error::shape("grad", format!("[{b}, {n}, {l}]"), g_omega.shape()));
    }
    let mut g = vec![0.0; b * n * n];
    for z in 0..b {
        for i in 0..n {
            for j in 0..l {
                g[(z * n + i) * n + j] = g_omega.data()[(z * n + i) * l + j];
            }
        }
    }
    cwy_backward(u, &Tensor::new(&[b, n, n], g)?)
}

/// `(dloss/dU, dloss/dX)` for `Y = Q X` (or `Q^T X`) given `Ybar = dloss/dY`, never forming G:
/// `G U = Ybar (X^T U)`, `G^T U = X (Ybar^T U)`, `U^T G U = (U^T Ybar)(X^T U)`, `dX = Q^T Ybar`
/// (for `Q^T X` the roles of X and Ybar swap and `dX = Q Ybar`).
pub fn apply_backward(
    u: &Tensor<f64>,
    x: &Tensor<f64>,
    ybar: &Tensor<f64>,
    transpose_q: bool,
) -> Result<(Tensor<f64>, Tensor<f64>)> {
    let (b, n, l) = shape_of(u)?;
    let k = x_shape(x, b, n)?;
    if ybar.shape() != x.shape() {
        return Err(Error::shape("grad", format!("{:?} (the shape of x)", x.shape()), ybar.shape()));
    }
    ybar.check_finite("grad")?;
    let mut du = Vec::with_capacity(b * n * l);
    for z in 0..b {
        let uz = batch(u, z, n * l);
        // d<Ybar, Q X> = <Ybar X^T, dQ>; for Q^T X it is <X Ybar^T, dQ>.
        let (xz, yz) = if transpose_q {
            (batch(ybar, z, n * k), batch(x, z, n * k))
        } else {
            (batch(x, z, n * k), batch(ybar, z, n * k))
        };
        let w = upper_inverse(&s_matrix(uz, n, l), l);
        let xtu = matmul(&transpose_of(xz, n, k), uz, k, n, l);
        let ytu = matmul(&transpose_of(yz, n, k), uz, k, n, l);
        let gu = matmul(yz, &xtu, n, k, l);
        let gtu = matmul(xz, &ytu, n, k, l);
        let uty = matmul(&transpose_of(uz, n, l), yz, l, n, k);
        let utgu = matmul(&uty, &xtu, l, k, l);
        du.extend(du_from(uz, &w, &gu, &gtu, &utgu, n, l));
    }
    let dx = apply(u, ybar, !transpose_q)?;
    Ok((Tensor::new(u.shape(), du)?, dx))
}

/// Flops of CWY formation: Gram `2 N L^2`, inverse `L^3 / 3`, `W U^T` `2 L^2 N`, `U (W U^T)` `2 N^2 L`.
pub fn cwy_flops(batch: usize, n: usize, l: usize) -> f64 {
    let (b, n, l) = (batch as f64, n as f64, l as f64);
    b * (2.0 * n * l * l + l * l * l / 3.0 + 2.0 * l * l * n + 2.0 * n * n * l)
}

/// Flops of T-CWY: Gram `2 N L^2`, inverse `L^3 / 3`, `W U_1^T` `L^3`, `U (W U_1^T)` `2 N L^2`.
pub fn tcwy_flops(batch: usize, n: usize, l: usize) -> f64 {
    let (b, n, l) = (batch as f64, n as f64, l as f64);
    b * (4.0 * n * l * l + 4.0 * l * l * l / 3.0)
}

/// Flops of `Q X` for `X: [N, K]` without Q: Gram and inverse, `U^T X` and `U (W U^T X)` (`2 N L K`
/// each), `W (U^T X)` (`L^2 K`).
pub fn apply_flops(batch: usize, n: usize, l: usize, k: usize) -> f64 {
    let (b, n, l, k) = (batch as f64, n as f64, l as f64, k as f64);
    b * (2.0 * n * l * l + l * l * l / 3.0 + 4.0 * n * l * k + l * l * k)
}

/// Flops of the gradients of `Q X`: Gram and inverse, the five `N K L` products of `G U`, `G^T U` and
/// `U^T G U`, `(U^T Ybar)(X^T U)` (`2 L^2 K`), `B` (`4 L^3`), the three products of dU (`2 N L^2`
/// each) and dX (an apply).
pub fn apply_backward_flops(batch: usize, n: usize, l: usize, k: usize) -> f64 {
    let (b, nf, lf, kf) = (batch as f64, n as f64, l as f64, k as f64);
    let du = 2.0 * nf * lf * lf + lf * lf * lf / 3.0 + 10.0 * nf * kf * lf + 2.0 * lf * lf * kf;
    b * (du + 4.0 * lf * lf * lf + 6.0 * nf * lf * lf) + apply_flops(batch, n, l, k)
}

/// Flops of the CWY gradient for Q: Gram and inverse, `G U` and `G^T U` (`2 N^2 L` each), `U^T G U`
/// (`2 N L^2`), `B = W^T (U^T G U) W^T` (`4 L^3`) and the three products of dU (`2 N L^2` each).
pub fn cwy_backward_flops(batch: usize, n: usize, l: usize) -> f64 {
    let (b, n, l) = (batch as f64, n as f64, l as f64);
    b * (2.0 * n * l * l + l * l * l / 3.0 + 4.0 * n * n * l + 2.0 * n * l * l + 4.0 * l * l * l + 6.0 * n * l * l)
}

/// Flops of the sequential product: L reflections, each `Q u` and a rank-1 update, `4 N^2` apiece.
pub fn householder_flops(batch: usize, n: usize, l: usize) -> f64 {
    4.0 * (batch * n * n * l) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::Gaussian;
    use crate::tensor::max_abs_diff;

    fn gaussian(shape: &[usize], seed: u64) -> Tensor<f64> {
        let mut g = Gaussian::new(seed);
        Tensor::from_fn(shape, |_| g.sample())
    }

    fn orthogonality_error(q: &[f64], n: usize, cols: usize) -> f64 {
        let qtq = matmul(&transpose_of(q, n, cols), q, cols, n, cols);
        (0..cols * cols).map(|e| (qtq[e] - if e / cols == e % cols { 1.0 } else { 0.0 }).powi(2)).sum::<f64>().sqrt()
    }

    #[test]
    fn cwy_equals_the_sequential_product_and_is_orthogonal() {
        for (b, n, l) in [(1, 1, 1), (2, 5, 3), (1, 8, 8), (3, 17, 6)] {
            let u = gaussian(&[b, n, l], (n * l) as u64);
            let seq = householder_product(&u).unwrap();
            let q = cwy(&u).unwrap();
            assert!(max_abs_diff(q.data(), seq.data()) < 1e-13, "{:?}", (b, n, l));
            for z in 0..b {
                assert!(orthogonality_error(batch(&q, z, n * n), n, n) < 1e-13);
            }
            let omega = tcwy(&u).unwrap();
            for z in 0..b {
                for i in 0..n {
                    for j in 0..l {
                        let (a, c) = (omega.data()[(z * n + i) * l + j], q.data()[(z * n + i) * n + j]);
                        assert!((a - c).abs() < 1e-13);
                    }
                }
            }
        }
    }

    #[test]
    fn the_order_of_the_factors_matters() {
        let (n, l) = (6, 4);
        let u = gaussian(&[n, l], 3);
        let reversed = Tensor::from_fn(&[n, l], |e| u.data()[(e / l) * l + (l - 1 - e % l)]);
        let a = cwy(&u).unwrap();
        let b = householder_product(&reversed).unwrap();
        assert!(max_abs_diff(a.data(), b.data()) > 0.1);
    }

    #[test]
    fn apply_equals_the_product_with_q() {
        let (b, n, l, k) = (2, 7, 4, 3);
        let u = gaussian(&[b, n, l], 1);
        let x = gaussian(&[b, n, k], 2);
        let q = cwy(&u).unwrap();
        for t in [false, true] {
            let y = apply(&u, &x, t).unwrap();
            for z in 0..b {
                let qz = batch(&q, z, n * n);
                let qz = if t { transpose_of(qz, n, n) } else { qz.to_vec() };
                let want = matmul(&qz, batch(&x, z, n * k), n, n, k);
                assert!(max_abs_diff(batch(&y, z, n * k), &want) < 1e-13);
            }
        }
    }

    /// Central finite differences of a scalar loss `<C, f(U)>` against the analytic gradients.
    #[test]
    fn gradients_match_finite_differences() {
        let (b, n, l, k) = (2, 6, 4, 3);
        let u = gaussian(&[b, n, l], 11);
        let x = gaussian(&[b, n, k], 12);
        let h = 1e-6;
        let fd = |f: &dyn Fn(&Tensor<f64>) -> f64, at: &Tensor<f64>| -> Vec<f64> {
            (0..at.len())
                .map(|e| {
                    let (mut p, mut m) = (at.clone(), at.clone());
                    p.data_mut()[e] += h;
                    m.data_mut()[e] -= h;
                    (f(&p) - f(&m)) / (2.0 * h)
                })
                .collect()
        };
        let dot = |a: &Tensor<f64>, c: &Tensor<f64>| a.data().iter().zip(c.data()).map(|(x, y)| x * y).sum::<f64>();
        let rel = |a: &[f64], c: &[f64]| crate::tensor::relative_frobenius(a, c);

        let gq = gaussian(&[b, n, n], 13);
        let want = fd(&|u| dot(&cwy(u).unwrap(), &gq), &u);
        assert!(rel(cwy_backward(&u, &gq).unwrap().data(), &want) < 1e-6);

        let go = gaussian(&[b, n, l], 14);
        let want = fd(&|u| dot(&tcwy(u).unwrap(), &go), &u);
        assert!(rel(tcwy_backward(&u, &go).unwrap().data(), &want) < 1e-6);

        let ybar = gaussian(&[b, n, k], 15);
        for t in [false, true] {
            let (du, dx) = apply_backward(&u, &x, &ybar, t).unwrap();
            let want_du = fd(&|u| dot(&apply(u, &x, t).unwrap(), &ybar), &u);
            let want_dx = fd(&|x| dot(&apply(&u, x, t).unwrap(), &ybar), &x);
            assert!(rel(du.data(), &want_du) < 1e-6, "dU, transpose {t}");
            assert!(rel(dx.data(), &want_dx) < 1e-6, "dX, transpose {t}");
        }
    }

    #[test]
    fn bad_inputs_are_named() {
        let mut u = gaussian(&[2, 5, 3], 1);
        for i in 0..5 {
            u.data_mut()[(5 + i) * 3 + 2] = 0.0;
        }
        let err = cwy(&u).unwrap_err().to_string();
        assert!(err.contains("vector 2 of batch 1 is zero"), "{err}");
        assert!(cwy(&gaussian(&[3, 4], 1)).unwrap_err().to_string().starts_with("u: expected shape"));
        let x = gaussian(&[2, 4, 1], 1);
        assert!(apply(&gaussian(&[2, 5, 3], 1), &x, false).unwrap_err().to_string().starts_with("x: expected shape"));
    }
}
