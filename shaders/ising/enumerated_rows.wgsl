// A small piece's log Z by enumeration (docs/math.md §6.5): row r < p.sets * p.states of energies
// holds the energies of the p.configs = 2^(n-1) configurations with spin 0 up (the coupling rows
// times the +-1 matrix of edge products). In place they become the configurations' probabilities
// given spin 0 up (the flipped half has the same), and piece_log_z[r] = log 2 + log sum exp. One
// workgroup per row, shifted by the row's maximum.

@compute @workgroup_size(REDUCE_GROUP)
fn enumerated_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let row = group_index(wg, nwg);
    if (row >= p.sets * p.states) { return; }
    let base = row * p.configs;
    var top = LOWEST;
    for (var c = lid; c < p.configs; c += REDUCE_GROUP) { top = max(top, energies[base + c]); }
    top = workgroup_reduce(top, lid, true);
    var sum = 0.0;
    for (var c = lid; c < p.configs; c += REDUCE_GROUP) { sum += exp(energies[base + c] - top); }
    sum = workgroup_reduce(sum, lid, false);
    for (var c = lid; c < p.configs; c += REDUCE_GROUP) { energies[base + c] = exp(energies[base + c] - top) / sum; }
    if (lid == 0u) { piece_log_z[row] = LN_2 + top + log(sum); }
}
