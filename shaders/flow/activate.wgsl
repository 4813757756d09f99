// out = sigma(x) elementwise: the activation of the nested ODEtoODE state x' = sigma(W x).

@compute @workgroup_size(256)
fn activate(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let e = element_index(wg, nwg, lid, 256u);
    if (e >= p.count) { return; }
    let v = x[e];
    var y = v;
    if (p.activation == ACT_TANH) { y = tanh(v); }
    if (p.activation == ACT_RELU) { y = max(v, 0.0); }
    out[e] = y;
}
