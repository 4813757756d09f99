//! Approximate inference on a square grid with a magnetic field (docs/math.md §6.8): the field
//! becomes couplings to an apex spin, and `log Z` is bounded from above by combining tractable parts
//! of that graph: planar ones (two-column strips, as in Globerson and Jaakkola 2007) or glued ones
//! (three-column strips of 3 x 3 + apex blocks joined to the sides, as in Likhosherstov, Maximov and
//! Chertkov 2019). Both are compared with the exact answer by the transfer sweep, and at zero field
//! with the exact planar solver.
//!
//! `cargo run --release --example ising_field -- [side] [models] [weight steps]` (defaults 9, 3, 10):
//! fields uniform in [-0.5, 0.5], couplings uniform in [-a, a] for a = 0.5, 1, 2, 3.

use ortho_ref::ising::bound::{BoundOptions, Decomposition};
use ortho_ref::ising::field::FieldGrid;
use ortho_ref::ising::{Graph, Planar};
use std::f64::consts::LN_2;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (side, models, weight_steps) = (number(0, 9), number(1, 3), number(2, 10));
    let n = (side * side) as f64;
    let options = BoundOptions { tolerance: 1e-3, max_iterations: 300, weight_steps };
    let families: Vec<(&str, Decomposition)> = [("planar", false), ("glued", true)]
        .into_iter()
        .map(|(name, glued)| {
            let grid = FieldGrid::random(side, side, 0.5, 1.0, 0);
            let (graph, _) = grid.apex_model();
            (name, Decomposition::new(&graph, &grid.parts(glued)).expect("the parts are tractable"))
        })
        .collect();
    println!(
        "{side} x {side} grid, fields in [-0.5, 0.5], couplings in [-a, a], {models} models each, weight steps {weight_steps}"
    );
    println!(
        "| a | field | family | (bound - log Z) / N | mean abs error of E[s_i] | worst | iterations | time per model |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for a in [0.5, 1.0, 2.0, 3.0] {
        for field in [0.5, 0.0] {
            for (name, decomposition) in &families {
                let (mut gap, mut mean_error, mut worst, mut iterations, mut time) = (0.0, 0.0, 0.0f64, 0, 0.0);
                for seed in 0..models as u64 {
                    let grid = FieldGrid::random(side, side, field, a, 100 * seed + 7);
                    let exact = exact(&grid);
                    let (_, couplings) = grid.apex_model();
                    let t = Instant::now();
                    let bound = decomposition.bound(&couplings, options).expect("finite couplings");
                    time += t.elapsed().as_secs_f64();
                    gap += (bound.log_z - LN_2 - exact.0) / n;
                    for v in 0..side * side {
                        let e = (bound.marginals[v] - exact.1[v]).abs();
                        mean_error += e / n;
                        worst = worst.max(e);
                    }
                    iterations += bound.iterations;
                }
                let m = models as f64;
                println!(
                    "| {a} | {field} | {name} | {:.5} | {:.4} | {worst:.3} | {} | {:.2} s |",
                    gap / m,
                    mean_error / m,
                    iterations / models,
                    time / m
                );
            }
        }
    }
}

/// Exact `log Z` and magnetisations: the transfer sweep, and at zero field also the planar solver
/// (which must agree with it).
fn exact(grid: &FieldGrid) -> (f64, Vec<f64>) {
    let (log_z, magnetisation) = grid.exact().expect("the grid is narrow enough");
    if grid.fields.iter().all(|&h| h == 0.0) {
        let (apex, couplings) = grid.apex_model();
        let n = grid.height * grid.width;
        let edges: Vec<(i64, i64)> = apex.edges[n..].iter().map(|&(u, v)| (u as i64, v as i64)).collect();
        let planar = Planar::new(&Graph::new(Some(n), &edges).expect("a grid")).expect("a grid is planar");
        let zero_field = planar.log_partition(&couplings[n..]).expect("finite couplings");
        assert!((zero_field - log_z).abs() < 1e-9 * log_z.abs(), "planar {zero_field} vs transfer {log_z}");
    }
    (log_z, magnetisation)
}
