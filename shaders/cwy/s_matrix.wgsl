// S = striu(G) + diag(G) / 2 from the Gram matrix G = U^T U (docs/math.md §2.1), padded to `padded` rows
// and columns with the identity so that its inverse is blocked by powers of two; the inverse buffer
// is zeroed alongside. One invocation per element of the padded S.

@compute @workgroup_size(256)
fn s_matrix(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let e = element_index(wg, nwg, lid, 256u);
    let per = p.padded * p.padded;
    if (e >= p.batch * per) { return; }
    let z = e / per;
    let i = (e % per) / p.padded;
    let j = e % p.padded;
    var v = 0.0;
    if (i < p.l && j < p.l && i <= j) {
        v = gram[(z * p.l + i) * p.l + j];
        if (i == j) { v *= 0.5; }
    } else if (i == j) {
        v = 1.0;
    }
    s[e] = v;
    inverse[e] = 0.0;
}
