//! `ortho ising`: exact `log Z`, edge marginals and samples of zero-field Ising models on planar
//! graphs and graphs glued from planar and small parts (docs/math.md §6), from .npy edge lists and
//! couplings.

use crate::{Backend, npy, outputs};
use clap::Args;
use ortho::ops::IsingBatch;
use ortho::{BackendChoice, Engine, Tensor};
use ortho_ref::ising::{Glued, Graph, Inference, Sampler};
use std::path::PathBuf;

#[derive(Args)]
pub struct IsingArgs {
    /// Edges: an integer array [E, 2] of 0-based vertex ids (int32 or int64). An edge listed twice is
    /// one edge whose coupling is the sum of the listed ones.
    #[arg(long)]
    edges: PathBuf,
    /// Couplings J: [E] for one model or [batch, E] for many on the same graph (any float dtype).
    #[arg(long)]
    couplings: PathBuf,
    /// Number of vertices (default: the largest id + 1; vertices without edges are allowed).
    #[arg(long)]
    nodes: Option<usize>,
    /// Write log Z as f64: a 0-d array for one model, [batch] for many.
    #[arg(long)]
    log_z: Option<PathBuf>,
    /// Write the edge marginals E[s_u s_v] as f64: [E], or [batch, E].
    #[arg(long)]
    marginals: Option<PathBuf>,
    /// Draw this many exact samples of the spins (one model) into --out.
    #[arg(long)]
    samples: Option<usize>,
    /// Seed of the samples (the same seed gives the same samples on every machine).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where the samples go: int8 spins +-1, [samples, N].
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    backend: Backend,
}

pub fn run(a: &IsingArgs) -> Result<(), String> {
    match (a.samples, &a.out) {
        (Some(_), None) => return Err("--samples needs --out for the spins".into()),
        (None, Some(_)) => return Err("--out holds samples: give --samples K".into()),
        _ => {}
    }
    if a.log_z.is_none() && a.marginals.is_none() && a.samples.is_none() {
        return Err("nothing to write: give --log-z, --marginals, or --samples with --out".into());
    }
    let mut out =
        outputs(&[("log-z", a.log_z.as_ref()), ("marginals", a.marginals.as_ref()), ("out", a.out.as_ref())])?;
    // Outputs are numbered among those given.
    let given = [a.log_z.is_some(), a.marginals.is_some(), a.out.is_some()];
    let slot = |k: usize| given[..k].iter().filter(|&&g| g).count();
    let (edge_shape, ids) = npy::read_i64(&a.edges, "edges")?;
    let edges = match edge_shape[..] {
        [_, 2] => ids.chunks(2).map(|e| (e[0], e[1])).collect::<Vec<_>>(),
        _ => return Err(format!("edges: expected shape [E, 2], got {edge_shape:?}")),
    };
    let (j_shape, j) = npy::read_f64(&a.couplings, "couplings")?;
    let (batch, single) = match j_shape[..] {
        [e] if e == edges.len() => (1, true),
        [b, e] if e == edges.len() => (b, false),
        _ => {
            return Err(format!(
                "couplings: expected shape [{0}] or [batch, {0}] (one per edge), got {j_shape:?}",
                edges.len()
            ));
        }
    };
    let graph = Graph::new(a.nodes, &edges).map_err(|e| e.to_string())?;
    let glued = Glued::new(&graph).map_err(|e| e.to_string())?;
    let sets: Vec<&[f64]> = if edges.is_empty() { vec![&[]; batch] } else { j.chunks(edges.len()).collect() };
    let merged = sets
        .iter()
        .enumerate()
        .map(|(b, set)| graph.merge_couplings(&format!("couplings[{b}]"), set))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    // Without --backend (or with cpu) the sparse f64 solver answers; a GPU backend batches the sets
    // through f32 factorisations (dense LU for small components, the multifrontal QR above; glued
    // graphs piece by piece, small non-planar pieces enumerated).
    let engine = match a.backend.backend {
        None | Some(BackendChoice::Cpu) => None,
        Some(_) => Some(crate::engine(&a.backend)?).filter(|e| e.fallback_reason().is_none()),
    };
    eprintln!(
        "ortho: Ising on {}: {} vertices, {} edges ({} distinct), {batch} coupling set{}",
        if engine.is_some() { "the GPU (f32)" } else { "the CPU (f64)" },
        graph.nodes,
        edges.len(),
        graph.edges.len(),
        if batch == 1 { "" } else { "s" }
    );
    if a.log_z.is_some() || a.marginals.is_some() {
        let (log_z, marginals) = match &engine {
            Some(engine) => on_gpu(engine, &graph, &merged, a.marginals.is_some())?,
            None => on_cpu(&glued, &graph, &merged, a.marginals.is_some())?,
        };
        let leading: &[usize] = if single { &[] } else { &[batch] };
        if a.log_z.is_some() {
            out.write_values(slot(0), leading, &log_z)?;
        }
        if a.marginals.is_some() {
            out.write_values(slot(1), &[leading, &[edges.len()]].concat(), &marginals)?;
        }
    }
    if let Some(count) = a.samples {
        if batch != 1 {
            return Err(format!("--samples draws from one model; couplings hold {batch} sets"));
        }
        if engine.is_some() {
            eprintln!("ortho: samples are drawn on the CPU (f64)");
        }
        let progress = crate::progress_bar(count as u64, "samples");
        let mut sampler = Sampler::new(&graph, &merged[0], a.seed).map_err(|e| e.to_string())?;
        let mut spins = Vec::with_capacity(count * graph.nodes);
        for _ in 0..count {
            spins.extend(sampler.next_sample().map_err(|e| e.to_string())?);
            progress.inc(1);
        }
        progress.finish_and_clear();
        out.write_values(slot(2), &[count, graph.nodes], &spins)?;
    }
    out.commit()
}

/// `log Z` per set and the marginals per listed edge, by the sparse f64 solver.
fn on_cpu(glued: &Glued, graph: &Graph, sets: &[Vec<f64>], marginals: bool) -> Result<(Vec<f64>, Vec<f64>), String> {
    let progress = crate::progress_bar(sets.len() as u64, "coupling sets");
    let (mut log_z, mut out) = (Vec::with_capacity(sets.len()), Vec::new());
    for (b, set) in sets.iter().enumerate() {
        let result = if marginals {
            glued.infer(set)
        } else {
            glued.log_partition(set).map(|z| Inference { log_z: z, marginals: Vec::new() })
        };
        let result = result.map_err(|e| format!("coupling set {b}: {e}"))?;
        log_z.push(result.log_z);
        out.extend(if marginals { graph.spread(&result.marginals) } else { Vec::new() });
        progress.inc(1);
    }
    progress.finish_and_clear();
    Ok((log_z, out))
}

/// The same through the engine's batched path, every set in one call.
fn on_gpu(engine: &Engine, graph: &Graph, sets: &[Vec<f64>], marginals: bool) -> Result<(Vec<f64>, Vec<f64>), String> {
    let op = IsingBatch::new(graph, marginals).map_err(|e| e.to_string())?;
    let values: Vec<f32> = sets.iter().flatten().map(|&x| x as f32).collect();
    let couplings = Tensor::new(&[sets.len(), graph.edges.len()], values).map_err(|e| e.to_string())?;
    let (log_z, m) = engine.ising(&op, &couplings).map_err(|e| e.to_string())?;
    let spread = m.map_or(Vec::new(), |m| {
        m.data()
            .chunks(graph.edges.len().max(1))
            .flat_map(|row| graph.spread(&row.iter().map(|&x| x as f64).collect::<Vec<_>>()))
            .collect()
    });
    Ok((log_z.data().iter().map(|&x| x as f64).collect(), spread))
}
