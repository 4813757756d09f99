//! From a connected planar embedding to the Kasteleyn matrix of its expanded dual (docs/math.md §6.2).
//!
//! The embedding is triangulated with zero-coupling edges (a fan from a corner the face visits once,
//! else a new vertex joined to every corner, which multiplies Z by exactly 2). The expanded dual has one
//! node per half-edge of the triangulation: node `h` sits in the face of `h`, beside its edge. The
//! external edge `2i -- 2i+1` crosses edge `i` and carries weight `exp(2 J_i)`; the three intra edges
//! of each face carry weight 1. Perfect matchings of the expanded dual are the complements of the cuts
//! of the triangulation, so `Z = 2 exp(-sum J) |Pf K|`.

use super::planarity::Embedding;

/// The triangulation of one connected component and the sparsity of its Kasteleyn matrix, shared by
/// every coupling set on the graph.
#[derive(Debug, Clone)]
pub struct Kasteleyn {
    /// Vertices added inside faces (each multiplies Z by 2).
    pub added_nodes: usize,
    /// Edges of the triangulation; the component's come first, in their order.
    pub edges: Vec<(usize, usize)>,
    /// `K[2i][2i+1] = sign[i] exp(2 J_i)`.
    pub sign: Vec<f64>,
    /// Entries `K[a][b] = value` (and `K[b][a] = -value`) of the intra edges, `a` and `b` in different
    /// pairs.
    pub intra: Vec<(usize, usize, f64)>,
    /// Pairs (triangulation edges) sharing a face.
    pub adjacency: Vec<Vec<usize>>,
}

impl Kasteleyn {
    /// Triangulate a connected embedding with at least one edge and orient its expanded dual.
    pub fn new(embedding: &Embedding) -> Self {
        let triangulation = Triangulation::new(embedding);
        let sign = orient_external(&triangulation);
        let mut intra = Vec::with_capacity(3 * triangulation.faces.len());
        let mut adjacency = vec![Vec::new(); triangulation.edges.len()];
        for face in &triangulation.faces {
            // Intra edges run against the face's order, g[k+1] -> g[k]: three clockwise edges around
            // each small triangle, and none clockwise around a vertex, whose own parity the external
            // edges then fix (see `orient_external`).
            for k in 0..3 {
                let (a, b) = (face[(k + 1) % 3], face[k]);
                intra.push((a, b, 1.0));
                adjacency[a / 2].push(b / 2);
                adjacency[b / 2].push(a / 2);
            }
        }
        for list in &mut adjacency {
            list.sort_unstable();
            list.dedup();
        }
        Kasteleyn {
            added_nodes: triangulation.nodes - embedding.nodes,
            edges: triangulation.edges,
            sign,
            intra,
            adjacency,
        }
    }

    pub fn pairs(&self) -> usize {
        self.edges.len()
    }
}

/// A triangulated embedding given by its faces, each three half-edges in face order.
struct Triangulation {
    nodes: usize,
    edges: Vec<(usize, usize)>,
    faces: Vec<[usize; 3]>,
}

impl Triangulation {
    fn new(embedding: &Embedding) -> Self {
        let mut t = Triangulation { nodes: embedding.nodes, edges: embedding.edges.clone(), faces: Vec::new() };
        let mut visits = vec![0usize; embedding.nodes];
        for walk in embedding.faces() {
            if walk.len() == 3 {
                t.faces.push([walk[0], walk[1], walk[2]]);
                continue;
            }
            for &h in &walk {
                visits[embedding.source(h)] += 1;
            }
            let apex = walk.iter().position(|&h| visits[embedding.source(h)] == 1);
            for &h in &walk {
                visits[embedding.source(h)] = 0;
            }
            match apex {
                Some(p) if walk.len() > 3 => t.fan(embedding, &walk, p),
                _ => t.stellate(embedding, &walk),
            }
        }
        t
    }

    fn add_edge(&mut self, u: usize, v: usize) -> usize {
        self.edges.push((u, v));
        2 * (self.edges.len() - 1)
    }

    /// Chords from the corner `walk[p]` starts at, which the face visits only once.
    fn fan(&mut self, embedding: &Embedding, walk: &[usize], p: usize) {
        let k = walk.len();
        let side = |i: usize| walk[(p + i) % k];
        let apex = embedding.source(side(0));
        // `closing` runs from the apex to the current corner: first the face's own edge, then chords.
        let mut closing = side(0);
        for i in 1..k - 2 {
            let corner = embedding.source(side(i + 1));
            let chord = self.add_edge(corner, apex);
            self.faces.push([closing, side(i), chord]);
            closing = chord ^ 1;
        }
        self.faces.push([closing, side(k - 2), side(k - 1)]);
    }

    /// A new vertex joined to every corner of the face.
    fn stellate(&mut self, embedding: &Embedding, walk: &[usize]) {
        let centre = self.nodes;
        self.nodes += 1;
        let spokes: Vec<usize> = walk.iter().map(|&h| self.add_edge(centre, embedding.source(h))).collect();
        for (i, &h) in walk.iter().enumerate() {
            let next = spokes[(i + 1) % walk.len()];
            self.faces.push([h, next ^ 1, spokes[i]]);
        }
    }
}

/// Orient the external edges so that every vertex has an odd number of them clockwise around it
/// (docs/math.md §6.2): with the intra edges all counter-clockwise around the vertices, every face of
/// the expanded dual then has an odd number of clockwise edges. The external edge of `i` is clockwise
/// around `edges[i].0` when it runs `2i -> 2i+1`. Non-tree edges go to their first vertex; a spanning
/// tree, leaves first, fixes each vertex's parity; the root's follows since `E = 3V - 6 = V (mod 2)`.
fn orient_external(t: &Triangulation) -> Vec<f64> {
    let mut adjacency = vec![Vec::new(); t.nodes];
    for (i, &(u, v)) in t.edges.iter().enumerate() {
        adjacency[u].push((v, i));
        adjacency[v].push((u, i));
    }
    let mut parent_edge = vec![usize::MAX; t.nodes];
    let mut seen = vec![false; t.nodes];
    let mut order = vec![0];
    seen[0] = true;
    let mut head = 0;
    while head < order.len() {
        let u = order[head];
        head += 1;
        for &(v, i) in &adjacency[u] {
            if !seen[v] {
                seen[v] = true;
                parent_edge[v] = i;
                order.push(v);
            }
        }
    }
    let mut clockwise_at_first = vec![true; t.edges.len()];
    let mut count = vec![0usize; t.nodes];
    let is_tree: Vec<bool> = {
        let mut tree = vec![false; t.edges.len()];
        for &i in &parent_edge {
            if i != usize::MAX {
                tree[i] = true;
            }
        }
        tree
    };
    for (i, &(u, _)) in t.edges.iter().enumerate() {
        if !is_tree[i] {
            count[u] += 1;
        }
    }
    for &v in order.iter().skip(1).rev() {
        let i = parent_edge[v];
        let (a, b) = t.edges[i];
        let parent = if a == v { b } else { a };
        let owner = if count[v].is_multiple_of(2) { v } else { parent };
        count[owner] += 1;
        clockwise_at_first[i] = owner == a;
    }
    debug_assert!(count.iter().all(|c| c % 2 == 1));
    clockwise_at_first.iter().map(|&first| if first { 1.0 } else { -1.0 }).collect()
}
