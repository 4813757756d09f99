//! Approximate bi-level optimisation with an r-step inner loop (docs/math.md §8): outer gradients
//! exact (backpropagation, or recomputation in O(1) memory), first-order (FOM), and unbiased
//! first-order (UFOM: FOM plus, with probability q, the exact correction divided by q).

pub mod regression;

use crate::error::{Error, Result};
use crate::random::Gaussian;
use std::time::Instant;

/// An inner loss with its gradient and Hessian-vector products, and an outer loss with its gradient.
pub trait Problem {
    fn dim(&self) -> usize;
    fn inner_gradient(&self, phi: &[f64]) -> Vec<f64>;
    /// `(d^2 L_in / d phi^2)(phi) v`.
    fn inner_hvp(&self, phi: &[f64], v: &[f64]) -> Vec<f64>;
    fn outer_gradient(&self, phi: &[f64]) -> Vec<f64>;
    fn outer_loss(&self, phi: &[f64]) -> f64;
}

/// The inner loop `phi_j = phi_(j-1) - lr grad L_in(phi_(j-1))`, `phi_0 = theta`, for `steps` steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InnerLoop {
    pub steps: usize,
    pub lr: f64,
}

impl InnerLoop {
    fn step(&self, problem: &impl Problem, phi: &[f64]) -> Vec<f64> {
        phi.iter().zip(problem.inner_gradient(phi)).map(|(p, g)| p - self.lr * g).collect()
    }

    /// `phi_j` from `theta`.
    pub fn run(&self, problem: &impl Problem, theta: &[f64], steps: usize) -> Vec<f64> {
        (0..steps).fold(theta.to_vec(), |phi, _| self.step(problem, &phi))
    }
}

/// Quadratic task: `L_in = 1/2 (phi - c)^T A (phi - c)`, `L_out = 1/2 (phi - b)^T B (phi - b)`, with
/// `A`, `B` symmetric positive definite (row-major `n x n`).
#[derive(Debug, Clone, PartialEq)]
pub struct Quadratic {
    pub n: usize,
    pub a: Vec<f64>,
    pub c: Vec<f64>,
    pub b: Vec<f64>,
    pub target: Vec<f64>,
}

impl Quadratic {
    /// Checks shapes, finiteness, symmetry (to 1e-12 relative) and positive definiteness (Cholesky);
    /// `name` labels the task in errors.
    pub fn new(name: &str, n: usize, a: Vec<f64>, c: Vec<f64>, b: Vec<f64>, target: Vec<f64>) -> Result<Quadratic> {
        for (what, m) in [("inner matrix", &a), ("outer matrix", &b)] {
            if m.len() != n * n {
                return Err(Error::shape(&format!("{name} {what}"), format!("[{n}, {n}]"), &[m.len()]));
            }
            check_spd(&format!("{name} {what}"), m, n)?;
        }
        for (what, v) in [("inner target", &c), ("outer target", &target)] {
            if v.len() != n {
                return Err(Error::shape(&format!("{name} {what}"), format!("[{n}]"), &[v.len()]));
            }
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(Error::NonFinite { tensor: format!("{name} {what}"), index: vec![i], value: v[i] });
            }
        }
        Ok(Quadratic { n, a, c, b, target })
    }
}

fn matvec(m: &[f64], v: &[f64]) -> Vec<f64> {
    m.chunks(v.len()).map(|row| row.iter().zip(v).map(|(x, y)| x * y).sum()).collect()
}

fn difference(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

impl Problem for Quadratic {
    fn dim(&self) -> usize {
        self.n
    }
    fn inner_gradient(&self, phi: &[f64]) -> Vec<f64> {
        matvec(&self.a, &difference(phi, &self.c))
    }
    fn inner_hvp(&self, _phi: &[f64], v: &[f64]) -> Vec<f64> {
        matvec(&self.a, v)
    }
    fn outer_gradient(&self, phi: &[f64]) -> Vec<f64> {
        matvec(&self.b, &difference(phi, &self.target))
    }
    fn outer_loss(&self, phi: &[f64]) -> f64 {
        let d = difference(phi, &self.target);
        0.5 * d.iter().zip(matvec(&self.b, &d)).map(|(x, y)| x * y).sum::<f64>()
    }
}

/// `A` symmetric to 1e-12 relative and positive definite, else an error naming the failure.
pub fn check_spd(name: &str, a: &[f64], n: usize) -> Result<()> {
    if let Some(i) = a.iter().position(|x| !x.is_finite()) {
        return Err(Error::NonFinite { tensor: name.to_string(), index: vec![i / n, i % n], value: a[i] });
    }
    let scale = a.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    for i in 0..n {
        for j in 0..i {
            if (a[i * n + j] - a[j * n + i]).abs() > 1e-12 * scale {
                return Err(Error::argument(
                    name,
                    format!("is not symmetric: [{i}, {j}] = {} but [{j}, {i}] = {}", a[i * n + j], a[j * n + i]),
                ));
            }
        }
    }
    // Cholesky: a non-positive pivot means A is not positive definite.
    let mut l = vec![0.0; n * n];
    for j in 0..n {
        let pivot = a[j * n + j] - (0..j).map(|k| l[j * n + k] * l[j * n + k]).sum::<f64>();
        if pivot <= 0.0 {
            return Err(Error::argument(name, format!("is not positive definite (Cholesky pivot {j} = {pivot:.3e})")));
        }
        let d = pivot.sqrt();
        l[j * n + j] = d;
        for i in j + 1..n {
            l[i * n + j] = (a[i * n + j] - (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum::<f64>()) / d;
        }
    }
    Ok(())
}

/// A random symmetric positive definite `n x n` matrix: `Q diag(lambda) Q^T` with `Q` the Q factor
/// of a Gaussian matrix and eigenvalues uniform in `[low, high]`.
pub fn random_spd(n: usize, low: f64, high: f64, rng: &mut Gaussian) -> Vec<f64> {
    let g: Vec<f64> = (0..n * n).map(|_| rng.sample()).collect();
    let (q, _) = crate::linalg::qr(&g, n);
    let eig: Vec<f64> = (0..n).map(|_| low + (high - low) * rng.uniform()).collect();
    (0..n * n).map(|ij| (0..n).map(|k| q[ij / n * n + k] * eig[k] * q[ij % n * n + k]).sum()).collect()
}

/// First-order estimate: the outer gradient at `phi_r`, as if `d phi_r / d theta` were `I`.
pub fn fom(problem: &impl Problem, theta: &[f64], inner: InnerLoop) -> Vec<f64> {
    problem.outer_gradient(&inner.run(problem, theta, inner.steps))
}

/// The exact outer gradient by backpropagation through the stored iterates (O(r) memory):
/// `(I - lr H_1) ... (I - lr H_r) grad L_out(phi_r)` with `H_j` the inner Hessian at `phi_(j-1)`.
pub fn exact(problem: &impl Problem, theta: &[f64], inner: InnerLoop) -> Vec<f64> {
    let mut iterates = vec![theta.to_vec()];
    for _ in 0..inner.steps {
        let next = inner.step(problem, iterates.last().expect("theta is stored"));
        iterates.push(next);
    }
    let mut v = problem.outer_gradient(&iterates[inner.steps]);
    for phi in iterates[..inner.steps].iter().rev() {
        v = difference(&v, &problem.inner_hvp(phi, &v).iter().map(|h| inner.lr * h).collect::<Vec<_>>());
    }
    v
}

/// The same gradient in O(1) memory: each `phi_(j-1)` is recomputed from `theta` when the backward
/// pass needs it, O(r^2) inner steps.
pub fn exact_o1(problem: &impl Problem, theta: &[f64], inner: InnerLoop) -> Vec<f64> {
    let mut v = problem.outer_gradient(&inner.run(problem, theta, inner.steps));
    for j in (0..inner.steps).rev() {
        let phi = inner.run(problem, theta, j);
        v = difference(&v, &problem.inner_hvp(&phi, &v).iter().map(|h| inner.lr * h).collect::<Vec<_>>());
    }
    v
}

/// How outer gradients are estimated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    Exact,
    ExactO1,
    Fom,
    /// FOM plus, with probability q, `(exact - FOM) / q` (exact in O(1) memory).
    Ufom(f64),
    /// UFOM with q chosen from running estimates (docs/math.md §8).
    UfomAdaptive,
}

/// Estimates before the adaptive scheme trusts its running estimates (it uses q = 1 until then).
pub const ADAPTIVE_WARMUP: usize = 8;
/// The smallest q the adaptive scheme takes.
pub const ADAPTIVE_MIN_Q: f64 = 1e-3;

/// Draws gradient estimates by one method, seeded; keeps the adaptive scheme's running estimates.
pub struct Estimator {
    method: Method,
    rng: Gaussian,
    corrections: usize,
    /// Running means over corrected estimates: `|exact - FOM|^2`, `|exact|^2`, and the seconds of a
    /// FOM pass and of an exact pass.
    bias_square: f64,
    exact_square: f64,
    fom_seconds: f64,
    exact_seconds: f64,
    q: f64,
}

impl Estimator {
    pub fn new(method: Method, seed: u64) -> Result<Estimator> {
        let q = match method {
            Method::Ufom(q) if !(q > 0.0 && q <= 1.0) => {
                return Err(Error::argument("q", format!("must be in (0, 1], got {q}")));
            }
            Method::Ufom(q) => q,
            _ => 1.0,
        };
        Ok(Estimator {
            method,
            rng: Gaussian::new(seed),
            corrections: 0,
            bias_square: 0.0,
            exact_square: 0.0,
            fom_seconds: 0.0,
            exact_seconds: 0.0,
            q,
        })
    }

    /// The probability of a correction the next UFOM estimate uses.
    pub fn q(&self) -> f64 {
        self.q
    }

    pub fn estimate(&mut self, problem: &impl Problem, theta: &[f64], inner: InnerLoop) -> Vec<f64> {
        match self.method {
            Method::Exact => exact(problem, theta, inner),
            Method::ExactO1 => exact_o1(problem, theta, inner),
            Method::Fom => fom(problem, theta, inner),
            Method::Ufom(_) | Method::UfomAdaptive => {
                let t = Instant::now();
                let first = fom(problem, theta, inner);
                let fom_seconds = t.elapsed().as_secs_f64();
                if !self.draw() {
                    return first;
                }
                let t = Instant::now();
                let full = exact_o1(problem, theta, inner);
                self.corrected(&first, &full, [fom_seconds, t.elapsed().as_secs_f64()])
            }
        }
    }

    /// The method estimates are drawn by.
    pub fn method(&self) -> Method {
        self.method
    }

    /// Tosses the next UFOM estimate's coin: whether it adds the exact correction (probability q).
    pub fn draw(&mut self) -> bool {
        self.rng.uniform() < self.q
    }

    /// A UFOM estimate whose coin came up: `first + (full - first) / q` with the FOM estimate `first`
    /// and the exact gradient `full`, which cost `seconds` (FOM pass, exact pass); the adaptive
    /// scheme learns from them after q is used.
    pub fn corrected(&mut self, first: &[f64], full: &[f64], [fom_seconds, exact_seconds]: [f64; 2]) -> Vec<f64> {
        let correction = difference(full, first);
        let q = self.q;
        if self.method == Method::UfomAdaptive {
            self.learn(&correction, full, fom_seconds, exact_seconds);
        }
        first.iter().zip(&correction).map(|(f, c)| f + c / q).collect()
    }

    /// Update the running estimates and choose the q that minimises expected cost times the
    /// estimate's second moment: `(c_f + q c_e) (M2 + m (1/q - 1))` is least at
    /// `q = sqrt(c_f m / (c_e (M2 - m)))`, with `m = E|exact - FOM|^2` and `M2 = E|exact|^2`.
    fn learn(&mut self, correction: &[f64], full: &[f64], fom_seconds: f64, exact_seconds: f64) {
        self.corrections += 1;
        let w = 1.0 / self.corrections as f64;
        let square = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>();
        self.bias_square += w * (square(correction) - self.bias_square);
        self.exact_square += w * (square(full) - self.exact_square);
        self.fom_seconds += w * (fom_seconds - self.fom_seconds);
        self.exact_seconds += w * (exact_seconds - self.exact_seconds);
        if self.corrections < ADAPTIVE_WARMUP {
            return;
        }
        let spread = self.exact_square - self.bias_square;
        self.q = if spread <= 0.0 || self.exact_seconds <= 0.0 {
            1.0
        } else {
            (self.fom_seconds * self.bias_square / (self.exact_seconds * spread)).sqrt().clamp(ADAPTIVE_MIN_Q, 1.0)
        };
    }
}

/// SGD over tasks: each step samples `tasks_per_step` tasks uniformly with replacement and moves
/// `theta` by `-outer_lr` times the mean of their estimates.
pub struct Sgd<'a, P: Problem> {
    pub tasks: &'a [P],
    pub inner: InnerLoop,
    pub outer_lr: f64,
    pub tasks_per_step: usize,
    rng: Gaussian,
}

impl<'a, P: Problem> Sgd<'a, P> {
    /// Task draws come from `seed`.
    pub fn new(tasks: &'a [P], inner: InnerLoop, outer_lr: f64, tasks_per_step: usize, seed: u64) -> Self {
        Sgd { tasks, inner, outer_lr, tasks_per_step, rng: Gaussian::new(seed) }
    }

    /// A uniformly drawn task.
    pub fn task(&mut self) -> &'a P {
        let t = ((self.rng.uniform() * self.tasks.len() as f64) as usize).min(self.tasks.len() - 1);
        &self.tasks[t]
    }

    pub fn step(&mut self, theta: &[f64], estimator: &mut Estimator) -> Vec<f64> {
        let mut mean = vec![0.0; theta.len()];
        for _ in 0..self.tasks_per_step {
            let g = estimator.estimate(self.task(), theta, self.inner);
            mean.iter_mut().zip(&g).for_each(|(m, x)| *m += x / self.tasks_per_step as f64);
        }
        theta.iter().zip(&mean).map(|(t, g)| t - self.outer_lr * g).collect()
    }
}

/// `steps` steps of [`Sgd`] from `theta0`: the trajectory `[steps + 1][n]` and the q each step's
/// estimates used (1 for the methods without a correction probability).
pub fn sgd<P: Problem>(
    sgd: &mut Sgd<'_, P>,
    theta0: &[f64],
    steps: usize,
    estimator: &mut Estimator,
) -> (Vec<Vec<f64>>, Vec<f64>) {
    let mut trajectory = vec![theta0.to_vec()];
    let mut qs = Vec::with_capacity(steps);
    for _ in 0..steps {
        qs.push(estimator.q());
        let next = sgd.step(trajectory.last().expect("theta0 is stored"), estimator);
        trajectory.push(next);
    }
    (trajectory, qs)
}

/// For quadratic tasks, the minimiser of the mean outer loss `theta*` (where the mean exact gradient
/// vanishes) and FOM's fixed point (where the mean FOM estimate vanishes): with
/// `P = (I - lr A)^r` and `d = c - P c - b`, `phi_r = P theta + d + b`, so the exact gradient is
/// `P B (P theta + d)` and FOM's `B (P theta + d)`; each mean is a linear system.
pub fn quadratic_fixed_points(tasks: &[Quadratic], inner: InnerLoop) -> Result<(Vec<f64>, Vec<f64>)> {
    let n = tasks.first().map_or(0, |t| t.n);
    let (mut exact_m, mut exact_v) = (vec![0.0; n * n], vec![0.0; n]);
    let (mut fom_m, mut fom_v) = (vec![0.0; n * n], vec![0.0; n]);
    for task in tasks {
        let mut p: Vec<f64> = (0..n * n).map(|i| if i / n == i % n { 1.0 } else { 0.0 }).collect();
        let step: Vec<f64> = (0..n * n).map(|i| f64::from(u8::from(i / n == i % n)) - inner.lr * task.a[i]).collect();
        for _ in 0..inner.steps {
            p = crate::linalg::matmul(&p, &step, n, n, n);
        }
        let d: Vec<f64> = (0..n).map(|i| task.c[i] - matvec(&p, &task.c)[i] - task.target[i]).collect();
        let bp = crate::linalg::matmul(&task.b, &p, n, n, n);
        let pbp = crate::linalg::matmul(&p, &bp, n, n, n);
        let bd = matvec(&task.b, &d);
        let pbd = matvec(&p, &bd);
        for i in 0..n * n {
            exact_m[i] += pbp[i];
            fom_m[i] += bp[i];
        }
        for i in 0..n {
            exact_v[i] -= pbd[i];
            fom_v[i] -= bd[i];
        }
    }
    let solve = |m: &[f64], v: &[f64], what: &str| {
        crate::linalg::solve(m, v, n, 1)
            .ok_or_else(|| Error::argument("tasks", format!("the {what} system is singular")))
    };
    Ok((solve(&exact_m, &exact_v, "exact")?, solve(&fom_m, &fom_v, "FOM")?))
}
