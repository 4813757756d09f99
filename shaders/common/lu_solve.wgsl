// X = A^-1 B from the factors of `common/lu`, one workgroup per column of B (docs/math.md §7);
// B is [batch, n, r], or [n, r] shared by every matrix.
// Phase 0 copies the column with the row swaps applied; phase 1 runs forward substitution with the
// unit lower factor, phase 2 back substitution with the upper one, column by column (`x_j` is final,
// every later (earlier) row takes its share), over j in first..last; the host splits the phases so
// that no invocation passes llvmpipe's cap on loop iterations.

const SOLVE_GROUP: u32 = 64u;

@compute @workgroup_size(64)
fn lu_solve(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let e = group_index(wg, nwg);
    if (e >= p.batch * p.columns) { return; }
    let n = p.n;
    let r = p.columns;
    let c = solve_column(e);
    let f = c.f;
    let xb = c.xb;
    if (p.phase == 0u) {
        for (var row = lid; row < n; row += SOLVE_GROUP) {
            x[xb + row * r] = b[c.bb + row * r];
        }
        storageBarrier();
        if (lid == 0u) { swap_rows(c); }
    } else if (p.phase == 1u) {
        for (var j = p.first; j < p.last; j++) {
            let xj = x[xb + j * r];
            for (var i = j + 1u + lid; i < n; i += SOLVE_GROUP) {
                x[xb + i * r] -= factors[f + i * n + j] * xj;
            }
            storageBarrier();
        }
    } else {
        for (var step = p.first; step < p.last; step++) {
            let j = n - 1u - step;
            let xj = x[xb + j * r] / factors[f + j * n + j];
            storageBarrier();
            if (lid == 0u) { x[xb + j * r] = xj; }
            for (var i = lid; i < j; i += SOLVE_GROUP) {
                x[xb + i * r] -= factors[f + i * n + j] * xj;
            }
            storageBarrier();
        }
    }
}
