// log Z and the edge marginals of one component for coupling sets first..first + batch (docs/math.md
// §6.2-6.3), one invocation per (problem, pair): pair 0 adds log 2 + log |det K| / 2 - added log 2 to
// log_z; a pair with a graph edge e writes E[s_u s_v] = -1 - 2 K[2i][2i+1] (K^-1)[2i][2i+1], where
// x[problem][2i][i] = (K^-1)[2i][2i+1] (the solve against the columns e_{2i+1}). `pairs` holds
// (edge or NO_EDGE, 1 when K[2i][2i+1] is negative) per pair.

@compute @workgroup_size(256)
fn readout(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let e = element_index(wg, nwg, lid, 256u);
    let count = p.order / 2u;
    if (e >= p.batch * count) { return; }
    let problem = e / count;
    let i = e % count;
    if (i == 0u) {
        log_z[p.first + problem] += LN_2 * (1.0 - f32(p.added)) + 0.5 * det[2u * problem + 1u];
    }
    let edge = pairs[2u * i];
    if (p.marginals == 0u || edge == NO_EDGE) { return; }
    var diagonal = exp(couplings[(p.first + problem) * p.edges + edge]);
    if (pairs[2u * i + 1u] != 0u) { diagonal = -diagonal; }
    let z = x[(problem * p.order + 2u * i) * count + i];
    marginals[(p.first + problem) * p.edges + edge] = clamp(-1.0 - 2.0 * diagonal * z, -1.0, 1.0);
}
