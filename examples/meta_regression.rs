//! Few-shot regression trained with exact, FOM and UFOM outer gradients (docs/math.md §8): the final
//! meta-test loss, the training time and the peak memory of one step's estimates for inner loops of
//! r = 5 ... 100 steps.
//!
//! `cargo run --release --example meta_regression -- [outer steps] [hidden] [tasks per step] [cpu|gpu]
//! [r,r,..]` (defaults 500, 40, 2, cpu, 5,20,100): tasks `y = a sin(x - p)`, 10 support and 10 query points, inner lr
//! 0.02, outer lr 0.01; the meta-test loss is the query loss after the inner loop, over 200 held-out
//! tasks. `cpu` runs the f64 twin one task at a time (peak: the heap, counted by the allocator); `gpu`
//! batches each step's tasks on the GPU (`Engine::meta_estimates`, f32; peak: the engine's buffer
//! pool).

use ortho::Engine;
use ortho::bilevel::OuterGradient;
use ortho_ref::bilevel::regression::SineTask;
use ortho_ref::bilevel::{Estimator, InnerLoop, Method, Problem, Sgd};
use ortho_ref::heap::{Counting, peak_bytes};
use ortho_ref::random::Gaussian;
use std::time::Instant;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Where estimates are computed: the CPU twin, or an engine with a GPU.
enum Backend {
    Cpu,
    Gpu(Engine),
}

impl Backend {
    fn estimates(
        &self,
        estimator: &mut Estimator,
        batch: &[SineTask],
        theta: &[f64],
        inner: InnerLoop,
    ) -> Vec<Vec<f64>> {
        match self {
            Backend::Cpu => batch.iter().map(|t| estimator.estimate(t, theta, inner)).collect(),
            Backend::Gpu(engine) => engine.meta_estimates(estimator, batch, theta, inner).expect("GPU estimates"),
        }
    }

    /// The mean query loss after the inner loop.
    fn loss(&self, tasks: &[SineTask], theta: &[f64], inner: InnerLoop) -> f64 {
        let total: f64 = match self {
            Backend::Cpu => tasks.iter().map(|t| t.outer_loss(&inner.run(t, theta, inner.steps))).sum(),
            Backend::Gpu(engine) => {
                let (_, losses) = engine.meta_gradient(tasks, theta, inner, OuterGradient::Fom).expect("GPU losses");
                losses.data().iter().map(|&l| f64::from(l)).sum()
            }
        };
        total / tasks.len() as f64
    }

    /// Peak bytes while `f` runs: heap on the CPU, the buffer pool on the GPU.
    fn peak(&self, f: impl FnOnce()) -> u64 {
        match self {
            Backend::Cpu => peak_bytes(f) as u64,
            Backend::Gpu(engine) => {
                engine.reset_peak();
                f();
                engine.pool_stats().peak_bytes
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (steps, hidden, per_step) = (number(0, 500), number(1, 40), number(2, 2));
    let backend = match args.get(3).map(String::as_str) {
        Some("gpu") => {
            let engine = Engine::new().expect("an engine");
            assert!(engine.is_gpu(), "no GPU adapter: {}", engine.describe());
            println!("{}", engine.describe());
            Backend::Gpu(engine)
        }
        _ => Backend::Cpu,
    };
    let mut rng = Gaussian::new(1);
    let train: Vec<SineTask> = (0..1000).map(|_| SineTask::random(hidden, 10, &mut rng)).collect();
    let test: Vec<SineTask> = (0..200).map(|_| SineTask::random(hidden, 10, &mut rng)).collect();
    let theta0 = SineTask::initial(hidden, 2);
    println!("{steps} outer steps of {per_step} tasks, hidden {hidden}, 1000 training tasks, 200 held-out tasks");
    println!("| r | method | meta-test loss | time | peak memory of one step's estimates | final q |");
    println!("|---|---|---|---|---|---|");
    let lengths: Vec<usize> = match args.get(4) {
        Some(list) => list.split(',').map(|r| r.parse().expect("inner loop lengths like 5,20,100")).collect(),
        None => vec![5, 20, 100],
    };
    for r in lengths {
        let inner = InnerLoop { steps: r, lr: 0.02 };
        println!("| {r} | (start) | {:.4} | | | |", backend.loss(&test, &theta0, inner));
        for (name, method) in [
            ("exact", Method::Exact),
            ("exact-o1", Method::ExactO1),
            ("FOM", Method::Fom),
            ("UFOM q = 0.1", Method::Ufom(0.1)),
            ("UFOM adaptive", Method::UfomAdaptive),
        ] {
            let mut estimator = Estimator::new(method, 3).expect("a valid method");
            let mut draws = Sgd::new(&train, inner, 0.01, per_step, 4);
            let mut theta = theta0.clone();
            let t = Instant::now();
            for _ in 0..steps {
                let batch: Vec<SineTask> = (0..per_step).map(|_| draws.task().clone()).collect();
                for g in backend.estimates(&mut estimator, &batch, &theta, inner) {
                    theta.iter_mut().zip(&g).for_each(|(t, g)| *t -= 0.01 * g / per_step as f64);
                }
            }
            let seconds = t.elapsed().as_secs_f64();
            // The largest over ten steps, so a UFOM draw that computes its correction is among them.
            let batch = &train[..per_step];
            let bytes = (0..10u64)
                .map(|seed| {
                    let mut one = Estimator::new(method, seed).expect("a valid method");
                    backend.peak(|| drop(backend.estimates(&mut one, batch, &theta, inner)))
                })
                .max()
                .unwrap_or(0);
            println!(
                "| {r} | {name} | {:.4} | {seconds:.2} s | {:.1} KiB | {:.3} |",
                backend.loss(&test, &theta, inner),
                bytes as f64 / 1024.0,
                estimator.q()
            );
        }
    }
}
