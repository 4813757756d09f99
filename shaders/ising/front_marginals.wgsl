// E[s_u s_v] = d log Z / d J_i from the adjoint of `front_qr_adjoint` (docs/math.md §6.6), one
// invocation per (coupling set p.first + problem, pair with a graph edge): the sum over the pair's
// terms of coefficient * bar * K entry, 1/2 for its two external entries and -1/4 for the intra
// entries beside it (log Z = log |det K| / 2 + constants). `table` holds per pair (3 words at
// pairs_at) its edge, first term and terms; per term (5 words at terms_at) the adjoint position
// within the set, ja, jb, kind and the coefficient's bits.

@compute @workgroup_size(256)
fn front_marginals(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let e = element_index(wg, nwg, lid, 256u);
    if (e >= p.sets * p.pairs) { return; }
    let problem = e / p.pairs;
    let at = p.pairs_at + 3u * (e % p.pairs);
    var sum = 0.0;
    for (var t = table[at + 1u]; t < table[at + 1u] + table[at + 2u]; t++) {
        let r = p.terms_at + 5u * t;
        let value = kasteleyn_entry(problem, table[r + 1u], table[r + 2u], table[r + 3u]);
        sum += bitcast<f32>(table[r + 4u]) * adjoint[problem * p.adjoint + table[r]] * value;
    }
    marginals[(p.first + problem) * p.edges + table[at]] = clamp(sum, -1.0, 1.0);
}
