//! Exact free energy per spin of a zero-field Ising spin glass on a square grid, and exact samples
//! of a smaller one (docs/math.md §6).
//!
//! `cargo run --release --example ising_grid -- [side] [sample side] [samples]` (defaults 256, 64, 4):
//! couplings are +-1 with equal probability (the Edwards–Anderson +-J glass at temperature 1). With
//! `--scaling [largest side]`, times log Z, marginals and one exact sample on grids 32^2 ... 512^2 (or
//! up to the side given) instead and fits the exponent of time against N over the three largest.

use ortho_ref::ising::{Graph, Planar, Sampler, generate};
use std::time::Instant;

fn glass(side: usize, seed: u64) -> (Graph, Vec<f64>) {
    let edges: Vec<(i64, i64)> = generate::grid(side, side).iter().map(|&(u, v)| (u as i64, v as i64)).collect();
    let graph = Graph::new(None, &edges).expect("a grid is a valid graph");
    let j = generate::couplings(graph.edges.len(), 1.0, 1.0, seed);
    (graph, j)
}

fn scaling(largest: usize) {
    println!("| N | analysis | log Z | log Z + marginals | one sample | factor (MiB) | peak RSS (MiB) |");
    println!("|---|---|---|---|---|---|---|");
    let mut points = Vec::new();
    for side in [32, 64, 128, 256, 512].into_iter().filter(|&s| s <= largest) {
        let (graph, j) = glass(side, side as u64);
        let t = Instant::now();
        let planar = Planar::new(&graph).expect("grids are planar");
        let analysis = t.elapsed().as_secs_f64();
        let t = Instant::now();
        planar.log_partition(&j).expect("finite couplings");
        let log_z = t.elapsed().as_secs_f64();
        let t = Instant::now();
        planar.infer(&j).expect("finite couplings");
        let infer = t.elapsed().as_secs_f64();
        let t = Instant::now();
        Sampler::new(&graph, &j, side as u64).and_then(|mut s| s.next_sample()).expect("sampling a planar model");
        let sample = t.elapsed().as_secs_f64();
        let factor = planar.factor_size() as f64 * 8.0 / (1 << 20) as f64;
        let peak = ortho_ref::heap::peak_rss_mib().map_or("-".into(), |m| format!("{m:.0}"));
        println!("| {side}^2 | {analysis:.3} s | {log_z:.3} s | {infer:.3} s | {sample:.3} s | {factor:.0} | {peak} |");
        points.push(((side * side) as f64, log_z));
    }
    // Least-squares slope of log(time) against log(N) over the three largest grids.
    if points.len() < 3 {
        return;
    }
    let tail = &points[points.len() - 3..];
    let (xs, ys): (Vec<f64>, Vec<f64>) = tail.iter().map(|&(n, t)| (n.ln(), t.ln())).unzip();
    let (mx, my) = (xs.iter().sum::<f64>() / 3.0, ys.iter().sum::<f64>() / 3.0);
    let slope = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum::<f64>()
        / xs.iter().map(|x| (x - mx).powi(2)).sum::<f64>();
    println!("log Z time ~ N^{slope:.2} (fit over the three largest)");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(at) = args.iter().position(|a| a == "--scaling") {
        return scaling(args.get(at + 1).and_then(|a| a.parse().ok()).unwrap_or(512));
    }
    let number = |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (side, sample_side, samples) = (number(0, 256), number(1, 64), number(2, 4));

    let (graph, j) = glass(side, 1);
    let t = Instant::now();
    let planar = Planar::new(&graph).expect("grids are planar");
    let result = planar.infer(&j).expect("finite couplings");
    let n = graph.nodes as f64;
    let energy: f64 = -j.iter().zip(&result.marginals).map(|(j, m)| j * m).sum::<f64>() / n;
    println!("{side} x {side} +-J spin glass at T = 1 ({:.2} s):", t.elapsed().as_secs_f64());
    println!("  free energy per spin  -log Z / N = {:.9}", -result.log_z / n);
    println!("  energy per spin  <H> / N = {energy:.6}");
    println!("  entropy per spin  (<H> + log Z) / N = {:.6}", energy + result.log_z / n);

    let (graph, j) = glass(sample_side, 2);
    let exact = Planar::new(&graph).expect("grids are planar").infer(&j).expect("finite couplings");
    let mut sampler = Sampler::new(&graph, &j, 3).expect("a planar model");
    println!("{samples} exact samples of a {sample_side} x {sample_side} glass:");
    let mean_energy: f64 = -j.iter().zip(&exact.marginals).map(|(j, m)| j * m).sum::<f64>();
    for k in 0..samples {
        let t = Instant::now();
        let s = sampler.next_sample().expect("sampling a planar model");
        let e: f64 = -graph.edges.iter().zip(&j).map(|(&(u, v), j)| j * f64::from(s[u] * s[v])).sum::<f64>();
        println!("  sample {k}: energy {e:.0} (exact mean {mean_energy:.1}), {:.2} s", t.elapsed().as_secs_f64());
    }
}
