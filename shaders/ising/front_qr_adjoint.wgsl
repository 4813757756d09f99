// Reverse-mode differentiation of `front_qr` (docs/math.md §6.6): the adjoint of log |det K| with
// respect to every entry of every front, one workgroup per (front of this level, coupling set
// p.first + wg.y), levels root first and a front's reflections last first. The CPU twin is
// `triangularise_adjoint` in `ortho_ref::ising::frontal_qr`.
//
// A front's adjoint block (at its adjoint offset) holds bar (rows x columns, column-major), then
// c and d (a word per column) and vbar (a word per row). The pass that holds a front's last
// reflection seeds bar: 1 / R_jj on the pivots, and the parent's bar where the parent took the
// block below the pivots. Undoing reflection j (its vector v, v.v = 2 h) for every later column:
// c = v.y = -v.y', d = v.ybar', y = y' + (c / h) v, ybar = ybar' - (d / h) v (columns by owner);
// vbar = -(sum_k c_k ybar'_k + sum_k d_k y'_k + v sum_k c_k d_k / h) / h (rows by owner); then
// xbar = vbar + sigmabar x / sigma, plus hbar sign sigma on the diagonal, with hbar = sum c d / h^2
// and sigmabar = hbar (2 sigma + |x_0|) - sign (bar_jj - vbar_j). Dispatches take the reflections
// step_last - 1 down to step_first, cut like `front_qr`'s.

// bar from its seeds: 1 / R_jj on the diagonal, the parent's adjoint on the block it assembled.
fn seed(bar: u32, front: Front, lid: u32) {
    let m = front.rows;
    let pivots = front.pivots;
    for (var i = lid; i < m * front.columns; i += FRONT_GROUP) { adjoint[bar + i] = 0.0; }
    storageBarrier();
    for (var j = lid; j < pivots; j += FRONT_GROUP) { adjoint[bar + j * m + j] = 1.0 / arena[front.base + j * m + j]; }
    let record = table[front.at + 9u];
    if (record != ROOT_FRONT) {
        let r = p.children_at + CHILD_WORDS * record;
        let parent_at = FRONT_WORDS * table[r + 7u];
        let parent_bar = front.problem * p.adjoint + table[parent_at + 8u];
        let parent_rows = table[parent_at + 1u];
        let rows = table[r + 3u];
        let first_row = table[r + 5u];
        let map = table[r + 6u];
        for (var i = lid; i < rows * table[r + 4u]; i += FRONT_GROUP) {
            let jc = i / rows;
            let to = bar + (pivots + jc) * m + pivots + i % rows;
            adjoint[to] = adjoint[parent_bar + table[map + jc] * parent_rows + first_row + i % rows];
        }
    }
    storageBarrier();
}

@compute @workgroup_size(FRONT_GROUP)
fn front_qr_adjoint(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let front = front_of(wg);
    let base = front.base;
    let m = front.rows;
    let n = front.columns;
    let pivots = front.pivots;
    let bar = front.problem * p.adjoint + table[front.at + 8u];
    let c_at = bar + m * n;
    let d_at = c_at + n;
    let vbar_at = d_at + n;
    let top = min(pivots, p.step_last);
    if (p.step_first >= top) { return; }
    if (top == pivots) { seed(bar, front, lid); }
    for (var t = top; t > p.step_first; t--) {
        let j = t - 1u;
        let col_j = base + j * m;
        let alpha = arena[col_j + j];
        let head = arena[base + m * n + j];
        let sigma = abs(alpha);
        let h = sigma * (sigma + abs(head));
        let v0 = head - alpha;
        let first = first_owned(j, lid);
        for (var k = first; k < n; k += FRONT_GROUP) {
            let col_k = base + k * m;
            let bar_k = bar + k * m;
            var vy = v0 * arena[col_k + j];
            var vb = v0 * adjoint[bar_k + j];
            for (var i = j + 1u; i < m; i++) {
                vy += arena[col_j + i] * arena[col_k + i];
                vb += arena[col_j + i] * adjoint[bar_k + i];
            }
            adjoint[c_at + k] = -vy;
            adjoint[d_at + k] = vb;
        }
        let bar_jj = adjoint[bar + j * m + j];
        storageBarrier();
        var cd = 0.0;
        for (var k = j + 1u; k < n; k++) { cd += adjoint[c_at + k] * adjoint[d_at + k]; }
        let first_row = j + (lid + FRONT_GROUP - j % FRONT_GROUP) % FRONT_GROUP;
        for (var i = first_row; i < m; i += FRONT_GROUP) {
            let v = select(arena[col_j + i], v0, i == j);
            var sum = v * cd / h;
            for (var k = j + 1u; k < n; k++) {
                sum += adjoint[bar + k * m + i] * adjoint[c_at + k] + arena[base + k * m + i] * adjoint[d_at + k];
            }
            adjoint[vbar_at + i] = -sum / h;
        }
        storageBarrier();
        for (var k = first; k < n; k += FRONT_GROUP) {
            let col_k = base + k * m;
            let bar_k = bar + k * m;
            let ck = adjoint[c_at + k] / h;
            let dk = adjoint[d_at + k] / h;
            arena[col_k + j] += ck * v0;
            adjoint[bar_k + j] -= dk * v0;
            for (var i = j + 1u; i < m; i++) {
                arena[col_k + i] += ck * arena[col_j + i];
                adjoint[bar_k + i] -= dk * arena[col_j + i];
            }
        }
        let hbar = cd / (h * h);
        let sign = select(-1.0, 1.0, head >= 0.0);
        let sigma_bar = hbar * (2.0 * sigma + abs(head)) - sign * (bar_jj - adjoint[vbar_at + j]);
        for (var i = first_row; i < m; i += FRONT_GROUP) {
            let x = select(arena[col_j + i], head, i == j);
            var x_bar = adjoint[vbar_at + i] + sigma_bar * x / sigma;
            if (i == j) { x_bar += hbar * sign * sigma; }
            adjoint[bar + j * m + i] = x_bar;
        }
        storageBarrier();
        if (lid == j % FRONT_GROUP) { arena[col_j + j] = head; }
        storageBarrier();
    }
}
