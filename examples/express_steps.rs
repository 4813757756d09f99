//! Seconds per Adam step of the expressivity refinement (docs/math.md §9.3) against L, on the
//! engine's best adapter: one draw of `--steps` steps at a fixed d (a check every 10), after a
//! 10-step draw that compiles the pipelines; and the most the engine's buffer pool held during the
//! timed draw (its inputs, moments and scratch).
//!
//! ```sh
//! cargo run --release --example express_steps -- --sparsity 4 --dim 12 --steps 20 --lengths 1024,2048,4096
//! ```

use ortho::Engine;
use ortho::express::{Options, Pattern, Tolerances, weights};
use std::sync::Arc;
use std::time::Instant;

fn arg(args: &[String], name: &str, default: &str) -> String {
    let at = args.iter().position(|a| a == name);
    at.and_then(|i| args.get(i + 1)).map_or(default, |s| s.as_str()).to_string()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let sparsity: usize = arg(&args, "--sparsity", "4").parse()?;
    let dim: usize = arg(&args, "--dim", "12").parse()?;
    let steps: usize = arg(&args, "--steps", "20").parse()?;
    let lengths = arg(&args, "--lengths", "1024,2048,4096");
    let engine = Engine::new()?;
    println!("# {}: N = {sparsity}, d = {dim}, {steps} steps\n", engine.describe());
    println!("| L | s / step | pool peak (MiB) | epsilon, delta after |");
    println!("| --- | --- | --- | --- |");
    for len in lengths.split(',').map(str::parse::<usize>) {
        let len = len?;
        let a = ortho_ref::express::random_pattern(len, sparsity, 7);
        let pattern = Arc::new(Pattern::from_dense(&a)?);
        let (wq, wk) = weights(dim, 1)?;
        // Tolerances no draw meets, so that every step runs.
        let options = Options { max_iterations: steps, patience: steps, ..Options::new(Tolerances::new(1e-6, 1e-6)?) };
        engine.express_draw(&pattern, &Options { max_iterations: 10, ..options }, &wq, &wk, 1)?;
        engine.reset_peak();
        let clock = Instant::now();
        let draw = engine.express_draw(&pattern, &options, &wq, &wk, 2)?;
        let per_step = clock.elapsed().as_secs_f64() / draw.iterations.max(1) as f64;
        let peak = engine.pool_stats().peak_bytes as f64 / (1 << 20) as f64;
        println!("| {len} | {per_step:.4} | {peak:.2} | {:.3}, {:.4} |", draw.achieved.epsilon, draw.achieved.delta);
    }
    Ok(())
}
