// The intra-chunk block of causal attention (docs/math.md §1.5): scores P[t, j] = phi^(q_t) . phi^(k_j)
// of one chunk become P[t, j] exp(g_j - gamma_t) for j <= t and 0 above the diagonal. The decay is
// evaluated only where j <= t (above it, exp(g_j - gamma_t) can overflow and 0 * inf is NaN), and
// rows past the sequence end are 0.

@compute @workgroup_size(256)
fn causal_mask(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let e = element_index(wg, nwg, lid, 256u);
    let per_chunk = p.chunk * p.chunk;
    if (e >= p.problems * p.chunks * per_chunk) { return; }
    let zc = e / per_chunk;
    let z = zc / p.chunks;
    let c = zc % p.chunks;
    let t = c * p.chunk + (e % per_chunk) / p.chunk;
    let j = c * p.chunk + e % p.chunk;
    var s = 0.0;
    if (j <= t && t < p.rows) {
        let first = z * p.scratch_rows;
        s = scores[e] * exp(offset[first + j] - gamma[first + t]);
    }
    scores[e] = s;
}
