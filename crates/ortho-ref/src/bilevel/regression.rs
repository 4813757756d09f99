//! Few-shot sine regression (docs/math.md §8): tasks `y = a sin(x - p)`, a one-hidden-layer tanh
//! network fitted to a task's support points by the inner loop and scored on its query points; exact
//! gradients and Hessian-vector products (forward-over-reverse, by hand).

use super::Problem;
use crate::random::Gaussian;

/// One task: support points for the inner loss, query points for the outer loss, and the width of
/// the network `f(x) = w2 . tanh(w1 x + b1) + b2` whose parameters are `[w1, b1, w2, b2]`
/// (`3 hidden + 1` of them).
#[derive(Debug, Clone, PartialEq)]
pub struct SineTask {
    pub hidden: usize,
    pub support: Vec<(f64, f64)>,
    pub query: Vec<(f64, f64)>,
}

impl SineTask {
    /// A task with amplitude in [0.1, 5], phase in [0, pi], and `shots` support and query points each,
    /// x uniform in [-5, 5].
    pub fn random(hidden: usize, shots: usize, rng: &mut Gaussian) -> SineTask {
        let a = 0.1 + 4.9 * rng.uniform();
        let p = std::f64::consts::PI * rng.uniform();
        let mut points = |n: usize| {
            (0..n)
                .map(|_| {
                    let x = -5.0 + 10.0 * rng.uniform();
                    (x, a * (x - p).sin())
                })
                .collect()
        };
        let support = points(shots);
        let query = points(shots);
        SineTask { hidden, support, query }
    }

    /// A starting point: small Gaussian weights, zero biases.
    pub fn initial(hidden: usize, seed: u64) -> Vec<f64> {
        let mut rng = Gaussian::new(seed);
        let mut theta = vec![0.0; 3 * hidden + 1];
        for i in 0..hidden {
            theta[i] = rng.sample();
            theta[2 * hidden + i] = rng.sample() / (hidden as f64).sqrt();
        }
        theta
    }
}

/// Mean squared error over `points` of the network with parameters `theta`, its gradient, and (with
/// `v`) the Hessian-vector product (empty without `v`).
pub fn mse(theta: &[f64], hidden: usize, points: &[(f64, f64)], v: Option<&[f64]>) -> (f64, Vec<f64>, Vec<f64>) {
    let h = hidden;
    let (w1, b1, w2, b2) = (&theta[..h], &theta[h..2 * h], &theta[2 * h..3 * h], theta[3 * h]);
    let scale = 1.0 / points.len() as f64;
    let (mut loss, mut grad, mut hvp) = (0.0, vec![0.0; 3 * h + 1], vec![0.0; if v.is_some() { 3 * h + 1 } else { 0 }]);
    for &(x, y) in points {
        let a: Vec<f64> = (0..h).map(|i| (w1[i] * x + b1[i]).tanh()).collect();
        let r = w2.iter().zip(&a).map(|(w, a)| w * a).sum::<f64>() + b2 - y;
        loss += scale * r * r;
        for i in 0..h {
            let gz = 2.0 * r * w2[i] * (1.0 - a[i] * a[i]);
            grad[i] += scale * gz * x;
            grad[h + i] += scale * gz;
            grad[2 * h + i] += scale * 2.0 * r * a[i];
        }
        grad[3 * h] += scale * 2.0 * r;
        // The directional derivative of every quantity above along v (the R operator).
        if let Some(v) = v {
            let (v1, vb, v2, vb2) = (&v[..h], &v[h..2 * h], &v[2 * h..3 * h], v[3 * h]);
            let ra: Vec<f64> = (0..h).map(|i| (1.0 - a[i] * a[i]) * (v1[i] * x + vb[i])).collect();
            let rr = (0..h).map(|i| v2[i] * a[i] + w2[i] * ra[i]).sum::<f64>() + vb2;
            for i in 0..h {
                let (d, ga) = (1.0 - a[i] * a[i], 2.0 * r * w2[i]);
                let rga = 2.0 * (rr * w2[i] + r * v2[i]);
                let rgz = rga * d - ga * 2.0 * a[i] * ra[i];
                hvp[i] += scale * rgz * x;
                hvp[h + i] += scale * rgz;
                hvp[2 * h + i] += scale * 2.0 * (rr * a[i] + r * ra[i]);
            }
            hvp[3 * h] += scale * 2.0 * rr;
        }
    }
    (loss, grad, hvp)
}

impl Problem for SineTask {
    fn dim(&self) -> usize {
        3 * self.hidden + 1
    }
    fn inner_gradient(&self, phi: &[f64]) -> Vec<f64> {
        mse(phi, self.hidden, &self.support, None).1
    }
    fn inner_hvp(&self, phi: &[f64], v: &[f64]) -> Vec<f64> {
        mse(phi, self.hidden, &self.support, Some(v)).2
    }
    fn outer_gradient(&self, phi: &[f64]) -> Vec<f64> {
        mse(phi, self.hidden, &self.query, None).1
    }
    fn outer_loss(&self, phi: &[f64]) -> f64 {
        mse(phi, self.hidden, &self.query, None).0
    }
}
