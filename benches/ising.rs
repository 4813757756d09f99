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
//!     cargo bench --bench ising -- glued PARTS   (a graph glued from PARTS parts: K5s, Wagner
//!                                                 graphs and 8 x 8 triangulated grids)

#[path = "common/mod.rs"]
mod common;
use common::*;
use ortho::ops::{DENSE_AUTO_MAX, Factorisation, IsingBatch};
use ortho::{MeasureOptions, Tensor};
use ortho_ref::ising::{Glued, Graph, Inference, Planar, generate};
use std::time::Instant;

const BATCH: usize = 1024;

fn graph(edges: &[(usize, usize)]) -> Graph {
    let ids: Vec<(i64, i64)> = edges.iter().map(|&(u, v)| (u as i64, v as i64)).collect();
    Graph::new(None, &ids).expect("a valid graph")
}

/// 1024 sets of `|J|` in 1e-3 ... 1 on a `w x h` grid, and the first two of them (the warm-up).
fn coupling_sets(w: usize, h: usize, seed: u64) -> (Graph, Tensor<f32>, Tensor<f32>) {
    let graph = graph(&generate::grid(w, h));
    let (couplings, warm) = sets_of(&graph, seed);
    (graph, couplings, warm)
}

/// 1024 sets of `|J|` in 1e-3 ... 1 for the graph's edges, and the first two of them.
fn sets_of(graph: &Graph, seed: u64) -> (Tensor<f32>, Tensor<f32>) {
    let e = graph.edges.len();
    let j = generate::couplings(1024 * e, 1e-3, 1.0, seed);
    let couplings = Tensor::new(&[1024, e], j.iter().map(|&x| x as f32).collect()).expect("couplings");
    let warm = Tensor::new(&[2, e], couplings.data()[..2 * e].to_vec()).expect("two sets");
    (couplings, warm)
}

/// One timed run after a warm-up: GPU seconds and the pool's peak bytes.
fn gpu_time(engine: &ortho::Engine, op: &IsingBatch, warm: &Tensor<f32>, couplings: &Tensor<f32>) -> (f64, u64) {
    let once = MeasureOptions { warmup: 0, repeats: 1, ..Default::default() };
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

/// A graph glued from `parts` parts (K5s, Wagner graphs and 8 x 8 grids with a diagonal per square)
/// along shared cliques of up to three vertices.
fn glued_graph(parts: usize) -> Graph {
    let square = generate::grid(8, 8);
    let mut triangulated = square.clone();
    triangulated.extend((0..7).flat_map(|r| (0..7).map(move |c| (r * 8 + c, (r + 1) * 8 + c + 1))));
    let part = |p: usize| match p % 4 {
        0 => (5, generate::complete(5)),
        1 => (8, generate::wagner()),
        _ => (64, triangulated.clone()),
    };
    let (_, edges) = generate::glued(parts, 3, 7, part);
    graph(&edges)
}

/// The table's header.
fn header() {
    println!(
        "| graph | path | adapter | GPU batch | per set | CPU one by one | CPU / GPU | peak pool MiB | worst error |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
}

/// `log Z` and every marginal of the 1024 sets on every adapter against `solve` (f64, one set at a
/// time), one table row per adapter.
fn compare(name: &str, path: &str, graph: &Graph, seed: u64, solve: impl Fn(&[f64]) -> Inference) {
    let (couplings, warm) = sets_of(graph, seed);
    let e = graph.edges.len();
    let start = Instant::now();
    let want: Vec<Inference> = couplings.to_f64().data().chunks(e).map(&solve).collect();
    let cpu = start.elapsed().as_secs_f64();
    let op = IsingBatch::new(graph, true).expect("a graph of the family");
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
            "| {name} | {path} | {} | {:.3} s | {:.2} ms | {cpu:.3} s | {:.2}x | {:.0} | {error:.1e} |",
            engine.describe(),
            gpu,
            1e3 * gpu / BATCH as f64,
            cpu / gpu,
            peak as f64 / (1u64 << 20) as f64
        );
        assert!(error < 1e-5, "{}: error {error:e} against the f64 solver", engine.describe());
    }
}

fn main() {
    if std::env::args().any(|a| a == "paths") {
        return paths();
    }
    let numbers: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    header();
    if std::env::args().any(|a| a == "glued") {
        let parts = numbers.first().copied().unwrap_or(16);
        let graph = glued_graph(parts);
        let glued = Glued::new(&graph).expect("a glued graph");
        let small = glued.pieces().iter().filter(|p| p.small).count();
        let name = format!("glued, {parts} parts: N = {}, E = {}", graph.nodes, graph.edges.len());
        let path = format!("{} pieces ({small} enumerated)", glued.pieces().len());
        return compare(&name, &path, &graph, 3, |row| glued.infer(row).expect("finite"));
    }
    let sides = if numbers.is_empty() { vec![4, 8, 16, 32] } else { numbers };
    for side in sides {
        let graph = graph(&generate::grid(side, side));
        let planar = Planar::new(&graph).expect("planar");
        let order: usize = planar.dense().iter().map(|c| 2 * c.pair_edges.len()).sum();
        let path = if order <= DENSE_AUTO_MAX {
            "dense LU".to_string()
        } else {
            let frontal = planar.frontal();
            format!("{} fronts, {} levels", frontal[0].fronts.len(), frontal[0].levels())
        };
        let name = format!("{side}x{side} grid (Kasteleyn order {order})");
        compare(&name, &path, &graph, side as u64, |row| planar.infer(row).expect("finite"));
    }
}
