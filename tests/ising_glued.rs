//! The glued family (docs/math.md §6.5): graphs built from planar parts, K5s and Wagner graphs glued
//! along shared cliques of up to three vertices, against enumeration, finite differences and the
//! exact distribution.

mod common;
use ortho_ref::ising::{self, Glued, Graph, Planar, SMALL_MAX, brute, generate};

fn graph(nodes: usize, edges: &[(usize, usize)]) -> Graph {
    let e: Vec<(i64, i64)> = edges.iter().map(|&(u, v)| (u as i64, v as i64)).collect();
    Graph::new(Some(nodes), &e).unwrap()
}

const K5: usize = 0;
const WAGNER: usize = 1;
const PLANAR: usize = 2;

/// Part `p` of a glued graph drawn from `seed`, of one of `kinds`: a K5, a Wagner graph, or a random
/// planar triangulation of up to `planar` vertices (it has triangles to glue along).
fn part(seed: u64, planar: usize, kinds: &'static [usize]) -> impl Fn(usize) -> (usize, Vec<(usize, usize)>) {
    move |p| {
        let s = seed * 1000 + p as u64;
        match kinds[s as usize % kinds.len()] {
            K5 => (5, generate::complete(5)),
            WAGNER => (8, generate::wagner()),
            _ => {
                let n = 3 + (s as usize / 3) % (planar - 2);
                (n, generate::random_planar(n, 1.0, s))
            }
        }
    }
}

/// Glued graphs small enough to enumerate, and named non-planar graphs the family holds.
fn small_cases() -> Vec<(String, Graph)> {
    let mut out = Vec::new();
    // K3,3-minor-free (K5s and planar parts glued along at most 2 vertices), K5-minor-free (Wagner
    // graphs and planar parts along at most 3) and mixed.
    let families: [(&str, usize, &'static [usize]); 3] =
        [("K3,3-free", 2, &[K5, PLANAR]), ("K5-free", 3, &[WAGNER, PLANAR]), ("mixed", 3, &[K5, WAGNER, PLANAR])];
    for seed in 0..48u64 {
        let (family, shared, kinds) = families[seed as usize % 3];
        let parts = 2 + (seed % 4) as usize;
        let (n, edges) = generate::glued(parts, shared, seed, part(seed, 7, kinds));
        if n <= 20 {
            out.push((format!("{family} seed {seed} ({parts} parts)"), graph(n, &edges)));
        }
    }
    let k33: Vec<(usize, usize)> = (0..3).flat_map(|u| (3..6).map(move |v| (u, v))).collect();
    out.push(("K3,3 (triangle sums of K4s)".into(), graph(6, &k33)));
    out.push(("K5".into(), graph(5, &generate::complete(5))));
    out.push(("Wagner".into(), graph(8, &generate::wagner())));
    let k44: Vec<(usize, usize)> = (0..4).flat_map(|u| (4..8).map(move |v| (u, v))).collect();
    out.push(("K4,4".into(), graph(8, &k44)));
    // K5 and a Wagner graph on two sides of a triangle of a planar wheel, plus a separate K5.
    let mut edges: Vec<(usize, usize)> = (1..7).flat_map(|i| [(0, i), (i, i % 6 + 1)]).collect();
    edges.extend(generate::complete(5).iter().map(|&(u, v)| {
        let m = |x: usize| [0, 1, 2, 7, 8][x];
        (m(u), m(v))
    }));
    edges.extend(generate::wagner().iter().map(|&(u, v)| {
        let m = |x: usize| [3, 4, 9, 10, 11, 12, 13, 14][x];
        (m(u), m(v))
    }));
    edges.extend(generate::complete(5).iter().map(|&(u, v)| (u + 15, v + 15)));
    out.push(("wheel + K5 on a triangle + Wagner on an edge + separate K5".into(), graph(20, &edges)));
    out
}

#[test]
fn glued_log_z_and_marginals_match_enumeration() {
    let cases = small_cases();
    assert!(cases.len() > 30, "enough cases: {}", cases.len());
    let mut non_planar = 0;
    // Enumerated pieces of up to 10 vertices (the default) and of up to 8, which splits more.
    for ((k, (name, g)), small_max) in cases.iter().enumerate().flat_map(|c| [(c, SMALL_MAX), (c, 8)]) {
        let glued = Glued::with_small_max(g, small_max).unwrap_or_else(|e| panic!("{name}: {e}"));
        non_planar += usize::from(glued.pieces().iter().any(|p| p.small));
        for (range, seed) in [((1e-3, 5.0), 1u64), ((1e-3, 0.1), 2), ((2.0, 5.0), 3)] {
            let j = generate::couplings(g.edges.len(), range.0, range.1, seed + 10 * k as u64);
            let result = glued.infer(&j).unwrap();
            let (log_z, marginals) = brute::infer(g.nodes, &g.edges, &j);
            assert!(
                (result.log_z - log_z).abs() <= 1e-11 * log_z.abs().max(1.0),
                "{name} (pieces up to {small_max}) {range:?}: log Z {} vs {log_z}",
                result.log_z
            );
            assert!((glued.log_partition(&j).unwrap() - result.log_z).abs() <= 1e-12 * log_z.abs().max(1.0));
            for (e, (a, b)) in result.marginals.iter().zip(&marginals).enumerate() {
                assert!((a - b).abs() <= 1e-10, "{name} {range:?}: edge {e} marginal {a} vs {b}");
            }
        }
    }
    assert!(non_planar > 40, "non-planar pieces exercised: {non_planar}");
}

#[test]
fn glued_pieces_are_planar_or_small_and_share_cliques() {
    for seed in 0..6u64 {
        let (n, edges) = generate::glued(30, 3, seed, part(seed, 30, &[K5, WAGNER, PLANAR]));
        let g = graph(n, &edges);
        let glued = Glued::new(&g).unwrap();
        let pieces = glued.pieces();
        let mut owned = vec![0; g.edges.len()];
        for (p, piece) in pieces.iter().enumerate() {
            assert!(
                piece.small && piece.vertices.len() <= SMALL_MAX
                    || ising::planarity::is_planar(piece.vertices.len(), &piece.edges),
                "seed {seed}: piece {p} is neither small nor planar"
            );
            assert!(piece.separator.len() <= 3);
            assert_eq!(piece.parent.is_none(), piece.separator.is_empty() && piece.parent.is_none());
            if let Some(q) = piece.parent {
                assert!(q < p, "parents come first");
                for (a, &x) in piece.separator.iter().enumerate() {
                    for &y in &piece.separator[a + 1..] {
                        assert!(piece.edge(x, y).is_some(), "the separator is a clique in the child");
                        let parent = &pieces[q];
                        let (px, py) =
                            (parent.local(piece.vertices[x]).unwrap(), parent.local(piece.vertices[y]).unwrap());
                        assert!(parent.edge(px, py).is_some(), "the separator is a clique in the parent");
                    }
                }
            }
            for e in piece.origin.iter().flatten() {
                owned[*e] += 1;
            }
        }
        assert!(owned.iter().all(|&c| c == 1), "seed {seed}: every edge is in exactly one piece");
        // Central differences of log Z give the marginals.
        let j = generate::couplings(g.edges.len(), 1e-2, 2.0, seed);
        let result = glued.infer(&j).unwrap();
        for e in (0..g.edges.len()).step_by(7) {
            let (mut up, mut down) = (j.clone(), j.clone());
            let h = 1e-5;
            up[e] += h;
            down[e] -= h;
            let derivative = (glued.log_partition(&up).unwrap() - glued.log_partition(&down).unwrap()) / (2.0 * h);
            assert!(
                (derivative - result.marginals[e]).abs() < 1e-6,
                "seed {seed} edge {e}: {derivative} vs {}",
                result.marginals[e]
            );
        }
    }
}

#[test]
fn glued_agrees_with_planar_on_planar_graphs() {
    let g = graph(400, &generate::grid(20, 20));
    let j = generate::couplings(g.edges.len(), 1e-3, 3.0, 4);
    let a = Planar::new(&g).unwrap().infer(&j).unwrap();
    let glued = Glued::new(&g).unwrap();
    assert_eq!(glued.pieces().len(), 1);
    let b = glued.infer(&j).unwrap();
    assert!((a.log_z - b.log_z).abs() <= 1e-12 * a.log_z.abs());
    assert_eq!(a.marginals, b.marginals);
}

#[test]
fn glued_samples_follow_the_exact_distribution() {
    // A K5 and a planar part sharing an edge, and a triangle of the K5 shared with a K4: 10 spins,
    // enumerated only in pieces of at most 5 vertices.
    let mut edges = generate::complete(5);
    edges.extend([(0, 5), (1, 5), (5, 6), (0, 6), (6, 7)]);
    edges.extend([(2, 8), (3, 8), (4, 8), (8, 9), (2, 9)]);
    let g = graph(10, &edges);
    let glued = Glued::with_small_max(&g, 5).unwrap();
    let sizes: Vec<(usize, bool)> = glued.pieces().iter().map(|p| (p.vertices.len(), p.small)).collect();
    assert!(sizes.len() >= 3 && sizes.contains(&(5, true)), "{sizes:?}");
    let j = generate::couplings(g.edges.len(), 0.1, 1.0, 42);
    let mut sampler = ising::Sampler::from_glued(glued, &j, 43).unwrap();
    let samples: Vec<i8> = (0..4000).flat_map(|_| sampler.next_sample().unwrap()).collect();
    let (statistic, df) = common::ising_chi_square(10, &g.edges, &j, &samples);
    assert!(statistic < df + 5.0 * (2.0 * df).sqrt(), "chi-square {statistic} with {df} degrees of freedom");
}

#[test]
fn glued_sampled_correlations_match_the_marginals() {
    let (n, edges) = generate::glued(8, 3, 51, part(51, 8, &[K5, WAGNER, PLANAR]));
    let g = graph(n, &edges);
    let glued = Glued::new(&g).unwrap();
    assert!(glued.pieces().iter().any(|p| p.small), "the graph has non-planar parts");
    let j = generate::couplings(g.edges.len(), 1e-3, 1.5, 52);
    let exact = glued.infer(&j).unwrap().marginals;
    let count = 1000;
    let samples = ising::sample(&g, &j, count, 53).unwrap();
    assert!(samples.iter().all(|&s| s == 1 || s == -1));
    common::assert_edge_correlations("glued", n, &g.edges, &exact, &samples);
}

#[test]
fn graphs_outside_the_family_name_the_part() {
    // The 5 x 5 torus: 4-connected, 25 vertices, not planar.
    let torus: Vec<(usize, usize)> =
        (0..25).flat_map(|v| [(v, (v / 5) * 5 + (v + 1) % 5), (v, (v + 5) % 25)]).collect();
    let message = Glued::new(&graph(25, &torus)).err().unwrap().to_string();
    assert!(message.contains("a part of 25 vertices"), "{message}");
    assert!(message.contains("no separator of at most 3 vertices"), "{message}");
    assert!(message.contains("subdivision of K"), "{message}");
    // The same torus hung off a planar graph by one vertex: the part is named, the rest is fine.
    let mut edges = torus.clone();
    edges.extend(generate::grid(4, 4).iter().map(|&(u, v)| (u + 24, v + 24)));
    let message = Glued::new(&graph(40, &edges)).err().unwrap().to_string();
    assert!(message.contains("a part of 25 vertices"), "{message}");
}

mod gpu {
    use super::*;
    use ortho::ops::{Factorisation, IsingBatch};

    /// The GPU's dynamic programming over the pieces against the f64 solver: every other small case
    /// (K5, Wagner, K3,3, glued graphs; enumerated and planar pieces) and two larger glued graphs,
    /// batches of 1 to 4, `|J|` up to 2 or 5, the planar pieces dense or frontal; every third case asks
    /// for `log Z` alone. Marginals to 5e-6: folding each piece's states' `log Z` front by front keeps
    /// the 32 x 32 pieces' case at 1.6e-6 on lavapipe, where summed `log Z` gave 1.0e-5.
    #[test]
    fn glued_batched_log_z_and_marginals_match_the_cpu_solver() {
        let mut cases: Vec<(String, Graph)> = small_cases().into_iter().step_by(2).collect();
        for (seed, parts) in [(61u64, 12usize), (62, 30)] {
            let (n, edges) = generate::glued(parts, 3, seed, part(seed, 14, &[K5, WAGNER, PLANAR]));
            cases.push((format!("mixed seed {seed} ({parts} parts, {n} vertices)"), graph(n, &edges)));
        }
        cases.push(("K5s on triangles of a planar triangulation".into(), k5s_on_triangles()));
        // Large planar pieces: their conditional log Z are large and their differences, the couplings
        // they pass on, small (docs/math.md §6.6 on the f32 error).
        let (n, edges) = generate::glued(3, 3, 9, |p| match p {
            1 => (5, generate::complete(5)),
            _ => (1024, triangulated_grid(32)),
        });
        cases.push((format!("two 32 x 32 triangulated grids and a K5 ({n} vertices)"), graph(n, &edges)));
        let pieces: Vec<Vec<ising::Piece>> =
            cases.iter().map(|(_, g)| Glued::new(g).unwrap().pieces().to_vec()).collect();
        let all = || pieces.iter().flatten();
        let small = all().filter(|p| p.small).count();
        let triangles = all().filter(|p| p.separator.len() == 3).count();
        assert!(small >= 40 && triangles >= 6 && pieces.iter().any(|p| p.len() >= 20), "{small} {triangles}");
        for engine in common::gpu_engines() {
            let d = engine.describe();
            let (mut worst_z, mut worst_m) = (0.0f64, 0.0f64);
            for (k, (name, g)) in cases.iter().enumerate() {
                let batch = 1 + k % 4;
                let high = if k % 2 == 0 { 2.0 } else { 5.0 };
                let with_marginals = k % 3 != 2;
                let factorisation = if k % 2 == 0 { Factorisation::Auto } else { Factorisation::Frontal };
                let op = IsingBatch::with_factorisation(g, with_marginals, factorisation).unwrap();
                let j = generate::couplings(batch * g.edges.len(), 1e-3, high, 300 + k as u64);
                let values: Vec<f32> = j.iter().map(|&x| x as f32).collect();
                let couplings = ortho::Tensor::new(&[batch, g.edges.len()], values.clone()).unwrap();
                let (log_z, marginals) = engine.ising(&op, &couplings).unwrap();
                assert_eq!(marginals.is_some(), with_marginals);
                let glued = Glued::new(g).unwrap();
                for b in 0..batch {
                    let row: Vec<f64> =
                        values[b * g.edges.len()..(b + 1) * g.edges.len()].iter().map(|&x| x as f64).collect();
                    let want = glued.infer(&row).unwrap();
                    let err = (log_z.data()[b] as f64 - want.log_z).abs() / want.log_z.abs().max(1.0);
                    assert!(err < 1e-5, "{d} {name} set {b}: log Z {} vs {}", log_z.data()[b], want.log_z);
                    worst_z = worst_z.max(err);
                    if let Some(marginals) = &marginals {
                        for (e, &m) in want.marginals.iter().enumerate() {
                            let got = marginals.data()[b * g.edges.len() + e] as f64;
                            assert!((got - m).abs() < 5e-6, "{d} {name} set {b} edge {e}: {got} vs {m}");
                            worst_m = worst_m.max((got - m).abs());
                        }
                    }
                }
            }
            eprintln!("{d}: glued worst log Z relative error {worst_z:.1e}, marginal {worst_m:.1e}");
        }
    }

    /// A `side x side` grid with one diagonal per square.
    fn triangulated_grid(side: usize) -> Vec<(usize, usize)> {
        let mut edges = generate::grid(side, side);
        edges.extend((0..side - 1).flat_map(|r| (0..side - 1).map(move |c| (r * side + c, (r + 1) * side + c + 1))));
        edges
    }

    /// A planar triangulation with a K5 glued on several of its triangles (3-sums: pieces with
    /// three-vertex separators, each with four states).
    fn k5s_on_triangles() -> Graph {
        let base = 14;
        let mut edges = generate::random_planar(base, 1.0, 5);
        let set: std::collections::HashSet<(usize, usize)> = edges.iter().copied().collect();
        let adjacent = |u: usize, v: usize| set.contains(&(u.min(v), u.max(v)));
        let triangles: Vec<[usize; 3]> = edges
            .iter()
            .flat_map(|&(u, v)| {
                (v + 1..base).filter(move |&w| adjacent(u, w) && adjacent(v, w)).map(move |w| [u, v, w])
            })
            .take(8)
            .collect();
        let mut n = base;
        for t in &triangles {
            let k5 = [t[0], t[1], t[2], n, n + 1];
            n += 2;
            edges.extend(
                generate::complete(5).iter().map(|&(u, v)| (k5[u], k5[v])).filter(|&(u, v)| u >= base || v >= base),
            );
        }
        graph(n, &edges)
    }

    /// The reference engine answers with the f64 solver; a graph outside the family is refused when
    /// the operation is built, naming the part.
    #[test]
    fn glued_reference_engine_and_errors() {
        let g = graph(8, &generate::wagner());
        let op = IsingBatch::new(&g, true).unwrap();
        let j: Vec<f32> = generate::couplings(g.edges.len(), 0.1, 2.0, 7).iter().map(|&x| x as f32).collect();
        let want = brute::infer(8, &g.edges, &j.iter().map(|&x| x as f64).collect::<Vec<_>>());
        let mut engines = common::gpu_engines();
        engines.push(ortho::Engine::reference());
        for engine in engines {
            let (log_z, marginals) =
                engine.ising(&op, &ortho::Tensor::new(&[g.edges.len()], j.clone()).unwrap()).unwrap();
            assert!((log_z.data()[0] as f64 - want.0).abs() < 1e-5 * want.0.abs(), "{}", engine.describe());
            for (got, m) in marginals.unwrap().data().iter().zip(&want.1) {
                assert!((*got as f64 - m).abs() < 1e-5, "{}: {got} vs {m}", engine.describe());
            }
        }
        let torus: Vec<(usize, usize)> =
            (0..25).flat_map(|v| [(v, (v / 5) * 5 + (v + 1) % 5), (v, (v + 5) % 25)]).collect();
        let message = IsingBatch::new(&graph(25, &torus), false).err().unwrap().to_string();
        assert!(message.contains("a part of 25 vertices"), "{message}");
    }
}

mod gpu_limits {
    use super::*;
    use ortho::ops::IsingBatch;

    /// A 32 KiB storage binding: the call is split by sets, and each split runs the pieces in chunks
    /// of sets (later chunks start past set 0), answering as the f64 solver does; four threads on one
    /// engine answer exactly as one.
    #[test]
    fn glued_batches_past_the_binding_and_from_threads() {
        let (n, edges) = generate::glued(6, 3, 71, part(71, 10, &[K5, WAGNER, PLANAR]));
        let g = graph(n, &edges);
        let glued = Glued::new(&g).unwrap();
        assert!(glued.pieces().iter().any(|p| p.small) && glued.pieces().len() >= 4);
        let batch = 200;
        let j = generate::couplings(batch * g.edges.len(), 1e-3, 2.0, 72);
        let values: Vec<f32> = j.iter().map(|&x| x as f32).collect();
        let couplings = ortho::Tensor::new(&[batch, g.edges.len()], values.clone()).unwrap();
        let op = IsingBatch::new(&g, true).unwrap();
        for engine in common::engines_with_limits(|l| l.max_storage_buffer_binding_size = 32 << 10) {
            let d = engine.describe();
            let (log_z, marginals) = engine.ising(&op, &couplings).unwrap();
            let marginals = marginals.unwrap();
            for b in 0..batch {
                let row: Vec<f64> =
                    values[b * g.edges.len()..(b + 1) * g.edges.len()].iter().map(|&x| x as f64).collect();
                let want = glued.infer(&row).unwrap();
                let err = (log_z.data()[b] as f64 - want.log_z).abs() / want.log_z.abs().max(1.0);
                assert!(err < 1e-5, "{d} set {b}: log Z {} vs {}", log_z.data()[b], want.log_z);
                for (e, &m) in want.marginals.iter().enumerate() {
                    let got = marginals.data()[b * g.edges.len() + e] as f64;
                    assert!((got - m).abs() < 5e-6, "{d} set {b} edge {e}: {got} vs {m}");
                }
            }
            let threads: Vec<_> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..4).map(|_| s.spawn(|| engine.ising(&op, &couplings).unwrap())).collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for (z, m) in threads {
                assert_eq!(z.data(), log_z.data(), "{d}: a thread's log Z");
                assert_eq!(m.unwrap().data(), marginals.data(), "{d}: a thread's marginals");
            }
        }
    }
}
