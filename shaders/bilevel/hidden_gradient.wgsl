// g[t, s, i] = r[t, s] w2[t, i] (1 - a[t, s, i]^2): the loss's gradient at the hidden
// pre-activations, w2 the output weights of task t's parameters (offset 2 hidden).

@compute @workgroup_size(256)
fn hidden_gradient(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let e = element_index(wg, nwg, lid, 256u);
    if (e >= p.tasks * p.points * p.hidden) { return; }
    let i = e % p.hidden;
    let ts = e / p.hidden;
    let t = ts / p.points;
    let w2 = phi[p.phi_off + t * p.params + 2u * p.hidden + i];
    let h = a[e];
    g[e] = r[ts] * w2 * (1.0 - h * h);
}
