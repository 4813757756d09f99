// out = sigma(x) elementwise: the activation of the nested ODEtoODE state x' = sigma(W x).

struct Activate { count: u32, activation: u32, _pad0: u32, _pad1: u32 }

const TANH: u32 = 0u;
const RELU: u32 = 1u;

@group(0) @binding(0) var<uniform> p: Activate;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn activate(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let e = (wg.y * nwg.x + wg.x) * 256u + lid;
    if (e >= p.count) { return; }
    let v = x[e];
    var y = v;
    if (p.activation == TANH) { y = tanh(v); }
    if (p.activation == RELU) { y = max(v, 0.0); }
    out[e] = y;
}
