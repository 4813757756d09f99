//! Graphs for tests, benchmarks and examples: lattices and random planar graphs, seeded.

use crate::random::Gaussian;

/// The `width x length` square lattice with free boundaries; vertex `(r, c)` is `r * length + c`.
pub fn grid(width: usize, length: usize) -> Vec<(usize, usize)> {
    let mut edges = Vec::new();
    for r in 0..width {
        for c in 0..length {
            let v = r * length + c;
            if c + 1 < length {
                edges.push((v, v + 1));
            }
            if r + 1 < width {
                edges.push((v, v + length));
            }
        }
    }
    edges
}

/// A random planar graph on `nodes` points of the unit square: the greedy triangulation (shortest
/// segments first, each kept when it crosses none kept before), then each edge kept with probability
/// `density`. Quadratic in the number of points; meant for graphs of a few hundred vertices.
pub fn random_planar(nodes: usize, density: f64, seed: u64) -> Vec<(usize, usize)> {
    let mut rng = Gaussian::new(seed);
    let points: Vec<(f64, f64)> = (0..nodes).map(|_| (rng.uniform(), rng.uniform())).collect();
    let mut candidates = Vec::new();
    for u in 0..nodes {
        for v in u + 1..nodes {
            let (dx, dy) = (points[u].0 - points[v].0, points[u].1 - points[v].1);
            candidates.push((dx * dx + dy * dy, u, v));
        }
    }
    candidates.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut kept: Vec<(usize, usize)> = Vec::new();
    for &(_, u, v) in &candidates {
        if kept.len() == 3 * nodes.max(3) - 6 {
            break;
        }
        if kept.iter().all(|&(a, b)| !crosses(points[u], points[v], points[a], points[b], (u, v), (a, b))) {
            kept.push((u, v));
        }
    }
    kept.retain(|_| rng.uniform() < density);
    kept
}

/// Random couplings, uniform in magnitude on a log scale between `low` and `high`, random signs.
pub fn couplings(count: usize, low: f64, high: f64, seed: u64) -> Vec<f64> {
    let mut rng = Gaussian::new(seed);
    (0..count)
        .map(|_| {
            let magnitude = (low.ln() + (high.ln() - low.ln()) * rng.uniform()).exp();
            if rng.uniform() < 0.5 { -magnitude } else { magnitude }
        })
        .collect()
}

fn crosses(p: (f64, f64), q: (f64, f64), r: (f64, f64), s: (f64, f64), e: (usize, usize), f: (usize, usize)) -> bool {
    if e.0 == f.0 || e.0 == f.1 || e.1 == f.0 || e.1 == f.1 {
        return false;
    }
    let orient = |a: (f64, f64), b: (f64, f64), c: (f64, f64)| (b.0 - a.0) * (c.1 - a.1) - (b.1 - a.1) * (c.0 - a.0);
    let (d1, d2) = (orient(p, q, r), orient(p, q, s));
    let (d3, d4) = (orient(r, s, p), orient(r, s, q));
    d1 * d2 < 0.0 && d3 * d4 < 0.0
}
