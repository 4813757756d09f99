// One Adam step on x with gradient g and moments m, v (docs/math.md §9.3); c1 = 1 - beta1^t and
// c2 = 1 - beta2^t are the step's bias corrections.

@compute @workgroup_size(256)
fn adam(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let e = element_index(wg, nwg, lid, 256u);
    if (e >= p.count) { return; }
    let ge = g[e];
    let me = p.beta1 * m[e] + (1.0 - p.beta1) * ge;
    let ve = p.beta2 * v[e] + (1.0 - p.beta2) * ge * ge;
    m[e] = me;
    v[e] = ve;
    x[e] -= p.lr * (me / p.c1) / (sqrt(ve / p.c2) + p.eps);
}
