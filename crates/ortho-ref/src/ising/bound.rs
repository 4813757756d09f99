//! An upper bound on `log Z` of an intractable zero-field model from tractable parts of its graph
//! (docs/math.md §6.8): `log Z(theta) <= sum_t rho_t log Z_t(theta_t)` whenever
//! `sum_t rho_t theta_t = theta` (convexity of `log Z`), minimised over the `theta_t`.

use super::{Glued, Graph};
use crate::error::{Error, Result};

/// The minimised bound and what comes with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Bound {
    /// `sum_t rho_t log Z_t(theta_t)` at the last iterate: an upper bound on `log Z`.
    pub log_z: f64,
    /// Per edge of the graph, the parts' marginals averaged with weights `rho_t` over the parts that
    /// hold the edge (they agree at the optimum).
    pub marginals: Vec<f64>,
    /// Largest disagreement between two parts' marginals of one edge, at the last iterate.
    pub disagreement: f64,
    /// The weights `rho_t` used (summing to 1).
    pub weights: Vec<f64>,
    /// Gradient steps on the couplings, over all weight steps.
    pub iterations: usize,
}

/// Minimisation settings: the couplings' descent stops when the parts' marginals agree within
/// `tolerance` or after `max_iterations` steps; `weight_steps` steps of exponentiated gradient on the
/// weights follow (0 keeps them uniform), each followed by the couplings' descent again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoundOptions {
    pub tolerance: f64,
    pub max_iterations: usize,
    pub weight_steps: usize,
}

impl Default for BoundOptions {
    fn default() -> Self {
        BoundOptions { tolerance: 1e-4, max_iterations: 500, weight_steps: 0 }
    }
}

/// Tractable parts of one graph, each a set of its distinct edges.
pub struct Decomposition {
    graph: Graph,
    parts: Vec<(Vec<usize>, Glued)>,
}

/// The couplings' descent at fixed weights: where it stopped.
struct Descent {
    theta: Vec<Vec<f64>>,
    value: f64,
    log_z: Vec<f64>,
    marginals: Vec<Vec<f64>>,
    iterations: usize,
}

impl Decomposition {
    /// `parts[t]` lists edges of `graph` (distinct-edge indices); each part must be in the glued
    /// family, and every edge must be in some part.
    pub fn new(graph: &Graph, parts: &[Vec<usize>]) -> Result<Decomposition> {
        let mut covered = vec![false; graph.edges.len()];
        let mut built = Vec::with_capacity(parts.len());
        for (t, edges) in parts.iter().enumerate() {
            let mut list: Vec<(i64, i64)> = Vec::with_capacity(edges.len());
            for &e in edges {
                let &(u, v) = graph.edges.get(e).ok_or_else(|| {
                    Error::argument("parts", format!("part {t} names edge {e}; the graph has {}", graph.edges.len()))
                })?;
                list.push((u as i64, v as i64));
                covered[e] = true;
            }
            let solver = Glued::new(&Graph::new(Some(graph.nodes), &list)?)
                .map_err(|e| Error::argument("parts", format!("part {t} is not tractable: {e}")))?;
            built.push((edges.clone(), solver));
        }
        if let Some(e) = covered.iter().position(|&c| !c) {
            return Err(Error::argument("parts", format!("edge {e} = {:?} is in no part", graph.edges[e])));
        }
        Ok(Decomposition { graph: graph.clone(), parts: built })
    }

    /// Minimise the bound for couplings of the graph's distinct edges: projected gradient descent on
    /// the parts' couplings (Barzilai-Borwein steps, backtracking), from uniform weights and the
    /// least-norm split of `theta`; then, if asked, exponentiated-gradient steps on the weights.
    pub fn bound(&self, couplings: &[f64], options: BoundOptions) -> Result<Bound> {
        if couplings.len() != self.graph.edges.len() {
            return Err(Error::shape("couplings", format!("[{}]", self.graph.edges.len()), &[couplings.len()]));
        }
        let mut weights = vec![1.0 / self.parts.len() as f64; self.parts.len()];
        let zero: Vec<Vec<f64>> = self.parts.iter().map(|(edges, _)| vec![0.0; edges.len()]).collect();
        let mut best = self.descend(&weights, self.feasible(&weights, zero, couplings), options)?;
        let mut iterations = best.iterations;
        let mut rate = 1.0;
        for _ in 0..options.weight_steps {
            // d bound / d rho_t = log Z_t - mu_t . theta_t, the entropy of part t's model.
            let entropy: Vec<f64> = (0..self.parts.len())
                .map(|t| best.log_z[t] - best.marginals[t].iter().zip(&best.theta[t]).map(|(m, j)| m * j).sum::<f64>())
                .collect();
            let mean: f64 = weights.iter().zip(&entropy).map(|(w, h)| w * h).sum();
            let spread = entropy.iter().map(|h| (h - mean).abs()).fold(0.0, f64::max).max(1e-12);
            let mut improved = false;
            for _ in 0..8 {
                let mut trial: Vec<f64> =
                    weights.iter().zip(&entropy).map(|(w, h)| w * (-rate * (h - mean) / spread).exp()).collect();
                let total: f64 = trial.iter().sum();
                trial.iter_mut().for_each(|w| *w /= total);
                let start = self.feasible(&trial, best.theta.clone(), couplings);
                let next = self.descend(&trial, start, options)?;
                iterations += next.iterations;
                if next.value < best.value {
                    (weights, best, improved) = (trial, next, true);
                    rate *= 1.5;
                    break;
                }
                rate *= 0.5;
            }
            if !improved {
                break;
            }
        }
        let mut averaged = vec![0.0; self.graph.edges.len()];
        let mut total = vec![0.0; self.graph.edges.len()];
        for (((edges, _), m), &w) in self.parts.iter().zip(&best.marginals).zip(&weights) {
            for (&e, &mi) in edges.iter().zip(m) {
                averaged[e] += w * mi;
                total[e] += w;
            }
        }
        Ok(Bound {
            log_z: best.value,
            marginals: averaged.iter().zip(&total).map(|(a, w)| a / w).collect(),
            disagreement: self.disagreement(&best.marginals),
            weights,
            iterations,
        })
    }

    /// Per edge, `sum over parts holding it of rho_t^2`.
    fn square_weights(&self, weights: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; self.graph.edges.len()];
        for ((edges, _), &w) in self.parts.iter().zip(weights) {
            edges.iter().for_each(|&e| out[e] += w * w);
        }
        out
    }

    /// The nearest couplings to `theta` with `sum_t rho_t theta_t = couplings`.
    fn feasible(&self, weights: &[f64], mut theta: Vec<Vec<f64>>, couplings: &[f64]) -> Vec<Vec<f64>> {
        let square = self.square_weights(weights);
        let mut residual = couplings.to_vec();
        for (((edges, _), t), &w) in self.parts.iter().zip(&theta).zip(weights) {
            edges.iter().zip(t).for_each(|(&e, &x)| residual[e] -= w * x);
        }
        for (((edges, _), t), &w) in self.parts.iter().zip(&mut theta).zip(weights) {
            edges.iter().zip(t.iter_mut()).for_each(|(&e, x)| *x += w * residual[e] / square[e]);
        }
        theta
    }

    fn descend(&self, weights: &[f64], mut theta: Vec<Vec<f64>>, options: BoundOptions) -> Result<Descent> {
        let square = self.square_weights(weights);
        let (mut value, mut log_z, mut marginals) = self.evaluate(weights, &theta)?;
        let mut gradient = self.projected(weights, &square, &marginals);
        let mut step = 1.0;
        let mut iterations = 0;
        while iterations < options.max_iterations && self.disagreement(&marginals) > options.tolerance {
            iterations += 1;
            let slope: f64 = dot(&gradient, &gradient);
            // Backtracking (Armijo) along the projected gradient, which keeps the constraint.
            let (next, next_value, next_log_z, next_marginals) = loop {
                let trial: Vec<Vec<f64>> = theta
                    .iter()
                    .zip(&gradient)
                    .map(|(t, g)| t.iter().zip(g).map(|(a, b)| a - step * b).collect())
                    .collect();
                let (v, l, m) = self.evaluate(weights, &trial)?;
                if v <= value - 1e-4 * step * slope || step < 1e-12 {
                    break (trial, v, l, m);
                }
                step *= 0.5;
            };
            let next_gradient = self.projected(weights, &square, &next_marginals);
            // Barzilai-Borwein: the step that fits the last change of the gradient.
            let s = difference(&next, &theta);
            let y = difference(&next_gradient, &gradient);
            let sy = dot(&s, &y);
            step = if sy > 0.0 { (dot(&s, &s) / sy).clamp(1e-6, 1e6) } else { step * 2.0 };
            (theta, value, log_z, marginals, gradient) = (next, next_value, next_log_z, next_marginals, next_gradient);
        }
        Ok(Descent { theta, value, log_z, marginals, iterations })
    }

    /// The bound, every part's `log Z` and every part's edge marginals.
    fn evaluate(&self, weights: &[f64], theta: &[Vec<f64>]) -> Result<(f64, Vec<f64>, Vec<Vec<f64>>)> {
        let (mut value, mut log_z, mut marginals) = (0.0, Vec::new(), Vec::new());
        for (((_, solver), t), &w) in self.parts.iter().zip(theta).zip(weights) {
            let r = solver.infer(t)?;
            value += w * r.log_z;
            log_z.push(r.log_z);
            marginals.push(r.marginals);
        }
        Ok((value, log_z, marginals))
    }

    /// The gradient `rho_t mu_t` projected onto the constraint's null space: per edge, subtract
    /// `rho_t (sum_s rho_s^2 mu_s) / (sum_s rho_s^2)` (the rows of the constraint have disjoint
    /// supports, so this is the orthogonal projection).
    fn projected(&self, weights: &[f64], square: &[f64], marginals: &[Vec<f64>]) -> Vec<Vec<f64>> {
        let mut mean = vec![0.0; self.graph.edges.len()];
        for (((edges, _), m), &w) in self.parts.iter().zip(marginals).zip(weights) {
            edges.iter().zip(m).for_each(|(&e, &mi)| mean[e] += w * w * mi / square[e]);
        }
        self.parts
            .iter()
            .zip(marginals)
            .zip(weights)
            .map(|(((edges, _), m), &w)| edges.iter().zip(m).map(|(&e, &mi)| w * (mi - mean[e])).collect())
            .collect()
    }

    fn disagreement(&self, marginals: &[Vec<f64>]) -> f64 {
        let n = self.graph.edges.len();
        let (mut low, mut high) = (vec![f64::INFINITY; n], vec![f64::NEG_INFINITY; n]);
        for ((edges, _), m) in self.parts.iter().zip(marginals) {
            for (&e, &mi) in edges.iter().zip(m) {
                low[e] = low[e].min(mi);
                high[e] = high[e].max(mi);
            }
        }
        low.iter().zip(&high).map(|(l, h)| h - l).fold(0.0, f64::max)
    }
}

fn difference(a: &[Vec<f64>], b: &[Vec<f64>]) -> Vec<Vec<f64>> {
    a.iter().zip(b).map(|(x, y)| x.iter().zip(y).map(|(p, q)| p - q).collect()).collect()
}

fn dot(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>()).sum()
}
