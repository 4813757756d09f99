// The causal state across the chunks of a group (docs/math.md §1.6), one invocation per element of the
// [f, dv + 1] state of a problem. gamma_end(c) is the prefix max at the last row of chunk c and
// gamma_end(-1) = before.
// Forward: in, deltas[c] = sum over chunk c of phi^(k_j) exp(g_j - gamma_end(c)) [v_j | 1]; out,
// deltas[c] = the state entering chunk c (relative to gamma_end(c - 1)), and `state` = the state
// after the group:
//   S_c = S_(c-1) exp(gamma_end(c - 1) - gamma_end(c)) + delta_c,   S_(-1) = state.
// Reverse (the backward pass's query state): in, deltas[c] = sum over chunk c of
// exp(gamma_end(c - 1) - gamma_t) phi^(q_t) gt_t^T; out, deltas[c] = the sum over every later chunk,
// relative to gamma_end(c), and `state` = the sum over the group and after it, relative to before:
//   R_(c-1) = delta_c + R_c exp(gamma_end(c - 1) - gamma_end(c)),   R_last = state.
// Every factor is <= 1. Forward scans restart from saved states where `every` > 0: the state
// entering chunk c is checkpoint (first_chunk + c) / every of the problem whenever c > 0 and
// first_chunk + c is a multiple of every (checkpoints [B*H, count, f, dv + 1]). The state of problem
// z starts at state_off + z * state_stride (a block of the features of a larger state).

// gamma_end(c) of problem z.
fn end_of(z: u32, c: u32) -> f32 {
    return gamma[z * p.scratch_rows + min(c * p.chunk + p.chunk, p.rows) - 1u];
}

@compute @workgroup_size(256)
fn state_scan(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let e = element_index(wg, nwg, lid, 256u);
    if (e >= p.problems * p.width) { return; }
    let z = e / p.width;
    let x = e % p.width;
    let held = p.state_off + z * p.state_stride + x;
    var s = state[held];
    if (p.reverse == 0u) {
        var g = before[z];
        for (var c = 0u; c < p.chunks; c++) {
            let at = (z * p.chunks + c) * p.width + x;
            let chunk = p.first_chunk + c;
            if (p.every > 0u && c > 0u && chunk % p.every == 0u) {
                s = checkpoints[(z * p.count + chunk / p.every) * p.width + x];
            }
            let delta = deltas[at];
            deltas[at] = s;
            let end = end_of(z, c);
            s = s * exp(g - end) + delta;
            g = end;
        }
    } else {
        for (var i = 0u; i < p.chunks; i++) {
            let c = p.chunks - 1u - i;
            let at = (z * p.chunks + c) * p.width + x;
            let delta = deltas[at];
            deltas[at] = s;
            var prev = before[z];
            if (c > 0u) { prev = end_of(z, c - 1u); }
            s = delta + s * exp(prev - end_of(z, c));
        }
    }
    state[held] = s;
}
