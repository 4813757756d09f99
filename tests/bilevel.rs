//! Bi-level outer gradients (docs/math.md §8): exact against finite differences, UFOM unbiased and
//! FOM biased, SGD reaching the closed-form optimum (exact, UFOM) or FOM's own fixed point.

use ortho_ref::bilevel::{self, Estimator, InnerLoop, Method, Problem, Quadratic};
use ortho_ref::random::Gaussian;

/// A random symmetric positive definite matrix with eigenvalues in [low, high].
fn spd(n: usize, low: f64, high: f64, seed: u64) -> Vec<f64> {
    bilevel::random_spd(n, low, high, &mut Gaussian::new(seed))
}

fn vector(n: usize, scale: f64, seed: u64) -> Vec<f64> {
    let mut rng = Gaussian::new(seed);
    (0..n).map(|_| scale * rng.sample()).collect()
}

/// Tasks whose inner and outer curvatures differ (they do not commute), so FOM is biased.
fn tasks(count: usize, n: usize, seed: u64) -> Vec<Quadratic> {
    (0..count as u64)
        .map(|t| {
            let s = seed * 100 + t * 4;
            Quadratic::new(
                "task",
                n,
                spd(n, 0.5, 3.0, s),
                vector(n, 1.0, s + 1),
                spd(n, 0.2, 2.0, s + 2),
                vector(n, 1.0, s + 3),
            )
            .unwrap()
        })
        .collect()
}

/// A non-quadratic inner loss, `sum_i softplus(w_i phi_i) + 1/2 |phi - c|^2 / 4`, whose Hessian
/// changes along the inner loop, so the order of the backward pass matters.
struct Softplus {
    w: Vec<f64>,
    c: Vec<f64>,
    target: Vec<f64>,
}

impl Problem for Softplus {
    fn dim(&self) -> usize {
        self.w.len()
    }
    fn inner_gradient(&self, phi: &[f64]) -> Vec<f64> {
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        (0..phi.len()).map(|i| self.w[i] * sigmoid(self.w[i] * phi[i]) + 0.25 * (phi[i] - self.c[i])).collect()
    }
    fn inner_hvp(&self, phi: &[f64], v: &[f64]) -> Vec<f64> {
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        (0..phi.len())
            .map(|i| {
                let s = sigmoid(self.w[i] * phi[i]);
                (self.w[i] * self.w[i] * s * (1.0 - s) + 0.25) * v[i]
            })
            .collect()
    }
    fn outer_gradient(&self, phi: &[f64]) -> Vec<f64> {
        phi.iter().zip(&self.target).map(|(p, t)| (p - t).powi(3)).collect()
    }
    fn outer_loss(&self, phi: &[f64]) -> f64 {
        phi.iter().zip(&self.target).map(|(p, t)| 0.25 * (p - t).powi(4)).sum()
    }
}

#[test]
fn exact_gradients_match_finite_differences() {
    let softplus = Softplus { w: vector(5, 2.0, 1), c: vector(5, 1.0, 2), target: vector(5, 1.0, 3) };
    let quadratic = tasks(1, 6, 7).remove(0);
    for steps in [1, 5, 30] {
        let inner = InnerLoop { steps, lr: 0.3 };
        let check = |problem: &dyn Fn(&[f64]) -> f64, theta: &[f64], gradient: &[f64], name: &str| {
            for i in 0..theta.len() {
                let h = 1e-5;
                let (mut up, mut down) = (theta.to_vec(), theta.to_vec());
                up[i] += h;
                down[i] -= h;
                let fd = (problem(&up) - problem(&down)) / (2.0 * h);
                assert!(
                    (fd - gradient[i]).abs() < 1e-6 * (1.0 + fd.abs()),
                    "{name} r = {steps}, [{i}]: {fd} vs {}",
                    gradient[i]
                );
            }
        };
        let theta = vector(5, 1.0, 4);
        let exact = bilevel::exact(&softplus, &theta, inner);
        let loss = |t: &[f64]| softplus.outer_loss(&inner.run(&softplus, t, steps));
        check(&loss, &theta, &exact, "softplus");
        let o1 = bilevel::exact_o1(&softplus, &theta, inner);
        assert!(
            exact.iter().zip(&o1).all(|(a, b)| (a - b).abs() <= 1e-12 * (1.0 + a.abs())),
            "exact-o1 {o1:?} vs {exact:?}"
        );
        let theta = vector(6, 1.0, 5);
        let exact = bilevel::exact(&quadratic, &theta, inner);
        let loss = |t: &[f64]| quadratic.outer_loss(&inner.run(&quadratic, t, steps));
        check(&loss, &theta, &exact, "quadratic");
    }
}

#[test]
fn ufom_is_unbiased_and_fom_is_not() {
    let (n, count) = (4, 6);
    let tasks = tasks(count, n, 11);
    let inner = InnerLoop { steps: 10, lr: 0.2 };
    let theta = vector(n, 1.0, 12);
    // The mean over tasks of the exact gradient (the full outer gradient) and of FOM.
    let mean = |f: &dyn Fn(&Quadratic) -> Vec<f64>| {
        tasks.iter().fold(vec![0.0; n], |acc, t| acc.iter().zip(f(t)).map(|(a, g)| a + g / count as f64).collect())
    };
    let exact = mean(&|t| bilevel::exact(t, &theta, inner));
    let fom = mean(&|t| bilevel::fom(t, &theta, inner));
    for method in [Method::Ufom(0.2), Method::Ufom(1.0), Method::UfomAdaptive, Method::Fom] {
        let mut estimator = Estimator::new(method, 13).unwrap();
        let mut rng = Gaussian::new(14);
        let draws = 20000;
        let (mut sum, mut square) = (vec![0.0; n], vec![0.0; n]);
        for _ in 0..draws {
            let t = ((rng.uniform() * count as f64) as usize).min(count - 1);
            let g = estimator.estimate(&tasks[t], &theta, inner);
            for i in 0..n {
                sum[i] += g[i];
                square[i] += g[i] * g[i];
            }
        }
        let worst = (0..n)
            .map(|i| {
                let m = sum[i] / draws as f64;
                let se = ((square[i] / draws as f64 - m * m) / draws as f64).sqrt();
                (m - exact[i]).abs() / se
            })
            .fold(0.0, f64::max);
        if method == Method::Fom {
            assert!(worst > 20.0, "FOM's mean should be off by many standard errors, got {worst}");
        } else {
            assert!(worst < 5.0, "{method:?}: mean off by {worst} standard errors");
        }
    }
    assert!(
        exact.iter().zip(&fom).any(|(e, f)| (e - f).abs() > 0.05),
        "the problem shows FOM's bias: {exact:?} vs {fom:?}"
    );
}

#[test]
fn sgd_reaches_the_optimum_and_fom_its_own_fixed_point() {
    let (n, count) = (3, 5);
    let tasks = tasks(count, n, 21);
    let inner = InnerLoop { steps: 3, lr: 0.1 };
    let (optimum, fom_point) = bilevel::quadratic_fixed_points(&tasks, inner).unwrap();
    let distance = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt();
    assert!(distance(&optimum, &fom_point) > 0.1, "the fixed points differ: {optimum:?} vs {fom_point:?}");
    let theta0 = vec![0.0; n];
    for (method, want) in [
        (Method::Exact, &optimum),
        (Method::Ufom(0.3), &optimum),
        (Method::UfomAdaptive, &optimum),
        (Method::Fom, &fom_point),
    ] {
        let mut estimator = Estimator::new(method, 22).unwrap();
        let mut sgd = bilevel::Sgd::new(&tasks, inner, 0.1, 4, 23);
        let (trajectory, _) = bilevel::sgd(&mut sgd, &theta0, 20000, &mut estimator);
        // Polyak averaging over the second half removes most of the sampling noise.
        let tail = &trajectory[10000..];
        let average: Vec<f64> = (0..n).map(|i| tail.iter().map(|t| t[i]).sum::<f64>() / tail.len() as f64).collect();
        assert!(distance(&average, want) < 0.03, "{method:?}: {average:?} vs {want:?}");
    }
}

#[test]
fn bad_problems_are_clear_errors() {
    let n = 2;
    let ok = vec![2.0, 0.5, 0.5, 1.0];
    let err = |a: Vec<f64>, b: Vec<f64>| {
        Quadratic::new("task 3", n, a, vec![0.0; 2], b, vec![0.0; 2]).unwrap_err().to_string()
    };
    assert!(
        err(vec![2.0, 0.5, 0.4, 1.0], ok.clone()).contains("task 3 inner matrix")
            && err(vec![2.0, 0.5, 0.4, 1.0], ok.clone()).contains("not symmetric")
    );
    let indefinite = err(ok.clone(), vec![1.0, 2.0, 2.0, 1.0]);
    assert!(
        indefinite.contains("task 3 outer matrix") && indefinite.contains("is not positive definite"),
        "{indefinite}"
    );
    assert!(err(vec![1.0; 3], ok.clone()).contains("[2, 2]"));
    assert!(err(vec![f64::NAN, 0.0, 0.0, 1.0], ok.clone()).contains("non-finite"));
    for q in [0.0, -0.5, 1.5, f64::NAN] {
        assert!(Estimator::new(Method::Ufom(q), 0).err().unwrap().to_string().contains("(0, 1]"));
    }
}

#[test]
fn sine_regression_gradients_and_hvps_match_finite_differences() {
    use ortho_ref::bilevel::regression::SineTask;
    let mut rng = Gaussian::new(31);
    let task = SineTask::random(8, 10, &mut rng);
    let theta = SineTask::initial(8, 32);
    let v = vector(theta.len(), 1.0, 33);
    let h = 1e-5;
    let shifted = |s: f64| -> Vec<f64> { theta.iter().zip(&v).map(|(t, d)| t + s * d).collect() };
    // The gradient along v, and the HVP as the derivative of the gradient along v.
    let outer = task.outer_gradient(&theta);
    let fd = (task.outer_loss(&shifted(h)) - task.outer_loss(&shifted(-h))) / (2.0 * h);
    let along: f64 = outer.iter().zip(&v).map(|(g, d)| g * d).sum();
    assert!((fd - along).abs() < 1e-6 * (1.0 + fd.abs()), "gradient: {fd} vs {along}");
    let hvp = task.inner_hvp(&theta, &v);
    let (up, down) = (task.inner_gradient(&shifted(h)), task.inner_gradient(&shifted(-h)));
    for i in 0..theta.len() {
        let fd = (up[i] - down[i]) / (2.0 * h);
        assert!((fd - hvp[i]).abs() < 1e-6 * (1.0 + fd.abs()), "HVP [{i}]: {fd} vs {}", hvp[i]);
    }
    // The exact outer gradient through 5 inner steps against finite differences of the outer loss.
    let inner = InnerLoop { steps: 5, lr: 0.05 };
    let exact = bilevel::exact(&task, &theta, inner);
    let loss = |t: &[f64]| task.outer_loss(&inner.run(&task, t, 5));
    let fd = (loss(&shifted(h)) - loss(&shifted(-h))) / (2.0 * h);
    let along: f64 = exact.iter().zip(&v).map(|(g, d)| g * d).sum();
    assert!((fd - along).abs() < 1e-6 * (1.0 + fd.abs()), "outer gradient: {fd} vs {along}");
    assert_eq!(bilevel::exact_o1(&task, &theta, inner), exact);
}
