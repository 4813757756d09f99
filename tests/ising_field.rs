//! Grids with a magnetic field (docs/math.md §6.8): the transfer sweep against enumeration, and the
//! upper bound on log Z from planar or glued parts of the apex model against the exact answer.

use ortho_ref::ising::bound::{BoundOptions, Decomposition};
use ortho_ref::ising::brute;
use ortho_ref::ising::field::FieldGrid;
use std::f64::consts::LN_2;

#[test]
fn the_transfer_sweep_matches_enumeration() {
    for (k, &(h, w)) in [(3, 4), (4, 3), (2, 5), (1, 6), (4, 4)].iter().enumerate() {
        let grid = FieldGrid::random(h, w, 0.8, 1.5, k as u64);
        let (log_z, magnetisation) = grid.exact().unwrap();
        let (graph, couplings) = grid.apex_model();
        let (apex_log_z, marginals) = brute::infer(graph.nodes, &graph.edges, &couplings);
        assert!(
            (log_z - (apex_log_z - LN_2)).abs() < 1e-11 * log_z.abs().max(1.0),
            "{h}x{w}: {log_z} vs {}",
            apex_log_z - LN_2
        );
        for v in 0..h * w {
            assert!((magnetisation[v] - marginals[v]).abs() < 1e-10, "{h}x{w} vertex {v}");
        }
    }
}

#[test]
fn planar_and_glued_parts_bound_log_z_from_above() {
    for (k, &(h, w, coupling)) in [(4, 4, 1.0), (4, 5, 2.0), (5, 4, 0.5)].iter().enumerate() {
        let grid = FieldGrid::random(h, w, 0.5, coupling, 10 + k as u64);
        let (exact, magnetisation) = grid.exact().unwrap();
        let (graph, couplings) = grid.apex_model();
        for glued in [false, true] {
            let name = if glued { "glued" } else { "planar" };
            let decomposition = Decomposition::new(&graph, &grid.parts(glued)).unwrap();
            // Uniform weights: the couplings' descent converges (the parts' marginals agree).
            let uniform = BoundOptions { tolerance: 1e-5, max_iterations: 3000, weight_steps: 0 };
            let bound = decomposition.bound(&couplings, uniform).unwrap();
            assert!(bound.disagreement <= 1e-5, "{h}x{w} {name}: parts disagree by {}", bound.disagreement);
            let gap = bound.log_z - LN_2 - exact;
            assert!(gap >= 0.0, "{h}x{w} {name}: the bound {} is below log Z {exact}", bound.log_z - LN_2);
            let error = (0..h * w).map(|v| (bound.marginals[v] - magnetisation[v]).abs()).fold(0.0, f64::max);
            assert!(error < 0.5, "{h}x{w} {name}: magnetisation error {error}");
            // Steps on the weights only ever lower the bound, which stays above log Z.
            let weighted = BoundOptions { tolerance: 1e-3, max_iterations: 300, weight_steps: 2 };
            let better = decomposition.bound(&couplings, weighted).unwrap();
            assert!(better.log_z <= bound.log_z + 1e-9 && better.log_z - LN_2 >= exact, "{h}x{w} {name}: {better:?}");
            assert!(
                (better.weights.iter().sum::<f64>() - 1.0).abs() < 1e-12 && better.weights.iter().all(|&r| r > 0.0)
            );
        }
    }
}

#[test]
fn parts_are_checked() {
    let grid = FieldGrid::random(4, 4, 0.5, 1.0, 3);
    let (graph, couplings) = grid.apex_model();
    let mut parts = grid.parts(true);
    // Glued parts need enumerated pieces: the 3 x 3 blocks with the apex are not planar.
    let glued = ortho_ref::ising::Glued::new(
        &ortho_ref::ising::Graph::new(
            Some(graph.nodes),
            &parts[1].iter().map(|&e| (graph.edges[e].0 as i64, graph.edges[e].1 as i64)).collect::<Vec<_>>(),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(glued.pieces().iter().any(|p| p.small && p.vertices.len() == 10));
    let all: Vec<usize> = (0..graph.edges.len()).collect();
    let message = Decomposition::new(&graph, &[all]).err().unwrap().to_string();
    assert!(
        message.contains("part 0 is not tractable") && message.contains("outside the planar and glued family"),
        "{message}"
    );
    parts.retain(|p| !p.contains(&0));
    let message = Decomposition::new(&graph, &parts).err().unwrap().to_string();
    assert!(message.contains("edge 0 = (0, 16) is in no part"), "{message}");
    let decomposition = Decomposition::new(&graph, &grid.parts(false)).unwrap();
    assert!(decomposition.bound(&couplings[1..], BoundOptions::default()).is_err());
}
