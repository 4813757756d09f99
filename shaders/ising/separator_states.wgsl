// A piece's values per separator state, turned in place into their Hadamard combinations (docs/math.md
// §6.6): values[(problem * S + t) * p.width + w] <- sum over states s of h(t, s) values[(problem * S +
// s) * p.width + w], h(0, s) = 1 and h(t, s) = sigma_a(s) sigma_b(s) for separator pair t. Summed in
// state order, a column equal in every state (a front the flipped couplings do not reach) gives
// exactly 0 in rows t > 0, so the fold's differences of conditional log Z keep only the fronts that
// differ. One invocation per (problem, column).

@compute @workgroup_size(256)
fn separator_states(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let e = element_index(wg, nwg, lid, 256u);
    if (e >= p.sets * p.width) { return; }
    let base = (e / p.width) * p.states * p.width + e % p.width;
    var v: array<f32, 4>;
    for (var s = 0u; s < p.states; s += 1u) { v[s] = values[base + s * p.width]; }
    for (var t = 0u; t < p.states; t += 1u) {
        var sum = 0.0;
        for (var s = 0u; s < p.states; s += 1u) { sum += select(1.0, pair_sign(t, s), t > 0u) * v[s]; }
        values[base + t * p.width] = sum;
    }
}
