//! Time and memory of the outer-gradient estimators against the inner loop's length r, and the
//! adaptive UFOM's q along one SGD run, on quadratic bi-level tasks (docs/math.md §8).
//!
//! `cargo run --release --example bilevel_quadratic -- [n] [tasks]` (defaults 64 and 8).

use ortho_ref::bilevel::{self, Estimator, InnerLoop, Method, Quadratic, Sgd};
use ortho_ref::heap::{Counting, peak_bytes};
use ortho_ref::random::Gaussian;
use std::time::Instant;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (n, count) = (number(0, 64), number(1, 8));
    let mut rng = Gaussian::new(1);
    let tasks: Vec<Quadratic> = (0..count)
        .map(|_| {
            let a = bilevel::random_spd(n, 0.5, 3.0, &mut rng);
            let b = bilevel::random_spd(n, 0.2, 2.0, &mut rng);
            let c: Vec<f64> = (0..n).map(|_| rng.sample()).collect();
            let t: Vec<f64> = (0..n).map(|_| rng.sample()).collect();
            Quadratic::new("task", n, a, c, b, t).expect("random SPD tasks")
        })
        .collect();
    let theta: Vec<f64> = (0..n).map(|_| rng.sample()).collect();

    println!("n = {n}, {count} tasks: time per estimate (mean over draws) and peak heap of one estimate");
    println!("| r | exact | exact-o1 | FOM | UFOM q = 0.1 | peak heap exact | exact-o1 | FOM |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in [5, 10, 20, 50, 100] {
        let inner = InnerLoop { steps: r, lr: 0.1 };
        let mut row = format!("| {r} |");
        let draws = 40;
        for method in [Method::Exact, Method::ExactO1, Method::Fom, Method::Ufom(0.1)] {
            let mut estimator = Estimator::new(method, 2).expect("a valid method");
            let t = Instant::now();
            for k in 0..draws {
                std::hint::black_box(estimator.estimate(&tasks[k % count], &theta, inner));
            }
            row += &format!(" {:.3} ms |", 1e3 * t.elapsed().as_secs_f64() / draws as f64);
        }
        for f in [bilevel::exact, bilevel::exact_o1, bilevel::fom] {
            let bytes = peak_bytes(|| f(&tasks[0], &theta, inner));
            row += &format!(" {:.1} KiB |", bytes as f64 / 1024.0);
        }
        println!("{row}");
    }

    // SGD on a small, well-conditioned problem, where the runs settle within the time shown.
    let small: Vec<Quadratic> = (0..6)
        .map(|_| {
            let (a, b) = (bilevel::random_spd(4, 0.5, 3.0, &mut rng), bilevel::random_spd(4, 0.2, 2.0, &mut rng));
            let c: Vec<f64> = (0..4).map(|_| rng.sample()).collect();
            let t: Vec<f64> = (0..4).map(|_| rng.sample()).collect();
            Quadratic::new("task", 4, a, c, b, t).expect("random SPD tasks")
        })
        .collect();
    let distance = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>().sqrt();
    let steps = 20000;
    // A large FOM correction (inner lr 0.02) and a small one (0.002).
    for inner_lr in [0.02, 0.002] {
        let inner = InnerLoop { steps: 40, lr: inner_lr };
        let (optimum, fom_point) = bilevel::quadratic_fixed_points(&small, inner).expect("a nonsingular mean system");
        println!(
            "\nSGD, n = 4, 6 tasks, r = 40, inner lr {inner_lr}, outer lr 0.1, 4 tasks per step, {steps} steps; \
             |theta* - FOM fixed point| = {:.3}",
            distance(&optimum, &fom_point)
        );
        println!(
            "| method | time | |mean of the second half - theta*| | - FOM point| | q at steps 0, 10, 100, 1000, 10000, last |"
        );
        println!("|---|---|---|---|---|");
        for (name, method) in [
            ("exact", Method::Exact),
            ("FOM", Method::Fom),
            ("UFOM q = 0.1", Method::Ufom(0.1)),
            ("UFOM adaptive", Method::UfomAdaptive),
        ] {
            let mut estimator = Estimator::new(method, 3).expect("a valid method");
            let mut sgd = Sgd::new(&small, inner, 0.1, 4, 4);
            let t = Instant::now();
            let (trajectory, qs) = bilevel::sgd(&mut sgd, &[0.0; 4], steps, &mut estimator);
            let seconds = t.elapsed().as_secs_f64();
            let tail = &trajectory[steps / 2..];
            let mean: Vec<f64> = (0..4).map(|i| tail.iter().map(|t| t[i]).sum::<f64>() / tail.len() as f64).collect();
            let picks: Vec<String> =
                [0, 10, 100, 1000, 10000, steps - 1].iter().map(|&k| format!("{:.3}", qs[k])).collect();
            println!(
                "| {name} | {seconds:.2} s | {:.4} | {:.4} | {} |",
                distance(&mean, &optimum),
                distance(&mean, &fom_point),
                picks.join(", ")
            );
        }
    }
}
