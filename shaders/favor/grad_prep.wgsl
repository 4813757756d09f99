// The upstream gradient of random-feature attention folded with the forward's output and
// denominators (docs/math.md §1.4): for o_t = num_t / D_t and dA[t, j] = g_t . (v_j - o_t) / D_t,
//   gt[t] = [g_t / D_t | -(g_t . o_t) / D_t]          ([rows, dv + 1]),
// so that dPhi(Q) = gt S^T and Phi(Q)^T gt are GEMMs. Rows t < rows of each problem, from row
// `start` of the sequence; a vanishing denominator (output 0) passes no gradient.

@compute @workgroup_size(64)
fn grad_prep(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let e = element_index(wg, nwg, lid, 64u);
    if (e >= p.rows * p.problems) { return; }
    let z = e / p.rows;
    let t = e % p.rows;
    let dv = p.value_dim;
    let width = dv + 1u;
    let row = z * p.len + p.start + t;
    let scratch = (z * p.scratch_rows + t) * width;
    let d = den[row];
    let finite = (bitcast<u32>(d) & 0x7f800000u) != 0x7f800000u;
    let live = d != 0.0 && finite;
    var dot = 0.0;
    for (var c = 0u; c < dv; c++) {
        let g = grad[row * dv + c];
        var scaled = 0.0;
        if (live) {
            scaled = g / d;
            dot += g * out[row * dv + c] / d;
        }
        gt[scratch + c] = scaled;
    }
    gt[scratch + dv] = select(0.0, -dot, live);
}
