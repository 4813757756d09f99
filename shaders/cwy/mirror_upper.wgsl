// P + P^T for P = striu(B) + diag(B) / 2 (docs/math.md §2.2): B on and above the diagonal, mirrored
// below it. One invocation per element of [batch, l, l].

@compute @workgroup_size(256)
fn mirror_upper(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let e = element_index(wg, nwg, lid, 256u);
    if (e >= p.count) { return; }
    let per = p.l * p.l;
    let first = (e / per) * per;
    let i = (e % per) / p.l;
    let j = e % p.l;
    out[e] = b[first + min(i, j) * p.l + max(i, j)];
}
