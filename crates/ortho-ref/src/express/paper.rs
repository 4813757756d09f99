//! The paper's construction (docs/math.md §9.2): a log-domain target `B` whose row-softmax is within
//! `(epsilon, delta)` of the pattern, and a Johnson–Lindenstrauss factorisation `B ~ (B R) R^T`.

use super::{Pattern, Tolerances, inputs};
use crate::random::Gaussian;
use crate::tensor::Tensor;

/// Row `i`'s target logits on its support, `b_ij = C_i + t_ij - max_j t_ij` (zero elsewhere), with
/// `C_i = ln((L - |S_i|) / delta) + epsilon`: then `row-softmax(B)` has every support ratio of `A`
/// exactly and at most `delta e^-epsilon` of its mass outside, and stays within the tolerances
/// when every logit is off by at most `epsilon / 2`.
pub fn target_row(pattern: &Pattern, i: usize, tol: Tolerances) -> Vec<f64> {
    let (columns, targets) = pattern.row(i);
    let outside = pattern.len - columns.len();
    let lift = if outside == 0 { 0.0 } else { (outside as f64 / tol.delta).ln() + tol.epsilon };
    let top = targets.iter().cloned().fold(f64::MIN, f64::max);
    targets.iter().map(|t| lift + t - top).collect()
}

/// `X [L, 2d]` for the weights `(wq, wk)` (`[2d, d]`, see [`super::weights`]): keys `k_j = r_j`, the
/// rows of `R [L, d]`, Gaussian rows drawn from `draw` and scaled to unit norm (so `E[R R^T] = I`
/// with an exact diagonal), and queries `q_i = sum_j b_ij r_j`, so that `E[q_i . k_j] = b_ij`.
pub fn construct(pattern: &Pattern, tol: Tolerances, wq: &Tensor<f64>, wk: &Tensor<f64>, draw: u64) -> Tensor<f64> {
    let d = wq.shape()[1];
    let mut r = Gaussian::new(draw).fill(pattern.len * d);
    for row in r.chunks_mut(d) {
        let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
        row.iter_mut().for_each(|v| *v /= norm);
    }
    let mut q = vec![0.0; pattern.len * d];
    for i in 0..pattern.len {
        let b = target_row(pattern, i, tol);
        for (&j, bij) in pattern.row(i).0.iter().zip(b) {
            for l in 0..d {
                q[i * d + l] += bij * r[j * d + l];
            }
        }
    }
    inputs(&q, &r, wq, wk)
}

/// The `d` the construction's proof asks for, failing with probability at most `failure`: every
/// `q_i . k_j` within `epsilon / 2` of `b_ij` follows from `|<R^T u, R^T v> - <u, v>| <= eta` for the
/// unit vectors `u = b_i / |b_i|`, `v = e_j` of all `L^2` pairs with `eta = epsilon / (2 max_i |b_i|)`;
/// by polarisation that is the norms of `2 L^2` vectors `u +- v` kept within `1 +- eta`, each failing
/// with probability at most `2 exp(-d (eta^2 / 2 - eta^3 / 3) / 2)` (Dasgupta–Gupta), so
/// `d >= 2 ln(4 L^2 / failure) / (eta^2 / 2 - eta^3 / 3)`.
pub fn dimension(pattern: &Pattern, tol: Tolerances, failure: f64) -> f64 {
    let norm = (0..pattern.len)
        .map(|i| target_row(pattern, i, tol).iter().map(|b| b * b).sum::<f64>().sqrt())
        .fold(0.0, f64::max);
    let eta = (tol.epsilon / (2.0 * norm)).min(1.0);
    let len = pattern.len as f64;
    2.0 * (4.0 * len * len / failure).ln() / (eta * eta / 2.0 - eta.powi(3) / 3.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::express::{Achieved, check, weights};

    fn permutation_pattern(len: usize) -> Pattern {
        let a = Tensor::from_fn(&[len, len], |e| if (e / len * 7 + 3) % len == e % len { 2.0 } else { 0.0 });
        Pattern::from_dense(&a).unwrap()
    }

    #[test]
    fn the_target_meets_the_tolerances_exactly() {
        let tol = Tolerances::new(0.5, 0.05).unwrap();
        let p = permutation_pattern(32);
        let b = target_row(&p, 0, tol);
        // One nonzero lifted by ln(31 / 0.05) + 0.5; everything else at 0.
        let mass = 31.0 / (31.0 + b[0].exp());
        assert!(mass <= 0.05 * (-0.5f64).exp() + 1e-15, "{mass}");
    }

    #[test]
    fn a_large_dimension_passes_the_check() {
        let tol = Tolerances::new(0.5, 0.3).unwrap();
        let p = permutation_pattern(8);
        let (wq, wk) = weights(300, 3).unwrap();
        let x = construct(&p, tol, &wq, &wk, 11);
        let rows = check(&p, &x, &wq, &wk).unwrap();
        let got = Achieved::worst(rows.data().chunks(2).map(|r| [r[0], r[1]]));
        assert!(got.meets(tol), "{got:?}");
        assert!(dimension(&p, tol, 0.5) > 300.0, "the proof's d is the larger");
    }
}
