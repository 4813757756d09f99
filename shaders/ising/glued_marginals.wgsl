// One piece's edge marginals, top-down (docs/math.md §6.5): its separator states have probabilities
// w_s = max(0, (1 + sum over pairs of sigma_a(s) sigma_b(s) m_ab) / S), m_ab the parent's marginals
// on the separator pairs, and piece edge k has E[s_u s_v] = sum_s w_s sign_s(k) c_s, c_s the
// contracted graph's marginal of its merged edge in state s (1 for an edge inside the separator).
// table[3k..3k + 3] = (graph edge, merged edge, sign bits). One invocation per (problem, piece edge):
// writes the piece's part of piece_marginals and the graph edge's marginal.

@compute @workgroup_size(256)
fn glued_marginals(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let e = element_index(wg, nwg, lid, 256u);
    if (e >= p.sets * p.piece_edges) { return; }
    let problem = e / p.piece_edges;
    let k = p.offset + e % p.piece_edges;
    let origin = table[3u * k];
    let merged = table[3u * k + 1u];
    let signs = table[3u * k + 2u];
    var m = 0.0;
    for (var s = 0u; s < p.states; s += 1u) {
        var w = 1.0;
        for (var t = 1u; t <= p.pairs; t += 1u) {
            w += pair_sign(t, s) * piece_marginals[problem * p.stride + pair_edge(t)];
        }
        w = max(w / f32(p.states), 0.0);
        var c = 1.0;
        if (merged != NO_EDGE) { c = conditional[(problem * p.states + s) * p.contracted + merged]; }
        m += w * select(c, -c, ((signs >> s) & 1u) != 0u);
    }
    piece_marginals[problem * p.stride + k] = m;
    if (origin != NO_EDGE) { marginals[(p.first + problem) * p.edges + origin] = clamp(m, -1.0, 1.0); }
}
