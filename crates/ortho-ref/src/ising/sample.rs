//! Exact samples (docs/math.md §6.4). Small planar graphs: sequential conditioning (fix the agreement
//! `s_u s_v` of one edge from its exact marginal given everything fixed before, contract the edge, a
//! planar graph stays planar, repeat, then a fair coin per remaining vertex). Larger ones: the
//! agreements along the elimination's top separator drawn from the root front, the separator
//! contracted, and the blocks that leaves sampled independently, recursively.

use super::glued::Aggregated;
use super::planar::Ties;
use super::{Glued, Graph, Planar, decompose};
use crate::error::Result;
use crate::random::Gaussian;

/// `count` independent samples of the spins, row-major `[count, nodes]`, reproducible from `seed`.
/// `couplings` are those of the graph's distinct edges; the graph may be planar or glued
/// ([`Glued`]).
pub fn sample(graph: &Graph, couplings: &[f64], count: usize, seed: u64) -> Result<Vec<i8>> {
    let mut sampler = Sampler::new(graph, couplings, seed)?;
    let mut out = Vec::with_capacity(count * graph.nodes);
    for _ in 0..count {
        out.extend(sampler.next_sample()?);
    }
    Ok(out)
}

/// Samples one at a time (for progress on long runs); the sequence is that of [`sample`].
pub struct Sampler {
    glued: Glued,
    aggregated: Aggregated,
    rng: Gaussian,
}

impl Sampler {
    pub fn new(graph: &Graph, couplings: &[f64], seed: u64) -> Result<Self> {
        Sampler::from_glued(Glued::new(graph)?, couplings, seed)
    }

    /// Samples of a graph already analysed.
    pub fn from_glued(glued: Glued, couplings: &[f64], seed: u64) -> Result<Self> {
        let aggregated = glued.aggregate(couplings, false)?;
        Ok(Sampler { glued, aggregated, rng: Gaussian::new(seed) })
    }

    /// The next sample: one spin per vertex.
    pub fn next_sample(&mut self) -> Result<Vec<i8>> {
        self.glued.sample(&self.aggregated, &mut self.rng)
    }
}

/// One sample of a planar graph by sequential conditioning.
pub(super) fn one(graph: &Graph, couplings: &[f64], rng: &mut Gaussian) -> Result<Vec<i8>> {
    let n = graph.nodes;
    // Spin x is relative[x] times the spin of its representative.
    let mut representative: Vec<usize> = (0..n).collect();
    let mut relative = vec![1i8; n];
    let mut edges: Vec<(i64, i64)> = graph.edges.iter().map(|&(u, v)| (u as i64, v as i64)).collect();
    let mut j = couplings.to_vec();
    while !edges.is_empty() {
        let current = Graph::new(Some(n), &edges)?;
        let merged = current.merge_couplings("couplings", &j)?;
        let marginal = Planar::new(&current)?.infer(&merged)?.marginals[0];
        let (u, v) = (current.edges[0].0, current.edges[0].1);
        let agree: i8 = if rng.uniform() < 0.5 * (1.0 + marginal) { 1 } else { -1 };
        for x in 0..n {
            if representative[x] == v {
                representative[x] = u;
                relative[x] *= agree;
            }
        }
        let (mut next_edges, mut next_j) = (Vec::new(), Vec::new());
        for (&(a, b), &coupling) in current.edges.iter().zip(&merged).skip(1) {
            let moved = |x: usize| if x == v { (u, f64::from(agree)) } else { (x, 1.0) };
            let ((a, sa), (b, sb)) = (moved(a), moved(b));
            // An edge parallel to the contracted one is now a constant factor.
            if a != b {
                next_edges.push((a as i64, b as i64));
                next_j.push(coupling * sa * sb);
            }
        }
        edges = next_edges;
        j = next_j;
    }
    let coins: Vec<i8> = (0..n).map(|_| if rng.uniform() < 0.5 { 1 } else { -1 }).collect();
    Ok((0..n).map(|x| relative[x] * coins[representative[x]]).collect())
}

/// Planar graphs with at most this many edges are sampled edge by edge.
pub const SEQUENTIAL_EDGES: usize = 48;

/// One exact sample of a planar graph by recursion over separators (docs/math.md §6.4); graphs of at
/// most `sequential_edges` edges, and any level whose separator fixes nothing, go edge by edge.
pub fn sample_planar(graph: &Graph, couplings: &[f64], rng: &mut Gaussian, sequential_edges: usize) -> Result<Vec<i8>> {
    if graph.edges.len() <= sequential_edges {
        return one(graph, couplings, rng);
    }
    let planar = Planar::new(graph)?;
    let draws = planar.draw_root_separator(couplings, rng)?;
    if draws.iter().any(|d| d.agreements.is_empty()) {
        return one(graph, couplings, rng);
    }
    let mut spins: Vec<i8> = (0..graph.nodes).map(|_| coin(rng)).collect();
    for draw in draws {
        let mut ties = Ties::new(draw.nodes);
        for &(e, agreement) in &draw.agreements {
            ties.join(draw.edges[e].0, draw.edges[e].1, agreement);
        }
        let reps: Vec<(usize, i8)> = (0..draw.nodes).map(|x| ties.find(x)).collect();
        let mut id = vec![usize::MAX; draw.nodes];
        let mut count = 0;
        for &(r, _) in &reps {
            if id[r] == usize::MAX {
                id[r] = count;
                count += 1;
            }
        }
        let (mut edges, mut j) = (Vec::new(), Vec::new());
        for (e, &(u, v)) in draw.edges.iter().enumerate() {
            let ((ru, su), (rv, sv)) = (reps[u], reps[v]);
            if ru != rv {
                edges.push((id[ru], id[rv]));
                j.push(draw.couplings[e] * f64::from(su * sv));
            }
        }
        let contracted = by_blocks(count, &edges, &j, rng, sequential_edges)?;
        for (l, &vertex) in draw.vertices.iter().enumerate() {
            let (r, s) = reps[l];
            spins[vertex] = s * contracted[id[r]];
        }
    }
    Ok(spins)
}

/// A sample of a planar graph with parallel edges, block by block: the blocks are independent up to
/// a global flip each (zero field), so each is drawn alone and flipped to agree at its cut vertex
/// with the blocks drawn before it.
fn by_blocks(
    nodes: usize,
    edges: &[(usize, usize)],
    couplings: &[f64],
    rng: &mut Gaussian,
    sequential_edges: usize,
) -> Result<Vec<i8>> {
    let blocks = decompose::blocks(nodes, edges);
    let mut of_vertex: Vec<Vec<usize>> = vec![Vec::new(); nodes];
    let block_vertices: Vec<Vec<usize>> = blocks
        .iter()
        .enumerate()
        .map(|(b, block)| {
            let mut vs: Vec<usize> = block.iter().flat_map(|&e| [edges[e].0, edges[e].1]).collect();
            vs.sort_unstable();
            vs.dedup();
            vs.iter().for_each(|&v| of_vertex[v].push(b));
            vs
        })
        .collect();
    let mut spins = vec![0i8; nodes];
    let mut done = vec![false; blocks.len()];
    for start in 0..blocks.len() {
        if done[start] {
            continue;
        }
        // Breadth first over blocks sharing vertices, so each later block meets a drawn cut vertex.
        let mut queue = vec![start];
        done[start] = true;
        let mut head = 0;
        while head < queue.len() {
            let b = queue[head];
            head += 1;
            let vs = &block_vertices[b];
            let local: Vec<(i64, i64)> = blocks[b]
                .iter()
                .map(|&e| {
                    (vs.binary_search(&edges[e].0).unwrap() as i64, vs.binary_search(&edges[e].1).unwrap() as i64)
                })
                .collect();
            let graph = Graph::new(Some(vs.len()), &local)?;
            let j: Vec<f64> = blocks[b].iter().map(|&e| couplings[e]).collect();
            let merged = graph.merge_couplings("couplings", &j)?;
            let drawn = sample_planar(&graph, &merged, rng, sequential_edges)?;
            let flip = vs.iter().zip(&drawn).find(|(v, _)| spins[**v] != 0).map_or(1, |(v, s)| spins[*v] * s);
            for (&v, &s) in vs.iter().zip(&drawn) {
                spins[v] = flip * s;
                for &next in &of_vertex[v] {
                    if !done[next] {
                        done[next] = true;
                        queue.push(next);
                    }
                }
            }
        }
    }
    Ok(spins.iter().map(|&s| if s == 0 { coin(rng) } else { s }).collect())
}

fn coin(rng: &mut Gaussian) -> i8 {
    if rng.uniform() < 0.5 { 1 } else { -1 }
}
