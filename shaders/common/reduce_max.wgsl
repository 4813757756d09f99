// Segmented maximum: out[z] = max(in[z * len .. (z + 1) * len]), one workgroup per segment.

struct Reduce { len: u32, segments: u32, _pad0: u32, _pad1: u32 }

@group(0) @binding(0) var<uniform> p: Reduce;
@group(0) @binding(1) var<storage, read> values: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const GROUP: u32 = 256u;
// The most negative finite f32: the identity of max over finite values.
const LOWEST: f32 = -3.4028234663852886e38;
var<workgroup> partial: array<f32, GROUP>;

@compute @workgroup_size(256)
fn reduce_max(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let z = wg.y * nwg.x + wg.x;
    var best = LOWEST;
    if (z < p.segments) {
        for (var t = lid; t < p.len; t += GROUP) {
            best = max(best, values[z * p.len + t]);
        }
    }
    partial[lid] = best;
    workgroupBarrier();
    for (var stride = GROUP / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            partial[lid] = max(partial[lid], partial[lid + stride]);
        }
        workgroupBarrier();
    }
    if (lid == 0u && z < p.segments) {
        out[z] = partial[0];
    }
}
