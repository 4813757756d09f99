// One Householder reflection of the sequential product Q <- Q H(u_j) = Q - (Q u_j)(2 u_j^T / |u_j|^2)
// (the baseline that CWY must beat): one invocation per row of Q, each reading u_j whole. The first
// reflection starts from Q = I without reading Q.

@compute @workgroup_size(64)
fn householder(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let e = element_index(wg, nwg, lid, 64u);
    if (e >= p.batch * p.n) { return; }
    let z = e / p.n;
    let r = e % p.n;
    let col = z * p.n * p.l + p.column;
    let row = e * p.n;
    var dot = 0.0;
    var norm2 = 0.0;
    for (var c = 0u; c < p.n; c++) {
        let uc = u[col + c * p.l];
        norm2 += uc * uc;
        if (p.column == 0u) {
            dot += select(0.0, uc, c == r);
        } else {
            dot += q[row + c] * uc;
        }
    }
    let f = 2.0 * dot / norm2;
    for (var c = 0u; c < p.n; c++) {
        var qc = select(0.0, 1.0, c == r);
        if (p.column != 0u) { qc = q[row + c]; }
        q[row + c] = qc - f * u[col + c * p.l];
    }
}
