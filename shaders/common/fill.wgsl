// values[off .. off + count] = value.

struct Fill { count: u32, off: u32, value: f32, _pad: u32 }

@group(0) @binding(0) var<uniform> p: Fill;
@group(0) @binding(1) var<storage, read_write> values: array<f32>;

@compute @workgroup_size(256)
fn fill(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let e = (wg.y * nwg.x + wg.x) * 256u + lid;
    if (e < p.count) { values[p.off + e] = p.value; }
}
