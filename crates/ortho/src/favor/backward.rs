//! Gradients of random-feature attention (docs/math.md §1.4-1.6; twin: `ortho_ref::favor::favor_backward`):
//! the backward passes, bidirectional and causal (what a forward pass keeps for them: `saved.rs`). Every group
//! recomputes its features from the inputs and the kept row statistics; causal groups need the states
//! entering their chunks (from checkpoints, or rebuilt in a forward sweep) for dq, and the decayed
//! `Phi(Q)^T gt` of every later chunk (carried backwards) for dk and dv.

use super::*;

/// Which gradients one walk over a group of causal attention produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sweep {
    /// dq: needs the states entering the group's chunks (forward order).
    Queries,
    /// dk and dv: need the query state of every later chunk (reverse order).
    Keys,
    Both,
}

/// The operands of one causal backward group, over its rows from `start`.
#[derive(Clone, Copy)]
struct GroupOperands<'a> {
    p: Plan,
    chunks: usize,
    scores: Operand<'a>,
    masked: Operand<'a>,
    phi_q: Operand<'a>,
    phi_k: Operand<'a>,
    gt: Operand<'a>,
    dphi_q: Operand<'a>,
    dphi_k: Operand<'a>,
    v_rows: Operand<'a>,
    dv_rows: Operand<'a>,
    query_states: Operand<'a>,
}

impl<'a> GroupOperands<'a> {
    fn new(p: Plan, sc: &'a Scratch, io: &Io<'a>, bw: &'a Backward<'a>, start: usize, rows: usize) -> Self {
        let (sr, c, f, dv) = (p.scratch_rows(), p.chunk, p.f, p.dv);
        let chunks = rows.div_ceil(c);
        let rows_of = |buf, cols| Operand::rows(buf, sr, cols);
        let block = |buf| Operand { outer: chunks * c * c, ..Operand::rows(buf, c, c) };
        GroupOperands {
            p,
            chunks,
            scores: block(sc.scores.buffer()),
            masked: block(bw.masked.buffer()),
            phi_q: rows_of(sc.phi_q.buffer(), f),
            phi_k: rows_of(sc.phi_k.buffer(), f),
            gt: rows_of(bw.gt.buffer(), p.width()),
            dphi_q: rows_of(bw.dphi_q.buffer(), f),
            dphi_k: rows_of(bw.dphi_k.buffer(), f),
            v_rows: Operand::rows(io.v, p.l, dv).at(start * dv),
            dv_rows: Operand::rows(bw.dv, p.l, dv).at(start * dv),
            query_states: Operand::rows(bw.query_deltas.buffer(), chunks * f, p.width()),
        }
    }
}

/// The buffers of a backward pass beside the forward's scratch.
struct Backward<'a> {
    out: &'a wgpu::Buffer,
    den: &'a wgpu::Buffer,
    grad: &'a wgpu::Buffer,
    dq: &'a wgpu::Buffer,
    dk: &'a wgpu::Buffer,
    dv: &'a wgpu::Buffer,
    /// `[g / D | -(g . o) / D]`, `[rows, dv + 1]`.
    gt: PooledBuffer,
    dphi_q: PooledBuffer,
    dphi_k: PooledBuffer,
    da: PooledBuffer,
    /// `Phi(Q)^T gt` summed over the queries after each chunk (causal: carried backwards from later
    /// groups), `[B*H, f, dv + 1]`.
    r: PooledBuffer,
    /// Causal: `gt [V | 1]^T` per chunk, masked and decayed like the scores.
    masked: PooledBuffer,
    /// Causal: the query state deltas and then the sums over later chunks, `[B*H, chunks, f, dv + 1]`.
    query_deltas: PooledBuffer,
    /// Causal: the key features decayed to their chunk's end (the feature gradients need them as
    /// computed, so the decay goes to a copy).
    phi_k_decayed: PooledBuffer,
    /// Causal: the states the forward pass kept, from which each group's scan restarts.
    checkpoints: Option<Checkpointed<'a>>,
    /// The projection's gradient of every problem, `[B*H, m, d]`, when asked for.
    dw_parts: Option<PooledBuffer>,
}

impl Recorder<'_, '_, '_> {
    /// `gt` for the rows of a group from the saved output and denominators.
    fn grad_prep(&mut self, bw: &Backward, start: usize, rows: usize) -> Result<()> {
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
    /// one key offset of the whole sequence, left in `io.state_gamma` by the first pass.
    fn bidirectional_backward(&mut self, sc: &Scratch, io: &Io, bw: &Backward) -> Result<()> {
        let p = self.plan;
        let (w, sr) = (p.width(), p.scratch_rows());
        let groups: Vec<(usize, usize)> = (0..p.l).step_by(p.chunk).map(|s| (s, p.chunk.min(p.l - s))).collect();
        let rows_of = |buf, cols| Operand::rows(buf, sr, cols);
        let state = Operand::rows(io.state_s, p.f, w);
        let r = Operand::rows(bw.r.buffer(), p.f, w);
        for &(start, rows) in &groups {
            self.features(sc, io, io.k, sc.phi_k.buffer(), true, start, rows)?;
            self.fold_keys(sc, io, sc.phi_k.buffer(), start, rows, None)?;
        }
        for (i, &(start, rows)) in groups.iter().enumerate() {
            self.features(sc, io, io.q, sc.phi_q.buffer(), false, start, rows)?;
            self.grad_prep(bw, start, rows)?;
            let gt = rows_of(bw.gt.buffer(), w);
            self.gemm(&Gemm::new(p.z, rows, p.f, w), gt, state.t(), rows_of(bw.dphi_q.buffer(), p.f))?;
            let sum = Gemm { beta: if i == 0 { 0.0 } else { 1.0 }, ..Gemm::new(p.z, p.f, w, rows) };
            self.gemm(&sum, rows_of(sc.phi_q.buffer(), p.f).t(), gt, r)?;
            self.input_grad(sc, io, bw, false, start, rows)?;
        }
        for &(start, rows) in &groups {
            self.features(sc, io, io.k, sc.phi_k.buffer(), true, start, rows)?;
            self.row_scale(sc, sc.phi_k.buffer(), true, rows, p.f)?;
            let v_ones = Operand::rows(io.v, p.l, p.dv).at(start * p.dv);
            let with_ones = Gemm { a_ones_col: Some(p.dv), ..Gemm::new(p.z, rows, p.f, w) };
            self.gemm(&with_ones, v_ones, r.t(), rows_of(bw.dphi_k.buffer(), p.f))?;
            let dv = Operand::rows(bw.dv, p.l, p.dv).at(start * p.dv);
            self.gemm(&Gemm::new(p.z, rows, p.dv, p.f), rows_of(sc.phi_k.buffer(), p.f), r, dv)?;
            self.input_grad(sc, io, bw, true, start, rows)?;
        }
        Ok(())
    }

    /// Gradients of causal attention over one group of rows (docs/math.md §1.5-1.6). With
    /// `gt = [g / D | -(g . o) / D]`, the chunk's masked and decayed `dA = gt [V | 1]^T`, the states
    /// `S_c` entering each chunk and `R_c` = the decayed `Phi(Q)^T gt` of every later chunk:
    ///   dPhi(Q_c) = dA Phi(K_c) + decay_q(gt) S_c^T,
    ///   dPhi(K_c) = dA^T Phi(Q_c) + decay_k([V | 1] R_c^T),
    ///   dV_c      = P^T gt_v + decay_k(Phi(K_c)) R_c[:, :dv],
    /// with the decays of `favor/row_scale.wgsl` and `P` the forward's masked scores. `Queries` needs
    /// the state entering the group in `io.state_s`, `Keys` the query state of later groups in `bw.r`;
    /// both leave their state ready for the next group of their direction.
    fn causal_backward_group(
        &mut self,
        sc: &Scratch,
        io: &Io,
        bw: &Backward,
        start: usize,
        rows: usize,
        sweep: Sweep,
    ) -> Result<()> {
        let (queries, keys) = (sweep != Sweep::Keys, sweep != Sweep::Queries);
        self.features(sc, io, io.q, sc.phi_q.buffer(), false, start, rows)?;
        self.features(sc, io, io.k, sc.phi_k.buffer(), true, start, rows)?;
        self.grad_prep(bw, start, rows)?;
        let ops = GroupOperands::new(self.plan, sc, io, bw, start, rows);
        self.intra_chunk_grads(sc, bw, &ops, rows, queries, keys)?;
        let decayed = bw.phi_k_decayed.buffer();
        let all = ops.p.z * ops.p.scratch_rows() * ops.p.f;
        self.copy(sc.phi_k.buffer(), decayed, Blocks { outer: 1, inner: 1, len: all, src: [0; 3], dst: [0; 3] })?;
        if queries {
            let restart = if sweep == Sweep::Both { bw.checkpoints } else { None };
            self.fold_keys(sc, io, decayed, start, rows, restart)?;
        } else {
            self.row_scale(sc, decayed, true, rows, ops.p.f)?;
        }
        self.row_scale(sc, bw.gt.buffer(), false, rows, ops.p.width())?;
        if queries {
            let (f, w, c) = (ops.p.f, ops.p.width(), ops.p.chunk);
            let states = Operand::rows(sc.deltas.buffer(), f, w).t();
            let g = Gemm { beta: 1.0, ..Gemm::new(ops.p.z * ops.chunks, c, f, w) };
            self.gemm(&g, ops.gt.chunks(0, ops.chunks, c * w), states, ops.dphi_q.chunks(0, ops.chunks, c * f))?;
        }
        if keys {
            self.inter_chunk_key_grads(sc, bw, &ops, start, rows)?;
            // `a` holds the projections of the keys, the last features computed.
            self.input_grad(sc, io, bw, true, start, rows)?;
        }
        if queries {
            self.project(sc, io, io.q, start, rows)?;
            self.input_grad(sc, io, bw, false, start, rows)?;
        }
        Ok(())
    }

    /// The intra-chunk terms: `dA` masked and decayed; with `keys`, the forward's masked scores `P`
    /// and `dV_c = P^T gt_v`; with `queries`, `dPhi(Q_c) = dA Phi(K_c)`.
    fn intra_chunk_grads(
        &mut self,
        sc: &Scratch,
        bw: &Backward,
        ops: &GroupOperands,
        rows: usize,
        queries: bool,
        keys: bool,
    ) -> Result<()> {
        let GroupOperands { p, .. } = *ops;
        let (c, f, dv, w) = (p.chunk, p.f, p.dv, p.width());
        // dA, written transposed as [V | 1] gt^T.
        for (first, count, k) in chunk_batches(rows, c) {
            let g = Gemm { a_ones_col: Some(dv), ..Gemm::new(p.z * count, k, k, w) };
            self.gemm(
                &g,
                ops.v_rows.chunks(first, count, c * dv),
                ops.gt.t().chunks(first, count, c * w),
                ops.masked.t().chunks(first, count, c * c),
            )?;
        }
        self.causal_mask(sc, bw.masked.buffer(), rows)?;
        if keys {
            for (first, count, k) in chunk_batches(rows, c) {
                self.gemm(
                    &Gemm::new(p.z * count, k, k, f),
                    ops.phi_q.chunks(first, count, c * f),
                    ops.phi_k.t().chunks(first, count, c * f),
                    ops.scores.chunks(first, count, c * c),
                )?;
            }
            self.causal_mask(sc, sc.scores.buffer(), rows)?;
        }
        for (first, count, k) in chunk_batches(rows, c) {
            if keys {
                self.gemm(
                    &Gemm::new(p.z * count, k, dv, k),
                    ops.scores.t().chunks(first, count, c * c),
                    ops.gt.chunks(first, count, c * w),
                    ops.dv_rows.chunks(first, count, c * dv),
                )?;
            }
            if queries {
                self.gemm(
                    &Gemm::new(p.z * count, k, f, k),
                    ops.masked.chunks(first, count, c * c),
                    ops.phi_k.chunks(first, count, c * f),
                    ops.dphi_q.chunks(first, count, c * f),
                )?;
            }
        }
        Ok(())
    }

    /// The key gradients through the query state of later chunks: `R_c` by a reverse scan of the
    /// chunks' `Phi(Q)^T gt`, then `dPhi(K_c) += decay_k([V | 1] R_c^T) + dA^T Phi(Q_c)` and
    /// `dV_c += decay_k(Phi(K_c)) R_c[:, :dv]` (`gt` and the key copy already decayed).
    fn inter_chunk_key_grads(
        &mut self,
        sc: &Scratch,
        bw: &Backward,
        ops: &GroupOperands,
        start: usize,
        rows: usize,
    ) -> Result<()> {
        let GroupOperands { p, .. } = *ops;
        let (c, f, dv, w) = (p.chunk, p.f, p.dv, p.width());
        let decayed = Operand::rows(bw.phi_k_decayed.buffer(), p.scratch_rows(), f);
        for (first, count, k) in chunk_batches(rows, c) {
            self.gemm(
                &Gemm::new(p.z * count, f, w, k),
                ops.phi_q.t().chunks(first, count, c * f),
                ops.gt.chunks(first, count, c * w),
                ops.query_states.chunks(first, count, f * w),
            )?;
        }
        self.scan_states(sc, bw.query_deltas.buffer(), bw.r.buffer(), start, rows, true, None)?;
        for (first, count, k) in chunk_batches(rows, c) {
            let g = Gemm { a_ones_col: Some(dv), ..Gemm::new(p.z * count, k, f, w) };
            self.gemm(
                &g,
                ops.v_rows.chunks(first, count, c * dv),
                ops.query_states.chunks(first, count, f * w).t(),
                ops.dphi_k.chunks(first, count, c * f),
            )?;
        }
        self.row_scale(sc, bw.dphi_k.buffer(), true, rows, f)?;
        for (first, count, k) in chunk_batches(rows, c) {
            let g = Gemm { beta: 1.0, ..Gemm::new(p.z * count, k, f, k) };
            self.gemm(
                &g,
                ops.masked.t().chunks(first, count, c * c),
                ops.phi_q.chunks(first, count, c * f),
                ops.dphi_k.chunks(first, count, c * f),
            )?;
            let g = Gemm { beta: 1.0, ..Gemm::new(p.z * count, k, dv, f) };
            self.gemm(
                &g,
                decayed.chunks(first, count, c * f),
                ops.query_states.chunks(first, count, f * w),
                ops.dv_rows.chunks(first, count, c * dv),
            )?;
        }
        Ok(())
    }

    /// `dx = scale (da W + coefficient x~)` from `dphi` through the feature map of the rows of a group
    /// of `x` (queries or keys), whose projections are in `a`.
    fn input_grad(
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
            ..Default::default()
        };
        let bufs = [x, sc.a.buffer(), phi, dphi, bw.da.buffer(), dx];
        self.run(&kernels::FEATURES_BACKWARD, &params, &bufs, p.z * rows, 1)?;
        // W as stored, [m, d]: da [rows, m] times W.
        let w_rows = Operand { row_stride: io.w.col_stride, col_stride: io.w.row_stride, ..io.w };
        let g = Gemm { alpha: scale, beta: 1.0, ..Gemm::new(p.z, rows, p.d, p.m) };
        let da = Operand::rows(bw.da.buffer(), p.scratch_rows(), p.m);
        self.gemm(&g, da, w_rows, Operand::rows(dx, p.l, p.d).at(start * p.d))?;
        // dW += scale da^T x, per problem (a = x~ W^T with x~ = scale x).
        match &bw.dw_parts {
            Some(parts) => {
                let g = Gemm { alpha: scale, beta: 1.0, ..Gemm::new(p.z, p.m, p.d, rows) };
                let x_rows = Operand::rows(x, p.l, p.d).at(start * p.d);
                self.gemm(&g, da.t(), x_rows, Operand::rows(parts.buffer(), p.m, p.d))
            }
            None => Ok(()),
        }
    }
}

impl Recorder<'_, '_, '_> {
    /// Sets the carried prefix max to its saved value before row `start` ("no tokens" at 0).
    fn load_gamma(&mut self, saved: &wgpu::Buffer, io: &Io, start: usize) -> Result<()> {
        let p = self.plan;
        if start == 0 {
            return record_fill(self.gpu, self.pass, io.state_gamma, p.z, LOWEST);
        }
        self.copy(
            saved,
            io.state_gamma,
            Blocks { outer: p.z, inner: 1, len: 1, src: [start - 1, p.l, 0], dst: [0, 1, 0] },
        )
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
        let o = saved.options;
        let plan = self.backward_plan(&s, &o)?;
        let FavorGrads { dq, dk, dv, dw } = grads;
        let gpu = self.recording("favor backward", &[q, k, v, w, out, grad, dq, dk, dv])?;
        gpu.keep(&saved.tensors());
        gpu.keep(&dw.iter().collect::<Vec<_>>());
        let BackwardScratch { gt, dphi_q, dphi_k, da, r, masked, query_deltas, phi_k_decayed } =
            plan.backward_sizes().allocate(&gpu);
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
            dw_parts: gpu.allocate("favor backward", &dw.as_ref().map(|_| plan.z * plan.m * plan.d))?,
        };
        let CausalState::Gpu { s: state_s, gamma: state_gamma, .. } = self.unset_state(&s, o.kernel)? else {
            unreachable!("a GPU engine makes GPU states")
        };
        gpu.keep(&[&state_s, &state_gamma]);
        let sc = plan.scratch_sizes().allocate(&gpu);
        let io = Io::new(&plan, &s, [q, k, v, w, out], &state_s, &state_gamma);
        let mut pass = encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("favor backward"), timestamp_writes: None });
        record_reset(&gpu, &mut pass, &state_s, &state_gamma)?;
        if let Some(parts) = &bw.dw_parts {
            record_fill(&gpu, &mut pass, parts.buffer(), plan.z * plan.m * plan.d, 0.0)?;
        }
        let mut r = Recorder { gpu: &gpu, pass: &mut pass, plan, kernel: o.kernel };
        if o.causal {
            r.causal_backward(&sc, &io, &bw, saved)?;
        } else {
            r.bidirectional_backward(&sc, &io, &bw)?;
        }
        if let (Some(dw), Some(parts)) = (dw, &bw.dw_parts) {
            r.sum_projection_grads(parts.buffer(), dw.buffer(), s.projection_heads)?;
        }
        drop(pass);
        Ok(gpu.finish())
    }
}

impl Recorder<'_, '_, '_> {
    /// The causal backward pass over every group (see [`Engine::favor_backward_gpu`]).
    fn causal_backward(&mut self, sc: &Scratch, io: &Io, bw: &Backward, saved: &FavorSaved) -> Result<()> {
        let plan = self.plan;
        record_fill(self.gpu, self.pass, bw.r.buffer(), plan.backward_sizes().r, 0.0)?;
        let group = plan.scratch_rows();
        let starts: Vec<usize> = (0..plan.l).step_by(group).collect();
        let rows = |start: usize| group.min(plan.l - start);
        let gammas = saved.gamma.as_ref().map(|g| g.buffer()).expect("causal forward passes keep gamma");
        match &saved.checkpoints {
            Some(states) => {
                // Groups of whole segments, last first, each from the checkpoint at its start.
                let (fw, count) = (plan.f * plan.width(), states.shape()[1]);
                let every = bw.checkpoints.map_or(1, |c| c.every);
                for &start in starts.iter().rev() {
                    let at = start / plan.chunk / every * fw;
                    let load = Blocks { outer: plan.z, inner: 1, len: fw, src: [at, count * fw, 0], dst: [0, fw, 0] };
                    self.copy(states.buffer(), io.state_s, load)?;
                    self.load_gamma(gammas, io, start)?;
                    self.causal_backward_group(sc, io, bw, start, rows(start), Sweep::Both)?;
                }
            }
            None => {
                for &start in &starts {
                    self.causal_backward_group(sc, io, bw, start, rows(start), Sweep::Queries)?;
                }
                for &start in starts.iter().rev() {
                    self.load_gamma(gammas, io, start)?;
                    self.causal_backward_group(sc, io, bw, start, rows(start), Sweep::Keys)?;
                }
            }
        }
        Ok(())
    }

    /// `dW[h]` = the sum of the problems' parts `z` with `z % heads == h` (problems run `b H + h`):
    /// a GEMM of a broadcast one against each head's parts.
    fn sum_projection_grads(&mut self, parts: &wgpu::Buffer, dw: &wgpu::Buffer, heads: usize) -> Result<()> {
        let p = self.plan;
        let md = p.m * p.d;
        let ones = self.gpu.scratch(4);
        record_fill(self.gpu, self.pass, ones.buffer(), 1, 1.0)?;
        let one = Operand { row_stride: 0, col_stride: 0, outer: 0, ..Operand::rows(ones.buffer(), 1, 1) };
        let of_head = Operand {
            buffer: parts,
            offset: 0,
            outer: 0,
            inner: heads,
            inner_stride: md,
            row_stride: heads * md,
            col_stride: 1,
        };
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

    async fn run_split(&self, engine: &Engine, inputs: &[&Tensor<f32>]) -> Option<Result<Vec<Tensor<f32>>>> {
        run_batches(engine, self, inputs, 4).await
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

    fn reference(&self, i: &[Tensor<f64>]) -> Result<Vec<Tensor<f64>>> {
        let o = self.0;
        Ok(ortho_ref::favor::favor_backward(&i[0], &i[1], &i[2], &i[3], o.kernel, o.causal, &i[4])?.into())
    }
}

impl Engine {
    /// Gradients `[dq, dk, dv, dw]` of random-feature attention on host tensors (see
    /// [`FavorBackward`]): on a GPU engine [`Engine::favor_forward_gpu`] then
    /// [`Engine::favor_backward_gpu`], the f64 reference on the CPU.
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
