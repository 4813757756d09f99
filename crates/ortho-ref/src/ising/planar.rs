//! Planar zero-field Ising models: `log Z` and edge marginals through the Pfaffian of the expanded
//! dual's Kasteleyn matrix, component by component (docs/math.md §6.2-6.3).

use super::Graph;
use super::frontal_qr::{FrontalQr, Source};
use super::kasteleyn::Kasteleyn;
use super::kuratowski::witness;
use super::pfaffian::{SkewPairs, Symbolic};
use super::planarity::embed;
use crate::error::{Error, Result};
use crate::random::Gaussian;
use std::f64::consts::LN_2;

/// `log Z` and `E[s_u s_v]` for each distinct edge of the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Inference {
    pub log_z: f64,
    pub marginals: Vec<f64>,
}

struct Component {
    /// The component's vertices (graph ids, ascending): local vertex `l` of the triangulation is
    /// `vertices[l]`; local ids past them are vertices the triangulation added.
    vertices: Vec<usize>,
    /// The component's distinct edges (graph indices), in the order the triangulation starts with.
    edges: Vec<usize>,
    kasteleyn: Kasteleyn,
    symbolic: Symbolic,
}

/// One component's scaled Kasteleyn matrix for dense factorisations (docs/math.md §6.2), of order
/// `2 * pair_edges.len()`: `K[2i][2i+1] = sign[i] exp(J_i)` with `J_i` the coupling of graph edge
/// `pair_edges[i]` (0 for an edge the triangulation added), `K[a][b] = exp(-(J_{a/2} + J_{b/2}) / 2)`
/// for each `(a, b)` of `intra` (no position repeats), and `K[b][a] = -K[a][b]`. Then
/// `log Z = log 2 + log |det K| / 2 - added_nodes log 2` for the component.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseKasteleyn {
    pub pair_edges: Vec<Option<usize>>,
    pub sign: Vec<f64>,
    pub intra: Vec<(usize, usize)>,
    pub added_nodes: usize,
}

/// The graph-dependent part of planar inference, reusable for any number of coupling sets.
pub struct Planar {
    graph: Graph,
    isolated: usize,
    components: Vec<Component>,
}

impl Planar {
    /// Embed, triangulate and analyse every connected component; a non-planar one is an error naming
    /// a Kuratowski subgraph.
    pub fn new(graph: &Graph) -> Result<Planar> {
        let mut local = vec![usize::MAX; graph.nodes];
        let mut isolated = 0;
        let mut components = Vec::new();
        for (vertices, edges) in graph.components() {
            if edges.is_empty() {
                isolated += 1;
                continue;
            }
            for (l, &v) in vertices.iter().enumerate() {
                local[v] = l;
            }
            let local_edges: Vec<(usize, usize)> =
                edges.iter().map(|&e| (local[graph.edges[e].0], local[graph.edges[e].1])).collect();
            let Some(embedding) = embed(vertices.len(), &local_edges) else {
                let w = witness(vertices.len(), &local_edges).expect("a graph that fails to embed is non-planar");
                let branch: Vec<usize> = w.branch.iter().map(|&l| vertices[l]).collect();
                return Err(Error::argument(
                    "edges",
                    format!(
                        "the graph is not planar: it contains a subdivision of {} with branch vertices {:?} \
                         ({} edges); exact inference here needs a planar graph",
                        w.kind,
                        branch,
                        w.edges.len()
                    ),
                ));
            };
            let kasteleyn = Kasteleyn::new(&embedding);
            let symbolic = Symbolic::new(&kasteleyn.adjacency, &kasteleyn.intra);
            components.push(Component { vertices, edges, kasteleyn, symbolic });
        }
        Ok(Planar { graph: graph.clone(), isolated, components })
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Vertices without edges (each multiplies Z by 2).
    pub fn isolated(&self) -> usize {
        self.isolated
    }

    /// Every component's Kasteleyn matrix in dense form.
    pub fn dense(&self) -> Vec<DenseKasteleyn> {
        self.components
            .iter()
            .map(|c| {
                let k = &c.kasteleyn;
                DenseKasteleyn {
                    pair_edges: (0..k.pairs()).map(|i| c.edges.get(i).copied()).collect(),
                    sign: k.sign.clone(),
                    intra: k.intra.iter().map(|&(a, b, _)| (a, b)).collect(),
                    added_nodes: k.added_nodes,
                }
            })
            .collect()
    }

    /// Every component's multifrontal QR analysis, in the order of [`Planar::dense`].
    pub fn frontal(&self) -> Vec<FrontalQr> {
        self.components
            .iter()
            .map(|c| {
                let positions: Vec<(usize, usize)> = c.kasteleyn.intra.iter().map(|&(a, b, _)| (a, b)).collect();
                FrontalQr::new(c.kasteleyn.pairs(), &positions)
            })
            .collect()
    }

    /// `log Z` by the multifrontal QR of [`Planar::frontal`] in f64: the twin of the GPU's sparse
    /// path (the pivoted `L D L^T` of [`Planar::log_partition`] is the oracle).
    pub fn log_partition_frontal(&self, frontal: &[FrontalQr], couplings: &[f64]) -> Result<f64> {
        Ok(self.run_frontal(frontal, couplings, false)?.log_z)
    }

    /// `log Z` and every edge marginal by the multifrontal QR and its selected inversion, in f64.
    pub fn infer_frontal(&self, frontal: &[FrontalQr], couplings: &[f64]) -> Result<Inference> {
        self.run_frontal(frontal, couplings, true)
    }

    fn run_frontal(&self, frontal: &[FrontalQr], couplings: &[f64], marginals: bool) -> Result<Inference> {
        if couplings.len() != self.graph.edges.len() {
            return Err(Error::shape("couplings", format!("[{}]", self.graph.edges.len()), &[couplings.len()]));
        }
        let mut log_z = self.isolated as f64 * LN_2;
        let mut out = vec![0.0; if marginals { couplings.len() } else { 0 }];
        for (component, qr) in self.components.iter().zip(frontal) {
            let k = &component.kasteleyn;
            let (_, diag, off) = scaled(component, couplings);
            let matrix = SkewPairs { diag: &diag, off: &off };
            let log_pf = if marginals {
                let (log_pf, gradient) = qr.gradient(&matrix);
                // E[s_u s_v] = d log Z / d J_i: K'_e = +-exp(J_i) on pair i's external entries and
                // exp(-(J_a + J_b) / 2) on the intra entries beside it.
                let mut d = vec![0.0; k.pairs()];
                for (front, g) in qr.fronts.iter().zip(&gradient) {
                    for (e, &ge) in front.entries.iter().zip(g) {
                        match e.source {
                            Source::External { pair, .. } => d[pair] += ge,
                            Source::Intra { index, .. } => {
                                let (a, b, _) = off[index];
                                d[a / 2] -= 0.5 * ge;
                                d[b / 2] -= 0.5 * ge;
                            }
                        }
                    }
                }
                for (i, &e) in component.edges.iter().enumerate() {
                    out[e] = d[i].clamp(-1.0, 1.0);
                }
                log_pf
            } else {
                qr.log_abs_pfaffian(&matrix)
            };
            log_z += LN_2 + log_pf - k.added_nodes as f64 * LN_2;
        }
        Ok(Inference { log_z, marginals: out })
    }

    /// Scalars the factorisations hold (the memory that grows as N log N on planar graphs).
    pub fn factor_size(&self) -> usize {
        self.components.iter().map(|c| c.symbolic.factor_size()).sum()
    }

    /// `log Z` for couplings of the distinct edges.
    pub fn log_partition(&self, couplings: &[f64]) -> Result<f64> {
        Ok(self.run(couplings, false)?.log_z)
    }

    /// `log Z` and every edge marginal for couplings of the distinct edges.
    pub fn infer(&self, couplings: &[f64]) -> Result<Inference> {
        self.run(couplings, true)
    }

    fn run(&self, couplings: &[f64], marginals: bool) -> Result<Inference> {
        if couplings.len() != self.graph.edges.len() {
            return Err(Error::shape("couplings", format!("[{}]", self.graph.edges.len()), &[couplings.len()]));
        }
        let mut log_z = self.isolated as f64 * LN_2;
        let mut out = vec![0.0; if marginals { couplings.len() } else { 0 }];
        for component in &self.components {
            let k = &component.kasteleyn;
            let (_, diag, off) = scaled(component, couplings);
            let matrix = SkewPairs { diag: &diag, off: &off };
            let factor = component.symbolic.factor(&matrix, marginals).map_err(|b| {
                let (u, v) =
                    self.graph.edges.get(component.edges.get(b.pair).copied().unwrap_or(0)).copied().unwrap_or((0, 0));
                Error::argument(
                    "couplings",
                    format!(
                        "the Pfaffian elimination met pivot {} near edge ({u}, {v}): couplings out of range",
                        b.pivot
                    ),
                )
            })?;
            log_z += LN_2 + factor.log_abs_pfaffian() - k.added_nodes as f64 * LN_2;
            if marginals {
                let z = component.symbolic.inverse_diagonal(&factor);
                for (i, &e) in component.edges.iter().enumerate() {
                    // E[s_u s_v] = -1 + 2 K[a][b] (K^-1)[b][a] for the external edge a = 2i, b = 2i+1.
                    out[e] = (-1.0 - 2.0 * diag[i] * z[i]).clamp(-1.0, 1.0);
                }
            }
        }
        if !log_z.is_finite() {
            return Err(Error::argument("couplings", format!("log Z = {log_z} is not finite: couplings out of range")));
        }
        Ok(Inference { log_z, marginals: out })
    }
}

type Scaled = (Vec<f64>, Vec<f64>, Vec<(usize, usize, f64)>);

/// A component's couplings per pair (0 for added edges) and its scaled Kasteleyn matrix entries
/// (docs/math.md §6.2): the external ones `sign exp(J_i)` per pair, then the intra ones.
fn scaled(component: &Component, couplings: &[f64]) -> Scaled {
    let k = &component.kasteleyn;
    let mut j = vec![0.0; k.pairs()];
    for (i, &e) in component.edges.iter().enumerate() {
        j[i] = couplings[e];
    }
    // Scaling both nodes of pair i by exp(-J_i / 2) turns the external entries into sign exp(J_i)
    // and the intra entries into exp(-(J_a + J_b) / 2): the Pfaffian changes by exp(-sum J), which
    // cancels the exp(-sum J) in Z, and the range of the entries halves.
    let diag: Vec<f64> = j.iter().zip(&k.sign).map(|(&ji, &s)| s * ji.exp()).collect();
    let off = k.intra.iter().map(|&(a, b, v)| (a, b, v * (-0.5 * (j[a / 2] + j[b / 2])).exp())).collect();
    (j, diag, off)
}

/// One component's triangulation and the agreements drawn on its root separator.
pub(super) struct SeparatorDraw {
    /// Graph ids of the component's vertices; the triangulation's local ids past them are added
    /// vertices.
    pub vertices: Vec<usize>,
    pub nodes: usize,
    /// Triangulation edges (local ids) and their couplings (0 for added edges).
    pub edges: Vec<(usize, usize)>,
    pub couplings: Vec<f64>,
    /// `(edge, s_u s_v)` drawn in order, each from its exact distribution given the earlier ones.
    pub agreements: Vec<(usize, i8)>,
}

impl Planar {
    /// For every component with edges: draw `s_u s_v` for the triangulation edges whose both nodes
    /// lie in the root front of the elimination (the top separator), one after another, from the
    /// exact conditional distribution (docs/math.md §6.4). Given `G = F^-1` on the root front,
    /// `P(s_u s_v = 1) = -K[a][b] G[a][b]` for the edge's nodes `a = 2i, b = 2i + 1`; agreement
    /// removes both nodes (they match each other), disagreement removes the entry `K[a][b]`, and
    /// either is the rank-2 update `G += c (G[:,a] G[b,:] - G[:,b] G[a,:])` with `c = 1 / G[a][b]`,
    /// respectively `1 / (1 / K[a][b] + G[a][b])`. Edges whose ends earlier draws already tied are
    /// determined and skipped.
    pub(super) fn draw_root_separator(&self, couplings: &[f64], rng: &mut Gaussian) -> Result<Vec<SeparatorDraw>> {
        let mut out = Vec::with_capacity(self.components.len());
        for component in &self.components {
            let k = &component.kasteleyn;
            let (j, diag, off) = scaled(component, couplings);
            let (front_nodes, front) =
                component.symbolic.root_front(&SkewPairs { diag: &diag, off: &off }).map_err(|b| {
                    Error::argument(
                        "couplings",
                        format!("the root front met pivot {}: couplings out of range", b.pivot),
                    )
                })?;
            let f = front_nodes.len();
            let identity: Vec<f64> = (0..f * f).map(|i| if i / f == i % f { 1.0 } else { 0.0 }).collect();
            let mut g = crate::linalg::solve(&front, &identity, f, f)
                .ok_or_else(|| Error::argument("couplings", "the root front is singular: couplings out of range"))?;
            let nodes = component.vertices.len() + k.added_nodes;
            let mut tie = Ties::new(nodes);
            let mut local = std::collections::HashMap::new();
            for (l, &node) in front_nodes.iter().enumerate() {
                local.insert(node, l);
            }
            let mut agreements = Vec::new();
            for pair in 0..k.pairs() {
                let (Some(&a), Some(&b)) = (local.get(&(2 * pair)), local.get(&(2 * pair + 1))) else { continue };
                let (u, v) = k.edges[pair];
                if tie.find(u).0 == tie.find(v).0 {
                    continue;
                }
                let (d, z) = (diag[pair], g[a * f + b]);
                let agree = rng.uniform() < (-d * z).clamp(0.0, 1.0);
                let c = if agree { 1.0 / z } else { 1.0 / (1.0 / d + z) };
                let (column_a, column_b): (Vec<f64>, Vec<f64>) = (0..f).map(|r| (g[r * f + a], g[r * f + b])).unzip();
                let (row_a, row_b) = (g[a * f..(a + 1) * f].to_vec(), g[b * f..(b + 1) * f].to_vec());
                for r in 0..f {
                    for (x, (ra, rb)) in g[r * f..(r + 1) * f].iter_mut().zip(row_a.iter().zip(&row_b)) {
                        *x += c * (column_a[r] * rb - column_b[r] * ra);
                    }
                }
                let sign = if agree { 1 } else { -1 };
                tie.join(u, v, sign);
                agreements.push((pair, sign));
            }
            out.push(SeparatorDraw {
                vertices: component.vertices.clone(),
                nodes,
                edges: k.edges.clone(),
                couplings: j,
                agreements,
            });
        }
        Ok(out)
    }
}

/// Union-find over spins with the sign of each spin relative to its representative.
pub(super) struct Ties {
    parent: Vec<usize>,
    sign: Vec<i8>,
}

impl Ties {
    pub fn new(n: usize) -> Ties {
        Ties { parent: (0..n).collect(), sign: vec![1; n] }
    }

    /// The representative of `x` and the sign of `x` relative to it.
    pub fn find(&mut self, x: usize) -> (usize, i8) {
        let (mut root, mut sign) = (x, 1i8);
        while self.parent[root] != root {
            sign *= self.sign[root];
            root = self.parent[root];
        }
        // Point x straight at the root.
        if self.parent[x] != root {
            self.parent[x] = root;
            self.sign[x] = sign;
        }
        (root, sign)
    }

    /// Record `s_u s_v = agreement` (u and v in different sets).
    pub fn join(&mut self, u: usize, v: usize, agreement: i8) {
        let ((ru, su), (rv, sv)) = (self.find(u), self.find(v));
        self.parent[rv] = ru;
        self.sign[rv] = su * sv * agreement;
    }
}
