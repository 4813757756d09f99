// One piece's coupling sets with its separator's spins fixed, a row per (set, state) (docs/math.md
// §6.5): x[row][j] sums the piece's couplings that contraction merges into edge j of the contracted
// graph, each signed by the state's spins at its ends; column j = p.contracted (the edges inside the
// separator) is the row's constant instead. table[p.gather_at + j] .. [.. + j + 1] bound column
// j's entries (piece edge, sign bits: bit s set when state s flips the coupling).

@compute @workgroup_size(256)
fn glued_gather(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let e = element_index(wg, nwg, lid, 256u);
    let width = p.contracted + 1u;
    if (e >= p.sets * p.states * width) { return; }
    let row = e / width;
    let j = e % width;
    let s = row % p.states;
    let base = (row / p.states) * p.stride + p.offset;
    var sum = 0.0;
    for (var w = table[p.gather_at + j]; w < table[p.gather_at + j + 1u]; w += 2u) {
        let c = agg[base + table[w]];
        sum += select(c, -c, ((table[w + 1u] >> s) & 1u) != 0u);
    }
    if (j < p.contracted) {
        x[row * p.contracted + j] = sum;
    } else {
        constant[row] = sum;
    }
}
