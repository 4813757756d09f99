// An entry of the scaled Kasteleyn matrix (docs/math.md §6.2) for coupling set p.first + problem of
// `couplings` [sets, p.edges]: kind 0 (3) an intra entry +exp(-(J[ja] + J[jb]) / 2) (negated), kind
// 1 (2) an external entry +exp(J[ja]) (negated). Index NO_EDGE is a zero coupling (an edge the
// triangulation added).

const ENTRY_INTRA: u32 = 0u;
const ENTRY_EXTERNAL: u32 = 1u;
const ENTRY_EXTERNAL_NEGATED: u32 = 2u;
const ENTRY_INTRA_NEGATED: u32 = 3u;

fn coupling(problem: u32, index: u32) -> f32 {
    if (index == NO_EDGE) { return 0.0; }
    return couplings[(p.first + problem) * p.edges + index];
}

fn kasteleyn_entry(problem: u32, ja: u32, jb: u32, kind: u32) -> f32 {
    var value: f32;
    if (kind == ENTRY_INTRA || kind == ENTRY_INTRA_NEGATED) {
        value = exp(-0.5 * (coupling(problem, ja) + coupling(problem, jb)));
    } else {
        value = exp(coupling(problem, ja));
    }
    return select(value, -value, kind == ENTRY_EXTERNAL_NEGATED || kind == ENTRY_INTRA_NEGATED);
}
