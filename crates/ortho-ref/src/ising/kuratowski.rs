//! A Kuratowski witness for a non-planar graph: a subdivision of K5 or K3,3 inside it, found by
//! deleting every edge the graph stays non-planar without (in halving blocks, then one by one).

use super::planarity::is_planar;

/// A minimal non-planar subgraph: a subdivision of `kind` whose branch vertices are `branch`.
#[derive(Debug, Clone, PartialEq)]
pub struct Witness {
    pub kind: &'static str,
    pub branch: Vec<usize>,
    pub edges: Vec<(usize, usize)>,
}

/// The witness inside a non-planar simple graph; `None` when the graph is planar.
pub fn witness(nodes: usize, edges: &[(usize, usize)]) -> Option<Witness> {
    if is_planar(nodes, edges) {
        return None;
    }
    let mut keep = edges.to_vec();
    let mut block = keep.len().div_ceil(2);
    loop {
        let mut i = 0;
        while i < keep.len() {
            let end = (i + block).min(keep.len());
            let rest: Vec<(usize, usize)> = keep[..i].iter().chain(&keep[end..]).copied().collect();
            if is_planar(nodes, &rest) {
                i = end;
            } else {
                keep = rest;
            }
        }
        if block == 1 {
            break;
        }
        block = block.div_ceil(2);
    }
    let mut degree = vec![0usize; nodes];
    for &(u, v) in &keep {
        degree[u] += 1;
        degree[v] += 1;
    }
    let branch: Vec<usize> = (0..nodes).filter(|&v| degree[v] >= 3).collect();
    let kind = if branch.len() == 5 { "K5" } else { "K3,3" };
    Some(Witness { kind, branch, edges: keep })
}
