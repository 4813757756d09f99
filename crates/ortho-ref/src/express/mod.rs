//! Sparse patterns from a fixed self-attention module (docs/math.md §9): inputs `X [L, n]` and fixed
//! random `W_Q, W_K [n, d]` such that `M = row-softmax((X W_Q)(X W_K)^T)` keeps the ratios of every
//! row's nonzeros of a pattern `A` within `epsilon` in log space and puts at most `delta` of each
//! row's mass outside its support. Two constructions: the paper's (`paper`: log-domain target and a
//! Johnson–Lindenstrauss projection) and a refinement of it by Adam on `X` (`refine`). The check and
//! the refinement's gradient stream one row at a time: nothing of size `L x L` is held.

pub mod paper;
pub mod refine;
pub mod search;

use crate::error::{Error, Result};
use crate::random::{Scaling, projection};
use crate::tensor::Tensor;

/// A nonnegative `L x L` pattern by rows: the support of row `i` is `columns[starts[i]..starts[i + 1]]`
/// (increasing), with `targets` the logarithms of its values.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    pub len: usize,
    pub starts: Vec<usize>,
    pub columns: Vec<usize>,
    pub targets: Vec<f64>,
}

impl Pattern {
    /// Reads a dense `[L, L]` matrix: square, finite, nonnegative, every row with a nonzero.
    pub fn from_dense(a: &Tensor<f64>) -> Result<Pattern> {
        let len = match *a.shape() {
            [rows, cols] if rows == cols && rows > 0 => rows,
            _ => return Err(Error::shape("pattern", "[L, L] with L >= 1 (square)", a.shape())),
        };
        a.check_finite("pattern")?;
        let (mut starts, mut columns, mut targets) = (vec![0], Vec::new(), Vec::new());
        for (i, row) in a.data().chunks(len).enumerate() {
            if let Some(j) = row.iter().position(|&v| v < 0.0) {
                return Err(Error::argument(
                    "pattern",
                    format!("entry ({i}, {j}) is {}: a pattern is nonnegative", row[j]),
                ));
            }
            for (j, &v) in row.iter().enumerate().filter(|(_, v)| **v > 0.0) {
                columns.push(j);
                targets.push(v.ln());
            }
            if columns.len() == *starts.last().unwrap() {
                return Err(Error::argument(
                    "pattern",
                    format!("row {i} has no nonzero: softmax rows cannot put all their mass on nothing"),
                ));
            }
            starts.push(columns.len());
        }
        Ok(Pattern { len, starts, columns, targets })
    }

    /// Row `i`'s support columns and target logarithms.
    pub fn row(&self, i: usize) -> (&[usize], &[f64]) {
        let r = self.starts[i]..self.starts[i + 1];
        (&self.columns[r.clone()], &self.targets[r])
    }

    /// `N`: the most nonzeros of any row or any column.
    pub fn sparsity(&self) -> usize {
        let mut per_column = vec![0usize; self.len];
        self.columns.iter().for_each(|&j| per_column[j] += 1);
        let per_row = self.starts.windows(2).map(|w| w[1] - w[0]);
        per_row.chain(per_column).max().unwrap_or(0)
    }

    /// The widest spread `max - min` of the target logarithms within one row.
    pub fn log_range(&self) -> f64 {
        (0..self.len)
            .map(|i| {
                let t = self.row(i).1;
                t.iter().cloned().fold(f64::MIN, f64::max) - t.iter().cloned().fold(f64::MAX, f64::min)
            })
            .fold(0.0, f64::max)
    }
}

/// The fixed weights `(W_Q, W_K)`, each `[2d, d]`: the two column blocks of a Haar-random orthogonal
/// `2d x 2d` matrix drawn from `seed`. They depend on `(dim, seed)` alone, never on a pattern; being
/// orthogonal blocks, `X = [Q K] [W_Q W_K]^T` gives `X W_Q = Q` and `X W_K = K` for any `Q, K`.
pub fn weights(dim: usize, seed: u64) -> Result<(Tensor<f64>, Tensor<f64>)> {
    let n = 2 * dim;
    // Rows of norm sqrt(n), scaled to 1: an orthogonal matrix whose columns split into the blocks.
    let o = projection(n, n, Scaling::SqrtD, seed)?.map(|v| v / (n as f64).sqrt());
    let block = |first: usize| Tensor::from_fn(&[n, dim], |e| o.data()[(e / dim) * n + first + e % dim]);
    Ok((block(0), block(dim)))
}

/// `X = [Q K] [W_Q W_K]^T` for `Q, K: [L, d]`.
pub fn inputs(q: &[f64], k: &[f64], wq: &Tensor<f64>, wk: &Tensor<f64>) -> Tensor<f64> {
    let (n, d) = (wq.shape()[0], wq.shape()[1]);
    let len = q.len() / d;
    Tensor::from_fn(&[len, n], |e| {
        let (i, c) = (e / n, e % n);
        (0..d).map(|l| q[i * d + l] * wq.data()[c * d + l] + k[i * d + l] * wk.data()[c * d + l]).sum()
    })
}

/// `(Q, K) = (X W_Q, X W_K)`, each `[L, d]` row-major.
pub fn queries_keys(x: &Tensor<f64>, wq: &Tensor<f64>, wk: &Tensor<f64>) -> Result<(Vec<f64>, Vec<f64>)> {
    check_shapes(x.shape(), wq.shape(), wk.shape())?;
    let (n, d) = (wq.shape()[0], wq.shape()[1]);
    let len = x.shape()[0];
    Ok((crate::linalg::matmul(x.data(), wq.data(), len, n, d), crate::linalg::matmul(x.data(), wk.data(), len, n, d)))
}

/// Checks `X [L, n]`, `W_Q [n, d]` and `W_K [n, d]` against each other.
pub fn check_shapes(x: &[usize], wq: &[usize], wk: &[usize]) -> Result<()> {
    let [_, n] = *x else { return Err(Error::shape("x", "[L, n]", x)) };
    match *wq {
        [r, d] if r == n && d > 0 => {
            if wk != wq {
                return Err(Error::shape("wk", format!("{wq:?} (as wq)"), wk));
            }
            Ok(())
        }
        _ => Err(Error::shape("wq", format!("[{n}, d] with d >= 1"), wq)),
    }
}

/// Tolerances: `epsilon` on every log ratio within a row's support, `delta` on the mass outside it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerances {
    pub epsilon: f64,
    pub delta: f64,
}

impl Tolerances {
    pub fn new(epsilon: f64, delta: f64) -> Result<Tolerances> {
        if !(epsilon > 0.0 && epsilon.is_finite()) {
            return Err(Error::argument("epsilon", format!("{epsilon} must be positive and finite")));
        }
        if !(delta > 0.0 && delta < 1.0) {
            return Err(Error::argument("delta", format!("{delta} must lie in (0, 1)")));
        }
        Ok(Tolerances { epsilon, delta })
    }
}

/// The worst row of a check: the largest log-ratio error and the largest mass outside the support.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Achieved {
    pub epsilon: f64,
    pub delta: f64,
}

impl Achieved {
    /// The worst of per-row `[epsilon_i, delta_i]` pairs (a NaN counts as a failure: infinity).
    pub fn worst(rows: impl IntoIterator<Item = [f64; 2]>) -> Achieved {
        let bad = |v: f64| if v.is_nan() { f64::INFINITY } else { v };
        rows.into_iter().fold(Achieved::default(), |a, [e, m]| Achieved {
            epsilon: a.epsilon.max(bad(e)),
            delta: a.delta.max(bad(m)),
        })
    }

    pub fn meets(&self, t: Tolerances) -> bool {
        self.epsilon <= t.epsilon && self.delta <= t.delta
    }
}

/// What one row of logits `z` (all `L` columns) gives against its support: the statistics the check
/// reports and the refinement's loss is built from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowFit {
    /// `max - min` over the support of `r_j = z_j - t_j`.
    pub epsilon: f64,
    /// Mean of `r_j` over the support.
    pub mean: f64,
    /// Log-sum-exp of the logits on and off the support (`-inf` for an empty side).
    pub lse_in: f64,
    pub lse_out: f64,
}

impl RowFit {
    pub fn new(z: &[f64], columns: &[usize], targets: &[f64]) -> RowFit {
        let r = columns.iter().zip(targets).map(|(&j, t)| z[j] - t);
        let (lo, hi, sum) = r.fold((f64::MAX, f64::MIN, 0.0), |(lo, hi, s), v| (lo.min(v), hi.max(v), s + v));
        let mut outside = z.to_vec();
        columns.iter().for_each(|&j| outside[j] = f64::NEG_INFINITY);
        RowFit {
            epsilon: hi - lo,
            mean: sum / columns.len() as f64,
            lse_in: log_sum_exp(columns.iter().map(|&j| z[j])),
            lse_out: log_sum_exp(outside.into_iter()),
        }
    }

    /// The softmax mass outside the support, `1 / (1 + exp(lse_in - lse_out))`.
    pub fn mass(&self) -> f64 {
        if self.lse_out == f64::NEG_INFINITY { 0.0 } else { 1.0 / (1.0 + (self.lse_in - self.lse_out).exp()) }
    }
}

/// `log sum exp(v)`, shifted by the maximum (`-inf` when empty or all `-inf`).
pub(crate) fn log_sum_exp(v: impl Iterator<Item = f64> + Clone) -> f64 {
    let top = v.clone().fold(f64::NEG_INFINITY, f64::max);
    if top == f64::NEG_INFINITY {
        return top;
    }
    top + v.map(|x| (x - top).exp()).sum::<f64>().ln()
}

/// Row `i`'s logits `z_j = q_i . k_j` for every column.
pub(crate) fn logits(q: &[f64], k: &[f64], d: usize, i: usize) -> Vec<f64> {
    let qi = &q[i * d..(i + 1) * d];
    k.chunks(d).map(|kj| qi.iter().zip(kj).map(|(a, b)| a * b).sum()).collect()
}

/// Per row `[epsilon_i, delta_i]` of `M = row-softmax((X W_Q)(X W_K)^T)` against `pattern`, as
/// `[L, 2]`, one row of logits at a time.
pub fn check(pattern: &Pattern, x: &Tensor<f64>, wq: &Tensor<f64>, wk: &Tensor<f64>) -> Result<Tensor<f64>> {
    let (q, k) = queries_keys(x, wq, wk)?;
    if x.shape()[0] != pattern.len {
        return Err(Error::shape("x", format!("[{}, n] (one row per pattern row)", pattern.len), x.shape()));
    }
    let d = wq.shape()[1];
    let mut out = Vec::with_capacity(2 * pattern.len);
    for i in 0..pattern.len {
        let (columns, targets) = pattern.row(i);
        let fit = RowFit::new(&logits(&q, &k, d, i), columns, targets);
        out.extend([fit.epsilon, fit.mass()]);
    }
    Tensor::new(&[pattern.len, 2], out)
}

/// A random `[L, L]` pattern with at most `n` nonzeros in every row and column: the sum of `n`
/// random permutation matrices with values uniform in `[0.1, 1]` (where two agree, their values add).
pub fn random_pattern(len: usize, n: usize, seed: u64) -> Tensor<f64> {
    let mut g = crate::random::Gaussian::new(seed);
    let mut a = vec![0.0; len * len];
    for _ in 0..n {
        let mut perm: Vec<usize> = (0..len).collect();
        for i in (1..len).rev() {
            perm.swap(i, (g.uniform() * (i + 1) as f64) as usize);
        }
        for (i, &j) in perm.iter().enumerate() {
            a[i * len + j] += 0.1 + 0.9 * g.uniform();
        }
    }
    Tensor::from_fn(&[len, len], |e| a[e])
}

/// How `X` is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    /// The paper's construction as written (`paper.rs`).
    Paper,
    /// The paper's construction at the given `d`, then Adam on `X` against the two conditions.
    #[default]
    Optimized,
}

impl std::str::FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "paper" => Ok(Method::Paper),
            "optimized" => Ok(Method::Optimized),
            _ => Err(Error::argument("method", format!("'{s}' is not one of paper, optimized"))),
        }
    }
}

/// A pattern's inputs and weights with what they achieve.
#[derive(Debug, Clone)]
pub struct Expressed {
    pub x: Tensor<f64>,
    pub wq: Tensor<f64>,
    pub wk: Tensor<f64>,
    pub dim: usize,
    pub achieved: Achieved,
    /// Draws tried at `dim`, the successful one included.
    pub tries: usize,
    /// Adam steps the successful draw took (0 for the paper's construction).
    pub iterations: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_orthogonal_blocks_and_reproduce_queries_and_keys() {
        let (wq, wk) = weights(3, 7).unwrap();
        let q: Vec<f64> = (0..12).map(|v| v as f64 * 0.3 - 1.0).collect();
        let k: Vec<f64> = (0..12).map(|v| (v as f64).sin()).collect();
        let x = inputs(&q, &k, &wq, &wk);
        let (q2, k2) = queries_keys(&x, &wq, &wk).unwrap();
        assert!(q.iter().zip(&q2).chain(k.iter().zip(&k2)).all(|(a, b)| (a - b).abs() < 1e-12));
    }

    #[test]
    fn row_fit_of_an_exact_softmax() {
        // Row logits equal to the targets plus 3 on the support and far below elsewhere.
        let z = [3.0 + 0.5f64.ln(), -50.0, 3.0, -60.0];
        let fit = RowFit::new(&z, &[0, 2], &[0.5f64.ln(), 0.0]);
        assert!(fit.epsilon.abs() < 1e-12 && (fit.mean - 3.0).abs() < 1e-12);
        let expected = ((-50f64).exp() + (-60f64).exp()) / ((-50f64).exp() + (-60f64).exp() + 1.5 * 3f64.exp());
        assert!((fit.mass() - expected).abs() < 1e-30);
    }
}
