//! The refinement (docs/math.md §9.3): Adam on `X`, the weights fixed, against a smooth loss whose
//! zero set lies inside the two conditions. Per row `i`, with `r_j = z_ij - t_ij` on the support,
//! `h_i = max(0, lse_out - lse_in - logit(delta / 2))`:
//! `loss_i = 1/2 sum_j (r_j - mean r)^2 + 1/2 h_i^2`.

use super::{Pattern, RowFit, check_shapes, logits, queries_keys};
use crate::error::{Error, Result};
use crate::linalg::matmul;
use crate::tensor::Tensor;

/// `logit(delta / 2)`: the log-odds of the outside mass the loss aims under (half the tolerance, so
/// that float rounding on the GPU cannot tip a row over it).
pub fn mass_target(delta: f64) -> f64 {
    let half = delta / 2.0;
    (half / (1.0 - half)).ln()
}

/// `dloss/dz` of one row of logits, given its fit: `(r_j - mean r) - h p_in_j` on the support and
/// `h p_out_j` off it, where `p_in` and `p_out` are the softmax over each side.
fn row_gradient(z: &[f64], columns: &[usize], targets: &[f64], fit: &RowFit, tau: f64) -> Vec<f64> {
    let h = (fit.lse_out - fit.lse_in - tau).max(0.0);
    let mut dz: Vec<f64> = z.iter().map(|&v| h * (v - fit.lse_out).exp()).collect();
    for (&j, t) in columns.iter().zip(targets) {
        dz[j] = (z[j] - t - fit.mean) - h * (z[j] - fit.lse_in).exp();
    }
    dz
}

/// `(dloss/dX [L, n], per-row [epsilon_i, delta_i] [L, 2])` at `X`, one row of logits at a time:
/// `dQ_i = dz_i K`, `dK += dz_i^T q_i`, `dX = dQ W_Q^T + dK W_K^T`.
pub fn gradient(
    pattern: &Pattern,
    x: &Tensor<f64>,
    wq: &Tensor<f64>,
    wk: &Tensor<f64>,
    delta: f64,
) -> Result<(Tensor<f64>, Tensor<f64>)> {
    check_shapes(x.shape(), wq.shape(), wk.shape())?;
    let (q, k) = queries_keys(x, wq, wk)?;
    let (len, n, d) = (pattern.len, wq.shape()[0], wq.shape()[1]);
    let tau = mass_target(delta);
    let (mut dq, mut dk, mut stats) = (vec![0.0; len * d], vec![0.0; len * d], Vec::with_capacity(2 * len));
    for i in 0..len {
        let (columns, targets) = pattern.row(i);
        let z = logits(&q, &k, d, i);
        let fit = RowFit::new(&z, columns, targets);
        stats.extend([fit.epsilon, fit.mass()]);
        let dz = row_gradient(&z, columns, targets, &fit, tau);
        for (j, g) in dz.iter().enumerate() {
            for l in 0..d {
                dq[i * d + l] += g * k[j * d + l];
                dk[j * d + l] += g * q[i * d + l];
            }
        }
    }
    let transpose = |w: &Tensor<f64>| Tensor::from_fn(&[d, n], |e| w.data()[(e % n) * d + e / n]);
    let mut dx = matmul(&dq, transpose(wq).data(), len, d, n);
    dx.iter_mut().zip(matmul(&dk, transpose(wk).data(), len, d, n)).for_each(|(a, b)| *a += b);
    Ok((Tensor::new(&[len, n], dx)?, Tensor::new(&[len, 2], stats)?))
}

/// Adam's constants: `m <- b1 m + (1 - b1) g`, `v <- b2 v + (1 - b2) g^2`,
/// `x <- x - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Adam {
    pub fn new(lr: f64) -> Result<Adam> {
        if !(lr > 0.0 && lr.is_finite()) {
            return Err(Error::argument("learning rate", format!("{lr} must be positive and finite")));
        }
        Ok(Adam { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8 })
    }

    /// Step `t` (from 1): the two bias corrections `(1 - b1^t, 1 - b2^t)`.
    pub fn corrections(&self, t: usize) -> (f64, f64) {
        (1.0 - self.beta1.powi(t as i32), 1.0 - self.beta2.powi(t as i32))
    }

    /// One step `t` on `x` with moments `m`, `v`.
    pub fn step(&self, t: usize, x: &mut [f64], g: &[f64], m: &mut [f64], v: &mut [f64]) {
        let (c1, c2) = self.corrections(t);
        for e in 0..x.len() {
            m[e] = self.beta1 * m[e] + (1.0 - self.beta1) * g[e];
            v[e] = self.beta2 * v[e] + (1.0 - self.beta2) * g[e] * g[e];
            x[e] -= self.lr * (m[e] / c1) / ((v[e] / c2).sqrt() + self.eps);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::express::{Tolerances, paper, weights};
    use crate::random::Gaussian;

    fn loss(pattern: &Pattern, x: &Tensor<f64>, wq: &Tensor<f64>, wk: &Tensor<f64>, delta: f64) -> f64 {
        let (q, k) = queries_keys(x, wq, wk).unwrap();
        let d = wq.shape()[1];
        (0..pattern.len)
            .map(|i| {
                let (c, t) = pattern.row(i);
                let z = logits(&q, &k, d, i);
                let fit = RowFit::new(&z, c, t);
                let h = (fit.lse_out - fit.lse_in - mass_target(delta)).max(0.0);
                let r: f64 = c.iter().zip(t).map(|(&j, t)| (z[j] - t - fit.mean).powi(2)).sum();
                0.5 * (r + h * h)
            })
            .sum()
    }

    #[test]
    fn gradient_matches_central_differences() {
        let len = 10;
        let mut g = Gaussian::new(5);
        let a = Tensor::from_fn(&[len, len], |e| if (e / len + e % len) % 4 == 0 { 0.2 + g.uniform() } else { 0.0 });
        let pattern = Pattern::from_dense(&a).unwrap();
        let (wq, wk) = weights(3, 1).unwrap();
        let tol = Tolerances::new(0.5, 0.05).unwrap();
        let x = paper::construct(&pattern, tol, &wq, &wk, 2).map(|v| 0.3 * v);
        let (dx, _) = gradient(&pattern, &x, &wq, &wk, 0.4).unwrap();
        let step = 1e-6;
        for e in [0, 7, 23, 41, 59] {
            let mut plus = x.clone();
            plus.data_mut()[e] += step;
            let mut minus = x.clone();
            minus.data_mut()[e] -= step;
            let fd = (loss(&pattern, &plus, &wq, &wk, 0.4) - loss(&pattern, &minus, &wq, &wk, 0.4)) / (2.0 * step);
            assert!((fd - dx.data()[e]).abs() <= 1e-6 * (1.0 + fd.abs()), "{e}: {fd} vs {}", dx.data()[e]);
        }
    }
}
