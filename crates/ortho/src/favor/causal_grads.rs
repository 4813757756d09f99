//! Gradients of causal attention (docs/math.md §1.5-1.6): the groups of a backward pass, walked
//! from checkpoints or in two sweeps (dq forward, dk and dv backward), over a whole sequence or one
//! direction of one segment of it (`segments.rs`).

use super::backward::Backward;
use super::*;

/// Which gradients one walk over a group (or a backward recording) produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
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

impl Recorder<'_, '_, '_> {
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
        direction: Direction,
    ) -> Result<()> {
        let (queries, keys) = (direction != Direction::Keys, direction != Direction::Queries);
        self.features(sc, io, io.q, sc.phi_q.buffer(), false, start, rows)?;
        self.features(sc, io, io.k, sc.phi_k.buffer(), true, start, rows)?;
        self.grad_prep(bw, start, rows)?;
        let ops = GroupOperands::new(self.plan, sc, io, bw, start, rows);
        self.intra_chunk_grads(sc, bw, &ops, rows, queries, keys)?;
        let decayed = bw.phi_k_decayed.buffer();
        let all = ops.p.z * ops.p.scratch_rows() * ops.p.f;
        self.copy(sc.phi_k.buffer(), decayed, Blocks { outer: 1, inner: 1, len: all, src: [0; 3], dst: [0; 3] })?;
        if queries {
            let restart = if direction == Direction::Both { bw.checkpoints } else { None };
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
        self.scan_states(sc, bw.query_deltas.buffer(), bw.r, start, rows, true, None)?;
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
}

impl Recorder<'_, '_, '_> {
    /// Sets the carried prefix max to its saved value before row `start`: at 0, "no tokens", or the
    /// last of the previous segment's.
    fn load_gamma(&mut self, saved: &wgpu::Buffer, io: &Io, bw: &Backward, start: usize) -> Result<()> {
        let p = self.plan;
        let (saved, start, len) = match (start, bw.previous_gamma) {
            (0, None) => return self.gpu.fill(self.pass, io.state_gamma, p.z, LOWEST),
            (0, Some(previous)) => (previous.buffer(), previous.shape()[1], previous.shape()[1]),
            _ => (saved, start, p.l),
        };
        self.copy(
            saved,
            io.state_gamma,
            Blocks { outer: p.z, inner: 1, len: 1, src: [start - 1, len, 0], dst: [0, 1, 0] },
        )
    }

    /// The causal backward pass over every group (see [`Engine::favor_backward_gpu`]), or the
    /// `direction` of a segment of it: dq in a forward sweep, from the carried state; dk and dv in a
    /// reverse sweep, from the carried `R`.
    pub(super) fn causal_backward(
        &mut self,
        sc: &Scratch,
        io: &Io,
        bw: &Backward,
        saved: &FavorSaved,
        direction: Direction,
    ) -> Result<()> {
        let plan = self.plan;
        let group = plan.scratch_rows();
        let starts: Vec<usize> = (0..plan.l).step_by(group).collect();
        let rows = |start: usize| group.min(plan.l - start);
        let gammas = saved.gamma.as_ref().map(|g| g.buffer()).expect("causal forward passes keep gamma");
        if let (Direction::Both, Some(states)) = (direction, &saved.checkpoints) {
            // Groups of whole checkpoint intervals, last first, each from the checkpoint at its start.
            let (fw, count) = (plan.f * plan.width(), states.shape()[1]);
            let every = bw.checkpoints.map_or(1, |c| c.every);
            for &start in starts.iter().rev() {
                let at = start / plan.chunk / every * fw;
                let load = Blocks { outer: plan.z, inner: 1, len: fw, src: [at, count * fw, 0], dst: [0, fw, 0] };
                self.copy(states.buffer(), io.state_s, load)?;
                self.load_gamma(gammas, io, bw, start)?;
                self.causal_backward_group(sc, io, bw, start, rows(start), Direction::Both)?;
            }
            return Ok(());
        }
        for &start in starts.iter().filter(|_| direction != Direction::Keys) {
            self.causal_backward_group(sc, io, bw, start, rows(start), Direction::Queries)?;
        }
        for &start in starts.iter().rev().filter(|_| direction != Direction::Queries) {
            self.load_gamma(gammas, io, bw, start)?;
            self.causal_backward_group(sc, io, bw, start, rows(start), Direction::Keys)?;
        }
        Ok(())
    }
}
