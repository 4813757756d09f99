// The upstream gradient of random-feature attention folded with the forward's numerators
// (math.md §1.4): for o_t = num_t / D_t and dA[t, j] = g_t . (v_j - o_t) / D_t,
//   gt[t] = [g_t / D_t | -(g_t . o_t) / D_t]          ([rows, dv + 1]),
// so that dPhi(Q) = gt S^T and Phi(Q)^T gt are GEMMs. Rows with a vanishing denominator (output 0)
// pass no gradient.

struct GradPrep { rows: u32, value_dim: u32, _pad0: u32, _pad1: u32 }

@group(0) @binding(0) var<uniform> p: GradPrep;
@group(0) @binding(1) var<storage, read> num: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> gt: array<f32>;

@compute @workgroup_size(64)
fn grad_prep(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let row = (wg.y * nwg.x + wg.x) * 64u + lid;
    if (row >= p.rows) { return; }
    let dv = p.value_dim;
    let width = dv + 1u;
    let den = num[row * width + dv];
    let finite = (bitcast<u32>(den) & 0x7f800000u) != 0x7f800000u;
    let live = den != 0.0 && finite;
    var dot = 0.0;
    for (var c = 0u; c < dv; c++) {
        let g = grad[row * dv + c];
        var scaled = 0.0;
        if (live) {
            scaled = g / den;
            dot += g * num[row * width + c] / den;
        }
        gt[row * width + c] = scaled;
    }
    gt[row * width + dv] = select(0.0, -dot / den, live);
}
