// The causal state across the chunks of a group (math.md §1.6), one invocation per element of the
// [f, dv + 1] state of a problem. In: deltas[c] = sum over chunk c of phi^(k_j) exp(g_j - gamma_end(c))
// [v_j | 1]. Out: deltas[c] = the state entering chunk c (relative to gamma_end(c - 1)), and `state`
// = the state after the group:
//   S_c = S_(c-1) exp(gamma_end(c - 1) - gamma_end(c)) + delta_c,   S_(-1) = state, gamma_end(-1) = before.

struct StateScan {
    rows: u32, problems: u32, scratch_rows: u32, width: u32,
    chunk: u32, chunks: u32, _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: StateScan;
@group(0) @binding(1) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read> before: array<f32>;
@group(0) @binding(3) var<storage, read_write> deltas: array<f32>;
@group(0) @binding(4) var<storage, read_write> state: array<f32>;

@compute @workgroup_size(256)
fn state_scan(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let e = (wg.y * nwg.x + wg.x) * 256u + lid;
    if (e >= p.problems * p.width) { return; }
    let z = e / p.width;
    let x = e % p.width;
    var s = state[e];
    var g = before[z];
    for (var c = 0u; c < p.chunks; c++) {
        let at = (z * p.chunks + c) * p.width + x;
        let delta = deltas[at];
        deltas[at] = s;
        let end = gamma[z * p.scratch_rows + min(c * p.chunk + p.chunk, p.rows) - 1u];
        s = s * exp(g - end) + delta;
        g = end;
    }
    state[e] = s;
}
