//! Batched exact Ising inference: `log Z` and marginals of 1024 coupling sets on one grid, on each GPU
//! adapter (dense f32 factorisations, timed with GPU timestamps) against the CPU's sparse f64 solver
//! doing the same sets one by one (wall clock), in the same run.
//!
//!     cargo bench --bench ising

#[path = "common/mod.rs"]
mod common;
use common::*;
use ortho::ops::IsingBatch;
use ortho::{MeasureOptions, Tensor};
use ortho_ref::ising::{Graph, Planar, generate};
use std::time::Instant;

fn main() {
    let batch = 1024;
    println!("| grid | Kasteleyn order | adapter | GPU batch | per set | CPU one by one | CPU / GPU | peak pool MiB |");
    println!("|---|---|---|---|---|---|---|---|");
    for side in [4, 6, 8] {
        let ids: Vec<(i64, i64)> = generate::grid(side, side).iter().map(|&(u, v)| (u as i64, v as i64)).collect();
        let graph = Graph::new(None, &ids).expect("a grid");
        let e = graph.edges.len();
        let j = generate::couplings(batch * e, 1e-3, 1.0, side as u64);
        let couplings = Tensor::new(&[batch, e], j.iter().map(|&x| x as f32).collect()).expect("couplings");
        let planar = Planar::new(&graph).expect("planar");
        let order: usize = planar.dense().iter().map(|c| 2 * c.pair_edges.len()).sum();
        let start = Instant::now();
        for row in couplings.to_f64().data().chunks(e) {
            planar.infer(row).expect("finite couplings");
        }
        let cpu = start.elapsed().as_secs_f64();
        let op = IsingBatch::new(&graph, true).expect("within the dense limit");
        for engine in engines() {
            let options = MeasureOptions { warmup: 1, repeats: 1 };
            let m = engine.measure(&op, &[&couplings], options).expect("batched inference");
            let gpu = m.device_median();
            println!(
                "| {side}x{side} | {order} | {} | {:.3} s | {:.2} ms | {cpu:.3} s | {:.2}x | {:.0} |",
                engine.describe(),
                gpu,
                1e3 * gpu / batch as f64,
                cpu / gpu,
                m.peak_bytes as f64 / (1u64 << 20) as f64
            );
            assert!(m.error < 1e-5, "{}: error {:e} against the f64 solver", engine.describe(), m.error);
        }
    }
}
