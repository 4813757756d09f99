// Multifrontal Householder QR of scaled Kasteleyn matrices (docs/math.md §6.6), one workgroup per
// (front of this level, coupling set p.first + wg.y). Assemble the front (column-major in the set's
// arena) from K's entries and its children's blocks, reflect its pivot columns one by one, and write
// sum log |R_jj| to slots[set][front]. Each reflection leaves R_jj on the diagonal, its vector below
// it and its column's first entry before it in the heads after the front (`front_qr_adjoint` needs
// them). The CPU twin is `ortho_ref::ising::frontal_qr`.
//
// `table` (u32): per front (FRONT_WORDS at FRONT_WORDS * front) its arena offset, rows, columns,
// pivots, first entry, entries, first child, children, adjoint offset and its own child record; per
// entry (ENTRY_WORDS at entries_at) row, column, ja, jb, kind (`kasteleyn_entry`); per child
// (CHILD_WORDS at children_at) its arena offset, rows, pivots, block rows and columns, first row in
// the parent, where its column map starts in `table`, and its parent.
//
// Column k belongs to invocation k % FRONT_GROUP throughout, so a column is only ever written by
// its owner; the owner of column j + 1 measures it for the next reflection as soon as it is updated.
// A dispatch takes the reflections step_first..step_last (llvmpipe ends an invocation's loops after
// 65,535 iterations in all; the engine cuts the steps to fit); the first also assembles the front.

var<workgroup> next_scale: f32;
var<workgroup> next_sum: f32;
var<workgroup> next_head: f32;

// The largest magnitude of column `col`'s rows top..m and the sum of squares scaled by it (entries
// up to exp(|J|) must not overflow when squared), and its row `top`.
fn measure(col: u32, top: u32, m: u32) {
    var scale = 0.0;
    for (var i = top; i < m; i++) { scale = max(scale, abs(arena[col + i])); }
    var sum = 0.0;
    if (scale > 0.0) {
        for (var i = top; i < m; i++) { let x = arena[col + i] / scale; sum += x * x; }
    }
    next_scale = scale;
    next_sum = sum;
    next_head = arena[col + top];
}

// The front from K's entries (its rows of K) and its children's blocks; zero elsewhere.
fn assemble(front: Front, lid: u32) {
    let at = front.at;
    let base = front.base;
    let m = front.rows;
    for (var i = lid; i < m * front.columns; i += FRONT_GROUP) { arena[base + i] = 0.0; }
    storageBarrier();
    for (var e = table[at + 4u] + lid; e < table[at + 4u] + table[at + 5u]; e += FRONT_GROUP) {
        let r = p.entries_at + ENTRY_WORDS * e;
        let value = kasteleyn_entry(front.problem, table[r + 2u], table[r + 3u], table[r + 4u]);
        arena[base + table[r + 1u] * m + table[r]] = value;
    }
    for (var c = table[at + 6u]; c < table[at + 6u] + table[at + 7u]; c++) {
        let r = p.children_at + CHILD_WORDS * c;
        let child = front.problem * p.arena + table[r];
        let child_rows = table[r + 1u];
        let child_pivots = table[r + 2u];
        let rows = table[r + 3u];
        let first_row = table[r + 5u];
        let map = table[r + 6u];
        // The child's rows and columns past its pivots.
        for (var i = lid; i < rows * table[r + 4u]; i += FRONT_GROUP) {
            let jc = i / rows;
            let source = child + (child_pivots + jc) * child_rows + child_pivots + i % rows;
            arena[base + table[map + jc] * m + first_row + i % rows] = arena[source];
        }
    }
    storageBarrier();
}

@compute @workgroup_size(FRONT_GROUP)
fn front_qr(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let front = front_of(wg);
    let base = front.base;
    let m = front.rows;
    let n = front.columns;
    let steps = min(front.pivots, p.step_last);
    if (p.step_first >= steps) { return; }
    if (p.step_first == 0u) { assemble(front, lid); }
    if (lid == 0u) { measure(base + p.step_first * m, p.step_first, m); }
    workgroupBarrier();
    var log_det = 0.0;
    for (var j = p.step_first; j < steps; j++) {
        let sigma = next_scale * sqrt(next_sum);
        let head = next_head;
        workgroupBarrier();
        // alpha = -sign(head) sigma, so v0 = head - alpha adds magnitudes and v.v / 2 =
        // sigma (sigma + |head|) never cancels; v below the diagonal is column j itself.
        let alpha = select(sigma, -sigma, head >= 0.0);
        let v0 = head - alpha;
        log_det += log(abs(alpha));
        let col_j = base + j * m;
        for (var k = first_owned(j, lid); k < n; k += FRONT_GROUP) {
            let col_k = base + k * m;
            if (sigma > 0.0) {
                var w = v0 * arena[col_k + j];
                for (var i = j + 1u; i < m; i++) { w += arena[col_j + i] * arena[col_k + i]; }
                let s = (w / sigma) / (sigma + abs(head));
                arena[col_k + j] -= s * v0;
                for (var i = j + 1u; i < m; i++) { arena[col_k + i] -= s * arena[col_j + i]; }
            }
            if (k == j + 1u && k < steps) { measure(col_k, k, m); }
        }
        if (lid == j % FRONT_GROUP) {
            arena[col_j + j] = alpha;
            arena[base + m * n + j] = head;
        }
        storageBarrier();
        workgroupBarrier();
    }
    let slot = front.problem * p.fronts + p.level_first + wg.x;
    if (lid == 0u) { slots[slot] = select(slots[slot], 0.0, p.step_first == 0u) + log_det; }
}
