//! Sparse patterns from a fixed self-attention module (docs/math.md §9) on the GPU: the check and the
//! refinement's gradient make each logit where it is used (`express/fit_rows` and `fit_columns`,
//! memory linear in L) for `d <= STREAM_MAX_DIM`, and beyond it stream blocks of rows of logits
//! through the GEMM and a row reduction, one block of at most 64 MiB (or one binding) at a time;
//! [`Engine::express`] runs the Las Vegas search of `ortho_ref::express::search` with them. The CPU
//! twin is `ortho_ref::express`.

use crate::engine::Engine;
use crate::error::Result;
use crate::gemm::{Gemm, Operand, record_gemm};
use crate::kernels;
use crate::operation::Operation;
use crate::pool::{PooledBuffer, Recorded};
use crate::recording::Recording;
use crate::tensor::GpuTensor;
pub use ortho_ref::express::search::{Attempt, Options, Progress, SAFETY, Search, Trial};
pub use ortho_ref::express::{Achieved, Expressed, Method, Pattern, Tolerances, paper, weights};
use ortho_ref::express::{check_shapes, refine, search};
use ortho_ref::{Error as InputError, Tensor};
use std::sync::Arc;

/// Floats of one block of logits (`rows x L`) at most: 64 MiB.
const BLOCK_FLOATS: usize = 1 << 24;
/// The largest `d` whose check and gradient make their logits where they are used: the rows of
/// queries and keys an invocation holds (`shaders/express/fit_row.wgsl`) stay in registers, and
/// its unrolled loops compile in seconds, up to 16 (on lavapipe a step at d = 20 took 2.4x and at
/// d = 64 8.7x the time of one at d = 16, and each kernel took about 50 s to compile at d = 36).
pub(crate) const STREAM_MAX_DIM: usize = 16;
/// Rows (or keys) one invocation of `express/fit_rows` (`fit_columns`) takes, the width of a vec4:
/// each value it loads from the other side serves this many dot products.
const STREAM_SPAN: usize = 4;
/// Adam steps between two checks of the refinement.
const CHECK_EVERY: usize = 10;

/// How `X [L, n]` with `W_Q, W_K [n, d]` fits a pattern: per row `[epsilon_i, delta_i]` (`[L, 2]`),
/// and with `gradient: Some(delta)` first the refinement's `dloss/dX` (`[L, n]`) at that `delta`.
#[derive(Clone)]
pub struct ExpressFit {
    pattern: Arc<Pattern>,
    gradient: Option<f64>,
    subgroups: bool,
}

impl ExpressFit {
    pub fn check(pattern: Arc<Pattern>) -> Self {
        ExpressFit { pattern, gradient: None, subgroups: true }
    }

    pub fn gradient(pattern: Arc<Pattern>, delta: f64) -> Result<Self> {
        Tolerances::new(1.0, delta)?;
        Ok(ExpressFit { pattern, gradient: Some(delta), subgroups: true })
    }

    /// The same, loading in every invocation even where the adapter has subgroups to broadcast with
    /// (the variant adapters without them run; for comparing the two).
    pub fn without_subgroups(self) -> Self {
        ExpressFit { subgroups: false, ..self }
    }
}

impl Operation for ExpressFit {
    const NAME: &'static str = "express";
    const INPUTS: &'static [&'static str] = &["x", "wq", "wk"];

    fn output_shapes(&self, i: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        check_shapes(i[0], i[1], i[2])?;
        let len = self.pattern.len;
        if i[0][0] != len {
            return Err(InputError::shape("x", format!("[{len}, n] (one row per pattern row)"), i[0]).into());
        }
        let stats = vec![len, 2];
        Ok(if self.gradient.is_some() { vec![i[0].to_vec(), stats] } else { vec![stats] })
    }

    fn record(
        &self,
        engine: &Engine,
        enc: &mut wgpu::CommandEncoder,
        i: &[&GpuTensor],
        o: &[&GpuTensor],
    ) -> Result<Recorded> {
        let (stats, dx) = if self.gradient.is_some() { (o[1], Some(o[0])) } else { (o[0], None) };
        engine.record_express_fit(enc, self, [i[0], i[1], i[2]], stats, dx)
    }

    fn reference(&self, i: &[Tensor<f64>]) -> Result<Vec<Tensor<f64>>> {
        Ok(match self.gradient {
            Some(delta) => {
                let (dx, stats) = refine::gradient(&self.pattern, &i[0], &i[1], &i[2], delta)?;
                vec![dx, stats]
            }
            None => vec![ortho_ref::express::check(&self.pattern, &i[0], &i[1], &i[2])?],
        })
    }
}

impl Engine {
    /// Builds `X`, `W_Q`, `W_K` for `pattern` (see [`Options`]): on the GPU when the engine has one,
    /// otherwise on the CPU twin. Every draw is judged by [`ExpressFit`]'s check; `observe` sees each
    /// dimension's draws as they end.
    pub fn express(&self, pattern: &Pattern, options: &Options, observe: impl FnMut(&Trial)) -> Result<Search> {
        if !self.is_gpu() {
            return Ok(search::express(pattern, options, observe)?);
        }
        let pattern = Arc::new(pattern.clone());
        let mut failure = None;
        let found = search::search(
            options,
            |_, wq, wk, draw| {
                self.express_draw(&pattern, options, wq, wk, draw).map_err(|e| {
                    let message = e.to_string();
                    failure = Some(e);
                    InputError::argument("express", message)
                })
            },
            observe,
        );
        match (found, failure) {
            (Ok(found), _) => Ok(found),
            (Err(_), Some(gpu)) => Err(gpu),
            (Err(e), None) => Err(e.into()),
        }
    }

    /// One draw on the GPU (`draw` seeds `R`, see [`search::draw_seed`]): the paper's `X`, checked;
    /// optimized: then Adam steps, [`CHECK_EVERY`] to a submission followed by a check, until
    /// [`Progress`] stops it. The CPU twin is `ortho_ref::express::search::attempt`.
    pub fn express_draw(
        &self,
        pattern: &Arc<Pattern>,
        options: &Options,
        wq: &Tensor<f64>,
        wk: &Tensor<f64>,
        draw: u64,
    ) -> Result<Attempt> {
        let x0 = paper::construct(pattern, options.tol, wq, wk, draw);
        let x = self.upload("x", &x0.to_f32())?;
        let (wq, wk) = (self.upload("wq", &wq.to_f32())?, self.upload("wk", &wk.to_f32())?);
        let check = ExpressFit::check(pattern.clone());
        let stats = self.empty(&[pattern.len, 2])?;
        let worst = |s: &GpuTensor| -> Result<Achieved> {
            let s = self.download(s)?;
            Ok(Achieved::worst(s.data().chunks(2).map(|r| [r[0] as f64, r[1] as f64])))
        };
        let mut iterations = 0;
        let mut achieved = {
            self.submit("express", |enc| self.record_express_fit(enc, &check, [&x, &wq, &wk], &stats, None))?;
            worst(&stats)?
        };
        if options.method == Method::Optimized {
            let grad = ExpressFit::gradient(pattern.clone(), options.tol.delta)?;
            let adam = refine::Adam::new(options.learning_rate)?;
            let (dx, m, v) = (self.empty(x.shape())?, self.zeros(x.shape())?, self.zeros(x.shape())?);
            let mut progress = Progress::new();
            while progress.go_on(options, iterations, &achieved) {
                let steps = CHECK_EVERY.min(options.max_iterations - iterations);
                // One recording for the steps and the check, each step's scratch taken again by the
                // next (the dispatches run in order): what they hold at once is one step's.
                self.submit("express", |enc| {
                    let gpu = self.recording("express", &[&x, &wq, &wk, &stats, &dx, &m, &v])?;
                    let pb = PatternBuffers::upload(&gpu, pattern);
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("express"),
                        timestamp_writes: None,
                    });
                    for _ in 0..steps {
                        iterations += 1;
                        let fit = Fit { op: &grad, pattern: &pb, inputs: [&x, &wq, &wk], stats: &stats, dx: Some(&dx) };
                        gpu.reusing(|| record_fit(&gpu, &mut pass, &fit))?;
                        record_adam(&gpu, &mut pass, &adam, iterations, [&dx, &m, &v, &x])?;
                    }
                    let fit = Fit { op: &check, pattern: &pb, inputs: [&x, &wq, &wk], stats: &stats, dx: None };
                    record_fit(&gpu, &mut pass, &fit)?;
                    drop(pass);
                    Ok(gpu.finish())
                })?;
                achieved = worst(&stats)?;
            }
        }
        Ok(Attempt { x: self.download(&x)?.to_f64(), achieved, iterations })
    }

    /// A pooled tensor of zeros.
    fn zeros(&self, shape: &[usize]) -> Result<GpuTensor> {
        self.upload("zeros", &Tensor::zeros(shape))
    }

    /// Records [`ExpressFit`] of `[x, wq, wk]` into `stats` and, for a gradient, `dx`.
    pub fn record_express_fit(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        op: &ExpressFit,
        [x, wq, wk]: [&GpuTensor; 3],
        stats: &GpuTensor,
        dx: Option<&GpuTensor>,
    ) -> Result<Recorded> {
        let shapes = op.output_shapes(&[x.shape(), wq.shape(), wk.shape()])?;
        if stats.shape() != [op.pattern.len, 2] || dx.map(|t| t.shape()) != shapes.get(1).map(|_| x.shape()) {
            return Err(InputError::shape("stats / dx", format!("{shapes:?}"), stats.shape()).into());
        }
        let mut tensors = vec![x, wq, wk, stats];
        tensors.extend(dx);
        let gpu = self.recording("express", &tensors)?;
        let mut pass =
            encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("express"), timestamp_writes: None });
        let pb = PatternBuffers::upload(&gpu, &op.pattern);
        record_fit(&gpu, &mut pass, &Fit { op, pattern: &pb, inputs: [x, wq, wk], stats, dx })?;
        drop(pass);
        Ok(gpu.finish())
    }
}

/// One [`ExpressFit`] to record: the operation, its pattern on the device, `[x, wq, wk]`, and where
/// its per-row stats and (for a gradient) `dloss/dX` go.
struct Fit<'a> {
    op: &'a ExpressFit,
    pattern: &'a PatternBuffers,
    inputs: [&'a GpuTensor; 3],
    stats: &'a GpuTensor,
    dx: Option<&'a GpuTensor>,
}

/// Records `fit`: logit by logit up to [`STREAM_MAX_DIM`], in blocks of rows past it.
fn record_fit(gpu: &Recording, pass: &mut wgpu::ComputePass<'_>, fit: &Fit) -> Result<()> {
    if fit.inputs[1].shape()[1] <= STREAM_MAX_DIM {
        record_fit_streamed(gpu, pass, fit)
    } else {
        record_fit_blocks(gpu, pass, fit)
    }
}

/// Records one Adam step `t` (from 1): `[g, m, v, x]`, all of one shape.
fn record_adam(
    gpu: &Recording,
    pass: &mut wgpu::ComputePass<'_>,
    adam: &refine::Adam,
    t: usize,
    tensors: [&GpuTensor; 4],
) -> Result<()> {
    let (c1, c2) = adam.corrections(t);
    let count = tensors[3].len();
    let params = kernels::Adam {
        count: count as u32,
        lr: adam.lr as f32,
        beta1: adam.beta1 as f32,
        beta2: adam.beta2 as f32,
        c1: c1 as f32,
        c2: c2 as f32,
        eps: adam.eps as f32,
        _pad: 0,
    };
    let bufs = tensors.map(|t| t.buffer());
    gpu.dispatch(pass, &kernels::ADAM, &params, &bufs, gpu.grid(count as u64, 256)?)
}

/// `Q = X W_Q` and `K = X W_K`, each `[L, d]` with rows `stride` floats apart.
fn record_queries_keys(
    gpu: &Recording,
    pass: &mut wgpu::ComputePass<'_>,
    [x, wq, wk]: [&GpuTensor; 3],
    [q, k]: [&wgpu::Buffer; 2],
    stride: usize,
) -> Result<()> {
    let (len, n, d) = (x.shape()[0], wq.shape()[0], wq.shape()[1]);
    for (w, out) in [(wq, q), (wk, k)] {
        let out = Operand::rows(out, len, d).with_row_stride(stride);
        record_gemm(
            gpu,
            pass,
            &Gemm::new(1, len, d, n),
            Operand::rows(x.buffer(), len, n),
            Operand::rows(w.buffer(), n, d),
            out,
        )?;
    }
    Ok(())
}

/// `dX = dQ W_Q^T + dK W_K^T`, `dQ` and `dK` `[L, d]` with rows `stride` floats apart.
fn record_input_gradient(
    gpu: &Recording,
    pass: &mut wgpu::ComputePass<'_>,
    [wq, wk]: [&GpuTensor; 2],
    [dq, dk]: [&wgpu::Buffer; 2],
    stride: usize,
    dx: &GpuTensor,
) -> Result<()> {
    let (len, n, d) = (dx.shape()[0], wq.shape()[0], wq.shape()[1]);
    for (beta, (dy, w)) in [(0.0, (dq, wq)), (1.0, (dk, wk))] {
        let g = Gemm { beta, ..Gemm::new(1, len, n, d) };
        let dy = Operand::rows(dy, len, d).with_row_stride(stride);
        record_gemm(gpu, pass, &g, dy, Operand::rows(w.buffer(), n, d).t(), Operand::rows(dx.buffer(), len, n))?;
    }
    Ok(())
}

/// The check (and gradient) without logits in memory: `Q`, `K` (rows zero-padded to whole vec4s),
/// `express/fit_rows` (stats, fits and `dQ`) and for the gradient `express/fit_columns` (`dK`, with
/// the pattern by columns), then `dX`.
fn record_fit_streamed(gpu: &Recording, pass: &mut wgpu::ComputePass<'_>, fit: &Fit) -> Result<()> {
    let Fit { op, pattern: pb, inputs: [x, wq, wk], stats, dx } = *fit;
    let p = &op.pattern;
    let (len, d) = (p.len, wq.shape()[1]);
    let d4 = d.div_ceil(4);
    let stride = 4 * d4;
    let grad_floats = if dx.is_some() { len * stride } else { 4 };
    let sizes = [len * stride, len * stride, 4 * len, grad_floats, grad_floats];
    let [q, k, fits, dq, dk] = gpu.allocate("express", &sizes)?;
    if stride != d {
        gpu.fill(pass, q.buffer(), len * stride, 0.0)?;
        gpu.fill(pass, k.buffer(), len * stride, 0.0)?;
    }
    record_queries_keys(gpu, pass, [x, wq, wk], [q.buffer(), k.buffer()], stride)?;
    let params = kernels::ExpressStream {
        len: len as u32,
        gradient: dx.is_some() as u32,
        tau: op.gradient.map_or(0.0, refine::mass_target) as f32,
        _pad: 0,
    };
    let constants = [("D4", d4 as f64)];
    let groups = gpu.grid(len.div_ceil(STREAM_SPAN) as u64, 64)?;
    let subgroups = op.subgroups && gpu.subgroups_of_8();
    let (fit_rows, fit_columns) = match subgroups {
        true => (&kernels::FIT_ROWS_SUBGROUP, &kernels::FIT_COLUMNS_SUBGROUP),
        false => (&kernels::FIT_ROWS, &kernels::FIT_COLUMNS),
    };
    let rows = [
        pb.starts.buffer(),
        pb.columns.buffer(),
        pb.targets.buffer(),
        q.buffer(),
        k.buffer(),
        stats.buffer(),
        fits.buffer(),
        dq.buffer(),
    ];
    gpu.dispatch_with(pass, fit_rows, &constants, &params, &rows, groups)?;
    let Some(dx) = dx else { return Ok(()) };
    let columns = [
        pb.col_starts.buffer(),
        pb.col_entries.buffer(),
        pb.entry_rows.buffer(),
        pb.targets.buffer(),
        q.buffer(),
        k.buffer(),
        fits.buffer(),
        dk.buffer(),
    ];
    gpu.dispatch_with(pass, fit_columns, &constants, &params, &columns, groups)?;
    record_input_gradient(gpu, pass, [wq, wk], [dq.buffer(), dk.buffer()], stride, dx)
}

/// The pattern on the device, uploaded once for every fit a recording makes: by rows (`starts`,
/// `columns`, `targets`, and each entry's row), and by columns (column `j`'s entries, as indices
/// into the rows' order, are `col_entries[col_starts[j]..col_starts[j + 1]]`, rows ascending).
struct PatternBuffers {
    starts: PooledBuffer,
    columns: PooledBuffer,
    targets: PooledBuffer,
    entry_rows: PooledBuffer,
    col_starts: PooledBuffer,
    col_entries: PooledBuffer,
}

impl PatternBuffers {
    fn upload(gpu: &Recording, p: &Pattern) -> Self {
        let u32s = |v: &[usize]| v.iter().map(|&e| e as u32).collect::<Vec<u32>>();
        let entry_rows: Vec<u32> =
            (0..p.len).flat_map(|i| std::iter::repeat_n(i as u32, p.starts[i + 1] - p.starts[i])).collect();
        let mut col_starts = vec![0u32; p.len + 1];
        p.columns.iter().for_each(|&j| col_starts[j + 1] += 1);
        (0..p.len).for_each(|j| col_starts[j + 1] += col_starts[j]);
        let mut next = col_starts.clone();
        let mut col_entries = vec![0u32; p.columns.len()];
        for (e, &j) in p.columns.iter().enumerate() {
            col_entries[next[j] as usize] = e as u32;
            next[j] += 1;
        }
        let targets: Vec<f32> = p.targets.iter().map(|&t| t as f32).collect();
        let put = |data: &[u32]| gpu.upload(bytemuck::cast_slice(data));
        PatternBuffers {
            starts: put(&u32s(&p.starts)),
            columns: put(&u32s(&p.columns)),
            targets: gpu.upload(bytemuck::cast_slice(&targets)),
            entry_rows: put(&entry_rows),
            col_starts: put(&col_starts),
            col_entries: put(&col_entries),
        }
    }
}

/// The check (and gradient) in blocks of rows: `Q = X W_Q`, `K = X W_K`; per block `Z = Q_b K^T`,
/// the support gathered out of it, the row reduction; for the gradient the support's gradients
/// scattered back, `dQ_b = dZ K`, `dK += dZ^T Q_b`; finally `dX = dQ W_Q^T + dK W_K^T`.
fn record_fit_blocks(gpu: &Recording, pass: &mut wgpu::ComputePass<'_>, fit: &Fit) -> Result<()> {
    let Fit { op, pattern: pb, inputs: [x, wq, wk], stats, dx } = *fit;
    let p = &op.pattern;
    let (len, d) = (p.len, wq.shape()[1]);
    let block = (BLOCK_FLOATS.min(gpu.binding_limit() as usize / 4) / len).clamp(1, len);
    let blocks: Vec<(usize, usize)> = (0..len).step_by(block).map(|r| (r, block.min(len - r))).collect();
    let most_entries = blocks.iter().map(|&(r, rows)| p.starts[r + rows] - p.starts[r]).max().unwrap_or(1);
    let grad = dx.is_some();
    let (dq_floats, fits) = (if grad { len * d } else { 1 }, 4 * block);
    let sizes = [len * d, len * d, block * len, most_entries, dq_floats, dq_floats, fits];
    let [q, k, z, support, dq, dk, fits] = gpu.allocate("express", &sizes)?;
    let PatternBuffers { starts, columns, targets, entry_rows, .. } = pb;
    let rows_of = Operand::rows;
    record_queries_keys(gpu, pass, [x, wq, wk], [q.buffer(), k.buffer()], d)?;
    let tau = op.gradient.map_or(0.0, refine::mass_target) as f32;
    for (b, &(row0, rows)) in blocks.iter().enumerate() {
        let q_block = rows_of(q.buffer(), len, d).at(row0 * d);
        let z_block = rows_of(z.buffer(), rows, len);
        record_gemm(gpu, pass, &Gemm::new(1, rows, len, d), q_block, rows_of(k.buffer(), len, d).t(), z_block)?;
        let (first, entries) = (p.starts[row0], p.starts[row0 + rows] - p.starts[row0]);
        let params = kernels::ExpressRows {
            len: len as u32,
            row0: row0 as u32,
            rows: rows as u32,
            first: first as u32,
            entries: entries as u32,
            tau,
            ..Default::default()
        };
        let entry_grid = gpu.grid(entries as u64, 256)?;
        let moves = [entry_rows.buffer(), columns.buffer(), z.buffer(), support.buffer()];
        gpu.dispatch(pass, &kernels::SUPPORT_GATHER, &params, &moves, entry_grid)?;
        let fit = [starts.buffer(), targets.buffer(), z.buffer(), support.buffer(), stats.buffer(), fits.buffer()];
        gpu.dispatch(pass, &kernels::ROW_FIT, &params, &fit, gpu.grid(rows as u64 * 64, 64)?)?;
        if !grad {
            continue;
        }
        let block_grid = gpu.grid((rows * len) as u64, 256)?;
        gpu.dispatch(pass, &kernels::ROW_GRADIENT, &params, &[fits.buffer(), z.buffer()], block_grid)?;
        let scatter =
            [entry_rows.buffer(), columns.buffer(), targets.buffer(), fits.buffer(), support.buffer(), z.buffer()];
        gpu.dispatch(pass, &kernels::SUPPORT_SCATTER, &params, &scatter, entry_grid)?;
        let dq_block = rows_of(dq.buffer(), len, d).at(row0 * d);
        record_gemm(gpu, pass, &Gemm::new(1, rows, d, len), z_block, rows_of(k.buffer(), len, d), dq_block)?;
        let accumulate = Gemm { beta: if b == 0 { 0.0 } else { 1.0 }, ..Gemm::new(1, len, d, rows) };
        let dk_all = rows_of(dk.buffer(), len, d);
        record_gemm(gpu, pass, &accumulate, z_block.t(), rows_of(q.buffer(), len, d).at(row0 * d), dk_all)?;
    }
    match dx {
        Some(dx) => record_input_gradient(gpu, pass, [wq, wk], [dq.buffer(), dk.buffer()], d, dx),
        None => Ok(()),
    }
}
