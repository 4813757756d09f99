// Scales the feature rows of a chunked sequence by their decay (docs/math.md §1.5-1.6), in place, one
// invocation per feature. Rows are in chunks of `chunk`; gamma is the prefix max of the key offsets
// g, `before` the prefix max carried in from earlier calls or groups.
//   QUERY (the inter-chunk term): row t of chunk c times exp(gamma_end(c - 1) - gamma_t);
//   KEY (the chunk's state delta): row j of chunk c times exp(g_j - gamma_end(c)),
// where gamma_end(c) is the prefix max at the last row of chunk c and gamma_end(-1) = before.
// Every factor is <= 1. Rows past `rows` (the padding of the last chunk) become 0.

@compute @workgroup_size(256)
fn row_scale(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let e = element_index(wg, nwg, lid, 256u);
    if (e >= p.problems * p.scratch_rows * p.width) { return; }
    let zt = e / p.width;
    let z = zt / p.scratch_rows;
    let t = zt % p.scratch_rows;
    if (t >= p.rows) {
        phi[e] = 0.0;
        return;
    }
    let first = z * p.scratch_rows;
    let c = t / p.chunk;
    var factor: f32;
    if (p.is_key != 0u) {
        let end = min(c * p.chunk + p.chunk, p.rows) - 1u;
        factor = exp(offset[first + t] - gamma[first + end]);
    } else {
        var prev = before[z];
        if (c > 0u) { prev = gamma[first + c * p.chunk - 1u]; }
        factor = exp(prev - gamma[first + t]);
    }
    phi[e] *= factor;
}
