//! Batched exact Ising inference: `log Z` and every marginal of 1024 coupling sets on one square
//! grid, on each GPU adapter (f32; dense LU up to Kasteleyn order 128, the multifrontal QR and its
//! reverse pass above; GPU timestamps of one run after a warm-up of two sets, then one more run
//! checked against the f64 results) against the CPU's sparse f64 solver doing the same sets one by
//! one (wall clock), in the same run.
//!
//!     cargo bench --bench ising [-- SIDE...]     (sides 4 8 16 32 by default; ORTHO_BACKEND=vulkan
//!                                                 for one adapter)
//!     cargo bench --bench ising -- paths         (both factorisations on small grids: where
//!                                                 `Factorisation::Auto` switches)

#[path = "common/mod.rs"]
mod common;
use common::*;
use ortho::ops::{DENSE_AUTO_MAX, Factorisation, IsingBatch};
use ortho::{MeasureOptions, Tensor};
use ortho_ref::ising::{Graph, Planar, generate};
use std::time::Instant;

/// 1024 sets of `|J|` in 1e-3 ... 1 on a `w x h` grid, and the first two of them (the warm-up).
fn coupling_sets(w: usize, h: usize, seed: u64) -> (Graph, Tensor<f32>, Tensor<f32>) {
    let ids: Vec<(i64, i64)> = generate::grid(w, h).iter().map(|&(u, v)| (u as i64, v as i64)).collect();
    let graph = Graph::new(None, &ids).expect("a grid");
    let e = graph.edges.len();
    let j = generate::couplings(1024 * e, 1e-3, 1.0, seed);
    let couplings = Tensor::new(&[1024, e], j.iter().map(|&x| x as f32).collect()).expect("couplings");
    let warm = Tensor::new(&[2, e], couplings.data()[..2 * e].to_vec()).expect("two sets");
    (graph, couplings, warm)
}

/// One timed run after a warm-up: GPU seconds and the pool's peak bytes.
fn gpu_time(engine: &ortho::Engine, op: &IsingBatch, warm: &Tensor<f32>, couplings: &Tensor<f32>) -> (f64, u64) {
    let once = MeasureOptions { warmup: 0, repeats: 1 };
    engine.time_device(op, &[warm], once).expect("warm-up");
    let times = engine.time_device(op, &[couplings], once).expect("batched inference");
    (times.seconds[0], times.peak_bytes)
}

/// Dense against frontal on small grids, `log Z` and marginals of 1024 sets.
fn paths() {
    println!("| grid | Kasteleyn order | adapter | dense LU | multifrontal QR |");
    println!("|---|---|---|---|---|");
    for (w, h) in [(2, 3), (4, 4), (4, 6)] {
        let (graph, couplings, warm) = coupling_sets(w, h, (w * h) as u64);
        let order = 2 * (3 * w * h - 6);
        for engine in engines() {
            let time = |f: Factorisation| {
                let op = IsingBatch::with_factorisation(&graph, true, f).expect("a planar graph");
                gpu_time(&engine, &op, &warm, &couplings).0
            };
            let (dense, frontal) = (time(Factorisation::Dense), time(Factorisation::Frontal));
            println!("| {w}x{h} | {order} | {} | {dense:.3} s | {frontal:.3} s |", engine.describe());
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "paths") {
        return paths();
    }
    let batch = 1024;
    let sides: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let sides = if sides.is_empty() { vec![4, 8, 16, 32] } else { sides };
    println!(
        "| grid | Kasteleyn order | path | adapter | GPU batch | per set | CPU one by one | CPU / GPU | peak pool MiB | worst error |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for side in sides {
        let (graph, couplings, warm) = coupling_sets(side, side, side as u64);
        let e = graph.edges.len();
        let planar = Planar::new(&graph).expect("planar");
        let order: usize = planar.dense().iter().map(|c| 2 * c.pair_edges.len()).sum();
        let path = if order <= DENSE_AUTO_MAX {
            "dense LU".to_string()
        } else {
            let frontal = planar.frontal();
            format!("{} fronts, {} levels", frontal[0].fronts.len(), frontal[0].levels())
        };
        let start = Instant::now();
        let want: Vec<_> = couplings.to_f64().data().chunks(e).map(|row| planar.infer(row).expect("finite")).collect();
        let cpu = start.elapsed().as_secs_f64();
        let op = IsingBatch::new(&graph, true).expect("a planar graph");
        for engine in engines() {
            let (gpu, peak) = gpu_time(&engine, &op, &warm, &couplings);
            let (log_z, marginals) = engine.ising(&op, &couplings).expect("batched inference");
            let marginals = marginals.expect("asked for");
            let mut error = 0.0f64;
            for (b, w) in want.iter().enumerate() {
                error = error.max((log_z.data()[b] as f64 - w.log_z).abs() / w.log_z.abs());
                for (&g, &x) in marginals.data()[b * e..(b + 1) * e].iter().zip(&w.marginals) {
                    error = error.max((g as f64 - x).abs());
                }
            }
            println!(
                "| {side}x{side} | {order} | {path} | {} | {:.3} s | {:.2} ms | {cpu:.3} s | {:.2}x | {:.0} | {error:.1e} |",
                engine.describe(),
                gpu,
                1e3 * gpu / batch as f64,
                cpu / gpu,
                peak as f64 / (1u64 << 20) as f64
            );
            assert!(error < 1e-5, "{}: error {error:e} against the f64 solver", engine.describe());
        }
    }
}
