// The directional derivative along v of hidden_gradient's g = r w2 (1 - a^2):
// g'[t, s, i] = (rr w2 + r v2) (1 - a^2) - 2 r w2 a ra, with rr and ra the derivatives of r and a,
// and w2, v2 the output-weight blocks of task t's parameters and direction.

@compute @workgroup_size(256)
fn hidden_hvp(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let e = element_index(wg, nwg, lid, 256u);
    if (e >= p.tasks * p.points * p.hidden) { return; }
    let i = e % p.hidden;
    let ts = e / p.hidden;
    let t = ts / p.points;
    let w2 = phi[p.phi_off + t * p.params + 2u * p.hidden + i];
    let v2 = v[p.v_off + t * p.params + 2u * p.hidden + i];
    let h = a[e];
    g[e] = (rr[ts] * w2 + r[ts] * v2) * (1.0 - h * h) - 2.0 * r[ts] * w2 * h * ra[e];
}
