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

/// Solves `A X = B` for `A: [n, n]`, `B: [n, k]` by Gaussian elimination with partial pivoting;
/// `None` when A is singular.
pub fn solve(a: &[f64], b: &[f64], n: usize, k: usize) -> Option<Vec<f64>> {
    let (mut a, mut x) = (a.to_vec(), b.to_vec());
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i * n + col].abs().total_cmp(&a[j * n + col].abs()))?;
        if a[pivot * n + col] == 0.0 {
            return None;
        }
        for c in 0..n {
            a.swap(col * n + c, pivot * n + c);
        }
        for c in 0..k {
            x.swap(col * k + c, pivot * k + c);
        }
        for row in col + 1..n {
            let f = a[row * n + col] / a[col * n + col];
            for c in col..n {
                a[row * n + c] -= f * a[col * n + c];
            }
            for c in 0..k {
                x[row * k + c] -= f * x[col * k + c];
            }
        }
    }
    for row in (0..n).rev() {
        for c in 0..k {
            let s: f64 = (row + 1..n).map(|j| a[row * n + j] * x[j * k + c]).sum();
            x[row * k + c] = (x[row * k + c] - s) / a[row * n + row];
        }
    }
    Some(x)
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
