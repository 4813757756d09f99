//! `ortho express`: inputs X and fixed weights W_Q, W_K of a self-attention module whose row-softmax
//! reproduces a sparse pattern within (epsilon, delta) (docs/math.md §9).

use crate::{Backend, engine, npy, outputs};
use clap::Args;
use ortho::Tensor;
use ortho::express::{Method, Options, Pattern, Tolerances, Trial, paper};
use std::path::PathBuf;

#[derive(Args)]
pub struct ExpressArgs {
    /// The pattern A: [L, L], nonnegative, every row with a nonzero (float32 or float64).
    #[arg(long)]
    pattern: PathBuf,
    /// Largest error of any log ratio log(M_ij / M_ij') against log(A_ij / A_ij') within a row's support.
    #[arg(long)]
    epsilon: f64,
    /// Largest softmax mass of any row outside its support, in (0, 1).
    #[arg(long)]
    delta: f64,
    /// The query and key dimension d (X is [L, 2d]); without it, the smallest d that succeeds is searched for.
    #[arg(long)]
    dim: Option<usize>,
    /// paper (the JL construction as written) or optimized (it, then Adam on X).
    #[arg(long, default_value = "optimized", value_parser = |s: &str| s.parse::<Method>().map_err(|e| e.to_string()))]
    method: Method,
    /// Seed of W_Q and W_K (they depend on d and the seed alone) and of the draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Draws at the given --dim before giving up.
    #[arg(long, default_value_t = 8)]
    max_tries: usize,
    /// Draws at each d of the search.
    #[arg(long, default_value_t = 2)]
    search_tries: usize,
    /// The largest d the search tries.
    #[arg(long, default_value_t = 1024)]
    max_dim: usize,
    /// Adam steps of one draw (optimized).
    #[arg(long, default_value_t = 2000)]
    max_iterations: usize,
    /// Adam steps without a 1% gain before a draw is abandoned (optimized).
    #[arg(long, default_value_t = 200)]
    patience: usize,
    /// Adam's learning rate (optimized).
    #[arg(long, default_value_t = 0.05)]
    learning_rate: f64,
    /// Where X goes: f32 [L, 2d].
    #[arg(long)]
    x: PathBuf,
    /// Where W_Q goes: f32 [2d, d].
    #[arg(long)]
    wq: PathBuf,
    /// Where W_K goes: f32 [2d, d].
    #[arg(long)]
    wk: PathBuf,
    #[command(flatten)]
    backend: Backend,
}

pub fn run(a: &ExpressArgs) -> Result<(), String> {
    let tol = Tolerances::new(a.epsilon, a.delta).map_err(|e| e.to_string())?;
    let mut out = outputs(&[("x", Some(&a.x)), ("wq", Some(&a.wq)), ("wk", Some(&a.wk))])?;
    let (shape, values) = npy::read_f64(&a.pattern, "pattern")?;
    let dense = Tensor::new(&shape, values).map_err(|e| e.to_string())?;
    let pattern = Pattern::from_dense(&dense).map_err(|e| e.to_string())?;
    let engine = engine(&a.backend)?;
    let options = Options {
        dim: a.dim,
        method: a.method,
        seed: a.seed,
        max_tries: a.max_tries,
        search_tries: a.search_tries,
        max_dim: a.max_dim,
        max_iterations: a.max_iterations,
        patience: a.patience,
        learning_rate: a.learning_rate,
        ..Options::new(tol)
    };
    let n = pattern.sparsity();
    eprintln!("ortho: express, L = {}, N = {n}, method {:?}", pattern.len, a.method);
    if a.method == Method::Paper {
        eprintln!("ortho: the proof's d for failure 1/2: {:.3e}", paper::dimension(&pattern, tol, 0.5));
    }
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    let observe = |t: &Trial| {
        let verdict = if t.succeeded { "met" } else { "missed" };
        let best = t.best;
        spinner.println(format!(
            "  d = {}: {verdict} the tolerances in {} draws (best epsilon {:.4}, delta {:.4})",
            t.dim, t.tries, best.epsilon, best.delta
        ));
    };
    let found = engine.express(&pattern, &options, observe).map_err(|e| e.to_string());
    spinner.finish_and_clear();
    let e = found?.expressed;
    println!(
        "d = {}, N = {n}, tries = {}, iterations = {}, epsilon = {:.4}, delta = {:.4}",
        e.dim, e.tries, e.iterations, e.achieved.epsilon, e.achieved.delta
    );
    for (i, t) in [&e.x, &e.wq, &e.wk].into_iter().enumerate() {
        out.write(i, &t.to_f32())?;
    }
    out.commit()
}
