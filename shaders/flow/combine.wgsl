// out = c0 x0 + c1 x1 + c2 x2 + c3 x3, elementwise over `count` values: copies and linear
// combinations of batched matrices (the stages of RKMK4).

@compute @workgroup_size(256)
fn combine(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let e = element_index(wg, nwg, lid, 256u);
    if (e >= p.count) { return; }
    var v = p.c.x * x0[e];
    if (p.c.y != 0.0) { v += p.c.y * x1[e]; }
    if (p.c.z != 0.0) { v += p.c.z * x2[e]; }
    if (p.c.w != 0.0) { v += p.c.w * x3[e]; }
    out[e] = v;
}
