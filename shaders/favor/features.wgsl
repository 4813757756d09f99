// Stabilised random features (docs/math.md §1.3, §1.5) of the projections a[row, i] of the rows
// t < rows of each problem. Each row is scaled by its own positive factor: for queries it
// cancels in the output, for keys it is carried as the row's offset g_j (the decay exp(g_j - gamma)
// restores it later), so the constant m^(-1/2) and exp(-|q~|^2/2) are dropped:
//   softmax query and key: exp(a - max_i a)   (<= 1; for keys, exp(a - |k~|^2/2 - g_j) with
//                                               g_j = max_i a - |k~|^2/2, computed without it)
//   trig:          [cos a, sin a]              relu:        max(a, 0) + eps
// Every exponent is <= 0, so nothing overflows.

@compute @workgroup_size(REDUCE_GROUP)
fn features(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    // One workgroup per row, so that the row's index is worked out once, not per element (an
    // integer division costs a CPU adapter far more than the exp).
    let zt = group_index(wg, nwg);
    if (zt >= p.problems * p.rows) { return; }
    let row = (zt / p.rows) * p.scratch_rows + zt % p.rows;
    let shift = row_max[row];
    for (var i = lid; i < p.features; i += REDUCE_GROUP) {
        let ai = a[row * p.features + i];
        if (p.kernel == KERNEL_SOFTMAX) {
            phi[row * p.features + i] = exp(ai - shift);
        } else if (p.kernel == KERNEL_TRIG) {
            let out = row * 2u * p.features;
            phi[out + i] = cos(ai);
            phi[out + p.features + i] = sin(ai);
        } else {
            phi[row * p.features + i] = max(ai, 0.0) + p.eps;
        }
    }
}
