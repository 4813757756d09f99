// The scaled Kasteleyn matrix of one component for coupling sets first..first + batch (docs/math.md
// §6.2), into a zeroed [batch, order, order] buffer, one invocation per (problem, entry). An entry is
// (row, col, ja, jb, kind): kind 0 an intra edge, exp(-(J[ja] + J[jb]) / 2); kind 1 or 2 the external
// edge, +exp(J[ja]) or -exp(J[ja]); index NO_EDGE a zero coupling (an edge the triangulation added).
// K[col][row] = -K[row][col]. Positions never repeat.

fn coupling(problem: u32, index: u32) -> f32 {
    if (index == NO_EDGE) { return 0.0; }
    return couplings[(p.first + problem) * p.edges + index];
}

@compute @workgroup_size(256)
fn kasteleyn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let e = element_index(wg, nwg, lid, 256u);
    if (e >= p.batch * p.entries) { return; }
    let problem = e / p.entries;
    let at = 5u * (e % p.entries);
    let row = entries[at];
    let col = entries[at + 1u];
    let kind = entries[at + 4u];
    var value: f32;
    if (kind == 0u) {
        value = exp(-0.5 * (coupling(problem, entries[at + 2u]) + coupling(problem, entries[at + 3u])));
    } else {
        value = exp(coupling(problem, entries[at + 2u]));
        if (kind == 2u) { value = -value; }
    }
    let base = problem * p.order * p.order;
    k[base + row * p.order + col] = value;
    k[base + col * p.order + row] = -value;
}
