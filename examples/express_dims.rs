//! The smallest query dimension d at which a fixed attention module reproduces random N-sparse
//! patterns within (epsilon, delta) = (0.5, 0.05) (docs/math.md §9), against L, for the paper's
//! construction and the optimized one, on the engine's best adapter.
//!
//! ```sh
//! cargo run --release --example express_dims -- --lengths 64,128,256 --sparsities 1,4 \
//!     --methods optimized,paper --out express-report
//! ```
//!
//! Prints a markdown table as it goes (d, the success rate of `--rate-draws` fresh draws at that d,
//! the search's draws and time; for the paper's method also the d its proof asks for) and the slope of
//! d against log2 L per series; writes `express_dims.json` (after every row) and `express_dims.svg`
//! into `--out`.
//! `--start-dim D` starts each series' search at D (a guess, such as a shorter L's answer).
//! `--plot-from A.json,B.json` draws the runs of several such files into one plot instead.

use ortho::Engine;
use ortho::express::{Method, Options, Pattern, Tolerances, paper};
use ortho_bench::plots::{Series, line_plot};
use std::time::Instant;

/// `ortho_ref::express::random_pattern`, read as a pattern.
fn random_pattern(len: usize, n: usize, seed: u64) -> Pattern {
    Pattern::from_dense(&ortho_ref::express::random_pattern(len, n, seed)).expect("a valid pattern")
}

fn list(args: &[String], name: &str, default: &str) -> Vec<String> {
    let at = args.iter().position(|a| a == name);
    let value = at.and_then(|i| args.get(i + 1)).map_or(default, |s| s.as_str());
    value.split(',').map(str::to_string).collect()
}

/// Least-squares slope of `d` against `log2 L`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mx, my) = points.iter().fold((0.0, 0.0), |(a, b), &(x, y)| (a + x.log2() / n, b + y / n));
    let (sxy, sxx) = points.iter().fold((0.0, 0.0), |(a, b), &(x, y)| {
        let dx = x.log2() - mx;
        (a + dx * (y - my), b + dx * dx)
    });
    if sxx > 0.0 { sxy / sxx } else { f64::NAN }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let lengths: Vec<usize> =
        list(&args, "--lengths", "64,128,256,512,1024,2048").iter().map(|s| s.parse()).collect::<Result<_, _>>()?;
    let sparsities: Vec<usize> =
        list(&args, "--sparsities", "1,4,16").iter().map(|s| s.parse()).collect::<Result<_, _>>()?;
    let methods: Vec<Method> =
        list(&args, "--methods", "optimized,paper").iter().map(|s| s.parse()).collect::<Result<_, _>>()?;
    let rate_draws: usize = list(&args, "--rate-draws", "4")[0].parse()?;
    let max_dim: usize = list(&args, "--max-dim", "1024")[0].parse()?;
    // Where each series' search starts (later lengths start from the previous answer).
    let first_dim: usize = list(&args, "--start-dim", "1")[0].parse()?;
    let out = std::path::PathBuf::from(&list(&args, "--out", "express-report")[0]);
    std::fs::create_dir_all(&out)?;
    if args.iter().any(|a| a == "--plot-from") {
        let mut rows = Vec::new();
        for file in list(&args, "--plot-from", "") {
            let runs: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(file)?)?;
            rows.extend(runs);
        }
        return plot(&rows, &out);
    }
    let engine = Engine::new()?;
    let tol = Tolerances::new(0.5, 0.05)?;
    println!("# {} — (epsilon, delta) = (0.5, 0.05)\n", engine.describe());
    println!("| method | N | L | d | d / L | success at d | search draws | seconds | proof's d (p = 1/2) |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut rows = Vec::new();
    for &method in &methods {
        for &n in &sparsities {
            let mut start = first_dim;
            for &len in &lengths {
                let pattern = random_pattern(len, n, (len * 100 + n) as u64);
                let options = Options { method, start_dim: start, max_dim, seed: len as u64, ..Options::new(tol) };
                let clock = Instant::now();
                let found = engine.express(&pattern, &options, |_| {});
                let seconds = clock.elapsed().as_secs_f64();
                let proof = paper::dimension(&pattern, tol, 0.5);
                let (dim, rate, draws) = match &found {
                    Ok(f) => {
                        let dim = f.expressed.dim;
                        let draws: usize = f.trials.iter().map(|t| t.tries).sum();
                        // Fresh weights and draws at the answer: each its own seed, one draw.
                        let wins = (0..rate_draws)
                            .filter(|&r| {
                                let fresh = Options { dim: Some(dim), max_tries: 1, seed: 1000 + r as u64, ..options };
                                engine.express(&pattern, &fresh, |_| {}).is_ok()
                            })
                            .count();
                        (Some(dim), format!("{wins}/{rate_draws}"), draws)
                    }
                    Err(_) => (None, "—".into(), 0),
                };
                let shown = dim.map_or(format!("> {max_dim}"), |d| d.to_string());
                let ratio = dim.map_or("—".into(), |d| format!("{:.3}", d as f64 / len as f64));
                println!(
                    "| {method:?} | {n} | {len} | {shown} | {ratio} | {rate} | {draws} | {seconds:.1} | {proof:.3e} |"
                );
                start = dim.unwrap_or(start);
                rows.push(serde_json::json!({
                    "method": format!("{method:?}"), "n": n, "len": len, "dim": dim, "success": rate,
                    "search_draws": draws, "seconds": seconds, "proof_dim": proof,
                }));
                // After every row, so that a run stopped half-way keeps what it measured.
                std::fs::write(out.join("express_dims.json"), serde_json::to_string_pretty(&rows)?)?;
            }
        }
    }
    plot(&rows, &out)
}

/// The plot of `d` against `L`, a series per (method, N), and each series' slope against log2 L.
fn plot(rows: &[serde_json::Value], out: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let mut series: Vec<Series> = Vec::new();
    for row in rows {
        let (Some(len), Some(dim)) = (row["len"].as_f64(), row["dim"].as_f64()) else { continue };
        let label = format!("{}, N = {}", row["method"].as_str().unwrap_or("?"), row["n"]);
        match series.iter_mut().find(|s| s.label == label) {
            Some(s) => s.points.push((len, dim)),
            None => series.push(Series { colour: series.len(), label, points: vec![(len, dim)] }),
        }
    }
    for s in &series {
        if s.points.len() >= 2 {
            println!("slope of d against log2 L ({}): {:.2}", s.label, slope(&s.points));
        }
    }
    let svg = line_plot("Smallest d against L (epsilon 0.5, delta 0.05)", ("L (log scale)", "d"), series, false)?;
    std::fs::write(out.join("express_dims.svg"), svg)?;
    Ok(())
}
