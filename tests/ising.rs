//! Zero-field Ising inference and sampling against independent oracles: enumeration of all
//! configurations, the transfer matrix of long grids, and finite differences of log Z.

mod common;
use ortho_ref::ising::field::FieldGrid;
use ortho_ref::ising::{self, Graph, Planar, brute, generate, kuratowski, planarity};

fn graph(nodes: usize, edges: &[(usize, usize)]) -> Graph {
    let e: Vec<(i64, i64)> = edges.iter().map(|&(u, v)| (u as i64, v as i64)).collect();
    Graph::new(Some(nodes), &e).unwrap()
}

fn complete(n: usize) -> Vec<(usize, usize)> {
    (0..n).flat_map(|u| (u + 1..n).map(move |v| (u, v))).collect()
}

fn k33() -> Vec<(usize, usize)> {
    (0..3).flat_map(|u| (3..6).map(move |v| (u, v))).collect()
}

fn petersen() -> Vec<(usize, usize)> {
    let mut e: Vec<(usize, usize)> = (0..5).map(|i| (i, (i + 1) % 5)).collect();
    e.extend((0..5).map(|i| (i, i + 5)));
    e.extend((0..5).map(|i| (5 + i, 5 + (i + 2) % 5)));
    e
}

fn cycle(n: usize) -> Vec<(usize, usize)> {
    (0..n).map(|i| (i, (i + 1) % n)).collect()
}

/// A random tree: vertex i > 0 hangs off a random earlier vertex.
fn tree(n: usize, seed: u64) -> Vec<(usize, usize)> {
    let mut rng = ortho_ref::random::Gaussian::new(seed);
    (1..n).map(|i| ((rng.uniform() * i as f64) as usize, i)).collect()
}

/// A named graph and its vertex count.
type Case = (String, usize, Vec<(usize, usize)>);

/// Planar graphs of every kind the tests use.
fn planar_graphs(max_nodes: usize) -> Vec<Case> {
    let mut out = Vec::new();
    for seed in 0..24u64 {
        let n = 2 + (seed as usize * 7) % (max_nodes - 1);
        let density = [1.0, 0.8, 0.5, 0.3][seed as usize % 4];
        out.push((format!("random planar n={n} density={density}"), n, generate::random_planar(n, density, seed)));
    }
    out.push(("tree".into(), max_nodes, tree(max_nodes, 3)));
    out.push(("cycle".into(), max_nodes, cycle(max_nodes)));
    out.push(("grid 3x5".into(), 15, generate::grid(3, 5)));
    out.push(("K4".into(), 4, complete(4)));
    out.push(("single edge".into(), 2, vec![(0, 1)]));
    // Two components and isolated vertices.
    let mut two = cycle(5);
    two.extend(tree(6, 9).iter().map(|&(u, v)| (u + 6, v + 6)));
    out.push(("cycle + tree + isolated".into(), max_nodes.max(13), two));
    out
}

#[test]
fn planar_graphs_embed_with_every_face_accounted_for() {
    let mut cases = planar_graphs(60);
    cases.push(("grid 30x40".into(), 1200, generate::grid(30, 40)));
    for (name, n, edges) in cases {
        let g = graph(n, &edges);
        let embedding = planarity::embed(n, &g.edges).unwrap_or_else(|| panic!("{name}: planar graph not embedded"));
        let touched = {
            let mut t = vec![false; n];
            for &(u, v) in &g.edges {
                t[u] = true;
                t[v] = true;
            }
            t.iter().filter(|&&x| x).count()
        };
        let components = g.components().iter().filter(|(_, e)| !e.is_empty()).count();
        // Euler's formula, per component: V - E + F = 2.
        let faces = embedding.faces().len();
        assert_eq!(touched + faces, g.edges.len() + 2 * components, "{name}: the rotation system is not planar");
    }
}

fn assert_witness(name: &str, n: usize, edges: &[(usize, usize)]) {
    let w = kuratowski::witness(n, edges).unwrap_or_else(|| panic!("{name}: no witness"));
    let mut degree = vec![0usize; n];
    for &(u, v) in &w.edges {
        degree[u] += 1;
        degree[v] += 1;
        assert!(edges.contains(&(u, v)), "{name}: witness edge not in the graph");
    }
    let (branch_count, branch_degree) = if w.kind == "K5" { (5, 4) } else { (6, 3) };
    assert_eq!(w.branch.len(), branch_count, "{name}: {w:?}");
    for (v, &d) in degree.iter().enumerate() {
        let expected = if w.branch.contains(&v) { branch_degree } else { d.min(2) };
        assert!(d == expected && d != 1, "{name}: vertex {v} of degree {d} in {w:?}");
    }
    assert!(!planarity::is_planar(n, &w.edges), "{name}: the witness is planar");
    for k in 0..w.edges.len() {
        let mut less = w.edges.clone();
        less.remove(k);
        assert!(planarity::is_planar(n, &less), "{name}: the witness is not minimal");
    }
}

#[test]
fn non_planar_graphs_name_a_kuratowski_subgraph() {
    assert_witness("K5", 5, &complete(5));
    assert_witness("K3,3", 6, &k33());
    assert_witness("Petersen", 10, &petersen());
    assert_witness("K7", 7, &complete(7));
    let w = kuratowski::witness(5, &complete(5)).unwrap();
    assert_eq!(w.kind, "K5");
    let w = kuratowski::witness(6, &k33()).unwrap();
    assert_eq!(w.kind, "K3,3");
    // Random planar graphs with random extra edges: either planar (Euler holds) or a witness.
    let mut rng = ortho_ref::random::Gaussian::new(5);
    let (mut planar, mut non_planar) = (0, 0);
    for seed in 0..40u64 {
        let n = 8 + seed as usize % 20;
        let mut edges = generate::random_planar(n, 0.7, seed);
        for _ in 0..1 + seed % 3 {
            let (u, v) = ((rng.uniform() * n as f64) as usize, (rng.uniform() * n as f64) as usize);
            if u != v && !edges.contains(&(u.min(v), u.max(v))) && !edges.contains(&(u.max(v), u.min(v))) {
                edges.push((u.min(v), u.max(v)));
            }
        }
        let g = graph(n, &edges);
        let edges: Vec<(usize, usize)> = g.edges.clone();
        match planarity::embed(n, &edges) {
            Some(e) => {
                planar += 1;
                let components = g.components().iter().filter(|(_, e)| !e.is_empty()).count();
                let touched = (0..n).filter(|&v| edges.iter().any(|&(a, b)| a == v || b == v)).count();
                assert_eq!(touched + e.faces().len(), edges.len() + 2 * components);
            }
            None => {
                non_planar += 1;
                assert_witness(&format!("seed {seed}"), n, &edges);
            }
        }
    }
    assert!(planar > 5 && non_planar > 5, "both outcomes exercised: {planar} planar, {non_planar} not");
}

#[test]
fn log_z_and_marginals_match_enumeration() {
    for (k, (name, n, edges)) in planar_graphs(18).into_iter().enumerate() {
        let g = graph(n, &edges);
        for (range, seed) in [((1e-3, 5.0), 1u64), ((1e-3, 0.1), 2), ((2.0, 5.0), 3)] {
            let j = generate::couplings(g.edges.len(), range.0, range.1, seed + 10 * k as u64);
            let result = Planar::new(&g).unwrap().infer(&j).unwrap();
            let (log_z, marginals) = brute::infer(n, &g.edges, &j);
            assert!(
                (result.log_z - log_z).abs() <= 1e-11 * log_z.abs().max(1.0),
                "{name} {range:?}: log Z {} vs {log_z}",
                result.log_z
            );
            for (e, (a, b)) in result.marginals.iter().zip(&marginals).enumerate() {
                assert!((a - b).abs() <= 1e-10, "{name} {range:?}: edge {e} marginal {a} vs {b}");
            }
        }
    }
}

/// log Z on the `width x length` grid of `generate::grid` by the transfer sweep of `FieldGrid` (zero
/// field), which runs along the length holding `width` spins.
fn transfer_log_z(width: usize, length: usize, couplings: &[f64]) -> f64 {
    // Transposed: grid vertex (r, c) is the sweep's (c, r).
    let mut sweep = FieldGrid {
        height: length,
        width,
        fields: vec![0.0; width * length],
        horizontal: vec![0.0; length * (width - 1)],
        vertical: vec![0.0; (length - 1) * width],
    };
    for (&(u, v), &j) in generate::grid(width, length).iter().zip(couplings) {
        let (r, c) = (u / length, u % length);
        if v == u + 1 { sweep.vertical[c * width + r] = j } else { sweep.horizontal[c * (width - 1) + r] = j }
    }
    sweep.exact().unwrap().0
}

#[test]
fn log_z_matches_the_transfer_matrix_on_long_grids() {
    // The last two are +-J glasses (every |J| = 1): exact ties, exact cancellations, delayed pivots.
    for &(w, l, low, high) in &[
        (2usize, 300usize, 1e-3, 5.0),
        (5, 200, 1e-3, 1.0),
        (8, 150, 1e-3, 5.0),
        (8, 300, 1e-3, 0.3),
        (8, 300, 1.0, 1.0),
        (7, 400, 1.0, 1.0),
    ] {
        let edges = generate::grid(w, l);
        let g = graph(w * l, &edges);
        let j = generate::couplings(edges.len(), low, high, (w * l) as u64);
        let log_z = Planar::new(&g).unwrap().log_partition(&j).unwrap();
        let oracle = transfer_log_z(w, l, &j);
        assert!((log_z - oracle).abs() <= 1e-11 * oracle.abs(), "{w}x{l} up to {high}: {log_z} vs {oracle}");
    }
}

/// The multifrontal QR (the GPU's sparse path, here its f64 twin) needs no pivoting: `log Z` and the
/// marginals of its selected inversion against enumeration on every planar case, and against the
/// transfer matrix and the pivoted solver on long grids, frustrated ones too.
#[test]
fn frontal_qr_matches_enumeration_and_the_transfer_matrix() {
    for (k, (name, n, edges)) in planar_graphs(18).into_iter().enumerate() {
        let g = graph(n, &edges);
        let planar = Planar::new(&g).unwrap();
        let frontal = planar.frontal();
        for (range, seed) in [((1e-3, 5.0), 1u64), ((1e-3, 0.1), 2), ((2.0, 5.0), 3)] {
            let j = generate::couplings(g.edges.len(), range.0, range.1, seed + 10 * k as u64);
            let result = planar.infer_frontal(&frontal, &j).unwrap();
            let (oracle, marginals) = brute::infer(n, &g.edges, &j);
            let log_z = result.log_z;
            assert!((log_z - oracle).abs() <= 1e-11 * oracle.abs().max(1.0), "{name} {range:?}: {log_z} vs {oracle}");
            assert_eq!(planar.log_partition_frontal(&frontal, &j).unwrap(), log_z);
            for (e, (a, b)) in result.marginals.iter().zip(&marginals).enumerate() {
                assert!((a - b).abs() <= 1e-9, "{name} {range:?}: edge {e} marginal {a} vs {b}");
            }
        }
    }
    for &(w, l, low, high) in &[(8usize, 150usize, 1e-3, 5.0), (8, 300, 1.0, 1.0), (5, 200, 1e-3, 1.0)] {
        let g = graph(w * l, &generate::grid(w, l));
        let planar = Planar::new(&g).unwrap();
        let j = generate::couplings(g.edges.len(), low, high, (w * l) as u64);
        let result = planar.infer_frontal(&planar.frontal(), &j).unwrap();
        let oracle = transfer_log_z(w, l, &j);
        let log_z = result.log_z;
        assert!((log_z - oracle).abs() <= 1e-11 * oracle.abs(), "{w}x{l} up to {high}: {log_z} vs {oracle}");
        let pivoted = planar.infer(&j).unwrap().marginals;
        for (e, (a, b)) in result.marginals.iter().zip(&pivoted).enumerate() {
            assert!((a - b).abs() <= 1e-9, "{w}x{l} up to {high}: edge {e} marginal {a} vs {b}");
        }
    }
}

/// Two independent factorisations of the same matrix (the pivoted `L D L^T` with its blocked front
/// updates, the unpivoted frontal QR on another ordering) agree on large frustrated grids, where no
/// enumeration or transfer matrix reaches.
#[test]
fn pivoted_and_frontal_agree_on_large_glasses() {
    for &(side, low, high) in &[(128usize, 1.0, 1.0), (64, 1e-3, 5.0)] {
        let g = graph(side * side, &generate::grid(side, side));
        let planar = Planar::new(&g).unwrap();
        let j = generate::couplings(g.edges.len(), low, high, side as u64);
        let pivoted = planar.log_partition(&j).unwrap();
        let frontal = planar.log_partition_frontal(&planar.frontal(), &j).unwrap();
        assert!((pivoted - frontal).abs() <= 1e-12 * frontal.abs(), "{side}^2 up to {high}: {pivoted} vs {frontal}");
    }
    // The marginals: the pivoted solver's selected inversion (in blocks of pivots on fronts this
    // large) against the reverse pass of the QR.
    let g = graph(40 * 40, &generate::grid(40, 40));
    let planar = Planar::new(&g).unwrap();
    let j = generate::couplings(g.edges.len(), 1e-3, 5.0, 40);
    let pivoted = planar.infer(&j).unwrap();
    let frontal = planar.infer_frontal(&planar.frontal(), &j).unwrap();
    for (e, (a, b)) in pivoted.marginals.iter().zip(&frontal.marginals).enumerate() {
        assert!((a - b).abs() <= 1e-9, "40^2 edge {e}: {a} vs {b}");
    }
}

#[test]
fn marginals_are_the_derivative_of_log_z() {
    let (w, l) = (20, 25);
    let g = graph(w * l, &generate::grid(w, l));
    let planar = Planar::new(&g).unwrap();
    let j = generate::couplings(g.edges.len(), 1e-3, 2.0, 77);
    let result = planar.infer(&j).unwrap();
    let h = 1e-5;
    for e in (0..g.edges.len()).step_by(37) {
        let (mut up, mut down) = (j.clone(), j.clone());
        up[e] += h;
        down[e] -= h;
        let derivative = (planar.log_partition(&up).unwrap() - planar.log_partition(&down).unwrap()) / (2.0 * h);
        assert!((derivative - result.marginals[e]).abs() < 1e-6, "edge {e}: {derivative} vs {}", result.marginals[e]);
    }
}

#[test]
fn samples_follow_the_exact_distribution() {
    // Chi-square test of the full distribution of a 10-spin planar model.
    let n = 10;
    let g = graph(n, &generate::random_planar(n, 0.8, 21));
    let j = generate::couplings(g.edges.len(), 0.1, 1.0, 22);
    let count = 4000;
    let samples = ising::sample(&g, &j, count, 23).unwrap();
    let (statistic, df) = common::ising_chi_square(n, &g.edges, &j, &samples);
    assert!(statistic < df + 5.0 * (2.0 * df).sqrt(), "chi-square {statistic} with {df} degrees of freedom");
    // Spins are +-1 and both signs of a global flip occur.
    assert!(samples.iter().all(|&s| s == 1 || s == -1));
}

#[test]
fn sampled_edge_correlations_match_the_marginals() {
    let n = 40;
    let g = graph(n, &generate::random_planar(n, 0.7, 31));
    let j = generate::couplings(g.edges.len(), 1e-3, 1.5, 32);
    let exact = Planar::new(&g).unwrap().infer(&j).unwrap().marginals;
    let count = 1000;
    let samples = ising::sample(&g, &j, count, 33).unwrap();
    common::assert_edge_correlations("random planar", n, &g.edges, &exact, &samples);
}

#[test]
fn bad_graphs_and_couplings_are_clear_errors() {
    let err = |r: Result<Graph, ortho_ref::Error>| r.unwrap_err().to_string();
    assert!(err(Graph::new(None, &[(0, 1), (2, 2)])).contains("edge 1 = (2, 2) is a self-loop"));
    assert!(err(Graph::new(Some(3), &[(0, 3)])).contains("vertex 3, outside 0..3"));
    assert!(err(Graph::new(None, &[(0, -1)])).contains("vertex -1"));
    let g = Graph::new(None, &[(0, 1), (1, 2), (1, 0)]).unwrap();
    assert_eq!((g.nodes, g.edges.len(), g.merged.clone()), (3, 2, vec![0, 1, 0]));
    assert!(g.merge_couplings("J", &[1.0, f64::NAN, 0.5]).unwrap_err().to_string().contains("non-finite"));
    assert!(g.merge_couplings("J", &[1.0]).unwrap_err().to_string().contains("one per edge"));
    // Duplicates add their couplings.
    let merged = g.merge_couplings("J", &[0.25, -0.5, 0.5]).unwrap();
    assert_eq!(merged, vec![0.75, -0.5]);
    let log_z = Planar::new(&g).unwrap().log_partition(&merged).unwrap();
    assert!((log_z - brute::infer(3, &g.edges, &merged).0).abs() < 1e-12);
    // A non-planar graph names its Kuratowski subgraph.
    let k5 = graph(5, &complete(5));
    let message = Planar::new(&k5).err().unwrap().to_string();
    assert!(message.contains("subdivision of K5 with branch vertices [0, 1, 2, 3, 4]"), "{message}");
    // No vertices at all: Z = 1.
    let empty = Graph::new(None, &[]).unwrap();
    assert_eq!(Planar::new(&empty).unwrap().log_partition(&[]).unwrap(), 0.0);
}

mod gpu {
    use super::*;

    /// `batch` sets of couplings of both signs, `|J|` in 1e-3 ... `high`, as f32.
    fn coupling_sets(g: &Graph, batch: usize, high: f64, seed: u64) -> ortho::Tensor<f32> {
        let j = generate::couplings(batch * g.edges.len(), 1e-3, high, seed);
        ortho::Tensor::new(&[batch, g.edges.len()], j.iter().map(|&x| x as f32).collect()).unwrap()
    }
    use ortho::ops::{Factorisation, IsingBatch};

    /// The dense GPU path against the sparse f64 solver: many coupling sets on one graph, f32 on the
    /// GPU (docs/math.md §6.6 gives the measured errors).
    #[test]
    fn batched_log_z_and_marginals_match_the_cpu_solver() {
        let mut cases: Vec<Case> = planar_graphs(30).into_iter().step_by(3).collect();
        cases.push(("grid 6x7".into(), 42, generate::grid(6, 7)));
        for engine in common::gpu_engines() {
            let (mut worst_z, mut worst_m) = (0.0f64, 0.0f64);
            for (k, (name, n, edges)) in cases.iter().enumerate() {
                let g = graph(*n, edges);
                let batch = 1 + k % 4;
                let high = if k % 2 == 0 { 2.0 } else { 5.0 };
                let couplings = coupling_sets(&g, batch, high, 90 + k as u64);
                let op = IsingBatch::with_factorisation(&g, true, Factorisation::Dense).unwrap();
                let (log_z, marginals) = engine.ising(&op, &couplings).unwrap();
                let marginals = marginals.unwrap();
                let planar = Planar::new(&g).unwrap();
                for b in 0..batch {
                    let row = &couplings.data()[b * g.edges.len()..(b + 1) * g.edges.len()];
                    let want = planar.infer(&row.iter().map(|&x| x as f64).collect::<Vec<_>>()).unwrap();
                    let err = (log_z.data()[b] as f64 - want.log_z).abs() / want.log_z.abs().max(1.0);
                    assert!(
                        err < 1e-5,
                        "{} {name} set {b}: log Z {} vs {}",
                        engine.describe(),
                        log_z.data()[b],
                        want.log_z
                    );
                    worst_z = worst_z.max(err);
                    for (e, &m) in want.marginals.iter().enumerate() {
                        let got = marginals.data()[b * g.edges.len() + e] as f64;
                        assert!((got - m).abs() < 1e-5, "{} {name} set {b} edge {e}: {got} vs {m}", engine.describe());
                        worst_m = worst_m.max((got - m).abs());
                    }
                }
            }
            eprintln!(
                "{}: worst log Z relative error {worst_z:.1e}, worst marginal error {worst_m:.1e}",
                engine.describe()
            );
        }
    }

    /// The frontal QR path against the f64 oracle and its own f64 twin: `log Z` and the marginals
    /// (its reverse pass) on planar graphs, grids past the dense path's order, frustrated couplings up
    /// to 5, batches of 1 to 4; every other case asks for `log Z` alone.
    #[test]
    fn frontal_log_z_and_marginals_match_the_cpu_solver() {
        let mut cases: Vec<Case> = planar_graphs(30).into_iter().step_by(2).collect();
        cases.push(("grid 6x7".into(), 42, generate::grid(6, 7)));
        cases.push(("grid 3x40".into(), 120, generate::grid(3, 40)));
        cases.push(("grid 20x20".into(), 400, generate::grid(20, 20)));
        for engine in common::gpu_engines() {
            let (mut worst_z, mut worst_m) = (0.0f64, 0.0f64);
            for (k, (name, n, edges)) in cases.iter().enumerate() {
                let g = graph(*n, edges);
                let batch = 1 + k % 4;
                let high = if k % 2 == 0 { 2.0 } else { 5.0 };
                let couplings = coupling_sets(&g, batch, high, 190 + k as u64);
                let with_marginals = k % 2 == 0 || k + 1 == cases.len();
                let op = IsingBatch::with_factorisation(&g, with_marginals, Factorisation::Frontal).unwrap();
                let (log_z, marginals) = engine.ising(&op, &couplings).unwrap();
                assert_eq!(marginals.is_some(), with_marginals);
                let planar = Planar::new(&g).unwrap();
                let frontal = planar.frontal();
                let d = engine.describe();
                for b in 0..batch {
                    let row: Vec<f64> = couplings.data()[b * g.edges.len()..(b + 1) * g.edges.len()]
                        .iter()
                        .map(|&x| x as f64)
                        .collect();
                    let want = planar.infer(&row).unwrap();
                    let twin = planar.infer_frontal(&frontal, &row).unwrap();
                    let scale = want.log_z.abs().max(1.0);
                    assert!(
                        (twin.log_z - want.log_z).abs() <= 1e-11 * scale,
                        "{name}: twin {} vs {}",
                        twin.log_z,
                        want.log_z
                    );
                    let err = (log_z.data()[b] as f64 - want.log_z).abs() / scale;
                    assert!(err < 1e-5, "{d} {name} set {b}: log Z {} vs {}", log_z.data()[b], want.log_z);
                    worst_z = worst_z.max(err);
                    for (e, &m) in want.marginals.iter().enumerate() {
                        assert!(
                            (twin.marginals[e] - m).abs() <= 1e-9,
                            "{name}: twin edge {e} {} vs {m}",
                            twin.marginals[e]
                        );
                        if let Some(marginals) = &marginals {
                            let got = marginals.data()[b * g.edges.len() + e] as f64;
                            assert!((got - m).abs() < 1e-5, "{d} {name} set {b} edge {e}: {got} vs {m}");
                            worst_m = worst_m.max((got - m).abs());
                        }
                    }
                }
            }
            eprintln!(
                "{d}: frontal worst log Z relative error {worst_z:.1e}, marginal {worst_m:.1e}",
                d = engine.describe()
            );
        }
    }

    /// A coupling past f32's `exp` makes the frontal path's outputs non-finite: a clear error.
    #[test]
    fn frontal_overflow_is_a_clear_error() {
        let g = graph(64, &generate::grid(8, 8));
        let mut j = vec![0.5f32; g.edges.len()];
        j[7] = 200.0;
        let op = IsingBatch::with_factorisation(&g, true, Factorisation::Frontal).unwrap();
        for engine in common::gpu_engines() {
            let couplings = ortho::Tensor::new(&[g.edges.len()], j.clone()).unwrap();
            let message = engine.ising(&op, &couplings).unwrap_err().to_string();
            assert!(message.contains("not finite") && message.contains("overflowed"), "{message}");
        }
    }

    #[test]
    fn one_set_log_z_only_and_limits() {
        // A path, a triangle and two isolated vertices; couplings [E], log Z only.
        let g = graph(8, &[(0, 1), (1, 2), (3, 4), (4, 5), (5, 3)]);
        let j = vec![0.5f32, -1.25, 2.0, -0.75, 0.3];
        let want = brute::infer(8, &g.edges, &j.iter().map(|&x| x as f64).collect::<Vec<_>>()).0;
        let op = IsingBatch::new(&g, false).unwrap();
        let mut engines = common::gpu_engines();
        engines.push(ortho::Engine::reference());
        for engine in engines {
            let (log_z, marginals) = engine.ising(&op, &ortho::Tensor::new(&[5], j.clone()).unwrap()).unwrap();
            assert!(marginals.is_none());
            assert_eq!(log_z.shape(), &[] as &[usize]);
            assert!(
                (log_z.data()[0] as f64 - want).abs() < 1e-5 * want,
                "{}: {} vs {want}",
                engine.describe(),
                log_z.data()[0]
            );
            let message =
                engine.ising(&op, &ortho::Tensor::new(&[2, 4], vec![0.0; 8]).unwrap()).unwrap_err().to_string();
            assert!(message.contains("one per distinct edge"), "{message}");
        }
        let big = graph(400, &generate::grid(20, 20));
        let message = IsingBatch::with_factorisation(&big, true, Factorisation::Dense).err().unwrap().to_string();
        assert!(message.contains("Factorisation::Frontal"), "{message}");
    }
}

#[test]
fn separator_recursion_samples_follow_the_exact_distribution() {
    // The full distribution of a 10-spin model, sampled by recursion down to 3 edges.
    let n = 10;
    let g = graph(n, &generate::random_planar(n, 0.9, 61));
    let j = generate::couplings(g.edges.len(), 0.1, 1.0, 62);
    let mut rng = ortho_ref::random::Gaussian::new(63);
    let samples: Vec<i8> = (0..4000).flat_map(|_| ising::sample_planar(&g, &j, &mut rng, 3).unwrap()).collect();
    let (statistic, df) = common::ising_chi_square(n, &g.edges, &j, &samples);
    assert!(statistic < df + 5.0 * (2.0 * df).sqrt(), "chi-square {statistic} with {df} degrees of freedom");
    // Edge correlations of a 40-spin graph and of a 12 x 12 spin glass against the exact marginals.
    for (name, nodes, edges, strength) in [
        ("random planar", 40, generate::random_planar(40, 0.7, 64), 1.5),
        ("12 x 12 grid", 144, generate::grid(12, 12), 1.0),
    ] {
        let g = graph(nodes, &edges);
        let j = generate::couplings(g.edges.len(), 1e-3, strength, 65);
        let exact = Planar::new(&g).unwrap().infer(&j).unwrap().marginals;
        let count = 600;
        let samples: Vec<i8> = (0..count).flat_map(|_| ising::sample_planar(&g, &j, &mut rng, 8).unwrap()).collect();
        common::assert_edge_correlations(name, nodes, &g.edges, &exact, &samples);
    }
}
