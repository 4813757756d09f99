//! The kernels of one group of rows, recorded into a compute pass.

use super::*;

impl Recorder<'_, '_, '_> {
    pub(super) fn run(
        &mut self,
        name: &str,
        params: &[u8],
        buffers: &[&wgpu::Buffer],
        invocations: usize,
        group: u32,
    ) -> Result<()> {
        dispatch(
            &self.gpu.device,
            &self.gpu.pipelines,
            self.pass,
            name,
            params,
            buffers,
            grid(invocations as u64, group)?,
        )
    }

    /// A row kernel whose uniform block is `(rows, problems, scratch rows, extra...)`, one invocation
    /// per element of `invocations`.
    pub(super) fn rows_kernel(
        &mut self,
        name: &str,
        rows: usize,
        extra: [u32; 5],
        buffers: &[&wgpu::Buffer],
        n: usize,
    ) -> Result<()> {
        let p = self.plan;
        let [a, b, c, d, e] = extra;
        let params = RowParams([rows as u32, p.z as u32, p.scratch_rows() as u32, a, b, c, d, e]);
        self.run(name, bytemuck::bytes_of(&params), buffers, n, 256)
    }

    pub(super) fn gemm(&mut self, g: &Gemm, a: Operand, b: Operand, c: Operand) -> Result<()> {
        record_gemm(self.gpu, self.pass, g, a, b, c)
    }

    /// Projections, row statistics and features of `rows` rows from `start` of `x` (queries or keys)
    /// into `phi`; keys leave their offsets g_j in `offset`.
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
        let p = self.plan;
        let sr = p.scratch_rows();
        self.project(sc, io, x, start, rows)?;
        let kind = match (self.kernel, is_key) {
            (Kernel::Softmax, false) => QUERY_MAX,
            (Kernel::Softmax, true) => KEY_MAX,
            (Kernel::Trig, true) => HALF_SQ,
            _ => ZERO,
        };
        let stats = RowStatsParams {
            rows: rows as u32,
            problems: p.z as u32,
            scratch_rows: sr as u32,
            dim: p.d as u32,
            features: p.m as u32,
            kind,
            x_off: (start * p.d) as u32,
            x_stride: (p.l * p.d) as u32,
        };
        let bufs = [x, sc.a.buffer(), sc.half_sq.buffer(), sc.offset.buffer()];
        self.run("favor/row_stats", bytemuck::bytes_of(&stats), &bufs, p.z * rows, 64)?;
        if is_key {
            // gamma_t = max(carried, g_0..=t): the prefix max of the key offsets.
            let scan = ScanParams { rows: rows as u32, problems: p.z as u32, row_stride: sr as u32, _pad: 0 };
            let bufs = [sc.offset.buffer(), sc.gamma.buffer(), sc.before.buffer(), io.state_gamma];
            self.run("common/scan_max", bytemuck::bytes_of(&scan), &bufs, p.z, 1)?;
        }
        let (code, eps) = kernel_code(self.kernel);
        let bufs = [sc.a.buffer(), sc.half_sq.buffer(), sc.offset.buffer(), phi];
        let extra = [p.m as u32, code, is_key as u32, eps.to_bits(), 0];
        self.rows_kernel("favor/features", rows, extra, &bufs, p.z * rows * p.m)
    }

    /// `a = x~ W^T` for `rows` rows from `start` of `x`, with `x~ = x d^(-1/4)`.
    pub(super) fn project(&mut self, sc: &Scratch, io: &Io, x: &wgpu::Buffer, start: usize, rows: usize) -> Result<()> {
        let p = self.plan;
        let project = Gemm { alpha: (p.d as f32).powf(-0.25), ..Gemm::new(p.z, rows, p.m, p.d) };
        let a = Operand::rows(sc.a.buffer(), p.scratch_rows(), p.m);
        self.gemm(&project, Operand::rows(x, p.l, p.d).at(start * p.d), io.w, a)
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
        let extra = [width as u32, p.chunk as u32, is_key as u32, 0, 0];
        self.rows_kernel("favor/row_scale", rows, extra, &bufs, p.z * p.scratch_rows() * width)
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
        let (first, reverse) = (start / p.chunk, reverse as usize);
        let params = words([rows, p.z, p.scratch_rows(), width, p.chunk, chunks, reverse, every, first, count, 0, 0]);
        let bufs = [sc.gamma.buffer(), sc.before.buffer(), saved, deltas, state];
        self.run("favor/state_scan", bytemuck::cast_slice(&params), &bufs, p.z * width, 256)
    }

    pub(super) fn normalize(&mut self, sc: &Scratch, io: &Io, start: usize, rows: usize) -> Result<()> {
        let p = self.plan;
        let extra = [p.dv as u32, (start * p.dv) as u32, (p.l * p.dv) as u32, 0, 0];
        self.rows_kernel("favor/normalize", rows, extra, &[sc.num.buffer(), io.out], p.z * rows * p.dv)
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
        let bufs = [sc.offset.buffer(), sc.gamma.buffer(), sc.scores.buffer()];
        self.rows_kernel("favor/causal_mask", rows, [c as u32, chunks as u32, 0, 0, 0], &bufs, p.z * chunks * c * c)?;
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
        ];
        if p.z > 65_535 {
            return Err(Error::Limit {
                what: format!("the sequential schedule over {} problems", p.z),
                needed: p.z as u64,
                limit_name: "65,535 workgroups",
                limit: 65_535,
            });
        }
        for first in (0..chunks).step_by(WALK_CHUNKS_PER_DISPATCH) {
            let count = WALK_CHUNKS_PER_DISPATCH.min(chunks - first);
            let params = words([rows, p.z, p.scratch_rows(), p.f, p.dv, p.chunk, first, count, p.l, start, 0, 0]);
            let groups = [p.width().div_ceil(WALK_TILE) as u32, p.z as u32, 1];
            dispatch(
                &self.gpu.device,
                &self.gpu.pipelines,
                self.pass,
                "favor/state_walk",
                bytemuck::cast_slice(&params),
                &bufs,
                groups,
            )?;
        }
        Ok(())
    }

    /// Bidirectional: fold every key group into the state, then answer every query group from it.
    pub(super) fn bidirectional(&mut self, sc: &Scratch, io: &Io, keep: Option<&Keep>) -> Result<()> {
        let p = self.plan;
        for start in (0..p.l).step_by(p.chunk) {
            let rows = p.chunk.min(p.l - start);
            self.features(sc, io, io.k, sc.phi_k.buffer(), true, start, rows)?;
            self.fold_keys(sc, io, sc.phi_k.buffer(), start, rows, None)?;
        }
        for start in (0..p.l).step_by(p.chunk) {
            let rows = p.chunk.min(p.l - start);
            self.features(sc, io, io.q, sc.phi_q.buffer(), false, start, rows)?;
            let g = Gemm::new(p.z, rows, p.width(), p.f);
            let a = Operand::rows(sc.phi_q.buffer(), p.scratch_rows(), p.f);
            let b = Operand::rows(io.state_s, p.f, p.width());
            self.gemm(&g, a, b, Operand::rows(sc.num.buffer(), p.scratch_rows(), p.width()))?;
            self.normalize(sc, io, start, rows)?;
            if let Some(keep) = keep {
                self.keep(sc, keep, start, rows)?;
            }
        }
        Ok(())
    }

    pub(super) fn copy(&mut self, src: &wgpu::Buffer, dst: &wgpu::Buffer, b: Blocks) -> Result<()> {
        record_copy(self.gpu, self.pass, src, dst, b)
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

pub(super) fn record_copy(
    gpu: &Gpu,
    pass: &mut wgpu::ComputePass<'_>,
    src: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    b: Blocks,
) -> Result<()> {
    let params = words([b.outer, b.inner, b.len, b.src[0], b.src[1], b.src[2], b.dst[0], b.dst[1], b.dst[2], 0, 0, 0]);
    let n = (b.outer * b.inner * b.len) as u64;
    dispatch(
        &gpu.device,
        &gpu.pipelines,
        pass,
        "common/copy",
        bytemuck::cast_slice(&params),
        &[src, dst],
        grid(n, 256)?,
    )
}

/// Sets a causal state to "no tokens": `S = 0`, `gamma = LOWEST`.
pub(super) fn record_reset(
    gpu: &Gpu,
    pass: &mut wgpu::ComputePass<'_>,
    s: &GpuTensor,
    gamma: &GpuTensor,
) -> Result<()> {
    record_fill(gpu, pass, s.buffer(), s.len(), 0.0)?;
    record_fill(gpu, pass, gamma.buffer(), gamma.len(), LOWEST)
}

pub(super) fn record_fill(
    gpu: &Gpu,
    pass: &mut wgpu::ComputePass<'_>,
    buffer: &wgpu::Buffer,
    count: usize,
    value: f32,
) -> Result<()> {
    let params = FillParams { count: count as u32, off: 0, value, _pad: 0 };
    let groups = grid(count as u64, 256)?;
    dispatch(&gpu.device, &gpu.pipelines, pass, "common/fill", bytemuck::bytes_of(&params), &[buffer], groups)
}
