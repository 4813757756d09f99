//! Few-shot sine regression trained with exact, FOM and UFOM outer gradients (docs/math.md §8), on the
//! CPU: the final meta-test loss, the training time and the peak heap of a gradient estimate for
//! inner loops of r = 5 ... 100 steps.
//!
//! `cargo run --release --example meta_regression -- [outer steps] [hidden]` (defaults 500 and 40):
//! tasks `y = a sin(x - p)`, 10 support and 10 query points, inner lr 0.02, outer lr 0.01, 2 tasks per
//! step; the meta-test loss is the query loss after the inner loop, over 200 held-out tasks.

use ortho_ref::bilevel::regression::SineTask;
use ortho_ref::bilevel::{self, Estimator, InnerLoop, Method, Problem, Sgd};
use ortho_ref::heap::{Counting, peak_bytes};
use ortho_ref::random::Gaussian;
use std::time::Instant;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (steps, hidden) = (number(0, 500), number(1, 40));
    let mut rng = Gaussian::new(1);
    let train: Vec<SineTask> = (0..1000).map(|_| SineTask::random(hidden, 10, &mut rng)).collect();
    let test: Vec<SineTask> = (0..200).map(|_| SineTask::random(hidden, 10, &mut rng)).collect();
    let theta0 = SineTask::initial(hidden, 2);
    println!("{steps} outer steps, hidden {hidden}, 1000 training tasks, 200 held-out tasks");
    println!("| r | method | meta-test loss | time | peak heap of one estimate | final q |");
    println!("|---|---|---|---|---|---|");
    for r in [5, 20, 100] {
        let inner = InnerLoop { steps: r, lr: 0.02 };
        let loss =
            |theta: &[f64]| test.iter().map(|t| t.outer_loss(&inner.run(t, theta, r))).sum::<f64>() / test.len() as f64;
        println!("| {r} | (start) | {:.4} | | | |", loss(&theta0));
        for (name, method) in [
            ("exact", Method::Exact),
            ("exact-o1", Method::ExactO1),
            ("FOM", Method::Fom),
            ("UFOM q = 0.1", Method::Ufom(0.1)),
            ("UFOM adaptive", Method::UfomAdaptive),
        ] {
            let mut estimator = Estimator::new(method, 3).expect("a valid method");
            let mut sgd = Sgd::new(&train, inner, 0.01, 2, 4);
            let t = Instant::now();
            let (trajectory, _) = bilevel::sgd(&mut sgd, &theta0, steps, &mut estimator);
            let seconds = t.elapsed().as_secs_f64();
            let last = trajectory.last().expect("theta0 is stored");
            // The largest over ten estimates, so a UFOM draw that computes its correction is among them.
            let bytes = (0..10u64)
                .map(|seed| {
                    let mut one = Estimator::new(method, seed).expect("a valid method");
                    peak_bytes(|| one.estimate(&train[0], last, inner))
                })
                .max()
                .unwrap_or(0);
            println!(
                "| {r} | {name} | {:.4} | {seconds:.2} s | {:.1} KiB | {:.3} |",
                loss(last),
                bytes as f64 / 1024.0,
                estimator.q()
            );
        }
    }
}
