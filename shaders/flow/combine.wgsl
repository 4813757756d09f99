// out = c0 x0 + c1 x1 + c2 x2 + c3 x3, elementwise over `count` values: copies and linear
// combinations of batched matrices (the stages of RKMK4).

struct Combine { count: u32, _pad0: u32, _pad1: u32, _pad2: u32, c: vec4<f32> }

@group(0) @binding(0) var<uniform> p: Combine;
@group(0) @binding(1) var<storage, read> x0: array<f32>;
@group(0) @binding(2) var<storage, read> x1: array<f32>;
@group(0) @binding(3) var<storage, read> x2: array<f32>;
@group(0) @binding(4) var<storage, read> x3: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn combine(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let e = (wg.y * nwg.x + wg.x) * 256u + lid;
    if (e >= p.count) { return; }
    var v = p.c.x * x0[e];
    if (p.c.y != 0.0) { v += p.c.y * x1[e]; }
    if (p.c.z != 0.0) { v += p.c.z * x2[e]; }
    if (p.c.w != 0.0) { v += p.c.w * x3[e]; }
    out[e] = v;
}
