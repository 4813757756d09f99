// Stabilised random features (math.md §1.3, §1.5), one invocation per projection a[row, i].
// Per-row positive factors on queries and one shared factor on all keys of a problem cancel in the
// output, so the constant m^(-1/2) and the query's own exp(-|q~|^2/2) are dropped:
//   softmax, query: exp(a - max_i a)                      (<= 1)
//   softmax, key:   exp(a - |k~|^2/2 - gamma[z])          (gamma = max over the problem's keys)
//   trig, query:    [cos a, sin a]
//   trig, key:      exp(|k~|^2/2 - gamma[z]) [cos a, sin a]
//   relu:           max(a, 0) + eps
// Every exponent is <= 0, so nothing overflows.

struct Features { rows: u32, len: u32, features: u32, kernel: u32, is_key: u32, eps: f32, _pad0: u32, _pad1: u32 }

const SOFTMAX: u32 = 0u;
const TRIG: u32 = 1u;

@group(0) @binding(0) var<uniform> p: Features;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> half_sq: array<f32>;
@group(0) @binding(3) var<storage, read> row_max: array<f32>;
@group(0) @binding(4) var<storage, read> gamma: array<f32>;
@group(0) @binding(5) var<storage, read_write> phi: array<f32>;

@compute @workgroup_size(256)
fn features(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let e = (wg.y * nwg.x + wg.x) * 256u + lid;
    if (e >= p.rows * p.features) { return; }
    let row = e / p.features;
    let i = e % p.features;
    let ai = a[e];
    let z = row / p.len;
    if (p.kernel == SOFTMAX) {
        var offset = row_max[row];
        if (p.is_key != 0u) { offset = half_sq[row] + gamma[z]; }
        phi[e] = exp(ai - offset);
    } else if (p.kernel == TRIG) {
        var scale = 1.0;
        if (p.is_key != 0u) { scale = exp(half_sq[row] - gamma[z]); }
        let out = row * 2u * p.features;
        phi[out + i] = scale * cos(ai);
        phi[out + p.features + i] = scale * sin(ai);
    } else {
        phi[e] = max(ai, 0.0) + p.eps;
    }
}
