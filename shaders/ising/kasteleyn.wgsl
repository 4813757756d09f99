// The scaled Kasteleyn matrix of one component for coupling sets first..first + batch (docs/math.md
// §6.2), into a zeroed [batch, order, order] buffer, one invocation per (problem, entry). An entry is
// (row, col, ja, jb, kind) with `kasteleyn_entry`'s kinds 0, 1, 2; K[col][row] = -K[row][col].
// Positions never repeat.

@compute @workgroup_size(256)
fn kasteleyn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let e = element_index(wg, nwg, lid, 256u);
    if (e >= p.batch * p.entries) { return; }
    let problem = e / p.entries;
    let at = 5u * (e % p.entries);
    let row = entries[at];
    let col = entries[at + 1u];
    let value = kasteleyn_entry(problem, entries[at + 2u], entries[at + 3u], entries[at + 4u]);
    let base = problem * p.order * p.order;
    k[base + row * p.order + col] = value;
    k[base + col * p.order + row] = -value;
}
