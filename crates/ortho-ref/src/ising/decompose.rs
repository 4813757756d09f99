//! Decomposition of a graph into a tree of planar and small pieces glued along separators of at most
//! three vertices (docs/math.md §6.5). Each piece holds, besides its own edges, a virtual edge between
//! every two vertices of each separator it shares, the clique a clique-sum glues along.

use super::Graph;
use super::kuratowski::witness;
use super::planarity::is_planar;
use crate::error::{Error, Result};
use std::collections::{HashMap, HashSet};

/// Pieces of at most this many vertices may be non-planar; they are solved by enumeration.
pub const SMALL_MAX: usize = 10;

/// The largest `small_max` [`decompose`] takes (enumeration of `2^20` states per separator state).
pub const SMALL_LIMIT: usize = 20;

/// One piece of the decomposition. Pieces come parents first.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    /// Graph vertices, ascending; a vertex's local id is its position here.
    pub vertices: Vec<usize>,
    /// Local edges, `u < v`.
    pub edges: Vec<(usize, usize)>,
    /// Distinct graph edge of each local edge; `None` for a virtual edge of a separator clique.
    pub origin: Vec<Option<usize>>,
    pub parent: Option<usize>,
    /// Local ids of the vertices shared with the parent (0 to 3 of them), ascending.
    pub separator: Vec<usize>,
    /// Non-planar and small enough to be solved by enumeration.
    pub small: bool,
}

impl Piece {
    /// The local edge between two local vertices.
    pub fn edge(&self, u: usize, v: usize) -> Option<usize> {
        let key = (u.min(v), u.max(v));
        self.edges.iter().position(|&e| e == key)
    }

    /// Local id of a graph vertex.
    pub fn local(&self, vertex: usize) -> Option<usize> {
        self.vertices.binary_search(&vertex).ok()
    }
}

/// A piece while the decomposition runs: graph ids, and links to neighbouring work pieces.
struct Work {
    vertices: Vec<usize>,
    edges: Vec<(usize, usize, Option<usize>)>,
    links: Vec<(usize, Vec<usize>)>,
    /// `(v, k)`: graph vertex v lies in no separator of k vertices of this piece. A separator of a
    /// side separates the piece it came from (the other sides hang off a clique), so sides inherit
    /// this.
    no_cut: HashSet<(usize, usize)>,
}

struct Side {
    vertices: Vec<usize>,
    edges: Vec<(usize, usize, Option<usize>)>,
}

/// The sides a piece splits into, and the separators that join them: `(side, side, graph vertices)`.
struct Split {
    sides: Vec<Side>,
    links: Vec<(usize, usize, Vec<usize>)>,
}

/// Split every connected component into pieces, non-planar ones of at most `small_max` vertices
/// allowed; a piece that is neither planar nor small, and has no separator of at most three
/// vertices, is an error naming it.
pub fn decompose(graph: &Graph, small_max: usize) -> Result<Vec<Piece>> {
    if small_max > SMALL_LIMIT {
        return Err(Error::argument(
            "small_max",
            format!("enumerated pieces take at most {SMALL_LIMIT} vertices, got {small_max}"),
        ));
    }
    let mut d = Decomposer { local: vec![usize::MAX; graph.nodes], works: vec![] };
    let mut finals = Vec::new();
    let mut roots = Vec::new();
    for (vertices, edges) in graph.components() {
        let edges = edges.iter().map(|&e| (graph.edges[e].0, graph.edges[e].1, Some(e))).collect();
        let mut stack = vec![d.works.len()];
        roots.push(d.works.len());
        d.works.push(Some(Work { vertices, edges, links: vec![], no_cut: HashSet::new() }));
        while let Some(w) = stack.pop() {
            let work = d.works[w].take().expect("each work piece is split once");
            let local_edges = d.local_edges(&work);
            let planar = is_planar(work.vertices.len(), &local_edges);
            let n = work.vertices.len();
            let first = work.vertices[0];
            d.works[w] = Some(work);
            if planar {
                finals.push((w, false));
            } else if n <= small_max {
                finals.push((w, true));
            } else if let Some(sides) = d.split(w) {
                let next = d.works.len();
                d.replace(w, sides);
                stack.extend(next..d.works.len());
            } else {
                let wit = witness(n, &local_edges).expect("a piece that fails to embed is non-planar");
                let vertices = &d.works[w].as_ref().expect("the piece is live").vertices;
                let branch: Vec<usize> = wit.branch.iter().map(|&l| vertices[l]).collect();
                return Err(Error::argument(
                    "edges",
                    format!(
                        "the graph is outside the planar and glued family: a part of {n} vertices (from vertex \
                         {first}) has no separator of at most 3 vertices, is larger than {small_max} vertices and \
                         is not planar (it contains a subdivision of {} with branch vertices {branch:?})",
                        wit.kind
                    ),
                ));
            }
        }
    }
    Ok(d.tree(&finals, &roots))
}

struct Decomposer {
    /// Scratch: local id of each graph vertex in the piece at hand.
    local: Vec<usize>,
    works: Vec<Option<Work>>,
}

impl Decomposer {
    fn local_edges(&mut self, work: &Work) -> Vec<(usize, usize)> {
        for (l, &v) in work.vertices.iter().enumerate() {
            self.local[v] = l;
        }
        work.edges.iter().map(|&(u, v, _)| (self.local[u], self.local[v])).collect()
    }

    /// Sides of the work piece along its blocks, or along one separator of two or three vertices.
    fn split(&mut self, w: usize) -> Option<Split> {
        let mut work = self.works[w].take().expect("each work piece is split once");
        let local_edges = self.local_edges(&work);
        let n = work.vertices.len();
        let mut adjacency = vec![Vec::new(); n];
        for (i, &(u, v)) in local_edges.iter().enumerate() {
            adjacency[u].push((v, i));
            adjacency[v].push((u, i));
        }
        let found = Blocks::new(&adjacency, &vec![false; n]);
        let result = if found.blocks.len() > 1 {
            Some(self.along_blocks(&work, &local_edges, &found.blocks))
        } else {
            self.separator(&mut work, &adjacency).map(|s| along_separator(&work, &local_edges, &adjacency, &s))
        };
        self.works[w] = Some(work);
        result
    }

    fn along_blocks(&self, work: &Work, local_edges: &[(usize, usize)], blocks: &[Vec<usize>]) -> Split {
        let mut sides = Vec::new();
        let mut first_side = vec![usize::MAX; work.vertices.len()];
        let mut links = Vec::new();
        for (b, block) in blocks.iter().enumerate() {
            let mut vertices: Vec<usize> = block.iter().flat_map(|&e| [local_edges[e].0, local_edges[e].1]).collect();
            vertices.sort_unstable();
            vertices.dedup();
            for &l in &vertices {
                if first_side[l] == usize::MAX {
                    first_side[l] = b;
                } else {
                    links.push((first_side[l], b, vec![work.vertices[l]]));
                }
            }
            sides.push(Side {
                vertices: vertices.iter().map(|&l| work.vertices[l]).collect(),
                edges: block.iter().map(|&e| work.edges[e]).collect(),
            });
        }
        Split { sides, links }
    }

    /// A separator of two, else three, vertices of a biconnected piece: `u` (and `v`) removed leave a
    /// cut vertex. Vertices of high degree are tried first (they are where glued parts meet).
    fn separator(&mut self, work: &mut Work, adjacency: &[Vec<(usize, usize)>]) -> Option<Vec<usize>> {
        let n = adjacency.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&l| std::cmp::Reverse(adjacency[l].len()));
        let mut removed = vec![false; n];
        for size in [2, 3] {
            for &u in &order {
                if work.no_cut.contains(&(work.vertices[u], size)) {
                    continue;
                }
                removed[u] = true;
                let partners: Vec<Option<usize>> = if size == 2 {
                    vec![None]
                } else {
                    order
                        .iter()
                        .filter(|&&v| v != u && !work.no_cut.contains(&(work.vertices[v], 3)))
                        .map(|&v| Some(v))
                        .collect()
                };
                for v in partners {
                    if let Some(v) = v {
                        removed[v] = true;
                    }
                    let cut = Blocks::new(adjacency, &removed).cut;
                    if let Some(v) = v {
                        removed[v] = false;
                    }
                    if let Some(&c) = cut.first() {
                        removed[u] = false;
                        let mut s: Vec<usize> = [Some(u), v, Some(c)].into_iter().flatten().collect();
                        s.sort_unstable();
                        return Some(s);
                    }
                }
                removed[u] = false;
                work.no_cut.insert((work.vertices[u], size));
            }
        }
        None
    }

    /// Replace work piece `w` by its sides, moving each of its links to the side holding that link's
    /// separator (a clique, so inside one side).
    fn replace(&mut self, w: usize, Split { sides, links: inner }: Split) {
        let first = self.works.len();
        let old = self.works[w].take().expect("each work piece is split once");
        for side in sides {
            let no_cut = old.no_cut.iter().filter(|(v, _)| side.vertices.binary_search(v).is_ok()).copied().collect();
            self.works.push(Some(Work { vertices: side.vertices, edges: side.edges, links: vec![], no_cut }));
        }
        for (a, b, s) in inner {
            self.link(first + a, first + b, s);
        }
        for (other, s) in old.links {
            let holder = (first..self.works.len())
                .find(|&x| {
                    s.iter().all(|v| self.works[x].as_ref().is_some_and(|k| k.vertices.binary_search(v).is_ok()))
                })
                .expect("a separator clique lies inside one side");
            let links = &mut self.works[other].as_mut().expect("linked pieces are live").links;
            links.retain(|(x, _)| *x != w);
            self.link(holder, other, s);
        }
    }

    fn link(&mut self, a: usize, b: usize, s: Vec<usize>) {
        self.works[a].as_mut().expect("linked pieces are live").links.push((b, s.clone()));
        self.works[b].as_mut().expect("linked pieces are live").links.push((a, s));
    }

    /// The final pieces as a rooted tree (one root per component), parents first.
    fn tree(&mut self, finals: &[(usize, bool)], roots: &[usize]) -> Vec<Piece> {
        let small: HashMap<usize, bool> = finals.iter().copied().collect();
        let mut out: Vec<Piece> = Vec::with_capacity(finals.len());
        for &root in roots {
            // A component's first work piece was split into others; its root is the first final piece
            // found from it.
            let start = finals.iter().map(|&(w, _)| w).find(|&w| w >= root).expect("every component has pieces");
            let mut queue = vec![(start, None::<(usize, Vec<usize>)>)];
            let mut head = 0;
            let mut seen = HashSet::from([start]);
            while head < queue.len() {
                let (w, up) = queue[head].clone();
                head += 1;
                let work = self.works[w].take().expect("final pieces are live");
                let local_edges = self.local_edges(&work);
                let (parent, separator) = match up {
                    Some((p, s)) => (Some(p), s.iter().map(|&v| self.local[v]).collect()),
                    None => (None, vec![]),
                };
                let index = out.len();
                for (other, s) in &work.links {
                    if seen.insert(*other) {
                        queue.push((*other, Some((index, s.clone()))));
                    }
                }
                // Vertices are ascending, so local edges keep u < v.
                out.push(Piece {
                    vertices: work.vertices,
                    edges: local_edges,
                    origin: work.edges.iter().map(|e| e.2).collect(),
                    parent,
                    separator,
                    small: small[&w],
                });
            }
        }
        out
    }
}

/// The sides of a piece along separator `s` (local ids): one per component of the piece without
/// `s`, each with `s` and a clique on it. Edges inside `s` go to the first side; the others get
/// virtual copies, as does the first side for pairs without an edge.
fn along_separator(
    work: &Work,
    local_edges: &[(usize, usize)],
    adjacency: &[Vec<(usize, usize)>],
    s: &[usize],
) -> Split {
    let n = adjacency.len();
    let mut side_of = vec![usize::MAX; n];
    let mut count = 0;
    for start in 0..n {
        if s.contains(&start) || side_of[start] != usize::MAX {
            continue;
        }
        side_of[start] = count;
        let mut queue = vec![start];
        while let Some(u) = queue.pop() {
            for &(v, _) in &adjacency[u] {
                if !s.contains(&v) && side_of[v] == usize::MAX {
                    side_of[v] = count;
                    queue.push(v);
                }
            }
        }
        count += 1;
    }
    let mut sides: Vec<Side> = (0..count).map(|_| Side { vertices: vec![], edges: vec![] }).collect();
    for l in 0..n {
        if side_of[l] != usize::MAX {
            sides[side_of[l]].vertices.push(work.vertices[l]);
        }
    }
    let mut inside = vec![];
    for (i, &(u, v)) in local_edges.iter().enumerate() {
        match (side_of[u], side_of[v]) {
            (usize::MAX, usize::MAX) => inside.push((u.min(v), u.max(v), i)),
            (usize::MAX, x) | (x, _) => sides[x].edges.push(work.edges[i]),
        }
    }
    let graph_s: Vec<usize> = s.iter().map(|&l| work.vertices[l]).collect();
    for (x, side) in sides.iter_mut().enumerate() {
        side.vertices.extend(&graph_s);
        side.vertices.sort_unstable();
        for a in 0..s.len() {
            for b in a + 1..s.len() {
                let real = inside.iter().find(|&&(u, v, _)| (u, v) == (s[a], s[b]));
                match real {
                    Some(&(_, _, i)) if x == 0 => side.edges.push(work.edges[i]),
                    _ => side.edges.push((graph_s[a], graph_s[b], None)),
                }
            }
        }
    }
    let links = (1..count).map(|x| (0, x, graph_s.clone())).collect();
    Split { sides, links }
}

/// Biconnected components of a graph (parallel edges allowed), each as its edge indices.
pub(super) fn blocks(nodes: usize, edges: &[(usize, usize)]) -> Vec<Vec<usize>> {
    let mut adjacency = vec![Vec::new(); nodes];
    for (i, &(u, v)) in edges.iter().enumerate() {
        adjacency[u].push((v, i));
        adjacency[v].push((u, i));
    }
    Blocks::new(&adjacency, &vec![false; nodes]).blocks
}

/// Biconnected components (as edge ids) and cut vertices of the graph without `removed` vertices,
/// by an iterative depth-first search with low points.
struct Blocks {
    blocks: Vec<Vec<usize>>,
    cut: Vec<usize>,
}

impl Blocks {
    fn new(adjacency: &[Vec<(usize, usize)>], removed: &[bool]) -> Blocks {
        let n = adjacency.len();
        let (mut order, mut low) = (vec![usize::MAX; n], vec![0; n]);
        let (mut blocks, mut cut) = (Vec::new(), Vec::new());
        let mut is_cut = vec![false; n];
        let mut edge_stack: Vec<usize> = Vec::new();
        let mut time = 0;
        for root in 0..n {
            if removed[root] || order[root] != usize::MAX {
                continue;
            }
            if adjacency[root].iter().all(|&(v, _)| removed[v]) {
                order[root] = time;
                time += 1;
                continue;
            }
            order[root] = time;
            low[root] = time;
            time += 1;
            // Frames: (vertex, edge it was entered by, next adjacency position).
            let mut stack = vec![(root, usize::MAX, 0usize)];
            let mut root_children = 0;
            while let Some(&mut (u, via, ref mut next)) = stack.last_mut() {
                if *next < adjacency[u].len() {
                    let (v, e) = adjacency[u][*next];
                    *next += 1;
                    if removed[v] || e == via {
                        continue;
                    }
                    if order[v] == usize::MAX {
                        edge_stack.push(e);
                        order[v] = time;
                        low[v] = time;
                        time += 1;
                        stack.push((v, e, 0));
                    } else if order[v] < order[u] {
                        edge_stack.push(e);
                        low[u] = low[u].min(order[v]);
                    }
                    continue;
                }
                stack.pop();
                let Some(&(p, _, _)) = stack.last() else { break };
                low[p] = low[p].min(low[u]);
                if low[u] >= order[p] {
                    if p == root {
                        root_children += 1;
                    } else if !is_cut[p] {
                        is_cut[p] = true;
                        cut.push(p);
                    }
                    let mut block = Vec::new();
                    while let Some(e) = edge_stack.pop() {
                        block.push(e);
                        if e == via {
                            break;
                        }
                    }
                    blocks.push(block);
                }
            }
            if root_children > 1 {
                cut.push(root);
            }
        }
        Blocks { blocks, cut }
    }
}
