// The second half of a split product (gemm.wgsl with splits > 1): C[z](i, j) = the sum of the
// `splits` partial products of batch z, stored [batch * splits, m, n], + beta * C[z](i, j) + diag * (i == j).

@compute @workgroup_size(256)
fn gemm_sum(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let e = element_index(wg, nwg, lid, 256u);
    let mn = p.m * p.n;
    if (e >= mn * p.batch) { return; }
    let z = e / mn;
    let i = e % mn / p.n;
    let j = e % p.n;
    var sum = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        sum += partials[(z * p.splits + s) * mn + e % mn];
    }
    let at = base(p.c, z) + i * p.c.rs + j * p.c.cs;
    if (p.beta != 0.0) { sum += p.beta * c[at]; }
    if (i == j) { sum += p.diag; }
    c[at] = sum;
}
