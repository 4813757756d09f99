//! The kernels of one group of rows, recorded into a compute pass.

use super::*;

impl Recorder<'_, '_, '_> {
    /// One dispatch of `shader` over `invocations` threads in workgroups of `group`.
    pub(super) fn run<P: kernels::Params>(
        &mut self,
        shader: &kernels::Shader<P>,
        params: &P,
        buffers: &[&wgpu::Buffer],
        invocations: usize,
        group: u32,
    ) -> Result<()> {
        self.gpu.dispatch(self.pass, shader, params, buffers, self.gpu.grid(invocations as u64, group)?)
    }

    /// `(rows, problems, scratch rows)` of a group of `rows` rows: how every row kernel's uniform
    /// block begins.
    pub(super) fn dims(&self, rows: usize) -> (u32, u32, u32) {
        (rows as u32, self.plan.z as u32, self.plan.scratch_rows() as u32)
    }

    /// The decay mask of the `C x C` blocks of a group's chunks in `scores` (`favor/causal_mask`).
    pub(super) fn causal_mask(&mut self, sc: &Scratch, scores: &wgpu::Buffer, rows: usize) -> Result<()> {
        let (c, chunks) = (self.plan.chunk, rows.div_ceil(self.plan.chunk));
        let (rows, problems, scratch_rows) = self.dims(rows);
        let params = kernels::Mask {
            rows,
            problems,
            scratch_rows,
            chunk: c as u32,
            chunks: chunks as u32,
            ..Default::default()
        };
        let bufs = [sc.offset.buffer(), sc.gamma.buffer(), scores];
        self.run(&kernels::CAUSAL_MASK, &params, &bufs, self.plan.z * chunks * c * c, 256)
    }

    pub(super) fn gemm(&mut self, g: &Gemm, a: Operand, b: Operand, c: Operand) -> Result<()> {
        record_gemm(self.gpu, self.pass, g, a, b, c)
    }

    /// Runs `each` with the recorder viewing each block of the features in turn (see [`Plan::blocks`]).
    pub(super) fn each_block(&mut self, mut each: impl FnMut(&mut Self) -> Result<()>) -> Result<()> {
        let whole = self.plan;
        for block in whole.blocks() {
            self.plan = block;
            each(self)?;
        }
        self.plan = whole;
        Ok(())
    }

    /// Projections, row statistics and features of `rows` rows from `start` of `x` (queries or keys)
    /// into `phi`, where one block holds every feature; keys leave their offsets g_j in `offset`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn features(
        &mut self,
        sc: &Scratch,
        io: &Io,
        x: &wgpu::Buffer,
        phi: &wgpu::Buffer,
        is_key: bool,
        start: usize,
        rows: usize,
    ) -> Result<()> {
        self.row_stats(sc, io, x, is_key, start, rows)?;
        self.feature_map(sc, io, x, phi, start, rows)
    }

    /// Projections and row statistics of `rows` rows from `start` of `x` over every block of the
    /// features (keys: then the prefix max of their offsets); `a` keeps the last block's projections.
    pub(super) fn row_stats(
        &mut self,
        sc: &Scratch,
        io: &Io,
        x: &wgpu::Buffer,
        is_key: bool,
        start: usize,
        rows: usize,
    ) -> Result<()> {
        let kind = match (self.kernel, is_key) {
            (Kernel::Softmax, false) => QUERY_MAX,
            (Kernel::Softmax, true) => KEY_MAX,
            (Kernel::Trig, true) => HALF_SQ,
            _ => ZERO,
        };
        let p = self.plan;
        let sr = p.scratch_rows();
        self.each_block(|r| {
            r.project(sc, io, x, start, rows)?;
            let stats = kernels::RowStats {
                rows: rows as u32,
                problems: p.z as u32,
                scratch_rows: sr as u32,
                dim: p.d as u32,
                features: r.plan.m as u32,
                kind,
                x_off: (start * p.d) as u32,
                x_stride: (p.l * p.d) as u32,
                combine: (r.plan.first > 0) as u32,
                ..Default::default()
            };
            let bufs = [x, sc.a.buffer(), sc.row_max.buffer(), sc.offset.buffer()];
            r.run(&kernels::ROW_STATS, &stats, &bufs, p.z * rows, 1)
        })?;
        if is_key {
            // gamma_t = max(carried, g_0..=t): the prefix max of the key offsets.
            let scan = kernels::Scan { rows: rows as u32, problems: p.z as u32, row_stride: sr as u32, _pad: 0 };
            let bufs = [sc.offset.buffer(), sc.gamma.buffer(), sc.before.buffer(), io.state_gamma];
            self.run(&kernels::SCAN_MAX, &scan, &bufs, p.z, 1)?;
        }
        Ok(())
    }

    /// The features of the block in view into `phi`, after [`Recorder::row_stats`] (projecting the
    /// block again where the features come in several).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn feature_map(
        &mut self,
        sc: &Scratch,
        io: &Io,
        x: &wgpu::Buffer,
        phi: &wgpu::Buffer,
        start: usize,
        rows: usize,
    ) -> Result<()> {
        let p = self.plan;
        if p.m < p.all_m {
            self.project(sc, io, x, start, rows)?;
        }
        let (code, eps) = kernel_code(self.kernel);
        let bufs = [sc.a.buffer(), sc.row_max.buffer(), phi];
        let (rows_, problems, scratch_rows) = self.dims(rows);
        let params = kernels::Features {
            rows: rows_,
            problems,
            scratch_rows,
            features: p.m as u32,
            kernel: code,
            eps,
            ..Default::default()
        };
        self.run(&kernels::FEATURES, &params, &bufs, p.z * rows, 1)
    }

    /// `a = x~ W^T` for `rows` rows from `start` of `x`, with `x~ = x d^(-1/4)`.
    pub(super) fn project(&mut self, sc: &Scratch, io: &Io, x: &wgpu::Buffer, start: usize, rows: usize) -> Result<()> {
        let p = self.plan;
        let project = Gemm { alpha: (p.d as f32).powf(-0.25), ..Gemm::new(p.z, rows, p.m, p.d) };
        let a = Operand::rows(sc.a.buffer(), p.scratch_rows(), p.m);
        self.gemm(&project, Operand::rows(x, p.l, p.d).at(start * p.d), io.w.at(p.first * p.d), a)
    }

    /// Scales the rows of `x` (`width` floats each) by their decay: keys for their chunk's state
    /// delta, queries for the inter-chunk term (see `favor/row_scale.wgsl`).
    pub(super) fn row_scale(
        &mut self,
        sc: &Scratch,
        x: &wgpu::Buffer,
        is_key: bool,
        rows: usize,
        width: usize,
    ) -> Result<()> {
        let p = self.plan;
        let bufs = [sc.offset.buffer(), sc.gamma.buffer(), sc.before.buffer(), x];
        let (rows, problems, scratch_rows) = self.dims(rows);
        let params = kernels::RowScale {
            rows,
            problems,
            scratch_rows,
            width: width as u32,
            chunk: p.chunk as u32,
            is_key: is_key as u32,
            ..Default::default()
        };
        self.run(&kernels::ROW_SCALE, &params, &bufs, p.z * p.scratch_rows() * width, 256)
    }

    /// Chunk state deltas `phi~(K_c)^T [V_c | 1]` for the chunks of a group (the key features `phi`
    /// are decayed in place), then the scan that turns them into the states entering each chunk and
    /// carries the state past the group, restarting from the checkpoints in `restart`.
    pub(super) fn fold_keys(
        &mut self,
        sc: &Scratch,
        io: &Io,
        phi: &wgpu::Buffer,
        start: usize,
        rows: usize,
        restart: Option<Checkpointed>,
    ) -> Result<()> {
        let p = self.plan;
        let (sr, w, chunk) = (p.scratch_rows(), p.width(), p.chunk);
        let chunks = rows.div_ceil(chunk);
        self.row_scale(sc, phi, true, rows, p.f)?;
        for (first, count, k) in chunk_batches(rows, chunk) {
            let g = Gemm { ones_col: Some(p.dv), ..Gemm::new(p.z * count, p.f, w, k) };
            let a = Operand::rows(phi, sr, p.f).t().chunks(first, count, chunk * p.f);
            let b = Operand::rows(io.v, p.l, p.dv).at(start * p.dv).chunks(first, count, chunk * p.dv);
            let c = Operand::rows(sc.deltas.buffer(), chunks * p.f, w).chunks(first, count, p.f * w);
            self.gemm(&g, a, b, c)?;
        }
        self.scan_states(sc, sc.deltas.buffer(), io.state_s, start, rows, false, restart)
    }

    /// `favor/state_scan` over the chunks of a group: forward (key states, optionally restarting
    /// from checkpoints) or reverse (the backward pass's query states).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn scan_states(
        &mut self,
        sc: &Scratch,
        deltas: &wgpu::Buffer,
        state: &wgpu::Buffer,
        start: usize,
        rows: usize,
        reverse: bool,
        restart: Option<Checkpointed>,
    ) -> Result<()> {
        let p = self.plan;
        let width = p.f * p.width();
        let (saved, every, count) = restart.map_or((sc.gamma.buffer(), 0, 0), |r| (r.states, r.every, r.count));
        let chunks = rows.div_ceil(p.chunk);
        let u = |x: usize| x as u32;
        let (rows, problems, scratch_rows) = self.dims(rows);
        let params = kernels::StateScan {
            rows,
            problems,
            scratch_rows,
            width: u(width),
            chunk: u(p.chunk),
            chunks: u(chunks),
            reverse: reverse as u32,
            every: u(every),
            first_chunk: u(start / p.chunk),
            count: u(count),
            state_off: u(p.first_state_row() * p.width()),
            state_stride: u(p.all_f * p.width()),
        };
        let bufs = [sc.gamma.buffer(), sc.before.buffer(), saved, deltas, state];
        self.run(&kernels::STATE_SCAN, &params, &bufs, p.z * width, 256)
    }

    pub(super) fn normalize(&mut self, sc: &Scratch, io: &Io, start: usize, rows: usize) -> Result<()> {
        let p = self.plan;
        let (rows_, problems, scratch_rows) = self.dims(rows);
        let params = kernels::Normalize {
            rows: rows_,
            problems,
            scratch_rows,
            value_dim: p.dv as u32,
            out_off: (start * p.dv) as u32,
            out_stride: (p.l * p.dv) as u32,
            ..Default::default()
        };
        self.run(&kernels::NORMALIZE, &params, &[sc.num.buffer(), io.out], p.z * rows * p.dv, 256)
    }

    /// One group of causal attention: rows `start..start + rows` in chunks of the plan's size.
    pub(super) fn causal_group(&mut self, sc: &Scratch, io: &Io, start: usize, rows: usize) -> Result<()> {
        let p = self.plan;
        let (sr, w, c) = (p.scratch_rows(), p.width(), p.chunk);
        let chunks = rows.div_ceil(c);
        self.features(sc, io, io.q, sc.phi_q.buffer(), false, start, rows)?;
        self.features(sc, io, io.k, sc.phi_k.buffer(), true, start, rows)?;
        // Intra-chunk: scores phi^(Q_c) phi^(K_c)^T, masked and decayed, times [V_c | 1].
        let scores = Operand::rows(sc.scores.buffer(), c, c);
        let scores = Operand { outer: chunks * c * c, ..scores };
        let qc = Operand::rows(sc.phi_q.buffer(), sr, p.f).chunks(0, chunks, c * p.f);
        let kc = Operand::rows(sc.phi_k.buffer(), sr, p.f).t().chunks(0, chunks, c * p.f);
        self.gemm(&Gemm::new(p.z * chunks, c, c, p.f), qc, kc, scores.chunks(0, chunks, c * c))?;
        self.causal_mask(sc, sc.scores.buffer(), rows)?;
        for (first, count, k) in chunk_batches(rows, c) {
            let g = Gemm { ones_col: Some(p.dv), ..Gemm::new(p.z * count, k, w, k) };
            let b = Operand::rows(io.v, p.l, p.dv).at(start * p.dv).chunks(first, count, c * p.dv);
            let out = Operand::rows(sc.num.buffer(), sr, w).chunks(first, count, c * w);
            self.gemm(&g, scores.chunks(first, count, c * c), b, out)?;
        }
        // Inter-chunk: the state entering each chunk, read by its decayed queries.
        if p.walk {
            self.row_scale(sc, sc.phi_k.buffer(), true, rows, p.f)?;
            self.row_scale(sc, sc.phi_q.buffer(), false, rows, p.f)?;
            self.state_walk(sc, io, start, rows)?;
        } else {
            self.fold_keys(sc, io, sc.phi_k.buffer(), start, rows, None)?;
            self.row_scale(sc, sc.phi_q.buffer(), false, rows, p.f)?;
            let states = Operand::rows(sc.deltas.buffer(), p.f, w);
            let out = Operand::rows(sc.num.buffer(), sr, w).chunks(0, chunks, c * w);
            self.gemm(&Gemm { beta: 1.0, ..Gemm::new(p.z * chunks, c, w, p.f) }, qc, states, out)?;
        }
        self.normalize(sc, io, start, rows)
    }

    /// The chunks of a group in order with the state on chip (`favor/state_walk.wgsl`): a workgroup
    /// per problem and tile of 4 state columns, [`WALK_CHUNKS_PER_DISPATCH`] chunks a dispatch.
    pub(super) fn state_walk(&mut self, sc: &Scratch, io: &Io, start: usize, rows: usize) -> Result<()> {
        let p = self.plan;
        let chunks = rows.div_ceil(p.chunk);
        let bufs = [
            sc.phi_q.buffer(),
            sc.phi_k.buffer(),
            io.v,
            sc.gamma.buffer(),
            sc.before.buffer(),
            io.state_s,
            sc.num.buffer(),
            sc.lost.buffer(),
        ];
        for first in (0..chunks).step_by(WALK_CHUNKS_PER_DISPATCH) {
            let count = WALK_CHUNKS_PER_DISPATCH.min(chunks - first);
            let u = |x: usize| x as u32;
            let params = kernels::Walk {
                rows: u(rows),
                problems: u(p.z),
                scratch_rows: u(p.scratch_rows()),
                features: u(p.f),
                value_dim: u(p.dv),
                chunk: u(p.chunk),
                first: u(first),
                count: u(count),
                len: u(p.l),
                start: u(start),
                unit: 1.0,
                ..Default::default()
            };
            let max = self.gpu.max_groups();
            for z_base in (0..p.z).step_by(max) {
                let params = kernels::Walk { z_base: u(z_base), ..params };
                let groups = [p.width().div_ceil(WALK_TILE) as u32, (p.z - z_base).min(max) as u32, 1];
                self.gpu.dispatch(self.pass, &kernels::STATE_WALK, &params, &bufs, groups)?;
            }
        }
        Ok(())
    }

    /// Bidirectional: fold every key group into the state, then answer every query group from it
    /// (or only one of the two, as `sweep.phase` says), a block of the features at a time.
    pub(super) fn bidirectional(&mut self, sc: &Scratch, io: &Io, sweep: Sweep) -> Result<()> {
        let (p, keep) = (self.plan, sweep.keep);
        let (phi_q, phi_k) = (sc.phi_q.buffer(), sc.phi_k.buffer());
        for start in (0..p.l).step_by(p.chunk).filter(|_| sweep.phase != Phase::Queries) {
            let rows = p.chunk.min(p.l - start);
            self.row_stats(sc, io, io.k, true, start, rows)?;
            self.each_block(|r| {
                r.feature_map(sc, io, io.k, phi_k, start, rows)?;
                r.fold_keys(sc, io, phi_k, start, rows, None)
            })?;
        }
        for start in (0..p.l).step_by(p.chunk).filter(|_| sweep.phase != Phase::Keys) {
            let rows = p.chunk.min(p.l - start);
            self.row_stats(sc, io, io.q, false, start, rows)?;
            let num = Operand::rows(sc.num.buffer(), p.scratch_rows(), p.width());
            self.each_block(|r| {
                r.feature_map(sc, io, io.q, phi_q, start, rows)?;
                let b = r.plan;
                let g = Gemm { beta: if b.first == 0 { 0.0 } else { 1.0 }, ..Gemm::new(b.z, rows, b.width(), b.f) };
                r.gemm(&g, Operand::rows(phi_q, b.scratch_rows(), b.f), b.state_rows(io.state_s), num)
            })?;
            self.normalize(sc, io, start, rows)?;
            if let Some(keep) = keep {
                self.keep(sc, keep, start, rows)?;
            }
        }
        Ok(())
    }

    pub(super) fn copy(&mut self, src: &wgpu::Buffer, dst: &wgpu::Buffer, b: Blocks) -> Result<()> {
        self.gpu.copy(self.pass, src, dst, b)
    }

    /// Keeps what the backward pass needs of a group: the denominators `D_t`, the prefix maxima
    /// `gamma_t` and the checkpointed states entering the group's chunks.
    pub(super) fn keep(&mut self, sc: &Scratch, keep: &Keep, start: usize, rows: usize) -> Result<()> {
        let p = self.plan;
        let (sr, w, fw) = (p.scratch_rows(), p.width(), p.f * p.width());
        let den = Blocks { outer: p.z, inner: rows, len: 1, src: [p.dv, sr * w, w], dst: [start, p.l, 1] };
        self.copy(sc.num.buffer(), keep.den, den)?;
        if let Some(gamma) = keep.gamma {
            let rows_of_gamma = Blocks { outer: p.z, inner: 1, len: rows, src: [0, sr, 0], dst: [start, p.l, 0] };
            self.copy(sc.gamma.buffer(), gamma, rows_of_gamma)?;
        }
        if let Some(Checkpointed { states, every, count }) = keep.checkpoints {
            let (first, chunks) = (start / p.chunk, rows.div_ceil(p.chunk));
            let kept = first.div_ceil(every) * every;
            if kept < first + chunks {
                let n = (first + chunks - 1 - kept) / every + 1;
                let b = Blocks {
                    outer: p.z,
                    inner: n,
                    len: fw,
                    src: [(kept - first) * fw, chunks * fw, every * fw],
                    dst: [kept / every * fw, count * fw, fw],
                };
                self.copy(sc.deltas.buffer(), states, b)?;
            }
        }
        Ok(())
    }
}

/// Sets a causal state to "no tokens": `S = 0`, `gamma = LOWEST`.
pub(super) fn record_reset(
    gpu: &Recording,
    pass: &mut wgpu::ComputePass<'_>,
    s: &GpuTensor,
    gamma: &GpuTensor,
) -> Result<()> {
    gpu.fill(pass, s.buffer(), s.len(), 0.0)?;
    gpu.fill(pass, gamma.buffer(), gamma.len(), LOWEST)
}
