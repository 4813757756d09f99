//! Batched exact Ising inference: `log Z` and every marginal of 1024 coupling sets on one square
//! grid, on each GPU adapter (f32; dense LU up to Kasteleyn order 128, the multifrontal QR and its
//! reverse pass above; GPU timestamps of one run after a warm-up of two sets, then one more run
//! checked against the f64 results) against the CPU's sparse f64 solver doing the same sets one by
//! one (wall clock), in the same run.
//!
//!     cargo bench --bench ising [-- SIDE...]     (sides 4 8 16 32 by default; ORTHO_BACKEND=vulkan
//!                                                 for one adapter)

#[path = "common/mod.rs"]
mod common;
use common::*;
use ortho::ops::{DENSE_AUTO_MAX, IsingBatch};
use ortho::{MeasureOptions, Tensor};
use ortho_ref::ising::{Graph, Planar, generate};
use std::time::Instant;

fn main() {
    let batch = 1024;
    let sides: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let sides = if sides.is_empty() { vec![4, 8, 16, 32] } else { sides };
    println!(
        "| grid | Kasteleyn order | path | adapter | GPU batch | per set | CPU one by one | CPU / GPU | peak pool MiB | worst error |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for side in sides {
        let ids: Vec<(i64, i64)> = generate::grid(side, side).iter().map(|&(u, v)| (u as i64, v as i64)).collect();
        let graph = Graph::new(None, &ids).expect("a grid");
        let e = graph.edges.len();
        let j = generate::couplings(batch * e, 1e-3, 1.0, side as u64);
        let couplings = Tensor::new(&[batch, e], j.iter().map(|&x| x as f32).collect()).expect("couplings");
        let warm = Tensor::new(&[2, e], couplings.data()[..2 * e].to_vec()).expect("two sets");
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
            let once = MeasureOptions { warmup: 0, repeats: 1 };
            engine.time_device(&op, &[&warm], once).expect("warm-up");
            let m = engine.time_device(&op, &[&couplings], once).expect("batched inference");
            let gpu = m.seconds[0];
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
                m.peak_bytes as f64 / (1u64 << 20) as f64
            );
            assert!(error < 1e-5, "{}: error {error:e} against the f64 solver", engine.describe());
        }
    }
}
