//! Exact `log Z` and edge marginals of many coupling sets on one planar or glued graph (docs/math.md
//! §6). Dense path: each component's scaled Kasteleyn matrix is assembled on the GPU
//! (`ising/kasteleyn`), factored by `common/lu` and, for the marginals, solved against the columns
//! `e_{2i+1}` by `common/lu_solve`; `ising/readout` turns determinants and solves into `log Z` and
//! `E[s_u s_v]`. Sparse path: the multifrontal QR of [`frontal`]. Glued graphs: [`glued`], each
//! piece by one of these or by enumeration. The oracles are `ortho_ref::ising::Planar` (sparse
//! pivoted `L D L^T`, f64) and `Glued`, which also serve single large graphs.

pub(crate) mod frontal;
pub(crate) mod glued;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::kernels;
use crate::lu::{LU_MAX_N, record_factor, record_solve};
use crate::operation::{Operation, run_batches};
use crate::pool::Recorded;
use crate::recording::Recording;
use crate::tensor::GpuTensor;
use frontal::FrontalPlan;
use glued::{GluedPlan, SeparatorStates};
use ortho_ref::Tensor;
use ortho_ref::ising::{DenseKasteleyn, Glued, Graph, Inference, Planar};
use std::f64::consts::LN_2;
use std::sync::Arc;

/// An entry index meaning "no coupling" (an edge the triangulation added).
pub(crate) const NO_EDGE: u32 = u32::MAX;

/// How [`IsingBatch`] factors a component's Kasteleyn matrix on the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Factorisation {
    /// Dense LU with partial pivoting (`n^3` work, order at most [`LU_MAX_N`]).
    Dense,
    /// Multifrontal QR over nested dissection (about `N^1.5` work on grids); the marginals by
    /// reverse-mode differentiation of its reflections.
    Frontal,
    /// Dense for components of Kasteleyn order at most [`DENSE_AUTO_MAX`], frontal above.
    Auto,
}

/// The largest Kasteleyn order [`Factorisation::Auto`] factors densely (one invocation per matrix
/// there, faster than the fronts' workgroups).
pub const DENSE_AUTO_MAX: usize = 128;

/// `log Z` (and the marginals, when asked) of every row of couplings `[batch, E]` (or `[E]`), `E`
/// the graph's distinct edges ([`Graph::merge_couplings`] adds up duplicates). Outputs `log_z`
/// (`[batch]` or `[]`) and `marginals` (the couplings' shape). Planar graphs, and graphs glued from
/// planar and small pieces along separators of at most three vertices (K3,3-free, K5-free: dynamic
/// programming over the pieces, [`glued`]), whose fronts fit a storage binding (one coupling set at a
/// time); single large graphs are for the CPU solvers, `ortho_ref::ising::{Planar, Glued}`.
#[derive(Clone)]
pub struct IsingBatch {
    model: Model,
    edges: usize,
    marginals: bool,
}

#[derive(Clone)]
enum Model {
    Planar(Arc<Planar>, Arc<PlanarPlan>),
    Glued(Arc<Glued>, Arc<GluedPlan>),
}

/// The GPU factorisations of one planar graph's components.
pub(crate) struct PlanarPlan {
    dense: Vec<DenseKasteleyn>,
    frontal: Option<FrontalPlan>,
    /// `log 2` per isolated vertex and per frontal component, less `log 2` per vertex the
    /// triangulations of the frontal components added.
    constant: f64,
    marginals: bool,
}

impl IsingBatch {
    pub fn new(graph: &Graph, marginals: bool) -> Result<Self> {
        Self::with_factorisation(graph, marginals, Factorisation::Auto)
    }

    /// With `factorisation` for every planar component (of the graph, or of each planar piece of a
    /// glued graph).
    pub fn with_factorisation(graph: &Graph, marginals: bool, factorisation: Factorisation) -> Result<Self> {
        let model = match Planar::new(graph) {
            Ok(planar) => {
                let plan = PlanarPlan::new(&planar, marginals, factorisation)?;
                Model::Planar(Arc::new(planar), Arc::new(plan))
            }
            Err(_) => {
                // Not planar: the decomposition's error names the piece that is too large when the
                // graph is outside the glued family.
                let glued = Glued::new(graph)?;
                let plan = GluedPlan::new(&glued, marginals, factorisation)?;
                Model::Glued(Arc::new(glued), Arc::new(plan))
            }
        };
        Ok(IsingBatch { model, edges: graph.edges.len(), marginals })
    }

    fn edges(&self) -> usize {
        self.edges
    }

    fn batch(&self, shape: &[usize]) -> Result<usize> {
        let e = self.edges();
        match *shape {
            [n] if n == e => Ok(1),
            [b, n] if n == e => Ok(b),
            _ => Err(ortho_ref::Error::shape(
                "couplings",
                format!("[{e}] or [batch, {e}] (one per distinct edge)"),
                shape,
            )
            .into()),
        }
    }
}

impl PlanarPlan {
    pub fn new(planar: &Planar, marginals: bool, factorisation: Factorisation) -> Result<Self> {
        let frontal_qr = planar.frontal();
        let (mut dense, mut sparse) = (Vec::new(), Vec::new());
        for (component, qr) in planar.dense().into_iter().zip(&frontal_qr) {
            let order = 2 * component.pair_edges.len();
            let is_dense = match factorisation {
                Factorisation::Dense => true,
                Factorisation::Frontal => false,
                Factorisation::Auto => order <= DENSE_AUTO_MAX,
            };
            if is_dense && order > LU_MAX_N {
                return Err(Error::Unsupported(format!(
                    "a component of the graph has {} edges after triangulation; the dense factorisation takes \
                     Kasteleyn orders up to {LU_MAX_N} (1024 edges): use Factorisation::Frontal or Auto",
                    component.pair_edges.len()
                )));
            }
            if is_dense { dense.push(component) } else { sparse.push((qr, component)) }
        }
        let frontal_constant: f64 = sparse.iter().map(|(_, c)| (1.0 - c.added_nodes as f64) * LN_2).sum();
        let frontal = (!sparse.is_empty()).then(|| {
            let parts: Vec<_> = sparse.iter().map(|(qr, c)| (*qr, c)).collect();
            FrontalPlan::new(&parts, marginals)
        });
        let constant = planar.isolated() as f64 * LN_2 + frontal_constant;
        Ok(PlanarPlan { dense, frontal, constant, marginals })
    }

    /// Records `log_z[i]` (and, with marginals, `marginals[i]`) of the graph for the `rows` coupling
    /// sets of `couplings` (`[rows, edges]`); with `states` (a glued piece's rows, one per separator
    /// state of each set), `log_z` holds their Hadamard combinations instead.
    pub fn record(
        &self,
        gpu: &Recording,
        pass: &mut wgpu::ComputePass<'_>,
        (edges, rows): (usize, usize),
        couplings: &wgpu::Buffer,
        (log_z, marginals): (&wgpu::Buffer, Option<&wgpu::Buffer>),
        states: Option<&SeparatorStates>,
    ) -> Result<()> {
        let marginals = marginals.filter(|_| self.marginals);
        gpu.fill(pass, log_z, rows, self.constant as f32)?;
        for component in &self.dense {
            gpu.reusing(|| record_component(gpu, pass, component, edges, rows, (couplings, log_z, marginals)))?;
        }
        if let Some(states) = states {
            states.record(gpu, pass, log_z, rows / states.states(), 1)?;
        }
        if let Some(frontal) = &self.frontal {
            frontal.record(gpu, pass, (edges, rows), couplings, (log_z, marginals), states)?;
        }
        Ok(())
    }
}

impl Operation for IsingBatch {
    const NAME: &'static str = "ising";
    const INPUTS: &'static [&'static str] = &["couplings"];

    async fn run_split(&self, engine: &Engine, inputs: &[&Tensor<f32>]) -> Option<Result<Vec<Tensor<f32>>>> {
        run_batches(engine, self, inputs, &[2, 1]).await
    }

    fn output_shapes(&self, i: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let batch = self.batch(i[0])?;
        let log_z = if i[0].len() == 2 { vec![batch] } else { vec![] };
        Ok(if self.marginals { vec![log_z, i[0].to_vec()] } else { vec![log_z] })
    }

    fn record(
        &self,
        engine: &Engine,
        enc: &mut wgpu::CommandEncoder,
        i: &[&GpuTensor],
        o: &[&GpuTensor],
    ) -> Result<Recorded> {
        engine.record_ising(enc, self, i[0], o[0], o.get(1).copied())
    }

    fn reference(&self, i: &[Tensor<f64>]) -> Result<Vec<Tensor<f64>>> {
        let shapes = self.output_shapes(&[i[0].shape()])?;
        let (mut log_z, mut marginals) = (Vec::new(), Vec::new());
        for set in i[0].data().chunks(self.edges().max(1)).take(self.batch(i[0].shape())?) {
            let result = match (&self.model, self.marginals) {
                (Model::Planar(planar, _), true) => planar.infer(set)?,
                (Model::Glued(glued, _), true) => glued.infer(set)?,
                (Model::Planar(planar, _), false) => Inference { log_z: planar.log_partition(set)?, marginals: vec![] },
                (Model::Glued(glued, _), false) => Inference { log_z: glued.log_partition(set)?, marginals: vec![] },
            };
            log_z.push(result.log_z);
            marginals.extend(result.marginals);
        }
        let mut out = vec![Tensor::new(&shapes[0], log_z)?];
        if self.marginals {
            out.push(Tensor::new(&shapes[1], marginals)?);
        }
        Ok(out)
    }

    fn non_finite_cause(&self) -> &'static str {
        "a Kasteleyn matrix overflowed f32 (couplings beyond about 80 in magnitude) or came out singular"
    }
}

impl Engine {
    /// [`IsingBatch`] of host couplings: `(log_z, marginals)` (marginals empty unless asked for).
    pub fn ising(&self, op: &IsingBatch, couplings: &Tensor<f32>) -> Result<(Tensor<f32>, Option<Tensor<f32>>)> {
        let mut out = self.run(op, &[couplings])?.into_iter();
        Ok((out.next().unwrap(), out.next()))
    }

    /// Records [`IsingBatch`] into `log_z` and, when the op asks for them, `marginals`.
    pub fn record_ising(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        op: &IsingBatch,
        couplings: &GpuTensor,
        log_z: &GpuTensor,
        marginals: Option<&GpuTensor>,
    ) -> Result<Recorded> {
        let shapes = op.output_shapes(&[couplings.shape()])?;
        if log_z.shape() != shapes[0].as_slice() {
            return Err(ortho_ref::Error::shape("log_z", format!("{:?}", shapes[0]), log_z.shape()).into());
        }
        let marginals = match (op.marginals, marginals) {
            (true, Some(m)) if m.shape() == couplings.shape() => Some(m),
            (false, None) => None,
            (_, m) => {
                let want = if op.marginals { format!("{:?}", couplings.shape()) } else { "none".into() };
                return Err(ortho_ref::Error::shape("marginals", want, m.map_or(&[][..], |m| m.shape())).into());
            }
        };
        let batch = op.batch(couplings.shape())?;
        let mut tensors = vec![couplings, log_z];
        tensors.extend(marginals);
        let gpu = self.recording("ising", &tensors)?;
        let mut pass =
            encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("ising"), timestamp_writes: None });
        let outputs = (log_z.buffer(), marginals.map(|m| m.buffer()));
        match &op.model {
            Model::Planar(_, plan) => {
                plan.record(&gpu, &mut pass, (op.edges(), batch), couplings.buffer(), outputs, None)?
            }
            Model::Glued(_, plan) => plan.record(&gpu, &mut pass, (op.edges(), batch), couplings.buffer(), outputs)?,
        }
        drop(pass);
        Ok(gpu.finish())
    }
}

/// One component's share of every coupling set, as many sets at a time as its dense matrices fit one
/// binding.
fn record_component(
    gpu: &Recording,
    pass: &mut wgpu::ComputePass<'_>,
    component: &DenseKasteleyn,
    edges: usize,
    batch: usize,
    (couplings, log_z, marginals): (&wgpu::Buffer, &wgpu::Buffer, Option<&wgpu::Buffer>),
) -> Result<()> {
    let pairs = component.pair_edges.len();
    let order = 2 * pairs;
    let edge = |i: usize| component.pair_edges[i].map_or(NO_EDGE, |e| e as u32);
    let mut entries: Vec<u32> = Vec::with_capacity(5 * (pairs + component.intra.len()));
    for i in 0..pairs {
        let kind = if component.sign[i] > 0.0 { 1 } else { 2 };
        entries.extend([2 * i as u32, 2 * i as u32 + 1, edge(i), edge(i), kind]);
    }
    for &(a, b) in &component.intra {
        entries.extend([a as u32, b as u32, edge(a / 2), edge(b / 2), 0]);
    }
    let table: Vec<u32> = (0..pairs).flat_map(|i| [edge(i), u32::from(component.sign[i] < 0.0)]).collect();
    let entries_buffer = gpu.upload(bytemuck::cast_slice(&entries));
    let table_buffer = gpu.upload(bytemuck::cast_slice(&table));
    // The right-hand sides e_{2i+1}, one column per pair, shared by every set.
    let mut columns = vec![0.0f32; order * pairs];
    for i in 0..pairs {
        columns[(2 * i + 1) * pairs + i] = 1.0;
    }
    let columns_buffer = gpu.upload(bytemuck::cast_slice(&columns));
    let per_set = (order * order).max(order * pairs) as u64 * 4;
    let chunk = ((gpu.binding_limit() / per_set) as usize).clamp(1, batch);
    let sizes = [
        chunk * order * order,
        chunk * order * order,
        chunk * order,
        2 * chunk,
        if marginals.is_some() { chunk * order * pairs } else { 1 },
    ];
    let [k, factors, pivots, det, x] = gpu.allocate("ising", &sizes)?;
    for first in (0..batch).step_by(chunk) {
        let count = chunk.min(batch - first);
        let params = kernels::IsingDense {
            batch: count as u32,
            first: first as u32,
            order: order as u32,
            entries: (entries.len() / 5) as u32,
            edges: edges as u32,
            added: component.added_nodes as u32,
            marginals: u32::from(marginals.is_some()),
            ..Default::default()
        };
        gpu.fill(pass, k.buffer(), count * order * order, 0.0)?;
        let invocations = (count * entries.len() / 5) as u64;
        gpu.dispatch(
            pass,
            &kernels::KASTELEYN,
            &params,
            &[couplings, entries_buffer.buffer(), k.buffer()],
            gpu.grid(invocations, 256)?,
        )?;
        record_factor(gpu, pass, (count, order), [k.buffer(), factors.buffer(), pivots.buffer(), det.buffer()])?;
        if marginals.is_some() {
            let bufs = [factors.buffer(), pivots.buffer(), columns_buffer.buffer(), x.buffer()];
            record_solve(gpu, pass, (count, order, pairs), true, bufs)?;
        }
        // Without marginals the readout writes none; its binding takes a spare word.
        let spare = marginals.is_none().then(|| gpu.scratch(4));
        let out = marginals.unwrap_or_else(|| spare.as_ref().unwrap().buffer());
        let bufs = [couplings, det.buffer(), x.buffer(), table_buffer.buffer(), log_z, out];
        gpu.dispatch(pass, &kernels::READOUT, &params, &bufs, gpu.grid((count * pairs) as u64, 256)?)?;
    }
    Ok(())
}
