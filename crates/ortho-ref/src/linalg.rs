//! Small dense linear algebra in f64, written out so the order of operations (and so every bit of the
//! result) is the same on every machine.

/// `C = A B` for row-major `A: [m, k]`, `B: [k, n]`.
pub fn matmul(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for p in 0..k {
            let aip = a[i * k + p];
            for j in 0..n {
                c[i * n + j] += aip * b[p * n + j];
            }
        }
    }
    c
}

/// Householder QR of a square row-major `n x n` matrix: `A = Q R`, `Q` orthogonal, `R` upper triangular.
pub fn qr(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut r = a.to_vec();
    let mut q = vec![0.0; n * n];
    for i in 0..n {
        q[i * n + i] = 1.0;
    }
    let mut v = vec![0.0; n];
    for col in 0..n.saturating_sub(1) {
        let norm = (col..n).map(|i| r[i * n + col].powi(2)).sum::<f64>().sqrt();
        if norm == 0.0 {
            continue;
        }
        // Reflect x onto -sign(x_0)|x| e_0, the choice that avoids cancellation in v_0.
        let alpha = if r[col * n + col] >= 0.0 { -norm } else { norm };
        for i in col..n {
            v[i] = r[i * n + col];
        }
        v[col] -= alpha;
        let vnorm2: f64 = (col..n).map(|i| v[i] * v[i]).sum();
        if vnorm2 == 0.0 {
            continue;
        }
        for j in 0..n {
            let dot: f64 = (col..n).map(|i| v[i] * r[i * n + j]).sum();
            let f = 2.0 * dot / vnorm2;
            for i in col..n {
                r[i * n + j] -= f * v[i];
            }
        }
        for i in 0..n {
            let dot: f64 = (col..n).map(|p| q[i * n + p] * v[p]).sum();
            let f = 2.0 * dot / vnorm2;
            for p in col..n {
                q[i * n + p] -= f * v[p];
            }
        }
    }
    (q, r)
}

/// `P A = L U` by Gaussian elimination with partial pivoting (the largest magnitude in the column,
/// the first of equals): the kernel `common/lu` computes the same in f32.
#[derive(Debug, Clone, PartialEq)]
pub struct Lu {
    pub n: usize,
    /// `L` strictly below the diagonal (unit diagonal implied), `U` on and above, row-major.
    pub factors: Vec<f64>,
    /// Row `k` was swapped with row `pivots[k] >= k` at step `k`.
    pub pivots: Vec<usize>,
    /// The sign of `det A` (0 when a pivot is exactly zero) and `log |det A|`.
    pub sign: f64,
    pub log_abs_det: f64,
}

pub fn lu(a: &[f64], n: usize) -> Lu {
    let mut f = a.to_vec();
    let (mut pivots, mut sign, mut log_abs_det) = (Vec::with_capacity(n), 1.0, 0.0);
    for k in 0..n {
        let p = (k..n).fold(k, |best, i| if f[i * n + k].abs() > f[best * n + k].abs() { i } else { best });
        pivots.push(p);
        if p != k {
            for c in 0..n {
                f.swap(k * n + c, p * n + c);
            }
            sign = -sign;
        }
        let d = f[k * n + k];
        if d == 0.0 {
            sign = 0.0;
            log_abs_det = f64::NEG_INFINITY;
            continue;
        }
        sign *= d.signum();
        log_abs_det += d.abs().ln();
        for i in k + 1..n {
            f[i * n + k] /= d;
            let l = f[i * n + k];
            for c in k + 1..n {
                f[i * n + c] -= l * f[k * n + c];
            }
        }
    }
    Lu { n, factors: f, pivots, sign, log_abs_det }
}

/// `X = A^-1 B` for `B: [n, k]` from the factors of `A` (which must be nonsingular).
pub fn lu_solve(lu: &Lu, b: &[f64], k: usize) -> Vec<f64> {
    let (n, f) = (lu.n, &lu.factors);
    let mut x = b.to_vec();
    for (row, &p) in lu.pivots.iter().enumerate() {
        for c in 0..k {
            x.swap(row * k + c, p * k + c);
        }
    }
    for row in 0..n {
        for j in 0..row {
            for c in 0..k {
                x[row * k + c] -= f[row * n + j] * x[j * k + c];
            }
        }
    }
    for row in (0..n).rev() {
        for j in row + 1..n {
            for c in 0..k {
                x[row * k + c] -= f[row * n + j] * x[j * k + c];
            }
        }
        for c in 0..k {
            x[row * k + c] /= f[row * n + row];
        }
    }
    x
}

/// Solves `A X = B` for `A: [n, n]`, `B: [n, k]` by Gaussian elimination with partial pivoting;
/// `None` when A is singular.
pub fn solve(a: &[f64], b: &[f64], n: usize, k: usize) -> Option<Vec<f64>> {
    let lu = lu(a, n);
    (lu.sign != 0.0).then(|| lu_solve(&lu, b, k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qr_reconstructs_and_is_orthogonal() {
        let n = 7;
        let a: Vec<f64> = (0..n * n).map(|i| ((i * 37 % 11) as f64 - 5.0) / 3.0).collect();
        let (q, r) = qr(&a, n);
        let qr_prod = matmul(&q, &r, n, n, n);
        for (x, y) in qr_prod.iter().zip(&a) {
            assert!((x - y).abs() < 1e-12, "{x} vs {y}");
        }
        for i in 0..n {
            for j in 0..i {
                assert!(r[i * n + j].abs() < 1e-12, "R not upper triangular at ({i},{j})");
            }
            for j in 0..n {
                let dot: f64 = (0..n).map(|p| q[p * n + i] * q[p * n + j]).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-13);
            }
        }
    }
}
