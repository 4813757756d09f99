//! The flows of docs/math.md §3.2 on the GPU, mirroring `ortho_ref::flow`: the generator field, the
//! group-map update in increment form, the nested state's slopes and advance, and one step of each
//! method. Every step of a call is recorded into one compute pass.

use super::*;
use crate::operation::{Joined, Operation, batch_step, leading, run_pieces};
use crate::pool::PooledBuffer;
use crate::recording::Recording;
use ortho_ref::flow::{Activation, Flow, Generator, Method};

scratch_plan! {
    /// Floats of a flow's scratch: two GEMM temporaries, a stage's W, a mix of fields, the four stage
    /// fields, the group map's scratch and, with a nested state, its scratch.
    struct FlowSizes => FlowScratch {
        t1: usize,
        t2: usize,
        stage: usize,
        mix: usize,
        fields: [usize; 4],
        map: Option<MapSizes>,
        nested: Option<NestedSizes>,
    }
}

scratch_plan! {
    /// Floats of the nested state's scratch: a stage input `v`, `W v` and the four stage slopes.
    struct NestedSizes => NestedScratch {
        v: usize,
        wv: usize,
        slopes: [usize; 4],
    }
}

/// The nested ODEtoODE state `x' = sigma(W x)`: x and its next value, a stage input `v` and `W v`,
/// and the four stage slopes.
struct Nested {
    activation: u32,
    xs: [GpuTensor; 2],
    current: usize,
    v: PooledBuffer,
    wv: PooledBuffer,
    slopes: [PooledBuffer; 4],
}

/// One integration's buffers: the generator's inputs and the scratch of its stages.
struct Integrator<'a> {
    gpu: &'a Recording<'a>,
    b: usize,
    n: usize,
    h: f32,
    map: MapPlan,
    map_scratch: Option<MapScratch>,
    given: Option<GpuTensor>,
    isospectral: Option<(GpuTensor, GpuTensor)>,
    t1: PooledBuffer,
    t2: PooledBuffer,
    stage: PooledBuffer,
    mix: PooledBuffer,
    fields: [PooledBuffer; 4],
    nested: Option<Nested>,
}

impl<'a> Integrator<'a> {
    fn new(engine: &'a Engine, gpu: &'a Recording<'a>, flow: &Flow, state: &FlowState) -> Result<Self> {
        let (b, n) = (state.b, state.n);
        let group_map = match flow.method {
            Method::CayleyEuler => GroupMap::Cayley,
            Method::LieEuler | Method::Rkmk4 => GroupMap::Exp,
        };
        let map = MapPlan::new(engine, group_map, (b, n))?;
        let (matrix, vector) = (b * n * n, b * n);
        let sizes = FlowSizes {
            t1: matrix,
            t2: matrix,
            stage: matrix,
            mix: matrix,
            fields: [matrix; 4],
            map: map.sizes(),
            nested: flow.state.as_ref().map(|_| NestedSizes { v: vector, wv: vector, slopes: [vector; 4] }),
        };
        let FlowScratch { t1, t2, stage, mix, fields, map: map_scratch, nested } = gpu.allocate("the flow", &sizes)?;
        let nested = match (&flow.state, &state.xs, nested) {
            (Some((_, activation)), Some(xs), Some(NestedScratch { v, wv, slopes })) => Some(Nested {
                activation: match activation {
                    Activation::Tanh => 0,
                    Activation::Relu => 1,
                    Activation::Identity => 2,
                },
                xs: xs.clone(),
                current: state.x_current,
                v,
                wv,
                slopes,
            }),
            _ => None,
        };
        Ok(Integrator {
            gpu,
            b,
            n,
            h: flow.dt as f32,
            map,
            map_scratch,
            given: state.given.clone(),
            isospectral: state.isospectral.clone(),
            t1,
            t2,
            stage,
            mix,
            fields,
            nested,
        })
    }

    fn square(&self) -> Gemm {
        Gemm::new(self.b, self.n, self.n, self.n)
    }

    fn gemm(&self, pass: &mut wgpu::ComputePass<'_>, g: &Gemm, a: Operand, b: Operand, c: Operand) -> Result<()> {
        record_gemm(self.gpu, pass, g, a, b, c)
    }

    fn combine(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        c: [f32; 4],
        x: [&wgpu::Buffer; 4],
        out: &wgpu::Buffer,
    ) -> Result<()> {
        record_combine(self.gpu, pass, self.b * self.n * self.n, c, x, out)
    }

    /// `W <- W + W (map(A) - I)` for `A = alpha` times matrices `first..` of `a`.
    fn update(&self, pass: &mut wgpu::ComputePass<'_>, a: (&wgpu::Buffer, usize, f32), w: &wgpu::Buffer) -> Result<()> {
        record_map(self.gpu, pass, &self.map, &self.map_scratch, a, w, ExpmOutput::Update)
    }

    /// `out = h b(w)` for the isospectral field: `h (W^T Qs W) Ns - h Ns (W^T Qs W)`.
    fn field(&self, pass: &mut wgpu::ComputePass<'_>, w: &wgpu::Buffer, out: &wgpu::Buffer) -> Result<()> {
        let Some((qs, ns)) = &self.isospectral else { unreachable!("given generators need no field") };
        let (n, sq) = (self.n, self.square());
        let (t1, t2) = (matrices(self.t1.buffer(), n), matrices(self.t2.buffer(), n));
        self.gemm(pass, &sq, matrices(w, n).t(), maybe_shared(qs, n), t1)?;
        self.gemm(pass, &sq, t1, matrices(w, n), t2)?;
        self.gemm(pass, &Gemm { alpha: self.h, ..sq }, t2, maybe_shared(ns, n), matrices(out, n))?;
        self.gemm(pass, &Gemm { alpha: -self.h, beta: 1.0, ..sq }, maybe_shared(ns, n), t2, matrices(out, n))
    }

    /// `out += s [x, y]`.
    fn commutator(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        s: f32,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) -> Result<()> {
        let (n, sq) = (self.n, self.square());
        self.gemm(pass, &Gemm { alpha: s, beta: 1.0, ..sq }, matrices(x, n), matrices(y, n), matrices(out, n))?;
        self.gemm(pass, &Gemm { alpha: -s, beta: 1.0, ..sq }, matrices(y, n), matrices(x, n), matrices(out, n))
    }

    /// `slopes[i] = sigma(stage_w (x + a slopes[j]))`, or `sigma(stage_w x)` without `from`.
    fn slope(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        stage_w: &wgpu::Buffer,
        from: Option<(f32, usize)>,
        i: usize,
    ) -> Result<()> {
        let Some(s) = &self.nested else { return Ok(()) };
        let (b, n) = (self.b, self.n);
        let x = s.xs[s.current].buffer();
        let input = match from {
            Some((a, j)) => {
                let (v, slope) = (s.v.buffer(), s.slopes[j].buffer());
                record_combine(self.gpu, pass, b * n, [1.0, a, 0.0, 0.0], [x, slope, x, x], v)?;
                v
            }
            None => x,
        };
        let vec = |buf| Operand::rows(buf, n, 1);
        self.gemm(pass, &Gemm::new(b, n, 1, n), matrices(stage_w, n), vec(input), vec(s.wv.buffer()))?;
        let params = kernels::Activate { count: (b * n) as u32, activation: s.activation, ..Default::default() };
        let bufs = [s.wv.buffer(), s.slopes[i].buffer()];
        let groups = self.gpu.grid((b * n) as u64, 256)?;
        let gpu = self.gpu;
        gpu.dispatch(pass, &kernels::ACTIVATE, &params, &bufs, groups)
    }

    /// `x <- x + h sum_i weights_i slopes_i`, into the other x buffer.
    fn advance_state(&mut self, pass: &mut wgpu::ComputePass<'_>, weights: [f32; 4]) -> Result<()> {
        let (b, n, h) = (self.b, self.n, self.h);
        let Some(s) = &mut self.nested else { return Ok(()) };
        let slopes = [s.slopes[0].buffer(), s.slopes[1].buffer(), s.slopes[2].buffer(), s.slopes[3].buffer()];
        record_combine(self.gpu, pass, b * n, weights.map(|c| h * c), slopes, s.v.buffer())?;
        let (x, next) = (s.xs[s.current].buffer(), s.xs[1 - s.current].buffer());
        record_combine(self.gpu, pass, b * n, [1.0, 1.0, 0.0, 0.0], [x, s.v.buffer(), x, x], next)?;
        s.current = 1 - s.current;
        Ok(())
    }

    /// Step k with the given generator, constant over the step: every RKMK4 stage sees `h Omega_k`,
    /// the commutators vanish and the step is exactly `W exp(h Omega_k)`; only the nested state
    /// needs the stages `W exp(h Omega / 2)` (twice) and `W exp(h Omega)`, the next W.
    fn given_step(&self, pass: &mut wgpu::ComputePass<'_>, k: usize, rk4: bool, w: &wgpu::Buffer) -> Result<()> {
        let Some(omega) = &self.given else { unreachable!("a given generator") };
        let (omega, first, h, stage) = (omega.buffer(), k * self.b, self.h, self.stage.buffer());
        let stages = rk4 && self.nested.is_some();
        if stages {
            self.combine(pass, [1.0, 0.0, 0.0, 0.0], [w; 4], stage)?;
            self.update(pass, (omega, first, h / 2.0), stage)?;
            self.slope(pass, stage, Some((h / 2.0, 0)), 1)?;
            self.slope(pass, stage, Some((h / 2.0, 1)), 2)?;
        }
        self.update(pass, (omega, first, h), w)?;
        if stages {
            self.slope(pass, w, Some((h, 2)), 3)?;
        }
        Ok(())
    }

    /// RKMK4 on the isospectral field, right action: stages `W exp(B1/2)`,
    /// `W exp(B2/2 + [B1, B2]/8)`, `W exp(B3)`, then `W exp((B1 + 2 B2 + 2 B3 + B4)/6 + [B1, B4]/12)`.
    fn rkmk4_step(&self, pass: &mut wgpu::ComputePass<'_>, w: &wgpu::Buffer) -> Result<()> {
        let [b1, b2, b3, b4] = [0, 1, 2, 3].map(|i| self.fields[i].buffer());
        let (h, stage, mix) = (self.h, self.stage.buffer(), self.mix.buffer());
        let copy_w = [1.0, 0.0, 0.0, 0.0];
        self.field(pass, w, b1)?;
        self.combine(pass, copy_w, [w; 4], stage)?;
        self.update(pass, (b1, 0, 0.5), stage)?;
        self.slope(pass, stage, Some((h / 2.0, 0)), 1)?;
        self.field(pass, stage, b2)?;
        self.combine(pass, [0.5, 0.0, 0.0, 0.0], [b2; 4], mix)?;
        self.commutator(pass, 1.0 / 8.0, b1, b2, mix)?;
        self.combine(pass, copy_w, [w; 4], stage)?;
        self.update(pass, (mix, 0, 1.0), stage)?;
        self.slope(pass, stage, Some((h / 2.0, 1)), 2)?;
        self.field(pass, stage, b3)?;
        self.combine(pass, copy_w, [w; 4], stage)?;
        self.update(pass, (b3, 0, 1.0), stage)?;
        self.slope(pass, stage, Some((h, 2)), 3)?;
        self.field(pass, stage, b4)?;
        let sixth = 1.0 / 6.0;
        self.combine(pass, [sixth, 2.0 * sixth, 2.0 * sixth, sixth], [b1, b2, b3, b4], mix)?;
        self.commutator(pass, 1.0 / 12.0, b1, b4, mix)?;
        self.update(pass, (mix, 0, 1.0), w)
    }

    /// `out = W (3I - W^T W) / 2`.
    fn newton_schulz(&self, pass: &mut wgpu::ComputePass<'_>, w: &wgpu::Buffer, out: &wgpu::Buffer) -> Result<()> {
        let (n, sq) = (self.n, self.square());
        let t1 = matrices(self.t1.buffer(), n);
        self.gemm(pass, &Gemm { alpha: -0.5, diag: 1.5, ..sq }, matrices(w, n).t(), matrices(w, n), t1)?;
        self.gemm(pass, &sq, matrices(w, n), t1, matrices(out, n))
    }
}

/// Steps one submission of a flow's host and device entry points records at most: memory for the
/// recorded commands stays bounded however many steps the flow takes.
pub(crate) const FLOW_STEPS_PER_SUBMISSION: usize = 128;

/// What a flow keeps between its submissions: the generator's inputs and the nested state as
/// uploaded, W and x in two buffers each (Newton–Schulz and the nested state write the other one),
/// and which of each holds the current value.
struct FlowState {
    b: usize,
    n: usize,
    given: Option<GpuTensor>,
    isospectral: Option<(GpuTensor, GpuTensor)>,
    ws: [GpuTensor; 2],
    w_current: usize,
    xs: Option<[GpuTensor; 2]>,
    x_current: usize,
}

impl FlowState {
    /// Uploads the generator's inputs and x0; W starts in `w` (the caller copies w0 there).
    fn new(engine: &Engine, flow: &Flow, w: &GpuTensor) -> Result<Self> {
        let (b, n) = flow.check_shape(w.shape())?;
        let (given, isospectral) = match &flow.generator {
            Generator::Given(omega) => (Some(engine.upload("generators", &omega.to_f32())?), None),
            Generator::Isospectral { qs, ns } => {
                (None, Some((engine.upload("qs", &qs.to_f32())?, engine.upload("ns", &ns.to_f32())?)))
            }
        };
        let xs = match &flow.state {
            Some((x0, _)) => Some([engine.upload("x0", &x0.to_f32())?, engine.empty(x0.shape())?]),
            None => None,
        };
        let ws = [w.clone(), engine.empty(w.shape())?];
        Ok(FlowState { b, n, given, isospectral, ws, w_current: 0, xs, x_current: 0 })
    }

    fn tensors(&self) -> Vec<&GpuTensor> {
        let isospectral = self.isospectral.iter().flat_map(|(qs, ns)| [qs, ns]);
        let xs = self.xs.iter().flatten();
        self.given.iter().chain(isospectral).chain(&self.ws).chain(xs).collect()
    }

    /// Copies the final W and x into the outputs.
    fn finish(&self, enc: &mut wgpu::CommandEncoder, o: &[&GpuTensor]) {
        if self.w_current != 0 {
            enc.copy_buffer_to_buffer(self.ws[1].buffer(), 0, o[0].buffer(), 0, o[0].byte_len());
        }
        if let (Some(xs), Some(x)) = (&self.xs, o.get(1)) {
            enc.copy_buffer_to_buffer(xs[self.x_current].buffer(), 0, x.buffer(), 0, x.byte_len());
        }
    }
}

/// Records steps `steps` of `flow` from `state` into one compute pass, and advances `state`.
fn record_steps(
    flow: &Flow,
    engine: &Engine,
    enc: &mut wgpu::CommandEncoder,
    state: &mut FlowState,
    steps: std::ops::Range<usize>,
) -> Result<Recorded> {
    let gpu = engine.recording("flow", &state.tensors())?;
    let mut run = Integrator::new(engine, &gpu, flow, state)?;
    let rk4 = flow.method == Method::Rkmk4;
    let sixth = 1.0 / 6.0;
    let weights = if rk4 { [sixth, 2.0 * sixth, 2.0 * sixth, sixth] } else { [1.0, 0.0, 0.0, 0.0] };
    {
        let mut pass =
            enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("flow"), timestamp_writes: None });
        let pass = &mut pass;
        for k in steps {
            let (w, spare) = (state.ws[state.w_current].buffer(), state.ws[1 - state.w_current].buffer());
            run.slope(pass, w, None, 0)?;
            match flow.generator {
                Generator::Given(_) => run.given_step(pass, k, rk4, w)?,
                Generator::Isospectral { .. } if rk4 => run.rkmk4_step(pass, w)?,
                Generator::Isospectral { .. } => {
                    let field = run.fields[0].buffer();
                    run.field(pass, w, field)?;
                    run.update(pass, (field, 0, 1.0), w)?;
                }
            }
            run.advance_state(pass, weights)?;
            if flow.newton_schulz_every.is_some_and(|every| (k + 1) % every == 0) {
                run.newton_schulz(pass, w, spare)?;
                state.w_current = 1 - state.w_current;
            }
        }
    }
    state.x_current = run.nested.as_ref().map_or(0, |s| s.current);
    drop(run);
    Ok(gpu.finish())
}

/// A flow integrated from `w0` (`[n, n]` or `[batch, n, n]`, n <= 64): the output is W after the last
/// step and, with a nested state, x. The steps are recorded into compute passes of at most
/// [`FLOW_STEPS_PER_SUBMISSION`] steps: the generator by the engine's GEMM, the group map applied in
/// place in increment form, and the nested state by forward Euler (first-order methods) or RK4 over
/// the RKMK4 stage matrices. [`Engine::run`] and [`Engine::run_gpu`] submit each pass on its own, so
/// their memory does not grow with the steps; [`Engine::record`] puts every step into the caller's
/// encoder.
impl Operation for Flow {
    const NAME: &'static str = "flow";
    const INPUTS: &'static [&'static str] = &["w0"];
    const SUBMITS_IN_PIECES: bool = true;

    fn output_shapes(&self, i: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let (b, n) = self.check_shape(i[0])?;
        square("w0", i[0])?;
        Ok([Some(i[0].to_vec()), self.state.as_ref().map(|_| vec![b, n])].into_iter().flatten().collect())
    }

    fn cpu(&self, i: &[&Tensor<f32>]) -> Option<Result<Vec<Tensor<f32>>>> {
        Some(crate::cpu::flow(self, i[0]).map_err(Into::into))
    }

    fn record(
        &self,
        engine: &Engine,
        enc: &mut wgpu::CommandEncoder,
        i: &[&GpuTensor],
        o: &[&GpuTensor],
    ) -> Result<Recorded> {
        let mut state = FlowState::new(engine, self, o[0])?;
        enc.copy_buffer_to_buffer(i[0].buffer(), 0, o[0].buffer(), 0, i[0].byte_len());
        let recorded = engine.recording("flow", &[i[0], o[0]])?.finish();
        let steps = record_steps(self, engine, enc, &mut state, 0..self.steps)?;
        state.finish(enc, o);
        Ok(recorded.and(steps))
    }

    async fn submit(&self, engine: &Engine, i: &[&GpuTensor], o: &[&GpuTensor]) -> Result<()> {
        let mut state = FlowState::new(engine, self, o[0])?;
        let segments: Vec<usize> = (0..self.steps).step_by(FLOW_STEPS_PER_SUBMISSION).collect();
        if segments.is_empty() {
            return engine.submit_async(Self::NAME, |enc| self.record(engine, enc, i, o)).await;
        }
        for (s, &first) in segments.iter().enumerate() {
            let last = (first + FLOW_STEPS_PER_SUBMISSION).min(self.steps);
            let state = &mut state;
            engine
                .submit_async(Self::NAME, |enc| {
                    let mut recorded = Recorded::default();
                    if s == 0 {
                        enc.copy_buffer_to_buffer(i[0].buffer(), 0, o[0].buffer(), 0, i[0].byte_len());
                        recorded = engine.recording("flow", &[i[0], o[0]])?.finish();
                    }
                    let recorded = recorded.and(record_steps(self, engine, enc, state, first..last)?);
                    if last == self.steps {
                        state.finish(enc, o);
                    }
                    Ok(recorded.and(engine.recording("flow", o)?.finish()))
                })
                .await?;
            // One submission in flight at a time, so that neither recorded commands nor scratch
            // waiting for the device pile up.
            if last < self.steps {
                engine.submitted_work_done().await?;
            }
        }
        Ok(())
    }

    /// A batch slice at a time, each with its own generators and nested state.
    async fn run_split(&self, engine: &Engine, i: &[&Tensor<f32>]) -> Option<Result<Vec<Tensor<f32>>>> {
        let &[batch, n, _] = i[0].shape() else { return None };
        let generators = match &self.generator {
            Generator::Given(omega) => omega.len() / batch,
            Generator::Isospectral { .. } => 0,
        };
        let step = batch_step(engine, generators.max(n * n))?;
        if step >= batch {
            return None;
        }
        let outputs = self.output_shapes(&[i[0].shape()]).ok()?;
        let joined = Joined::new(&outputs, vec![true; outputs.len()]);
        Some(
            run_pieces(engine, i, batch, step, joined, |first, count| {
                (self.batch_slice(batch, first, count), vec![Some(leading(i[0], first, count))])
            })
            .await,
        )
    }

    fn non_finite_cause(&self) -> &'static str {
        "the integration passed f32's range: reduce dt, or the scale of w0, the generators or x0"
    }

    fn reference(&self, i: &[Tensor<f64>]) -> Result<Vec<Tensor<f64>>> {
        let (w, x) = self.run(&i[0])?;
        Ok([Some(w), x].into_iter().flatten().collect())
    }
}

impl Engine {
    /// Integrates `flow` from `w0` (see the [`Operation`] impl of [`Flow`]): W after the last step
    /// and, with a nested state, x.
    pub fn flow(&self, flow: &Flow, w0: &Tensor<f32>) -> Result<(Tensor<f32>, Option<Tensor<f32>>)> {
        let mut out = self.run(flow, &[w0])?;
        let x = (out.len() > 1).then(|| out.remove(1));
        Ok((out.remove(0), x))
    }

    /// [`Engine::flow`] on a device-resident `w0`.
    pub fn flow_gpu(&self, flow: &Flow, w0: &GpuTensor) -> Result<(GpuTensor, Option<GpuTensor>)> {
        let mut out = self.run_gpu(flow, &[w0])?;
        let x = (out.len() > 1).then(|| out.remove(1));
        Ok((out.remove(0), x))
    }
}
