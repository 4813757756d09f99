//! Inference and sampling for graphs glued from planar and small pieces (docs/math.md §6.5): dynamic
//! programming over the tree of pieces, each piece solved with its separator's spins fixed by
//! contracting the separator into one vertex.

use super::decompose::{Piece, SMALL_MAX, decompose};
use super::{Graph, Inference, Planar, brute};
use crate::error::{Error, Result};
use crate::random::Gaussian;
use std::f64::consts::LN_2;

/// The graph-dependent part of inference on the glued family (planar graphs are one piece per
/// component), reusable for any number of coupling sets.
pub struct Glued {
    graph: Graph,
    pieces: Vec<Piece>,
    contracted: Vec<Contracted>,
}

/// A piece with its separator merged into the separator's first vertex: one graph for every state of
/// the separator's spins, which only flip signs of couplings.
pub struct Contracted {
    pub graph: Graph,
    /// Per piece edge: its input edge in `graph`, or `None` when both ends are in the separator.
    pub input: Vec<Option<usize>>,
    /// Per piece vertex: its vertex in `graph`.
    pub image: Vec<usize>,
    /// Enumerated (a small non-planar piece), else planar.
    pub planar: Option<Planar>,
}

/// Spins of a piece's separator relative to its first vertex: one state per spin pattern up to a
/// global flip.
pub fn states(size: usize) -> &'static [&'static [i8]] {
    match size {
        0 => &[&[]],
        1 => &[&[1]],
        2 => &[&[1, 1], &[1, -1]],
        _ => &[&[1, 1, 1], &[1, 1, -1], &[1, -1, 1], &[1, -1, -1]],
    }
}

/// Couplings after the bottom-up pass: each piece's own, plus what its children's conditional
/// partition functions add on its separator edges.
pub struct Aggregated {
    couplings: Vec<Vec<f64>>,
    /// Per piece and separator state: conditional `log Z` and edge marginals.
    conditional: Vec<Vec<(f64, Vec<f64>)>>,
    log_z: f64,
}

impl Glued {
    /// Decompose the graph and analyse every piece; a graph outside the family is an error naming the
    /// part that is too large and not planar.
    pub fn new(graph: &Graph) -> Result<Glued> {
        Glued::with_small_max(graph, SMALL_MAX)
    }

    /// The same with non-planar pieces of up to `small_max` vertices (at most [`super::SMALL_LIMIT`])
    /// solved by enumeration.
    pub fn with_small_max(graph: &Graph, small_max: usize) -> Result<Glued> {
        let pieces = decompose(graph, small_max)?;
        let contracted = pieces.iter().map(contract).collect::<Result<Vec<_>>>()?;
        Ok(Glued { graph: graph.clone(), pieces, contracted })
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The pieces, parents first.
    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    /// Each piece with its separator contracted, as [`Glued::pieces`].
    pub fn contracted(&self) -> &[Contracted] {
        &self.contracted
    }

    /// `log Z` for couplings of the distinct edges.
    pub fn log_partition(&self, couplings: &[f64]) -> Result<f64> {
        Ok(self.aggregate(couplings, false)?.log_z)
    }

    /// `log Z` and every edge marginal for couplings of the distinct edges.
    pub fn infer(&self, couplings: &[f64]) -> Result<Inference> {
        let agg = self.aggregate(couplings, true)?;
        let mut piece_marginals: Vec<Vec<f64>> = Vec::with_capacity(self.pieces.len());
        let mut out = vec![0.0; couplings.len()];
        for (p, piece) in self.pieces.iter().enumerate() {
            let weights = match piece.parent {
                None => vec![1.0],
                Some(q) => state_probabilities(&self.pieces[q], &piece_marginals[q], piece),
            };
            let mut m = vec![0.0; piece.edges.len()];
            for (w, (_, cond)) in weights.iter().zip(&agg.conditional[p]) {
                for (mi, ci) in m.iter_mut().zip(cond) {
                    *mi += w * ci;
                }
            }
            for (&origin, &value) in piece.origin.iter().zip(&m) {
                if let Some(e) = origin {
                    out[e] = value.clamp(-1.0, 1.0);
                }
            }
            piece_marginals.push(m);
        }
        Ok(Inference { log_z: agg.log_z, marginals: out })
    }

    /// The bottom-up pass: every piece's conditional partition functions, folded into its parent's
    /// separator edges (`log Z_child(s) = A + sum over separator pairs of B_ab s_a s_b`).
    pub fn aggregate(&self, couplings: &[f64], marginals: bool) -> Result<Aggregated> {
        if couplings.len() != self.graph.edges.len() {
            return Err(Error::shape("couplings", format!("[{}]", self.graph.edges.len()), &[couplings.len()]));
        }
        let mut agg: Vec<Vec<f64>> =
            self.pieces.iter().map(|p| p.origin.iter().map(|o| o.map_or(0.0, |e| couplings[e])).collect()).collect();
        let mut conditional = vec![Vec::new(); self.pieces.len()];
        let mut log_z = 0.0;
        for p in (0..self.pieces.len()).rev() {
            let piece = &self.pieces[p];
            let cond = states(piece.separator.len())
                .iter()
                .map(|state| self.solve(p, &agg[p], state, marginals))
                .collect::<Result<Vec<_>>>()?;
            let l: Vec<f64> = cond.iter().map(|c| c.0).collect();
            let parent_edge = |a: usize, b: usize| {
                let q = &self.pieces[piece.parent.expect("separator pairs have a parent")];
                let (ga, gb) = (piece.vertices[piece.separator[a]], piece.vertices[piece.separator[b]]);
                let (qa, qb) = (q.local(ga).expect("shared vertex"), q.local(gb).expect("shared vertex"));
                q.edge(qa, qb).expect("separator cliques are in both pieces")
            };
            match l.len() {
                1 => log_z += l[0],
                2 => {
                    log_z += 0.5 * (l[0] + l[1]);
                    let e = parent_edge(0, 1);
                    agg[piece.parent.unwrap()][e] += 0.5 * (l[0] - l[1]);
                }
                _ => {
                    // States (s_b, s_c) = (+,+), (+,-), (-,+), (-,-) with s_a = +1: the pair products
                    // (ab, ac, bc) are the rows of a 4 x 4 Hadamard matrix, its own inverse up to 1/4.
                    log_z += 0.25 * (l[0] + l[1] + l[2] + l[3]);
                    let q = piece.parent.unwrap();
                    let terms = [
                        ((0, 1), l[0] + l[1] - l[2] - l[3]),
                        ((0, 2), l[0] - l[1] + l[2] - l[3]),
                        ((1, 2), l[0] - l[1] - l[2] + l[3]),
                    ];
                    for ((a, b), t) in terms {
                        let e = parent_edge(a, b);
                        agg[q][e] += 0.25 * t;
                    }
                }
            }
            conditional[p] = cond;
        }
        if !log_z.is_finite() {
            return Err(Error::argument("couplings", format!("log Z = {log_z} is not finite: couplings out of range")));
        }
        Ok(Aggregated { couplings: agg, conditional, log_z })
    }

    /// Conditional `log Z` of piece `p` (and edge marginals when asked) with its separator's spins in
    /// `state` relative to the first.
    fn solve(&self, p: usize, couplings: &[f64], state: &[i8], marginals: bool) -> Result<(f64, Vec<f64>)> {
        let piece = &self.pieces[p];
        let c = &self.contracted[p];
        let sign = signs(piece, state);
        let mut constant = 0.0;
        let mut input = vec![0.0; c.graph.merged.len()];
        for (i, (&(u, v), &j)) in piece.edges.iter().zip(couplings).enumerate() {
            let s = f64::from(sign[u] * sign[v]);
            match c.input[i] {
                Some(k) => input[k] = j * s,
                None => constant += j * s,
            }
        }
        let merged = c.graph.merge_couplings("couplings", &input)?;
        let (log_z, m) = match (&c.planar, marginals) {
            (Some(planar), true) => {
                let r = planar.infer(&merged)?;
                (r.log_z, r.marginals)
            }
            (Some(planar), false) => (planar.log_partition(&merged)?, vec![]),
            (None, _) => brute::infer(c.graph.nodes, &c.graph.edges, &merged),
        };
        // Fixing the merged vertex's spin keeps half of the contracted graph's sum (zero field).
        let fixed = if piece.separator.is_empty() { 0.0 } else { LN_2 };
        let out = if marginals {
            piece
                .edges
                .iter()
                .enumerate()
                .map(|(i, &(u, v))| {
                    let s = f64::from(sign[u] * sign[v]);
                    c.input[i].map_or(s, |k| s * m[c.graph.merged[k]])
                })
                .collect()
        } else {
            vec![]
        };
        Ok((log_z - fixed + constant, out))
    }

    /// One exact sample given the bottom-up pass (top-down: each piece conditioned on the spins its
    /// parent drew on their separator).
    pub fn sample(&self, agg: &Aggregated, rng: &mut Gaussian) -> Result<Vec<i8>> {
        let mut spins = vec![0i8; self.graph.nodes];
        for (p, piece) in self.pieces.iter().enumerate() {
            let c = &self.contracted[p];
            let sep = &piece.separator;
            let actual: Vec<i8> = sep.iter().map(|&l| spins[piece.vertices[l]]).collect();
            let state: Vec<i8> = actual.iter().map(|&s| s * actual[0]).collect();
            let sign = signs(piece, &state);
            let input: Vec<f64> = piece
                .edges
                .iter()
                .zip(&agg.couplings[p])
                .zip(&c.input)
                .filter_map(|((&(u, v), &j), k)| k.map(|_| j * f64::from(sign[u] * sign[v])))
                .collect();
            let merged = c.graph.merge_couplings("couplings", &input)?;
            let drawn = match &c.planar {
                Some(_) => super::sample::sample_planar(&c.graph, &merged, rng, super::sample::SEQUENTIAL_EDGES)?,
                None => enumerated_sample(&c.graph, &merged, rng),
            };
            // Align the draw with the spin the parent gave the separator's first vertex.
            let flip = if sep.is_empty() { 1 } else { actual[0] * drawn[c.image[sep[0]]] };
            for (l, &v) in piece.vertices.iter().enumerate() {
                spins[v] = flip * sign[l] * drawn[c.image[l]];
            }
        }
        Ok(spins)
    }
}

impl Aggregated {
    pub fn log_z(&self) -> f64 {
        self.log_z
    }
}

/// Per piece vertex: its spin relative to its image in the contracted graph.
pub fn signs(piece: &Piece, state: &[i8]) -> Vec<i8> {
    let mut sign = vec![1i8; piece.vertices.len()];
    for (&l, &s) in piece.separator.iter().zip(state) {
        sign[l] = s;
    }
    sign
}

/// Probabilities of a child's separator states from its parent's edge marginals on the separator.
fn state_probabilities(parent: &Piece, marginals: &[f64], child: &Piece) -> Vec<f64> {
    let sep: Vec<usize> =
        child.separator.iter().map(|&l| parent.local(child.vertices[l]).expect("shared vertex")).collect();
    let m = |a: usize, b: usize| marginals[parent.edge(sep[a], sep[b]).expect("separator cliques are in both pieces")];
    let p: Vec<f64> = match sep.len() {
        0 | 1 => vec![1.0],
        2 => vec![0.5 * (1.0 + m(0, 1)), 0.5 * (1.0 - m(0, 1))],
        _ => {
            let (ab, ac, bc) = (m(0, 1), m(0, 2), m(1, 2));
            states(3)
                .iter()
                .map(|s| {
                    let (x, y) = (f64::from(s[1]), f64::from(s[2]));
                    0.25 * (1.0 + x * ab + y * ac + x * y * bc)
                })
                .collect()
        }
    };
    p.into_iter().map(|x| x.max(0.0)).collect()
}

fn contract(piece: &Piece) -> Result<Contracted> {
    let sep = &piece.separator;
    let mut image = vec![0; piece.vertices.len()];
    let mut next = usize::from(!sep.is_empty());
    for (l, slot) in image.iter_mut().enumerate() {
        if !sep.contains(&l) {
            *slot = next;
            next += 1;
        }
    }
    let mut edges = Vec::new();
    let input = piece
        .edges
        .iter()
        .map(|&(u, v)| {
            if sep.contains(&u) && sep.contains(&v) {
                None
            } else {
                edges.push((image[u] as i64, image[v] as i64));
                Some(edges.len() - 1)
            }
        })
        .collect();
    let graph = Graph::new(Some(next), &edges)?;
    // Contracting edges of a planar piece leaves it planar.
    let planar = if piece.small { None } else { Some(Planar::new(&graph)?) };
    Ok(Contracted { graph, input, image, planar })
}

/// A draw from an enumerated piece: a configuration with spin 0 = +1 by its probability, then a fair
/// global flip.
fn enumerated_sample(graph: &Graph, couplings: &[f64], rng: &mut Gaussian) -> Vec<i8> {
    let probabilities = brute::probabilities(graph.nodes, &graph.edges, couplings);
    let mut target = 0.5 * rng.uniform();
    let mut config = probabilities.len() - 1;
    for (c, &p) in probabilities.iter().enumerate() {
        if target < p {
            config = c;
            break;
        }
        target -= p;
    }
    let flip: i8 = if rng.uniform() < 0.5 { 1 } else { -1 };
    (0..graph.nodes).map(|i| if ((config << 1) >> i) & 1 == 1 { -flip } else { flip }).collect()
}
