//! Matrix flows `W' = W b(t, W)` on the orthogonal group and the nested ODEtoODE system, in f64
//! (docs/math.md §3.2). Right action: the commutator signs are flipped from the left-action formulas of
//! most texts. Updates are in increment form `W+ = W + W (E - I)` with `E - I` evaluated directly.

use crate::error::{Error, Result};
use crate::expm::{Matrix, Ring, THETA_F32, THETA_F64, cayley_increment, expm_increment};
use crate::tensor::Tensor;

/// The Lie-group integrator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `W+ = W exp(B1)`, order 1.
    LieEuler,
    /// `W+ = W cay(B1)`, order 1.
    CayleyEuler,
    /// Runge–Kutta–Munthe-Kaas of order 4 (right action).
    Rkmk4,
}

impl Method {
    pub const ALL: [Method; 3] = [Method::LieEuler, Method::CayleyEuler, Method::Rkmk4];

    /// The method's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Method::LieEuler => "lie-euler",
            Method::CayleyEuler => "cayley-euler",
            Method::Rkmk4 => "rkmk4",
        }
    }
}

impl std::str::FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match Method::ALL.into_iter().find(|m| m.name() == s) {
            Some(m) => Ok(m),
            None => Err(Error::argument("method", format!("'{s}' is not one of lie-euler, cayley-euler, rkmk4"))),
        }
    }
}

/// The activation of the nested state `x' = sigma(W x)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Tanh,
    Relu,
    Identity,
}

impl Activation {
    pub fn apply(self, v: f64) -> f64 {
        match self {
            Activation::Tanh => v.tanh(),
            Activation::Relu => v.max(0.0),
            Activation::Identity => v,
        }
    }
}

impl std::str::FromStr for Activation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "tanh" => Ok(Activation::Tanh),
            "relu" => Ok(Activation::Relu),
            "identity" => Ok(Activation::Identity),
            _ => Err(Error::argument("activation", format!("'{s}' is not one of tanh, relu, identity"))),
        }
    }
}

/// Symmetry tolerance for `Qs`, `Ns` and skew tolerance for given generators, relative to the
/// largest entry.
pub const STRUCTURE_TOLERANCE: f64 = 1e-6;

/// The skew generator field `b`.
#[derive(Debug, Clone)]
pub enum Generator {
    /// Per-step skew matrices `Omega: [steps, batch, n, n]`: `W_(k+1) = W_k exp(h Omega_k)`.
    Given(Tensor<f64>),
    /// `b(W) = [W^T Qs W, Ns]` with symmetric `Qs, Ns` (`[n, n]` or `[batch, n, n]`): the eigenvalues
    /// of `W^T Qs W` are invariant.
    Isospectral { qs: Tensor<f64>, ns: Tensor<f64> },
}

/// One integration: method, step and count, optional Newton–Schulz every k steps, optional nested
/// state `x: [batch, n]` with its activation.
#[derive(Debug, Clone)]
pub struct Flow {
    pub method: Method,
    pub dt: f64,
    pub steps: usize,
    pub newton_schulz_every: Option<usize>,
    pub generator: Generator,
    pub state: Option<(Tensor<f64>, Activation)>,
}

fn commutator(a: &Matrix, b: &Matrix) -> Matrix {
    a.mul(b).add(&b.mul(a).scale(-1.0))
}

fn transpose(m: &Matrix) -> Matrix {
    Matrix { n: m.n, data: crate::cwy::transpose_of(&m.data, m.n, m.n) }
}

fn check_structure(name: &str, m: &Matrix, skew: bool, batch: usize) -> Result<()> {
    let scale = m.data.iter().fold(0.0f64, |a, x| a.max(x.abs())).max(f64::MIN_POSITIVE);
    let sign = if skew { -1.0 } else { 1.0 };
    for i in 0..m.n {
        for j in 0..m.n {
            let gap = (m.data[i * m.n + j] - sign * m.data[j * m.n + i]).abs();
            if gap > STRUCTURE_TOLERANCE * scale {
                let kind = if skew { "skew-symmetric" } else { "symmetric" };
                return Err(Error::argument(
                    name,
                    format!("matrix {batch} is not {kind}: entries ({i}, {j}) and ({j}, {i}) differ by {gap:e}"),
                ));
            }
        }
    }
    Ok(())
}

/// Matrix `z` of a `[n, n]` (shared) or `[batch, n, n]` tensor.
fn matrix_of(t: &Tensor<f64>, z: usize, n: usize) -> Matrix {
    let z = if t.shape().len() == 2 { 0 } else { z };
    Matrix { n, data: t.data()[z * n * n..(z + 1) * n * n].to_vec() }
}

impl Flow {
    /// The flow of batch entries `first..first + count` (of `batch`): its generators and nested
    /// state sliced alike, shared `[n, n]` matrices kept whole.
    pub fn batch_slice(&self, batch: usize, first: usize, count: usize) -> Flow {
        let rows = |t: &Tensor<f64>, axis: usize| {
            if t.shape().len() > axis + 2 && t.shape()[axis] == batch {
                t.slice_axis(axis, first, count)
            } else {
                t.clone()
            }
        };
        let generator = match &self.generator {
            Generator::Given(omega) => Generator::Given(rows(omega, 1)),
            Generator::Isospectral { qs, ns } => Generator::Isospectral { qs: rows(qs, 0), ns: rows(ns, 0) },
        };
        let state = self.state.as_ref().map(|(x, act)| (x.slice_axis(0, first, count), *act));
        Flow { generator, state, ..self.clone() }
    }

    /// Checks every input and returns `(batch, n)`.
    pub fn check(&self, w0: &Tensor<f64>) -> Result<(usize, usize)> {
        let dims = self.check_shape(w0.shape())?;
        w0.check_finite("w0")?;
        Ok(dims)
    }

    /// Checks the flow's own inputs against the shape of `w0` and returns `(batch, n)`.
    pub fn check_shape(&self, w0: &[usize]) -> Result<(usize, usize)> {
        let (b, n) = crate::expm::square_dims("w0", w0)?;
        if !(self.dt.is_finite() && self.dt > 0.0) {
            return Err(Error::argument("dt", format!("the step must be positive and finite, got {}", self.dt)));
        }
        if self.newton_schulz_every == Some(0) {
            return Err(Error::argument("newton-schulz-every", "must be at least 1"));
        }
        match &self.generator {
            Generator::Given(omega) => {
                if omega.shape() != [self.steps, b, n, n] {
                    return Err(Error::shape(
                        "generators",
                        format!("[{}, {b}, {n}, {n}] (steps, batch, n, n)", self.steps),
                        omega.shape(),
                    ));
                }
                omega.check_finite("generators")?;
                for k in 0..self.steps * b {
                    let m = Matrix { n, data: omega.data()[k * n * n..(k + 1) * n * n].to_vec() };
                    check_structure("generators", &m, true, k)?;
                }
            }
            Generator::Isospectral { qs, ns } => {
                for (name, t) in [("qs", qs), ("ns", ns)] {
                    let ok = t.shape() == [n, n] || t.shape() == [b, n, n];
                    if !ok {
                        return Err(Error::shape(name, format!("[{n}, {n}] or [{b}, {n}, {n}]"), t.shape()));
                    }
                    t.check_finite(name)?;
                    for z in 0..if t.shape().len() == 2 { 1 } else { b } {
                        check_structure(name, &matrix_of(t, z, n), false, z)?;
                    }
                }
            }
        }
        if let Some((x, _)) = &self.state {
            if x.shape() != [b, n] {
                return Err(Error::shape("x0", format!("[{b}, {n}]"), x.shape()));
            }
            x.check_finite("x0")?;
        }
        Ok((b, n))
    }

    /// `h b(t_k, W)` for flow `z` at step `k`.
    fn field(&self, z: usize, k: usize, w: &Matrix) -> Matrix {
        let n = w.n;
        let b = match &self.generator {
            Generator::Given(omega) => {
                let batch = omega.shape()[1];
                let at = (k * batch + z) * n * n;
                Matrix { n, data: omega.data()[at..at + n * n].to_vec() }
            }
            Generator::Isospectral { qs, ns } => {
                let wqw = transpose(w).mul(&matrix_of(qs, z, n)).mul(w);
                commutator(&wqw, &matrix_of(ns, z, n))
            }
        };
        b.scale(self.dt)
    }

    fn increment(&self, b: &Matrix) -> Result<Matrix> {
        match self.method {
            Method::CayleyEuler => cayley_increment(b),
            _ => Ok(expm_increment(b, &THETA_F64)),
        }
    }

    /// `W exp(B)` (or `W cay(B)`) in increment form.
    fn advance(&self, w: &Matrix, b: &Matrix) -> Result<Matrix> {
        Ok(w.add(&w.mul(&self.increment(b)?)))
    }

    /// Flops of the whole integration from `w0` (`2 n^3` a product), counted at the first step's
    /// generators (their norms set the exponential's degree): per field evaluation 4 products for the
    /// isospectral field, per map its own and 1 for `W (E - I)`; RKMK4 evaluates 4 fields and 4 maps and
    /// 2 commutators of 2 products. Nested states and Newton–Schulz steps are not counted.
    pub fn flops(&self, w0: &Tensor<f64>) -> Result<f64> {
        let (b, n) = self.check(w0)?;
        let field = match self.generator {
            Generator::Given(_) => 0.0,
            Generator::Isospectral { .. } => 4.0,
        };
        let mut products = 0.0;
        for z in 0..b {
            let w = Matrix { n, data: w0.data()[z * n * n..(z + 1) * n * n].to_vec() };
            let map = 1.0
                + match self.method {
                    Method::CayleyEuler => crate::expm::cayley_flops(1, n) / (2 * n * n * n) as f64,
                    _ => crate::expm::expm_products(crate::expm::one_norm(&self.field(z, 0, &w).data, n), &THETA_F32)
                        as f64,
                };
            products += match self.method {
                Method::LieEuler | Method::CayleyEuler => field + map,
                Method::Rkmk4 => 4.0 * (field + map) + 4.0,
            };
        }
        Ok(2.0 * (n * n * n) as f64 * products * self.steps as f64)
    }

    /// Integrates every flow from `w0` (`[n, n]` or `[batch, n, n]`); returns `W` after the last step
    /// and, with a nested state, `x`.
    pub fn run(&self, w0: &Tensor<f64>) -> Result<(Tensor<f64>, Option<Tensor<f64>>)> {
        let (b, n) = self.check(w0)?;
        let mut ws = Vec::with_capacity(b * n * n);
        let mut xs = Vec::new();
        for z in 0..b {
            let mut w = Matrix { n, data: w0.data()[z * n * n..(z + 1) * n * n].to_vec() };
            let mut x = self.state.as_ref().map(|(x, _)| x.data()[z * n..(z + 1) * n].to_vec());
            for k in 0..self.steps {
                let (next, stages) = self.step(z, k, &w)?;
                if let (Some(xv), Some((_, act))) = (x.as_mut(), &self.state) {
                    *xv = self.state_step(xv, &stages, *act);
                }
                w = next;
                if self.newton_schulz_every.is_some_and(|e| (k + 1) % e == 0) {
                    w = newton_schulz(&w);
                }
            }
            ws.extend(w.data);
            if let Some(xv) = x {
                xs.extend(xv);
            }
        }
        let x = match &self.state {
            Some((x0, _)) => Some(Tensor::new(x0.shape(), xs)?),
            None => None,
        };
        Ok((Tensor::new(w0.shape(), ws)?, x))
    }

    /// One step of flow `z`: the new W and the W of each stage (for the nested state).
    fn step(&self, z: usize, k: usize, w: &Matrix) -> Result<(Matrix, Vec<Matrix>)> {
        let b1 = self.field(z, k, w);
        match self.method {
            Method::LieEuler | Method::CayleyEuler => Ok((self.advance(w, &b1)?, vec![w.clone()])),
            Method::Rkmk4 => {
                let w2 = self.advance(w, &b1.scale(0.5))?;
                let b2 = self.field(z, k, &w2);
                let w3 = self.advance(w, &b2.scale(0.5).add(&commutator(&b1, &b2).scale(1.0 / 8.0)))?;
                let b3 = self.field(z, k, &w3);
                let w4 = self.advance(w, &b3)?;
                let b4 = self.field(z, k, &w4);
                let mix = b1.add(&b2.scale(2.0)).add(&b3.scale(2.0)).add(&b4).scale(1.0 / 6.0);
                let next = self.advance(w, &mix.add(&commutator(&b1, &b4).scale(1.0 / 12.0)))?;
                Ok((next, vec![w.clone(), w2, w3, w4]))
            }
        }
    }

    /// `x' = sigma(W x)` over one step: forward Euler with the step's W for the first-order methods,
    /// classical RK4 with the RKMK stage matrices for RKMK4.
    fn state_step(&self, x: &[f64], stages: &[Matrix], act: Activation) -> Vec<f64> {
        let h = self.dt;
        let f = |w: &Matrix, x: &[f64]| -> Vec<f64> {
            (0..w.n).map(|i| act.apply((0..w.n).map(|j| w.data[i * w.n + j] * x[j]).sum())).collect()
        };
        let axpy = |a: f64, d: &[f64]| -> Vec<f64> { x.iter().zip(d).map(|(x, d)| x + a * d).collect() };
        if stages.len() == 1 {
            return axpy(h, &f(&stages[0], x));
        }
        let k1 = f(&stages[0], x);
        let k2 = f(&stages[1], &axpy(h / 2.0, &k1));
        let k3 = f(&stages[2], &axpy(h / 2.0, &k2));
        let k4 = f(&stages[3], &axpy(h, &k3));
        (0..x.len()).map(|i| x[i] + h / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i])).collect()
    }
}

/// One Newton–Schulz step towards the nearest orthogonal matrix: `X (3I - X^T X) / 2`.
pub fn newton_schulz(x: &Matrix) -> Matrix {
    let i = x.identity_like();
    x.mul(&i.scale(3.0).add(&transpose(x).mul(x).scale(-1.0))).scale(0.5)
}

/// `|W^T W - I|_F` of every matrix, summed in quadrature.
pub fn orthogonality_error(w: &Tensor<f64>) -> Result<f64> {
    let (b, n) = crate::expm::square_shape("w", w)?;
    let mut sum = 0.0;
    for z in 0..b {
        let m = matrix_of(w, z, n);
        let e = transpose(&m).mul(&m).add(&m.identity_like().scale(-1.0));
        sum += e.data.iter().map(|x| x * x).sum::<f64>();
    }
    Ok(sum.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::Gaussian;

    fn symmetric(n: usize, seed: u64) -> Tensor<f64> {
        let mut g = Gaussian::new(seed);
        let a: Vec<f64> = (0..n * n).map(|_| g.sample()).collect();
        Tensor::from_fn(&[n, n], |e| (a[e] + a[(e % n) * n + e / n]) / 2.0)
    }

    fn isospectral(method: Method, dt: f64, steps: usize) -> Flow {
        Flow {
            method,
            dt,
            steps,
            newton_schulz_every: None,
            generator: Generator::Isospectral { qs: symmetric(4, 1), ns: symmetric(4, 2) },
            state: None,
        }
    }

    fn identity(n: usize) -> Tensor<f64> {
        Tensor::from_fn(&[n, n], |e| if e / n == e % n { 1.0 } else { 0.0 })
    }

    /// Measured orders at T = 1 against a fine RKMK4 solution: 1, 1 and 4 (docs/math.md §3.3).
    #[test]
    fn measured_orders() {
        let exact = isospectral(Method::Rkmk4, 1.0 / 1024.0, 1024).run(&identity(4)).unwrap().0;
        for (method, order) in [(Method::LieEuler, 1.0), (Method::CayleyEuler, 1.0), (Method::Rkmk4, 4.0)] {
            let errs: Vec<f64> = [8, 16, 32]
                .iter()
                .map(|&k| {
                    let w = isospectral(method, 1.0 / k as f64, k).run(&identity(4)).unwrap().0;
                    crate::tensor::relative_frobenius(w.data(), exact.data())
                })
                .collect();
            eprintln!(
                "{method:?}: errors {errs:?}, orders {:?}",
                errs.windows(2).map(|p| (p[0] / p[1]).log2()).collect::<Vec<_>>()
            );
            for pair in errs.windows(2) {
                let measured = (pair[0] / pair[1]).log2();
                assert!((measured - order).abs() <= 0.3, "{method:?}: order {measured} (errors {errs:?})");
            }
        }
    }

    #[test]
    fn flows_stay_orthogonal_and_isospectral() {
        let flow = isospectral(Method::Rkmk4, 0.05, 40);
        let (w, _) = flow.run(&identity(4)).unwrap();
        assert!(orthogonality_error(&w).unwrap() < 1e-12);
        // The trace of powers of W^T Qs W (its spectral moments) is unchanged.
        let Generator::Isospectral { qs, .. } = &flow.generator else { unreachable!() };
        let m = Matrix { n: 4, data: w.data().to_vec() };
        let q = Matrix { n: 4, data: qs.data().to_vec() };
        let moved = transpose(&m).mul(&q).mul(&m);
        let trace = |a: &Matrix| (0..4).map(|i| a.data[i * 5]).sum::<f64>();
        assert!((trace(&moved.mul(&moved)) - trace(&q.mul(&q))).abs() < 1e-10);
        assert!((trace(&moved.mul(&moved).mul(&moved)) - trace(&q.mul(&q).mul(&q))).abs() < 1e-10);
    }

    #[test]
    fn given_generators_compose_exponentials() {
        let mut g = Gaussian::new(5);
        let (steps, n) = (3, 3);
        let raw: Vec<f64> = (0..steps * n * n).map(|_| g.sample()).collect();
        let omega = Tensor::from_fn(&[steps, 1, n, n], |e| {
            let (k, r) = (e / (n * n), e % (n * n));
            raw[k * n * n + r] - raw[k * n * n + (r % n) * n + r / n]
        });
        for method in [Method::LieEuler, Method::Rkmk4] {
            let flow = Flow {
                method,
                dt: 0.1,
                steps,
                newton_schulz_every: None,
                generator: Generator::Given(omega.clone()),
                state: None,
            };
            let (w, _) = flow.run(&identity(n)).unwrap();
            let mut want = Matrix { n, data: identity(n).into_data() };
            for k in 0..steps {
                let b = Matrix { n, data: omega.data()[k * n * n..(k + 1) * n * n].iter().map(|x| 0.1 * x).collect() };
                want = want.mul(&expm_increment(&b, &THETA_F64).add(&b.identity_like()));
            }
            assert!(crate::tensor::max_abs_diff(w.data(), &want.data) < 1e-13, "{method:?}");
        }
    }

    #[test]
    fn nested_state_follows_sigma_of_w_x() {
        let x0 = Tensor::new(&[1, 4], vec![0.5, -0.2, 0.1, 0.3]).unwrap();
        let mut flow = isospectral(Method::Rkmk4, 0.01, 100);
        flow.state = Some((x0.clone(), Activation::Identity));
        let (_, x) = flow.run(&identity(4)).unwrap();
        let x = x.unwrap();
        // Identity activation: |x| grows like e^t along W's symmetric part; here W stays orthogonal,
        // so |x(1)| <= e |x(0)|, and the state moved.
        let norm = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>().sqrt();
        assert!(norm(x.data()) <= std::f64::consts::E * norm(x0.data()) + 1e-9);
        assert!(crate::tensor::max_abs_diff(x.data(), x0.data()) > 0.1);
    }

    #[test]
    fn bad_inputs_are_named() {
        let mut flow = isospectral(Method::LieEuler, 0.1, 2);
        flow.generator = Generator::Isospectral { qs: Tensor::from_fn(&[4, 4], |e| e as f64), ns: symmetric(4, 2) };
        let err = flow.run(&identity(4)).unwrap_err().to_string();
        assert!(err.starts_with("invalid argument qs: matrix 0 is not symmetric"), "{err}");
        let omega = Tensor::from_fn(&[2, 1, 4, 4], |e| e as f64);
        flow.generator = Generator::Given(omega);
        assert!(flow.run(&identity(4)).unwrap_err().to_string().contains("not skew-symmetric"));
        assert!(flow.run(&Tensor::zeros(&[2, 3])).unwrap_err().to_string().starts_with("w0: expected shape"));
        flow.dt = -1.0;
        assert!(flow.run(&identity(4)).unwrap_err().to_string().contains("positive"));
    }
}
