//! Exact samples by sequential conditioning (docs/math.md §6.4): fix the agreement `s_u s_v` of one
//! edge from its exact marginal given everything fixed before, contract the edge (a planar graph stays
//! planar), repeat until no edge is left, then flip a fair coin per remaining vertex.

use super::glued::Aggregated;
use super::{Glued, Graph, Planar};
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
