// One piece's conditional log Z folded into its parent (docs/math.md §6.5-6.6): piece_log_z holds
// per problem the Hadamard combinations sum_s h(t, s) log Z_contracted(s) (ising/separator_states),
// h(0, s) = 1 and h(t, s) = sigma_a(s) sigma_b(s) for separator pair t, and with
// l_s = log Z_contracted(s) + constant[s] - p.fixed over the S = p.states states,
// total[problem] += (1/S) sum_s l_s and the parent's coupling on pair t += (1/S) sum_s h(t, s) l_s
// (log Z_child(s) = A + sum over pairs of B_ab s_a s_b, solved through the Hadamard matrix h). One
// invocation per (problem, target t): 0 is log Z, 1..pairs the separator pairs.

@compute @workgroup_size(64)
fn glued_fold(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let e = element_index(wg, nwg, lid, 64u);
    let targets = 1u + p.pairs;
    if (e >= p.sets * targets) { return; }
    let problem = e / targets;
    let t = e % targets;
    var sum = piece_log_z[problem * p.states + t];
    for (var s = 0u; s < p.states; s += 1u) {
        sum += select(1.0, pair_sign(t, s), t > 0u) * (constant[problem * p.states + s] - p.fixed);
    }
    sum /= f32(p.states);
    if (t == 0u) {
        total[p.first + problem] += sum;
    } else {
        agg[problem * p.stride + pair_edge(t)] += sum;
    }
}
