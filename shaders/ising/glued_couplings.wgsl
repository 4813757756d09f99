// The pieces' couplings before the bottom-up pass (docs/math.md §6.5): for sets first..first + sets,
// agg[problem][k] is the coupling of piece edge k's graph edge (table[3k]), 0 for a virtual edge of a
// separator clique. One invocation per (problem, piece edge); a problem's row holds every piece's edges.

@compute @workgroup_size(256)
fn glued_couplings(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let e = element_index(wg, nwg, lid, 256u);
    if (e >= p.sets * p.stride) { return; }
    let problem = e / p.stride;
    let origin = table[3u * (e % p.stride)];
    var j = 0.0;
    if (origin != NO_EDGE) { j = couplings[(p.first + problem) * p.edges + origin]; }
    agg[e] = j;
}
