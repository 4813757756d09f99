//! Gradients of random-feature attention (docs/math.md §1.4-1.6; twin: `ortho_ref::favor::favor_backward`):
//! the backward passes, bidirectional and causal (what a forward pass keeps for them: `saved.rs`). Every group
//! recomputes its features from the inputs and the kept row statistics; causal groups need the states
//! entering their chunks (from checkpoints, or rebuilt in a forward sweep) for dq, and the decayed
//! `Phi(Q)^T gt` of every later chunk (carried backwards) for dk and dv.

use super::*;

/// What a backward pass over one segment of a sequence (`segments.rs`) carries from the recordings of
/// the segments before it.
pub(super) struct Carried<'a> {
    /// Bidirectional: the key state `S` of the whole sequence; causal: the state entering the segment
    /// (the dq sweep advances it).
    pub state: &'a CausalState,
    /// `R` (see [`Backward::r`]): bidirectional, summed over the queries of the segments so far
    /// (complete before any key segment); causal, over the queries of every later segment.
    pub r: &'a GpuTensor,
    /// Causal dk and dv: the prefix maxima the forward pass kept for the previous segment, whose last
    /// row is the key offset entering this one (`None`: the first segment).
    pub previous_gamma: Option<&'a GpuTensor>,
}

/// The buffers of a backward pass beside the forward's scratch.
pub(super) struct Backward<'a> {
    pub out: &'a wgpu::Buffer,
    pub den: &'a wgpu::Buffer,
    pub grad: &'a wgpu::Buffer,
    pub dq: &'a wgpu::Buffer,
    pub dk: &'a wgpu::Buffer,
    pub dv: &'a wgpu::Buffer,
    /// `[g / D | -(g . o) / D]`, `[rows, dv + 1]`.
    pub gt: PooledBuffer,
    pub dphi_q: PooledBuffer,
    pub dphi_k: PooledBuffer,
    pub da: PooledBuffer,
    /// `Phi(Q)^T gt` summed over the queries after each chunk (causal: carried backwards from later
    /// groups), `[B*H, f, dv + 1]`.
    pub r: &'a wgpu::Buffer,
    /// Causal: `gt [V | 1]^T` per chunk, masked and decayed like the scores.
    pub masked: PooledBuffer,
    /// Causal: the query state deltas and then the sums over later chunks, `[B*H, chunks, f, dv + 1]`.
    pub query_deltas: PooledBuffer,
    /// Causal: the key features decayed to their chunk's end (the feature gradients need them as
    /// computed, so the decay goes to a copy).
    pub phi_k_decayed: PooledBuffer,
    /// Causal: the states the forward pass kept, from which each group's scan restarts.
    pub checkpoints: Option<Checkpointed<'a>>,
    /// Causal: the prefix maxima before the first row (see [`Carried::previous_gamma`]).
    pub previous_gamma: Option<&'a GpuTensor>,
    /// The projection's gradient of every problem, `[B*H, m, d]`, when asked for.
    pub dw_parts: Option<PooledBuffer>,
}

impl Recorder<'_, '_, '_> {
    /// `gt` for the rows of a group from the saved output and denominators.
    pub(super) fn grad_prep(&mut self, bw: &Backward, start: usize, rows: usize) -> Result<()> {
        let p = self.plan;
        let (rows_, problems, scratch_rows) = self.dims(rows);
        let params = kernels::GradPrep {
            rows: rows_,
            problems,
            scratch_rows,
            value_dim: p.dv as u32,
            start: start as u32,
            len: p.l as u32,
            ..Default::default()
        };
        let bufs = [bw.out, bw.den, bw.grad, bw.gt.buffer()];
        self.run(&kernels::GRAD_PREP, &params, &bufs, p.z * rows, 64)
    }

    /// Gradients of bidirectional attention (docs/math.md §1.4), a group of rows at a time: with
    /// `gt = [g / D | -(g . o) / D]` and the key state `S = Phi(K)^T [V | 1]`, `dPhi(Q) = gt S^T`,
    /// `R = Phi(Q)^T gt` summed over every group, `dPhi(K) = [V | 1] R^T`, `dV = Phi(K) R[:, :dv]`,
    /// then the chain rule through the features and `x~ = x d^(-1/4)`. The keys are decayed by the
    /// one key offset of the whole sequence, left in `io.state_gamma` by the key fold (`Both`; a
    /// segment's `Queries` and `Keys` find `S` and the offset already there, and `Keys` the whole `R`).
    fn bidirectional_backward(&mut self, sc: &Scratch, io: &Io, bw: &Backward, direction: Direction) -> Result<()> {
        let p = self.plan;
        let (w, sr) = (p.width(), p.scratch_rows());
        let groups: Vec<(usize, usize)> = (0..p.l).step_by(p.chunk).map(|s| (s, p.chunk.min(p.l - s))).collect();
        let rows_of = |buf, cols| Operand::rows(buf, sr, cols);
        let (phi_q, phi_k, gt) = (sc.phi_q.buffer(), sc.phi_k.buffer(), rows_of(bw.gt.buffer(), w));
        for &(start, rows) in groups.iter().filter(|_| direction == Direction::Both) {
            self.row_stats(sc, io, io.k, true, start, rows)?;
            self.each_block(|r| {
                r.feature_map(sc, io, io.k, phi_k, start, rows)?;
                r.fold_keys(sc, io, phi_k, start, rows, None)
            })?;
        }
        for &(start, rows) in groups.iter().filter(|_| direction != Direction::Keys) {
            self.row_stats(sc, io, io.q, false, start, rows)?;
            self.grad_prep(bw, start, rows)?;
            self.each_block(|r| {
                r.feature_map(sc, io, io.q, phi_q, start, rows)?;
                let b = r.plan;
                let dphi_q = rows_of(bw.dphi_q.buffer(), b.f);
                r.gemm(&Gemm::new(b.z, rows, b.f, w), gt, b.state_rows(io.state_s).t(), dphi_q)?;
                let sum = Gemm { beta: 1.0, ..Gemm::new(b.z, b.f, w, rows) };
                r.gemm(&sum, rows_of(phi_q, b.f).t(), gt, b.state_rows(bw.r))?;
                r.input_grad(sc, io, bw, false, start, rows)
            })?;
        }
        for &(start, rows) in groups.iter().filter(|_| direction != Direction::Queries) {
            self.row_stats(sc, io, io.k, true, start, rows)?;
            self.each_block(|r| {
                r.feature_map(sc, io, io.k, phi_k, start, rows)?;
                let b = r.plan;
                r.row_scale(sc, phi_k, true, rows, b.f)?;
                let (v_ones, r_block) = (Operand::rows(io.v, b.l, b.dv).at(start * b.dv), b.state_rows(bw.r));
                let with_ones = Gemm { a_ones_col: Some(b.dv), ..Gemm::new(b.z, rows, b.f, w) };
                r.gemm(&with_ones, v_ones, r_block.t(), rows_of(bw.dphi_k.buffer(), b.f))?;
                let dv = Operand::rows(bw.dv, b.l, b.dv).at(start * b.dv);
                let g = Gemm { beta: if b.first == 0 { 0.0 } else { 1.0 }, ..Gemm::new(b.z, rows, b.dv, b.f) };
                r.gemm(&g, rows_of(phi_k, b.f), r_block, dv)?;
                r.input_grad(sc, io, bw, true, start, rows)
            })?;
        }
        Ok(())
    }

    /// `dx = scale (da W + coefficient x~)` from `dphi` through the feature map of the rows of a group
    /// of `x` (queries or keys), whose projections are in `a`: for the block of features in view,
    /// each block after the first adding its share to dx.
    pub(super) fn input_grad(
        &mut self,
        sc: &Scratch,
        io: &Io,
        bw: &Backward,
        is_key: bool,
        start: usize,
        rows: usize,
    ) -> Result<()> {
        let p = self.plan;
        let scale = (p.d as f32).powf(-0.25);
        let (x, phi, dphi, dx) = if is_key {
            (io.k, sc.phi_k.buffer(), bw.dphi_k.buffer(), bw.dk)
        } else {
            (io.q, sc.phi_q.buffer(), bw.dphi_q.buffer(), bw.dq)
        };
        let (code, _) = kernel_code(self.kernel);
        let (rows_, problems, scratch_rows) = self.dims(rows);
        let params = kernels::FeaturesBackward {
            rows: rows_,
            problems,
            scratch_rows,
            dim: p.d as u32,
            features: p.m as u32,
            kernel: code,
            is_key: is_key as u32,
            scale,
            x_off: (start * p.d) as u32,
            x_stride: (p.l * p.d) as u32,
            accumulate: (p.first > 0) as u32,
            ..Default::default()
        };
        let bufs = [x, sc.a.buffer(), phi, dphi, bw.da.buffer(), dx];
        self.run(&kernels::FEATURES_BACKWARD, &params, &bufs, p.z * rows, 1)?;
        // W as stored, [m, d]: da [rows, m] times W.
        let w_rows = Operand { row_stride: io.w.col_stride, col_stride: io.w.row_stride, ..io.w.at(p.first * p.d) };
        let g = Gemm { alpha: scale, beta: 1.0, ..Gemm::new(p.z, rows, p.d, p.m) };
        let da = Operand::rows(bw.da.buffer(), p.scratch_rows(), p.m);
        self.gemm(&g, da, w_rows, Operand::rows(dx, p.l, p.d).at(start * p.d))?;
        // dW += scale da^T x, per problem (a = x~ W^T with x~ = scale x).
        match &bw.dw_parts {
            Some(parts) => {
                let g = Gemm { alpha: scale, beta: 1.0, ..Gemm::new(p.z, p.m, p.d, rows) };
                let x_rows = Operand::rows(x, p.l, p.d).at(start * p.d);
                let parts = Operand { outer: p.all_m * p.d, ..Operand::rows(parts.buffer(), p.m, p.d) };
                self.gemm(&g, da.t(), x_rows, parts.at(p.first * p.d))
            }
            None => Ok(()),
        }
    }
}

impl Engine {
    /// Gradients of q, k, v and the projection for the upstream gradient `grad` of the output `out`
    /// of [`Engine::favor_forward_gpu`] on the same inputs. Causal attention walks its chunks
    /// backwards from the saved checkpoints, or, with none, rebuilds the states in a forward sweep
    /// (dq) and carries the query state in a reverse sweep (dk, dv), with scratch independent of L.
    /// Device tensors are not checked for non-finite values.
    #[allow(clippy::too_many_arguments)]
    pub fn favor_backward_gpu(
        &self,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        w: &GpuTensor,
        out: &GpuTensor,
        saved: &FavorSaved,
        grad: &GpuTensor,
    ) -> Result<FavorGrads> {
        let grads = FavorGrads {
            dq: self.empty(q.shape())?,
            dk: self.empty(k.shape())?,
            dv: self.empty(v.shape())?,
            dw: Some(self.empty(w.shape())?),
        };
        self.submit("favor backward", |enc| self.record_favor_backward(enc, q, k, v, w, out, saved, grad, &grads))?;
        Ok(grads)
    }

    /// Records [`Engine::favor_backward_gpu`] into the caller's encoder, writing `grads` (the
    /// projection's gradient only where `grads.dw` is given).
    #[allow(clippy::too_many_arguments)]
    pub fn record_favor_backward(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        q: &GpuTensor,
        k: &GpuTensor,
        v: &GpuTensor,
        w: &GpuTensor,
        out: &GpuTensor,
        saved: &FavorSaved,
        grad: &GpuTensor,
        grads: &FavorGrads,
    ) -> Result<Recorded> {
        self.record_backward(encoder, [q, k, v, w, out, grad], saved, grads, None)
    }

    /// [`Engine::record_favor_backward`], or with `segment` one direction of one segment of a longer
    /// sequence through what the recordings of the other segments carried (`segments.rs`).
    pub(super) fn record_backward(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        [q, k, v, w, out, grad]: [&GpuTensor; 6],
        saved: &FavorSaved,
        grads: &FavorGrads,
        segment: Option<(Direction, &Carried)>,
    ) -> Result<Recorded> {
        let s = check_backward([q, k, v, w, out, grad], saved, grads)?;
        let o = saved.options;
        let plan = self.backward_plan(&s, &o)?;
        let FavorGrads { dq, dk, dv, dw } = grads;
        let gpu = self.recording("favor backward", &[q, k, v, w, out, grad, dq, dk, dv])?;
        gpu.keep(&saved.tensors());
        gpu.keep(&dw.iter().collect::<Vec<_>>());
        let BackwardScratch { gt, dphi_q, dphi_k, da, r, masked, query_deltas, phi_k_decayed } =
            plan.backward_sizes().allocate(&gpu);
        let fresh;
        let (state, r, previous_gamma) = match segment {
            Some((_, carried)) => (carried.state, carried.r.buffer(), carried.previous_gamma),
            None => {
                fresh = self.unset_state(&s, o.kernel)?;
                (&fresh, r.buffer(), None)
            }
        };
        state.check(&s, o.kernel)?;
        let CausalState::Gpu { s: state_s, gamma: state_gamma, .. } = state else {
            return Err(Error::Unsupported("a CPU causal state cannot be used with device tensors".into()));
        };
        gpu.keep(&[state_s, state_gamma]);
        if let Some((_, carried)) = segment {
            gpu.keep(&[carried.r].into_iter().chain(carried.previous_gamma).collect::<Vec<_>>());
        }
        let bw = Backward {
            out: out.buffer(),
            den: saved.den.buffer(),
            grad: grad.buffer(),
            dq: dq.buffer(),
            dk: dk.buffer(),
            dv: dv.buffer(),
            gt,
            dphi_q,
            dphi_k,
            da,
            r,
            masked,
            query_deltas,
            phi_k_decayed,
            checkpoints: saved.checkpointed(),
            previous_gamma,
            dw_parts: gpu.allocate("favor backward", &dw.as_ref().map(|_| plan.z * plan.all_m * plan.d))?,
        };
        let sc = plan.scratch_sizes().allocate(&gpu);
        let io = Io::new(&plan, &s, [q, k, v, w, out], state_s, state_gamma);
        let mut pass = encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("favor backward"), timestamp_writes: None });
        if segment.is_none() {
            record_reset(&gpu, &mut pass, state_s, state_gamma)?;
            gpu.fill(&mut pass, bw.r, plan.backward_sizes().r, 0.0)?;
        }
        if let Some(parts) = &bw.dw_parts {
            gpu.fill(&mut pass, parts.buffer(), plan.z * plan.all_m * plan.d, 0.0)?;
        }
        let mut r = Recorder { gpu: &gpu, pass: &mut pass, plan, kernel: o.kernel };
        let direction = segment.map_or(Direction::Both, |(d, _)| d);
        if o.causal {
            r.causal_backward(&sc, &io, &bw, saved, direction)?;
        } else {
            r.bidirectional_backward(&sc, &io, &bw, direction)?;
        }
        if let (Some(dw), Some(parts)) = (dw, &bw.dw_parts) {
            r.sum_projection_grads(parts.buffer(), dw.buffer(), s.projection_heads)?;
        }
        drop(pass);
        Ok(gpu.finish())
    }
}

/// The shape of a backward pass's inputs, after checking them against each other, what the forward
/// pass kept and the gradients' shapes.
fn check_backward(
    [q, k, v, w, out, grad]: [&GpuTensor; 6],
    saved: &FavorSaved,
    grads: &FavorGrads,
) -> Result<AttentionShape> {
    let s = attention_shape(q.shape(), k.shape(), v.shape(), Some(w.shape()), Some(out.shape()))?;
    saved.check(&s)?;
    if grad.len() != out.len() {
        return Err(InputError::shape("grad", format!("{:?}", out.shape()), grad.shape()).into());
    }
    let pairs = [(Some(&grads.dq), q, "dq"), (Some(&grads.dk), k, "dk"), (Some(&grads.dv), v, "dv")];
    for (g, x, name) in pairs.into_iter().chain([(grads.dw.as_ref(), w, "dw")]) {
        if let Some(g) = g
            && g.shape() != x.shape()
        {
            return Err(InputError::shape(name, format!("{:?}", x.shape()), g.shape()).into());
        }
    }
    Ok(s)
}

impl Recorder<'_, '_, '_> {
    /// `dW[h]` = the sum of the problems' parts `z` with `z % heads == h` (problems run `b H + h`):
    /// a GEMM of a broadcast one against each head's parts.
    fn sum_projection_grads(&mut self, parts: &wgpu::Buffer, dw: &wgpu::Buffer, heads: usize) -> Result<()> {
        let p = self.plan;
        let md = p.all_m * p.d;
        let ones = self.gpu.scratch(4);
        self.gpu.fill(self.pass, ones.buffer(), 1, 1.0)?;
        let one = Operand { row_stride: 0, col_stride: 0, outer: 0, ..Operand::rows(ones.buffer(), 1, 1) };
        let of_head =
            Operand { outer: 0, inner: heads, inner_stride: md, row_stride: heads * md, ..Operand::rows(parts, 1, md) };
        self.gemm(&Gemm::new(heads, 1, md, p.z / heads), one, of_head, Operand::rows(dw, 1, md))
    }
}

/// Gradients `[dq, dk, dv, dw]` of random-feature attention for the upstream gradient `grad` of its
/// output (`dw` that of the projection): the forward pass keeping what the backward pass needs, then
/// the backward pass, recorded together.
#[derive(Debug, Clone, Copy, Default)]
pub struct FavorBackward(pub FavorOptions);

impl Operation for FavorBackward {
    const NAME: &'static str = "favor backward";
    const INPUTS: &'static [&'static str] = &["q", "k", "v", "projection", "grad"];

    /// Batches a slice at a time where one batch entry fits a binding, else the sequence in
    /// segments (`segments.rs`).
    async fn run_split(&self, engine: &Engine, i: &[&Tensor<f32>]) -> Option<Result<Vec<Tensor<f32>>>> {
        if let Some(outputs) = run_batches(engine, self, i, &[4]).await {
            return Some(outputs);
        }
        engine.favor_backward_segments([i[0], i[1], i[2], i[3], i[4]], &self.0).await
    }

    fn output_shapes(&self, i: &[&[usize]]) -> Result<Vec<Vec<usize>>> {
        let s = attention_shape(i[0], i[1], i[2], Some(i[3]), None)?;
        if i[4].iter().product::<usize>() != s.problems() * s.len * s.value_dim {
            return Err(InputError::shape("grad", format!("{:?}", s.output_shape(i[0].len())), i[4]).into());
        }
        Ok(i[..4].iter().map(|x| x.to_vec()).collect())
    }

    fn record(
        &self,
        engine: &Engine,
        enc: &mut wgpu::CommandEncoder,
        i: &[&GpuTensor],
        o: &[&GpuTensor],
    ) -> Result<Recorded> {
        let s = attention_shape(i[0].shape(), i[1].shape(), i[2].shape(), Some(i[3].shape()), None)?;
        let out = engine.empty(&s.output_shape(i[0].shape().len()))?;
        let saved = engine.favor_saved(&s, &self.0)?;
        let forward = engine.record_favor_forward(enc, i[0], i[1], i[2], i[3], &out, &saved)?;
        let grads = FavorGrads { dq: o[0].clone(), dk: o[1].clone(), dv: o[2].clone(), dw: Some(o[3].clone()) };
        let backward = engine.record_favor_backward(enc, i[0], i[1], i[2], i[3], &out, &saved, i[4], &grads)?;
        Ok(forward.and(backward))
    }

    fn cpu(&self, i: &[&Tensor<f32>]) -> Option<Result<Vec<Tensor<f32>>>> {
        let chunk = self.0.causal.then(|| self.0.chunk.unwrap_or(DEFAULT_CHUNK));
        let grads = crate::cpu::favor_backward([i[0], i[1], i[2], i[3], i[4]], self.0.kernel, chunk);
        Some(grads.map(Vec::from).map_err(Into::into))
    }

    fn reference(&self, i: &[Tensor<f64>]) -> Result<Vec<Tensor<f64>>> {
        let o = self.0;
        Ok(ortho_ref::favor::favor_backward(&i[0], &i[1], &i[2], &i[3], o.kernel, o.causal, &i[4])?.into())
    }
}

impl Engine {
    /// Gradients `[dq, dk, dv, dw]` of random-feature attention on host tensors (see
    /// [`FavorBackward`]): on a GPU engine [`Engine::favor_forward_gpu`] then
    /// [`Engine::favor_backward_gpu`], on the CPU fallback its linear-time f32 path (`cpu.rs`).
    pub fn favor_backward(
        &self,
        q: &Tensor<f32>,
        k: &Tensor<f32>,
        v: &Tensor<f32>,
        w: &Tensor<f32>,
        o: &FavorOptions,
        grad: &Tensor<f32>,
    ) -> Result<[Tensor<f32>; 4]> {
        let grads = self.run(&FavorBackward(*o), &[q, k, v, w, grad])?;
        grads.try_into().map_err(|_| Error::Unsupported("favor backward returns four gradients".into()))
    }
}
