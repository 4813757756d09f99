//! Exact inference and sampling for zero-field Ising models on planar graphs and graphs glued from
//! planar and small parts (docs/math.md §6).
//!
//! `p(s) = exp(sum_e J_e s_u s_v) / Z` over spins `s in {-1, +1}^N`. The graph is checked and its
//! duplicate edges merged ([`Graph`]); [`Planar`] does the work that depends only on a planar graph
//! (embedding, triangulation, Kasteleyn orientation, ordering, symbolic factorisation) once, then
//! gives `log Z` and the edge marginals `E[s_u s_v]` for any number of coupling sets. [`Glued`] splits
//! a graph along separators of at most three vertices into planar and small pieces and combines
//! them; [`Sampler`] draws exact samples. [`bound`] bounds `log Z` of intractable models (such as
//! grids with a field, [`field`]) from tractable parts.

pub mod bound;
pub mod brute;
pub mod decompose;
mod dissection;
pub mod field;
pub mod frontal_qr;
pub mod generate;
mod glued;
mod kasteleyn;
pub mod kuratowski;
mod pfaffian;
mod planar;
pub mod planarity;
mod sample;
mod skew_front;

pub use decompose::{Piece, SMALL_LIMIT, SMALL_MAX};
pub use frontal_qr::FrontalQr;
pub use glued::{Aggregated, Contracted, Glued, signs, states};
pub use planar::{DenseKasteleyn, Inference, Planar};
pub use sample::{SEQUENTIAL_EDGES, Sampler, sample, sample_planar};

use crate::error::{Error, Result};

/// A simple graph built from an edge list as users write it: 0-based ids, duplicates allowed.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    pub nodes: usize,
    /// The distinct edges, `u < v`, in order of first appearance.
    pub edges: Vec<(usize, usize)>,
    /// `merged[k]`: the distinct edge that input edge `k` is.
    pub merged: Vec<usize>,
}

impl Graph {
    /// Check an edge list. `nodes` defaults to the largest id + 1; isolated vertices are allowed.
    /// Self-loops and ids outside `0..nodes` are errors; an edge given twice is one edge whose
    /// coupling is the sum of the given ones.
    pub fn new(nodes: Option<usize>, edges: &[(i64, i64)]) -> Result<Graph> {
        let largest = edges.iter().map(|&(u, v)| u.max(v)).max();
        let nodes = match nodes {
            Some(n) => n,
            None => largest.map_or(0, |m| (m.max(-1) + 1) as usize),
        };
        let mut index = std::collections::HashMap::new();
        let mut distinct = Vec::new();
        let mut merged = Vec::with_capacity(edges.len());
        for (k, &(u, v)) in edges.iter().enumerate() {
            for id in [u, v] {
                if id < 0 || id as u64 >= nodes as u64 {
                    return Err(Error::argument(
                        "edges",
                        format!("edge {k} = ({u}, {v}) names vertex {id}, outside 0..{nodes}"),
                    ));
                }
            }
            if u == v {
                return Err(Error::argument("edges", format!("edge {k} = ({u}, {v}) is a self-loop")));
            }
            let key = (u.min(v) as usize, u.max(v) as usize);
            let next = distinct.len();
            let e = *index.entry(key).or_insert(next);
            if e == next {
                distinct.push(key);
            }
            merged.push(e);
        }
        Ok(Graph { nodes, edges: distinct, merged })
    }

    /// Couplings of the distinct edges from those of the input edges (duplicates add up); every value
    /// must be finite. `name` labels the tensor in errors.
    pub fn merge_couplings(&self, name: &str, couplings: &[f64]) -> Result<Vec<f64>> {
        if couplings.len() != self.merged.len() {
            return Err(Error::shape(name, format!("[{}] (one per edge)", self.merged.len()), &[couplings.len()]));
        }
        let mut out = vec![0.0; self.edges.len()];
        for (k, (&e, &j)) in self.merged.iter().zip(couplings).enumerate() {
            if !j.is_finite() {
                return Err(Error::NonFinite { tensor: name.to_string(), index: vec![k], value: j });
            }
            out[e] += j;
        }
        Ok(out)
    }

    /// Per-input-edge values from per-distinct-edge ones.
    pub fn spread(&self, values: &[f64]) -> Vec<f64> {
        self.merged.iter().map(|&e| values[e]).collect()
    }

    /// Connected components: each as its vertices (ascending) and its distinct edges.
    pub fn components(&self) -> Vec<(Vec<usize>, Vec<usize>)> {
        let mut adjacency = vec![Vec::new(); self.nodes];
        for (i, &(u, v)) in self.edges.iter().enumerate() {
            adjacency[u].push((v, i));
            adjacency[v].push((u, i));
        }
        let mut seen = vec![false; self.nodes];
        let mut out = Vec::new();
        for start in 0..self.nodes {
            if seen[start] {
                continue;
            }
            seen[start] = true;
            let (mut vertices, mut edges) = (vec![start], Vec::new());
            let mut head = 0;
            while head < vertices.len() {
                let u = vertices[head];
                head += 1;
                for &(v, i) in &adjacency[u] {
                    if u < v {
                        edges.push(i);
                    }
                    if !seen[v] {
                        seen[v] = true;
                        vertices.push(v);
                    }
                }
            }
            vertices.sort_unstable();
            edges.sort_unstable();
            out.push((vertices, edges));
        }
        out
    }
}
