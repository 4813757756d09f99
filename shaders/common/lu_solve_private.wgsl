// `common/lu_solve` for small matrices: one invocation per column of B, no barriers (docs/math.md
// §7). Phase 0 copies the column with the row swaps applied, phase 1 runs forward substitution for
// rows first..last, phase 2 back substitution for steps first..last (row n - 1 - step).

@compute @workgroup_size(64)
fn lu_solve_private(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let e = element_index(wg, nwg, lid, 64u);
    if (e >= p.batch * p.columns) { return; }
    let n = p.n;
    let r = p.columns;
    let c = solve_column(e);
    let f = c.f;
    let xb = c.xb;
    if (p.phase == 0u) {
        for (var row = 0u; row < n; row++) {
            x[xb + row * r] = b[c.bb + row * r];
        }
        swap_rows(c);
    } else if (p.phase == 1u) {
        for (var row = p.first; row < p.last; row++) {
            var s = x[xb + row * r];
            for (var j = 0u; j < row; j++) {
                s -= factors[f + row * n + j] * x[xb + j * r];
            }
            x[xb + row * r] = s;
        }
    } else {
        for (var step = p.first; step < p.last; step++) {
            let row = n - 1u - step;
            var s = x[xb + row * r];
            for (var j = row + 1u; j < n; j++) {
                s -= factors[f + row * n + j] * x[xb + j * r];
            }
            x[xb + row * r] = s / factors[f + row * n + row];
        }
    }
}
