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

/// The complete graph on `n` vertices.
pub fn complete(n: usize) -> Vec<(usize, usize)> {
    (0..n).flat_map(|u| (u + 1..n).map(move |v| (u, v))).collect()
}

/// The Wagner graph V8: an 8-cycle with its four long diagonals (non-planar, no K5 minor).
pub fn wagner() -> Vec<(usize, usize)> {
    let mut edges: Vec<(usize, usize)> = (0..8).map(|i| (i.min((i + 1) % 8), i.max((i + 1) % 8))).collect();
    edges.extend((0..4).map(|i| (i, i + 4)));
    edges
}

/// A random member of the glued family: `parts` parts, part `p` being `part(p)` (vertex count and
/// edges), each glued onto a random earlier part along a random shared clique of 0 to `max_shared`
/// vertices (a vertex, an edge, a triangle; fewer when the parts lack one). Each edge of a shared
/// clique is then kept or dropped with even odds. Planar parts and K5s glued along at most 2 vertices
/// give K3,3-minor-free graphs; planar parts and Wagner graphs along at most 3, K5-minor-free ones.
/// Returns the vertex count and the edges.
pub fn glued(
    parts: usize,
    max_shared: usize,
    seed: u64,
    part: impl Fn(usize) -> (usize, Vec<(usize, usize)>),
) -> (usize, Vec<(usize, usize)>) {
    let mut rng = Gaussian::new(seed);
    let mut nodes = 0;
    let mut kept = std::collections::BTreeSet::new();
    // Every part's edges in graph ids, dropped clique edges included: later parts glue onto them.
    let mut part_edges: Vec<Vec<(usize, usize)>> = Vec::new();
    for p in 0..parts {
        let pick = |rng: &mut Gaussian, n: usize| ((rng.uniform() * n as f64) as usize).min(n - 1);
        let (n, edges) = part(p);
        let mut size = if p == 0 { 0 } else { pick(&mut rng, max_shared.min(3) + 1) };
        let host = if p == 0 { 0 } else { pick(&mut rng, p) };
        let (theirs, ours) = loop {
            let theirs = if p == 0 { Some(vec![]) } else { random_clique(&part_edges[host], size, &mut rng) };
            let ours = random_clique(&edges, size, &mut rng);
            if let (Some(theirs), Some(ours)) = (theirs, ours) {
                break (theirs, ours);
            }
            size -= 1;
        };
        let mut id = vec![usize::MAX; n];
        for (&o, &t) in ours.iter().zip(&theirs) {
            id[o] = t;
        }
        for slot in id.iter_mut().filter(|x| **x == usize::MAX) {
            *slot = nodes;
            nodes += 1;
        }
        let mapped: Vec<(usize, usize)> = edges.iter().map(|&(u, v)| (id[u].min(id[v]), id[u].max(id[v]))).collect();
        for &(u, v) in &mapped {
            if theirs.contains(&u) && theirs.contains(&v) {
                if rng.uniform() < 0.5 {
                    kept.insert((u, v));
                } else {
                    kept.remove(&(u, v));
                }
            } else {
                kept.insert((u, v));
            }
        }
        part_edges.push(mapped);
    }
    (nodes, kept.into_iter().collect())
}

/// A random set of `size` vertices that are pairwise adjacent in `edges`, if there is one.
fn random_clique(edges: &[(usize, usize)], size: usize, rng: &mut Gaussian) -> Option<Vec<usize>> {
    let set: std::collections::HashSet<(usize, usize)> = edges.iter().map(|&(u, v)| (u.min(v), u.max(v))).collect();
    let adjacent = |u: usize, v: usize| set.contains(&(u.min(v), u.max(v)));
    let mut found: Vec<Vec<usize>> = match size {
        0 => vec![vec![]],
        1 => edges.iter().flat_map(|&(u, v)| [vec![u], vec![v]]).collect(),
        2 => edges.iter().map(|&(u, v)| vec![u, v]).collect(),
        _ => {
            let mut neighbours: std::collections::HashMap<usize, Vec<usize>> = std::collections::HashMap::new();
            for &(u, v) in edges {
                neighbours.entry(u).or_default().push(v);
                neighbours.entry(v).or_default().push(u);
            }
            edges
                .iter()
                .flat_map(|&(u, v)| {
                    neighbours[&v].iter().filter(move |&&w| w > v && adjacent(u, w)).map(move |&w| vec![u, v, w])
                })
                .collect()
        }
    };
    if found.is_empty() {
        return None;
    }
    let i = ((rng.uniform() * found.len() as f64) as usize).min(found.len() - 1);
    Some(found.swap_remove(i))
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
