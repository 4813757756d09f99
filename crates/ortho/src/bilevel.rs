//! Few-shot regression's bi-level outer gradients on the GPU, many tasks at once (docs/math.md §8):
//! the network's loss, gradient and Hessian-vector product as GEMMs batched over tasks and four
//! elementwise kernels (`shaders/bilevel/`); the inner loop and the exact, exact in O(1) memory and
//! first-order outer gradients built from them ([`MetaGradient`]); UFOM's estimates
//! ([`Engine::meta_estimates`]). The CPU twin is `ortho_ref::bilevel` (`regression::mse`, `exact`,
//! `exact_o1`, `fom`, `Estimator`).

use crate::engine::Engine;
use crate::error::Result;
use crate::gemm::{Gemm, Operand, record_gemm};
use crate::kernels;
use crate::operation::Operation;
use crate::pool::Recorded;
use crate::recording::{Blocks, Recording};
use crate::scratch::scratch_plan;
use crate::tensor::GpuTensor;
pub use ortho_ref::bilevel::regression::SineTask;
use ortho_ref::bilevel::regression::mse;
pub use ortho_ref::bilevel::{Estimator, InnerLoop, Method};
use ortho_ref::{Error as InputError, Tensor};
use std::time::Instant;

/// The network's loss, gradient and Hessian-vector product on each task's points. Inputs: the
/// parameters `phi [T, 3 hidden + 1]` (`[w1, b1, w2, b2]` of `f(x) = w2 . tanh(w1 x + b1) + b2`),
/// the points `[T, S, 2]` (`x`, `y`), the direction `v [T, 3 hidden + 1]`. Outputs: the mean squared
/// error `[T]`, its gradient `[T, P]` and `H v [T, P]`.
#[derive(Debug, Clone, Copy)]
pub struct RegressionDerivatives {
    pub hidden: usize,
}

/// How [`MetaGradient`] differentiates through the inner loop (see `ortho_ref::bilevel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OuterGradient {
    /// Backpropagation through the stored iterates: `r + 1` copies of the parameters.
    Exact,
    /// The same gradient recomputing each iterate from `theta`: one copy, `r (r + 1) / 2` more steps.
    ExactO1,
    /// The outer gradient at `phi_r`, as if `d phi_r / d theta` were `I`.
    Fom,
}

/// The outer gradient of every task at a shared `theta`. Inputs: `theta [3 hidden + 1]`, the support
/// points `[T, S, 2]` (the inner loss) and the query points `[T, Q, 2]` (the outer loss). Outputs:
/// the gradients `[T, P]` and the outer losses `L_out(phi_r)` `[T]`.
#[derive(Debug, Clone, Copy)]
pub struct MetaGradient {
    pub hidden: usize,
    pub inner: InnerLoop,
    pub method: OuterGradient,
}

impl MetaGradient {
    /// Floating-point operations of one run on `tasks` tasks of `shots` support and `queries` query
    /// points, as the kernels compute them (a GEMM `2 m n k`, `tanh` one).
    pub fn flops(&self, tasks: usize, shots: usize, queries: usize) -> f64 {
        let h = self.hidden as f64;
        let forward = |s: f64| s * (4.0 * h + h + 2.0 * (h + 1.0) + 3.0);
        let gradient = |s: f64| s * (8.0 * h + 2.0 * (h + 1.0));
        let hvp = |s: f64| s * (25.0 * h + 4.0 * (h + 1.0));
        let (s, q, r) = (shots as f64, queries as f64, self.inner.steps as f64);
        let step = forward(s) + gradient(s);
        let (steps, hvps) = match self.method {
            OuterGradient::Exact => (r, r),
            OuterGradient::ExactO1 => (r + r * (r - 1.0) / 2.0, r),
            OuterGradient::Fom => (r, 0.0),
        };
        tasks as f64 * (steps * step + forward(q) + gradient(q) + hvps * (forward(s) + hvp(s)))
    }
}

/// Checks `[T, count, 2]` points of `tasks` tasks (`None`: any), returning `(T, count)`.
fn points_shape(name: &str, shape: &[usize], tasks: Option<usize>) -> Result<(usize, usize)> {
    let want =
        || format!("[{}, points, 2] with at least one task and one point", tasks.map_or("T".into(), |t| t.to_string()));
    match *shape {
        [t, count, 2] if t > 0 && count > 0 && tasks.is_none_or(|n| n == t) => Ok((t, count)),
        _ => Err(InputError::shape(name, want(), shape).into()),
    }
}

/// Checks parameters `[rest.., 3 hidden + 1]`.
fn params_shape(name: &str, shape: &[usize], hidden: usize, rest: &[usize]) -> Result<()> {
    let mut want = rest.to_vec();
    want.push(3 * hidden + 1);
    if hidden == 0 || shape != want {
        return Err(InputError::shape(name, format!("{want:?} (3 hidden + 1 per task, hidden >= 1)"), shape).into());
    }
    Ok(())
}

/// The twin's tasks from points tensors (`query` empty for [`RegressionDerivatives`]).
fn tasks_of(hidden: usize, support: &Tensor<f64>, query: Option<&Tensor<f64>>) -> Vec<SineTask> {
    let pairs = |t: &Tensor<f64>, i: usize| -> Vec<(f64, f64)> {
        let per = t.shape()[1] * 2;
        t.data()[i * per..(i + 1) * per].chunks(2).map(|p| (p[0], p[1])).collect()
    };
    (0..support.shape()[0])
        .map(|i| SineTask { hidden, support: pairs(support, i), query: query.map_or(Vec::new(), |q| pairs(q, i)) })
        .collect()
}

impl Operation for RegressionDerivatives {
    const NAME: &'static str = "regression";
    const INPUTS: &'static [&'static str] = &["phi", "points", "v"];

    fn output_shapes(&self, i: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let (t, _) = points_shape("points", i[1], None)?;
        params_shape("phi", i[0], self.hidden, &[t])?;
        params_shape("v", i[2], self.hidden, &[t])?;
        Ok(vec![vec![t], i[0].to_vec(), i[0].to_vec()])
    }

    fn record(
        &self,
        engine: &Engine,
        enc: &mut wgpu::CommandEncoder,
        i: &[&GpuTensor],
        o: &[&GpuTensor],
    ) -> Result<Recorded> {
        let gpu = engine.recording(Self::NAME, &[i, o].concat())?;
        let (tasks, count) = points_shape("points", i[1].shape(), None)?;
        let mut pass =
            enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("regression"), timestamp_writes: None });
        let mut net = Net::new(&gpu, &mut pass, tasks, self.hidden, count)?;
        let (phi, v, points) = (At::start(i[0]), At::start(i[2]), i[1].buffer());
        net.forward(phi, points, count)?;
        net.copy_loss(o[0].buffer())?;
        net.gradient(phi, points, count, At::start(o[1]), [1.0, 0.0])?;
        net.hvp(phi, v, points, count, At::start(o[2]), [1.0, 0.0])?;
        drop(pass);
        Ok(gpu.finish())
    }

    fn reference(&self, i: &[Tensor<f64>]) -> Result<Vec<Tensor<f64>>> {
        let p = 3 * self.hidden + 1;
        let (mut loss, mut grad, mut hvp) = (Vec::new(), Vec::new(), Vec::new());
        for (t, task) in tasks_of(self.hidden, &i[1], None).iter().enumerate() {
            let (phi, v) = (&i[0].data()[t * p..(t + 1) * p], &i[2].data()[t * p..(t + 1) * p]);
            let (l, g, h) = mse(phi, self.hidden, &task.support, Some(v));
            loss.push(l);
            grad.extend(g);
            hvp.extend(h);
        }
        let shape = i[0].shape();
        Ok(vec![Tensor::new(&[shape[0]], loss)?, Tensor::new(shape, grad)?, Tensor::new(shape, hvp)?])
    }
}

impl Operation for MetaGradient {
    const NAME: &'static str = "meta gradient";
    const INPUTS: &'static [&'static str] = &["theta", "support", "query"];
    const SUBMITS_IN_PIECES: bool = true;

    fn output_shapes(&self, i: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        params_shape("theta", i[0], self.hidden, &[])?;
        let (t, _) = points_shape("support", i[1], None)?;
        points_shape("query", i[2], Some(t))?;
        if !(self.inner.lr.is_finite() && self.inner.lr >= 0.0) {
            return Err(
                InputError::argument("inner lr", format!("must be finite and >= 0, got {}", self.inner.lr)).into()
            );
        }
        Ok(vec![vec![t, i[0][0]], vec![t]])
    }

    fn record(
        &self,
        engine: &Engine,
        enc: &mut wgpu::CommandEncoder,
        i: &[&GpuTensor],
        o: &[&GpuTensor],
    ) -> Result<Recorded> {
        let iterates = self.iterates(engine, i)?;
        self.record_work(engine, enc, i, o, &iterates, &self.work())
    }

    /// [`Engine::run`] and [`Engine::run_gpu`] submit [`WORK_PER_SUBMISSION`] pieces at a time, one
    /// submission in flight, so that neither recorded commands nor a long-running submission grow
    /// with `r^2`; [`Engine::record`] puts all of it into the caller's encoder.
    async fn submit(&self, engine: &Engine, i: &[&GpuTensor], o: &[&GpuTensor]) -> Result<()> {
        let iterates = self.iterates(engine, i)?;
        let work = self.work();
        for (c, chunk) in work.chunks(WORK_PER_SUBMISSION).enumerate() {
            engine.submit_async(Self::NAME, |enc| self.record_work(engine, enc, i, o, &iterates, chunk)).await?;
            if (c + 1) * WORK_PER_SUBMISSION < work.len() {
                engine.submitted_work_done().await?;
            }
        }
        Ok(())
    }

    fn reference(&self, i: &[Tensor<f64>]) -> Result<Vec<Tensor<f64>>> {
        let theta = i[0].data();
        let (mut grads, mut losses) = (Vec::new(), Vec::new());
        for task in tasks_of(self.hidden, &i[1], Some(&i[2])) {
            use ortho_ref::bilevel::{Problem, exact, exact_o1, fom};
            grads.extend(match self.method {
                OuterGradient::Exact => exact(&task, theta, self.inner),
                OuterGradient::ExactO1 => exact_o1(&task, theta, self.inner),
                OuterGradient::Fom => fom(&task, theta, self.inner),
            });
            losses.push(task.outer_loss(&self.inner.run(&task, theta, self.inner.steps)));
        }
        let t = losses.len();
        Ok(vec![Tensor::new(&[t, theta.len()], grads)?, Tensor::new(&[t], losses)?])
    }
}

/// Pieces of [`MetaGradient`]'s work one submission of [`Engine::run`] takes (a piece is at most a
/// dozen dispatches).
const WORK_PER_SUBMISSION: usize = 512;

/// One piece of [`MetaGradient`]'s work, in order.
#[derive(Debug, Clone, Copy)]
enum Work {
    /// `phi <- theta` for every task.
    Start,
    /// Stores `phi` as iterate `j` (exact).
    Keep(usize),
    /// `phi <- phi - lr grad L_in(phi)`.
    Step,
    /// The outer loss and its gradient at `phi` into the outputs.
    Query,
    /// `v <- (I - lr H) v` with the inner Hessian at stored iterate `j`, or at `phi` (`None`).
    Back(Option<usize>),
}

impl MetaGradient {
    /// The inner loop, the query, then the backward pass `v <- (I - lr H_(j+1)) v` for
    /// `j = r - 1 .. 0`, `H_(j+1)` the inner Hessian at `phi_j` (stored, or recomputed from `theta`).
    fn work(&self) -> Vec<Work> {
        let r = self.inner.steps;
        let exact = self.method == OuterGradient::Exact;
        let mut work = vec![Work::Start];
        for j in 0..r {
            work.extend(exact.then_some(Work::Keep(j)));
            work.push(Work::Step);
        }
        work.push(Work::Query);
        for j in (0..r).rev() {
            match self.method {
                OuterGradient::Fom => break,
                OuterGradient::Exact => work.push(Work::Back(Some(j))),
                OuterGradient::ExactO1 => {
                    work.push(Work::Start);
                    work.extend(std::iter::repeat_n(Work::Step, j));
                    work.push(Work::Back(None));
                }
            }
        }
        work
    }

    /// `phi [T, P]` and, for exact, the `r` stored iterates `[r, T, P]` (one float otherwise), kept
    /// across the submissions of one run.
    fn iterates(&self, engine: &Engine, i: &[&GpuTensor]) -> Result<[GpuTensor; 2]> {
        let (tasks, _) = points_shape("support", i[1].shape(), None)?;
        let shape = [tasks, i[0].len()];
        let exact = self.method == OuterGradient::Exact && self.inner.steps > 0;
        let stored = if exact { vec![self.inner.steps, tasks, i[0].len()] } else { vec![1] };
        Ok([engine.empty(&shape)?, engine.empty(&stored)?])
    }

    fn record_work(
        &self,
        engine: &Engine,
        enc: &mut wgpu::CommandEncoder,
        i: &[&GpuTensor],
        o: &[&GpuTensor],
        [phi, stored]: &[GpuTensor; 2],
        work: &[Work],
    ) -> Result<Recorded> {
        let gpu = engine.recording(Self::NAME, &[i, o, &[phi, stored]].concat())?;
        let (tasks, shots) = points_shape("support", i[1].shape(), None)?;
        let (_, queries) = points_shape("query", i[2].shape(), Some(tasks))?;
        let (lr, p) = (self.inner.lr as f32, i[0].len());
        let mut pass = enc
            .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("meta gradient"), timestamp_writes: None });
        let mut net = Net::new(&gpu, &mut pass, tasks, self.hidden, shots.max(queries))?;
        let (theta, support, query, grad) = (i[0].buffer(), i[1].buffer(), i[2].buffer(), At::start(o[0]));
        let slot = |j: usize| At { buffer: stored.buffer(), offset: j * tasks * p };
        let phi = At::start(phi);
        for &piece in work {
            match piece {
                Work::Start => net.broadcast(theta, phi)?,
                Work::Keep(j) => net.copy_params(phi, slot(j))?,
                Work::Step => net.step(phi, support, shots, lr)?,
                Work::Query => {
                    net.forward(phi, query, queries)?;
                    net.copy_loss(o[1].buffer())?;
                    net.gradient(phi, query, queries, grad, [1.0, 0.0])?;
                }
                Work::Back(kept) => {
                    let at = kept.map_or(phi, slot);
                    net.forward(at, support, shots)?;
                    net.hvp(at, grad, support, shots, grad, [-lr, 1.0])?;
                }
            }
        }
        drop(pass);
        Ok(gpu.finish())
    }
}

/// Where a `[T, P]` block of parameters (or of a direction, or of a gradient) starts.
#[derive(Clone, Copy)]
struct At<'b> {
    buffer: &'b wgpu::Buffer,
    offset: usize,
}

impl<'b> At<'b> {
    fn start(t: &'b GpuTensor) -> Self {
        At { buffer: t.buffer(), offset: 0 }
    }
}

scratch_plan! {
    /// Per task and point: the hidden pre-activations `z`, activations `a`, a gradient at `z` (`g`)
    /// and the derivative of `a` along `v` (`ra`); per point the loss gradient at the prediction
    /// (`r`) and its derivative (`rr`); per task the loss.
    struct NetSizes => NetBuffers { z: usize, a: usize, g: usize, ra: usize, r: usize, rr: usize, loss: usize }
}

/// The network over `tasks` tasks in one compute pass. Every product is one GEMM batched over tasks,
/// with the bias folded in by a ones column: `z = [x, 1] [w1; b1]`, `prediction = [a, 1] [w2; b2]`.
struct Net<'a, 'g, 'p> {
    gpu: &'a Recording<'g>,
    pass: &'a mut wgpu::ComputePass<'p>,
    tasks: usize,
    hidden: usize,
    s: NetBuffers,
}

impl<'a, 'g, 'p> Net<'a, 'g, 'p> {
    /// Scratch for up to `most` points per task.
    fn new(
        gpu: &'a Recording<'g>,
        pass: &'a mut wgpu::ComputePass<'p>,
        tasks: usize,
        hidden: usize,
        most: usize,
    ) -> Result<Self> {
        let per_hidden = tasks * most * hidden;
        let sizes = NetSizes {
            z: per_hidden,
            a: per_hidden,
            g: per_hidden,
            ra: per_hidden,
            r: tasks * most,
            rr: tasks * most,
            loss: tasks,
        };
        let s = gpu.allocate("the regression network", &sizes)?;
        Ok(Net { gpu, pass, tasks, hidden, s })
    }

    fn params(&self) -> usize {
        3 * self.hidden + 1
    }

    /// Rows `rows x cols` of each task's parameters in `at`, from parameter `first`.
    fn block<'b>(&self, at: At<'b>, first: usize, rows: usize, cols: usize) -> Operand<'b> {
        Operand { outer: self.params(), ..Operand::rows(at.buffer, rows, cols) }.at(at.offset + first)
    }

    fn gemm(&mut self, g: Gemm, a: Operand, b: Operand, c: Operand) -> Result<()> {
        record_gemm(self.gpu, self.pass, &Gemm { batch: self.tasks, ..g }, a, b, c)
    }

    /// One invocation per hidden unit of each task's points, or (`per_task`) per task.
    fn dispatch(
        &mut self,
        shader: &kernels::Shader<kernels::Regression>,
        params: kernels::Regression,
        buffers: &[&wgpu::Buffer],
        per_task: bool,
    ) -> Result<()> {
        let (count, group) =
            if per_task { (self.tasks, 64) } else { (self.tasks * params.points as usize * self.hidden, 256) };
        let grid = self.gpu.grid(count as u64, group)?;
        self.gpu.dispatch(self.pass, shader, &params, buffers, grid)
    }

    fn uniforms(&self, count: usize, phi: At, v: Option<At>) -> kernels::Regression {
        kernels::Regression {
            tasks: self.tasks as u32,
            points: count as u32,
            hidden: self.hidden as u32,
            params: self.params() as u32,
            phi_off: phi.offset as u32,
            v_off: v.map_or(0, |v| v.offset as u32),
            scale: 2.0 / count as f32,
            _pad: 0,
        }
    }

    /// `z`, `a`, the loss gradient at the predictions `r` and the loss of `count` points per task.
    fn forward(&mut self, phi: At, points: &wgpu::Buffer, count: usize) -> Result<()> {
        let (h, rows) = (self.hidden, Operand::rows);
        let (z, a, r) = (self.s.z.buffer().clone(), self.s.a.buffer().clone(), self.s.r.buffer().clone());
        let first = Gemm { a_ones_col: Some(1), ..Gemm::new(1, count, h, 2) };
        self.gemm(first, rows(points, count, 2), self.block(phi, 0, 2, h), rows(&z, count, h))?;
        let n = self.tasks * count * h;
        let tanh = kernels::Activate { count: n as u32, activation: 0, ..Default::default() };
        self.gpu.dispatch(self.pass, &kernels::ACTIVATE, &tanh, &[&z, &a], self.gpu.grid(n as u64, 256)?)?;
        let second = Gemm { a_ones_col: Some(h), ..Gemm::new(1, count, 1, h + 1) };
        self.gemm(second, rows(&a, count, h), self.block(phi, 2 * h, h + 1, 1), rows(&r, count, 1))?;
        let params = self.uniforms(count, phi, None);
        let loss = self.s.loss.buffer().clone();
        self.dispatch(&kernels::REGRESSION_RESIDUAL, params, &[points, &r, &loss], true)
    }

    /// The losses of the last [`Net::forward`] into `out [T]`.
    fn copy_loss(&mut self, out: &wgpu::Buffer) -> Result<()> {
        let b = Blocks { outer: 1, inner: 1, len: self.tasks, src: [0; 3], dst: [0; 3] };
        self.gpu.copy(self.pass, self.s.loss.buffer(), out, b)
    }

    /// `theta [P]` into every task's parameters at `to`.
    fn broadcast(&mut self, theta: &wgpu::Buffer, to: At) -> Result<()> {
        let p = self.params();
        let b = Blocks { outer: self.tasks, inner: 1, len: p, src: [0; 3], dst: [to.offset, p, 0] };
        self.gpu.copy(self.pass, theta, to.buffer, b)
    }

    fn copy_params(&mut self, from: At, to: At) -> Result<()> {
        let len = self.tasks * self.params();
        let b = Blocks { outer: 1, inner: 1, len, src: [from.offset, 0, 0], dst: [to.offset, 0, 0] };
        self.gpu.copy(self.pass, from.buffer, to.buffer, b)
    }

    /// `alpha * dz^T [x, 1] + beta * out` into the `[w1; b1]` block of `out` (`[2, h]`, written
    /// transposed): the first layer's part of a gradient (or HVP) from its part `dz` at `z`.
    fn write_first_layer(
        &mut self,
        dz: &wgpu::Buffer,
        points: &wgpu::Buffer,
        count: usize,
        out: At,
        [alpha, beta]: [f32; 2],
    ) -> Result<()> {
        let (h, rows) = (self.hidden, Operand::rows);
        let g = Gemm { alpha, beta, ones_col: Some(1), ..Gemm::new(1, h, 2, count) };
        self.gemm(g, rows(dz, count, h).t(), rows(points, count, 2), self.block(out, 0, 2, h).t())
    }

    /// `alpha * grad + beta * out` into `out`, at the parameters of the last [`Net::forward`].
    fn gradient(&mut self, phi: At, points: &wgpu::Buffer, count: usize, out: At, ab: [f32; 2]) -> Result<()> {
        let (h, rows) = (self.hidden, Operand::rows);
        let (a, r, g) = (self.s.a.buffer().clone(), self.s.r.buffer().clone(), self.s.g.buffer().clone());
        let params = self.uniforms(count, phi, None);
        self.dispatch(&kernels::HIDDEN_GRADIENT, params, &[&r, &a, phi.buffer, &g], false)?;
        let [alpha, beta] = ab;
        let second = Gemm { alpha, beta, ones_col: Some(h), ..Gemm::new(1, 1, h + 1, count) };
        self.gemm(second, rows(&r, 1, count), rows(&a, count, h), self.block(out, 2 * h, 1, h + 1))?;
        self.write_first_layer(&g, points, count, out, ab)
    }

    /// One inner step in place: `phi <- phi - lr grad L(phi)` on `count` points per task.
    fn step(&mut self, phi: At, points: &wgpu::Buffer, count: usize, lr: f32) -> Result<()> {
        self.forward(phi, points, count)?;
        self.gradient(phi, points, count, phi, [-lr, 1.0])
    }

    /// `alpha * H v + beta * out` into `out` (which may be `v`), at the parameters of the last
    /// [`Net::forward`]: the derivatives along `v` of `z`, `a`, `r` and of the gradient's terms.
    fn hvp(&mut self, phi: At, v: At, points: &wgpu::Buffer, count: usize, out: At, ab: [f32; 2]) -> Result<()> {
        let (h, rows) = (self.hidden, Operand::rows);
        let [a, ra, r, rr, g] = [&self.s.a, &self.s.ra, &self.s.r, &self.s.rr, &self.s.g].map(|b| b.buffer().clone());
        let first = Gemm { a_ones_col: Some(1), ..Gemm::new(1, count, h, 2) };
        self.gemm(first, rows(points, count, 2), self.block(v, 0, 2, h), rows(&ra, count, h))?;
        let params = self.uniforms(count, phi, Some(v));
        self.dispatch(&kernels::HIDDEN_TANGENT, params, &[&a, &ra], false)?;
        // rr = scale (ra w2 + [a, 1] [v2; vb2]), scale = 2 / count as in r.
        let scale = params.scale;
        let through_w2 = Gemm { alpha: scale, ..Gemm::new(1, count, 1, h) };
        self.gemm(through_w2, rows(&ra, count, h), self.block(phi, 2 * h, h, 1), rows(&rr, count, 1))?;
        let through_v2 = Gemm { alpha: scale, beta: 1.0, a_ones_col: Some(h), ..Gemm::new(1, count, 1, h + 1) };
        self.gemm(through_v2, rows(&a, count, h), self.block(v, 2 * h, h + 1, 1), rows(&rr, count, 1))?;
        self.dispatch(&kernels::HIDDEN_HVP, params, &[&r, &rr, &a, &ra, phi.buffer, v.buffer, &g], false)?;
        // Nothing reads v from here on, so out may be v.
        let [alpha, beta] = ab;
        let second = Gemm { alpha, beta, ones_col: Some(h), ..Gemm::new(1, 1, h + 1, count) };
        self.gemm(second, rows(&rr, 1, count), rows(&a, count, h), self.block(out, 2 * h, 1, h + 1))?;
        let tangent = Gemm { alpha, beta: 1.0, ..Gemm::new(1, 1, h, count) };
        self.gemm(tangent, rows(&r, 1, count), rows(&ra, count, h), self.block(out, 2 * h, 1, h))?;
        self.write_first_layer(&g, points, count, out, ab)
    }
}

/// The support and query points of `tasks` as `[T, S, 2]` and `[T, Q, 2]` (every task with the same
/// counts and width, checked).
pub fn task_points(tasks: &[SineTask]) -> Result<(Tensor<f32>, Tensor<f32>)> {
    let first = tasks.first().ok_or_else(|| InputError::argument("tasks", "there must be at least one task"))?;
    let tensor = |points: fn(&SineTask) -> &Vec<(f64, f64)>, what: &str| -> Result<Tensor<f32>> {
        let count = points(first).len();
        if let Some(t) = tasks.iter().position(|t| points(t).len() != count || t.hidden != first.hidden) {
            return Err(InputError::argument(
                "tasks",
                format!(
                    "task {t} has {} {what} points and hidden {}, task 0 {count} and {}",
                    points(&tasks[t]).len(),
                    tasks[t].hidden,
                    first.hidden
                ),
            )
            .into());
        }
        let data = tasks.iter().flat_map(|t| points(t).iter().flat_map(|&(x, y)| [x as f32, y as f32])).collect();
        Ok(Tensor::new(&[tasks.len(), count, 2], data)?)
    };
    Ok((tensor(|t| &t.support, "support")?, tensor(|t| &t.query, "query")?))
}

impl Engine {
    /// The outer gradients `[T, P]` and outer losses `[T]` of `tasks` at `theta` by `method`, the
    /// tasks batched ([`MetaGradient`]; the CPU twin on an engine without a GPU), as many to a run as
    /// the device's bindings hold.
    pub fn meta_gradient(
        &self,
        tasks: &[SineTask],
        theta: &[f64],
        inner: InnerLoop,
        method: OuterGradient,
    ) -> Result<(Tensor<f32>, Tensor<f32>)> {
        let (support, query) = task_points(tasks)?;
        let op = MetaGradient { hidden: tasks[0].hidden, inner, method };
        let p = theta.len();
        let theta = Tensor::new(&[p], theta.iter().map(|&x| x as f32).collect())?;
        // As many tasks a run as keep each per-task buffer (the network's `[T, points, hidden]`
        // scratch, exact's stored iterates `[r, T, P]`) within one binding.
        let stored = if method == OuterGradient::Exact { inner.steps.max(1) * p } else { p };
        let per_task = 4 * (support.shape()[1].max(query.shape()[1]) * op.hidden).max(stored) as u64;
        let step = if self.is_gpu() { (self.binding_limit()? / per_task).max(1) as usize } else { tasks.len() };
        let (mut grads, mut losses) = (Vec::with_capacity(tasks.len() * p), Vec::with_capacity(tasks.len()));
        for first in (0..tasks.len()).step_by(step) {
            let count = step.min(tasks.len() - first);
            let piece = [support.slice_axis(0, first, count), query.slice_axis(0, first, count)];
            let out = self.run(&op, &[&theta, &piece[0], &piece[1]])?;
            grads.extend_from_slice(out[0].data());
            losses.extend_from_slice(out[1].data());
        }
        Ok((Tensor::new(&[tasks.len(), p], grads)?, Tensor::new(&[tasks.len()], losses)?))
    }

    /// One outer-gradient estimate per task at `theta` by `estimator`'s method, in the order of
    /// `tasks`. Exact, exact-o1 and FOM are [`Engine::meta_gradient`]; UFOM tosses every task's coin
    /// first (with the q of this call), runs FOM on all tasks and exact-o1 on those whose coin came
    /// up, and combines them by [`Estimator::corrected`], each pass's time shared equally by its
    /// tasks.
    pub fn meta_estimates(
        &self,
        estimator: &mut Estimator,
        tasks: &[SineTask],
        theta: &[f64],
        inner: InnerLoop,
    ) -> Result<Vec<Vec<f64>>> {
        let rows = |t: &Tensor<f32>| -> Vec<Vec<f64>> {
            t.data().chunks(theta.len()).map(|r| r.iter().map(|&x| f64::from(x)).collect()).collect()
        };
        let method = match estimator.method() {
            Method::Exact => OuterGradient::Exact,
            Method::ExactO1 => OuterGradient::ExactO1,
            Method::Fom | Method::Ufom(_) | Method::UfomAdaptive => OuterGradient::Fom,
        };
        let clock = Instant::now();
        let mut estimates = rows(&self.meta_gradient(tasks, theta, inner, method)?.0);
        if method != OuterGradient::Fom || estimator.method() == Method::Fom {
            return Ok(estimates);
        }
        let fom_seconds = clock.elapsed().as_secs_f64() / tasks.len() as f64;
        let drawn: Vec<usize> = (0..tasks.len()).filter(|_| estimator.draw()).collect();
        if drawn.is_empty() {
            return Ok(estimates);
        }
        let clock = Instant::now();
        let chosen: Vec<SineTask> = drawn.iter().map(|&t| tasks[t].clone()).collect();
        let full = rows(&self.meta_gradient(&chosen, theta, inner, OuterGradient::ExactO1)?.0);
        let exact_seconds = clock.elapsed().as_secs_f64() / drawn.len() as f64;
        for (&t, full) in drawn.iter().zip(&full) {
            estimates[t] = estimator.corrected(&estimates[t], full, [fom_seconds, exact_seconds]);
        }
        Ok(estimates)
    }
}
