//! Exact inference on a large K3,3-minor-free graph (docs/math.md §6.5): square grids and K5s glued
//! along shared vertices and edges, spin-glass couplings.
//!
//! `cargo run --release --example ising_glued -- [N] [grid side] [shared]` (defaults 100000, 30, 2):
//! parts alternate between a triangulated `side x side` grid and a K5 until the graph has about N
//! vertices, glued along at most `shared` vertices (3 leaves the K3,3-minor-free class). Prints the
//! time of the decomposition, of log Z, of log Z with every edge marginal and of one exact sample,
//! and the peak resident memory.

use ortho_ref::ising::{Glued, Graph, Sampler, generate};
use std::time::Instant;

/// Parts alternate between a `side x side` grid with one diagonal per square and a K5, glued along at
/// most `shared` vertices (2 keeps the graph K3,3-minor-free).
fn graph(nodes: usize, side: usize, shared: usize, seed: u64) -> (Graph, Vec<f64>) {
    let parts = (2 * nodes).div_ceil(side * side + 3);
    let mut lattice = generate::grid(side, side);
    lattice.extend((0..side - 1).flat_map(|r| (0..side - 1).map(move |c| (r * side + c, (r + 1) * side + c + 1))));
    let part = |p: usize| if p.is_multiple_of(2) { (side * side, lattice.clone()) } else { (5, generate::complete(5)) };
    let (n, edges) = generate::glued(parts, shared, seed, part);
    let edges: Vec<(i64, i64)> = edges.iter().map(|&(u, v)| (u as i64, v as i64)).collect();
    let graph = Graph::new(Some(n), &edges).expect("a glued graph is a valid graph");
    let j = generate::couplings(graph.edges.len(), 1.0, 1.0, seed + 1);
    (graph, j)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (nodes, side, shared) = (number(0, 100_000), number(1, 30), number(2, 2));

    let (g, j) = graph(nodes, side, shared, 1);
    let t = Instant::now();
    let glued = Glued::new(&g).expect("the graph is in the glued family");
    let analysis = t.elapsed().as_secs_f64();
    let pieces = glued.pieces();
    let small = pieces.iter().filter(|p| p.small).count();
    let separators: Vec<usize> =
        (1..=3).map(|k| pieces.iter().filter(|p| p.parent.is_some() && p.separator.len() == k).count()).collect();
    println!(
        "{} vertices, {} edges: {} pieces ({small} non-planar, enumerated), joined along 1 / 2 / 3 vertices: {:?}",
        g.nodes,
        g.edges.len(),
        pieces.len(),
        separators
    );
    println!("  decomposition and analysis: {analysis:.2} s");
    let t = Instant::now();
    let log_z = glued.log_partition(&j).expect("finite couplings");
    println!(
        "  log Z = {log_z:.6} ({:.2} s), free energy per spin {:.6}",
        t.elapsed().as_secs_f64(),
        -log_z / g.nodes as f64
    );
    let t = Instant::now();
    let result = glued.infer(&j).expect("finite couplings");
    let energy: f64 = -j.iter().zip(&result.marginals).map(|(j, m)| j * m).sum::<f64>() / g.nodes as f64;
    println!("  log Z + marginals: {:.2} s, energy per spin {energy:.6}", t.elapsed().as_secs_f64());

    let t = Instant::now();
    let mut sampler = Sampler::new(&g, &j, 3).expect("a glued model");
    let s = sampler.next_sample().expect("sampling a glued model");
    let e: f64 = -g.edges.iter().zip(&j).map(|(&(u, v), j)| j * f64::from(s[u] * s[v])).sum::<f64>();
    println!(
        "  one exact sample: energy per spin {:.6} (exact mean {energy:.6}), {:.2} s",
        e / g.nodes as f64,
        t.elapsed().as_secs_f64()
    );
    println!("  peak RSS: {} MiB", ortho_ref::heap::peak_rss_mib().map_or("-".into(), |m| format!("{m:.0}")));
}
