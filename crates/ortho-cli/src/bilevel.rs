//! `ortho bilevel`: SGD on quadratic bi-level tasks with exact, first-order or unbiased first-order
//! outer gradients (docs/math.md §8), from .npy task arrays.

use crate::{npy, outputs};
use clap::{Args, ValueEnum};
use ortho_ref::bilevel::{self, Estimator, InnerLoop, Method, Quadratic};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MethodArg {
    /// Backpropagation through the stored inner iterates (memory grows with r).
    Exact,
    /// The exact gradient by recomputation: memory flat in r, time O(r^2).
    #[value(name = "exact-o1")]
    ExactO1,
    /// First-order: the outer gradient at the last inner iterate (biased).
    Fom,
    /// FOM plus, with probability --q, the exact correction divided by q (unbiased).
    Ufom,
    /// UFOM with q chosen from running estimates of the correction and the costs.
    #[value(name = "ufom-adaptive")]
    UfomAdaptive,
}

#[derive(Args)]
pub struct BilevelArgs {
    /// Inner Hessians A_t: [T, n, n], symmetric positive definite (inner loss 1/2 (phi - c_t)^T A_t (phi - c_t)).
    #[arg(long)]
    inner_matrices: PathBuf,
    /// Inner targets c_t: [T, n].
    #[arg(long)]
    inner_targets: PathBuf,
    /// Outer matrices B_t: [T, n, n], symmetric positive definite (outer loss 1/2 (phi - b_t)^T B_t (phi - b_t)).
    #[arg(long)]
    outer_matrices: PathBuf,
    /// Outer targets b_t: [T, n].
    #[arg(long)]
    outer_targets: PathBuf,
    /// Starting point theta_0: [n].
    #[arg(long)]
    theta0: PathBuf,
    /// Inner steps r.
    #[arg(long)]
    inner_steps: usize,
    /// Inner learning rate alpha.
    #[arg(long)]
    inner_lr: f64,
    /// Outer learning rate beta.
    #[arg(long, default_value_t = 0.1)]
    outer_lr: f64,
    /// Outer SGD steps K.
    #[arg(long, default_value_t = 0)]
    outer_steps: usize,
    #[arg(long, value_enum)]
    method: MethodArg,
    /// Probability of the exact correction (ufom only), in (0, 1].
    #[arg(long)]
    q: Option<f64>,
    /// Tasks sampled (uniformly, with replacement) per outer step.
    #[arg(long, default_value_t = 1)]
    tasks_per_step: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where the trajectory goes: f64 [K + 1, n].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Instead of SGD, draw this many single-task gradient estimates at theta_0 into --grads-out.
    #[arg(long)]
    estimates: Option<usize>,
    /// Where the estimates go: f64 [N, n].
    #[arg(long)]
    grads_out: Option<PathBuf>,
}

pub fn run(a: &BilevelArgs) -> Result<(), String> {
    match (a.estimates, &a.grads_out, &a.out) {
        (Some(_), None, _) => return Err("--estimates needs --grads-out for the estimates".into()),
        (None, Some(_), _) => return Err("--grads-out holds estimates: give --estimates N".into()),
        (None, None, None) => {
            return Err("nothing to write: give --out (with --outer-steps) or --estimates with --grads-out".into());
        }
        _ => {}
    }
    if a.out.is_some() && a.outer_steps == 0 {
        return Err("--out holds the SGD trajectory: give --outer-steps K".into());
    }
    let method = match (a.method, a.q) {
        (MethodArg::Ufom, Some(q)) => Method::Ufom(q),
        (MethodArg::Ufom, None) => return Err("--method ufom needs --q in (0, 1]".into()),
        (_, Some(_)) => return Err("--q is for --method ufom".into()),
        (MethodArg::Exact, None) => Method::Exact,
        (MethodArg::ExactO1, None) => Method::ExactO1,
        (MethodArg::Fom, None) => Method::Fom,
        (MethodArg::UfomAdaptive, None) => Method::UfomAdaptive,
    };
    for (name, value) in [("--inner-lr", a.inner_lr), ("--outer-lr", a.outer_lr)] {
        if !(value.is_finite() && value > 0.0) {
            return Err(format!("{name} must be positive and finite, got {value}"));
        }
    }
    if a.tasks_per_step == 0 {
        return Err("--tasks-per-step must be at least 1".into());
    }
    let mut estimator = Estimator::new(method, a.seed).map_err(|e| e.to_string())?;
    let mut out = outputs(&[("out", a.out.as_ref()), ("grads-out", a.grads_out.as_ref())])?;
    let (tasks, theta0) = read_tasks(a)?;
    let n = theta0.len();
    let inner = InnerLoop { steps: a.inner_steps, lr: a.inner_lr };
    eprintln!("ortho: bilevel, {} tasks of dimension {n}, r = {}, method {:?}", tasks.len(), a.inner_steps, method);
    let mut slot = 0;
    if a.out.is_some() {
        let bar = crate::progress_bar(a.outer_steps as u64, "outer steps");
        let mut sgd = bilevel::Sgd::new(&tasks, inner, a.outer_lr, a.tasks_per_step, a.seed.wrapping_add(1));
        let mut trajectory = vec![theta0.clone()];
        for _ in 0..a.outer_steps {
            let next = sgd.step(trajectory.last().expect("theta0 is stored"), &mut estimator);
            trajectory.push(next);
            bar.inc(1);
        }
        bar.finish_and_clear();
        let last = trajectory.last().expect("theta0 is stored");
        let loss = tasks.iter().map(|t| bilevel_loss(t, last, inner)).sum::<f64>() / tasks.len() as f64;
        eprintln!("ortho: mean outer loss at the last step {loss:.6e}");
        if method == Method::UfomAdaptive {
            eprintln!("ortho: adaptive q at the last step {:.4}", estimator.q());
        }
        if let Some(i) = trajectory.iter().flatten().position(|x| !x.is_finite()) {
            return Err(format!(
                "the trajectory diverged at step {} (try a smaller --outer-lr); nothing was written",
                i / n
            ));
        }
        let flat: Vec<f64> = trajectory.concat();
        out.write_values(slot, &[a.outer_steps + 1, n], &flat)?;
        slot += 1;
    }
    if let Some(count) = a.estimates {
        let mut draws = bilevel::Sgd::new(&tasks, inner, a.outer_lr, 1, a.seed.wrapping_add(2));
        let mut flat = Vec::with_capacity(count * n);
        for _ in 0..count {
            flat.extend(estimator.estimate(draws.task(), &theta0, inner));
        }
        out.write_values(slot, &[count, n], &flat)?;
    }
    out.commit()
}

fn bilevel_loss(task: &Quadratic, theta: &[f64], inner: InnerLoop) -> f64 {
    use ortho_ref::bilevel::Problem;
    task.outer_loss(&inner.run(task, theta, inner.steps))
}

fn read_tasks(a: &BilevelArgs) -> Result<(Vec<Quadratic>, Vec<f64>), String> {
    let (shape0, theta0) = npy::read_f64(&a.theta0, "theta0")?;
    let n = match shape0[..] {
        [n] if n > 0 => n,
        _ => return Err(format!("theta0: expected shape [n], got {shape0:?}")),
    };
    let (a_shape, am) = npy::read_f64(&a.inner_matrices, "inner-matrices")?;
    let count = match a_shape[..] {
        [t, r, c] if r == n && c == n && t > 0 => t,
        _ => return Err(format!("inner-matrices: expected shape [T, {n}, {n}], got {a_shape:?}")),
    };
    let read = |path: &PathBuf, name: &str, want: &[usize]| -> Result<Vec<f64>, String> {
        let (shape, data) = npy::read_f64(path, name)?;
        if shape != want {
            return Err(format!("{name}: expected shape {want:?}, got {shape:?}"));
        }
        Ok(data)
    };
    let c = read(&a.inner_targets, "inner-targets", &[count, n])?;
    let bm = read(&a.outer_matrices, "outer-matrices", &[count, n, n])?;
    let b = read(&a.outer_targets, "outer-targets", &[count, n])?;
    if let Some(i) = theta0.iter().position(|x| !x.is_finite()) {
        return Err(format!("theta0: non-finite value {} at index [{i}]", theta0[i]));
    }
    let tasks = (0..count)
        .map(|t| {
            let block = |v: &[f64], size: usize| v[t * size..(t + 1) * size].to_vec();
            Quadratic::new(&format!("task {t}"), n, block(&am, n * n), block(&c, n), block(&bm, n * n), block(&b, n))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Ok((tasks, theta0))
}
