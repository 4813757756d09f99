// A piece's separator of k = p.separator vertices (docs/math.md §6.5): its S = 2^(k-1) states fix
// the spins relative to the first vertex, and its pairs (0, 1), (0, 2), (1, 2) (those with both
// ends below k, numbered 1..p.pairs) are edges of the parent, at p.t01, p.t02, p.t12 in a row of
// the pieces' edges.

// The spin of separator vertex i in state s: vertex i > 0 is down when bit k - 1 - i of s is set.
fn separator_spin(i: u32, s: u32) -> f32 {
    if (i == 0u) { return 1.0; }
    return select(1.0, -1.0, ((s >> (p.separator - 1u - i)) & 1u) != 0u);
}

// sigma_a(s) sigma_b(s) for pair t (1..3) in state s.
fn pair_sign(t: u32, s: u32) -> f32 {
    let a = select(0u, 1u, t == 3u);
    let b = min(t, 2u);
    return separator_spin(a, s) * separator_spin(b, s);
}

// Where pair t (1..3) sits in a row of the pieces' edges.
fn pair_edge(t: u32) -> u32 {
    return select(select(p.t12, p.t02, t == 2u), p.t01, t == 1u);
}
