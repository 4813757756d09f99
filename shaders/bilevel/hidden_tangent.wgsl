// ra = (1 - a^2) ra elementwise: the directional derivative of the hidden activations a = tanh(z)
// along v, from that of z (held in ra).

@compute @workgroup_size(256)
fn hidden_tangent(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let e = element_index(wg, nwg, lid, 256u);
    if (e >= p.tasks * p.points * p.hidden) { return; }
    let h = a[e];
    ra[e] = (1.0 - h * h) * ra[e];
}
