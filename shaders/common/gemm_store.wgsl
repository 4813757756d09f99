// The epilogue every product variant shares: C(i, j) = alpha * acc + beta * C(i, j) + diag * (i == j)
// at C's element (i, j) of the batch starting at `c_base`, for i < m and j < n only.

fn store_c(c_base: u32, i: u32, j: u32, acc: f32) {
    if (i >= p.m || j >= p.n) { return; }
    let at = c_base + i * p.c.rs + j * p.c.cs;
    var v = p.alpha * acc;
    if (p.beta != 0.0) { v += p.beta * c[at]; }
    if (i == j) { v += p.diag; }
    c[at] = v;
}

// The part [begin, end) of the inner dimension that A's rows first..=last reach when A is triangular
// (p.a_triangle: A(i, k) = 0 for k < i, A_UPPER, or for k > i, A_LOWER): the rest adds zeros.
fn k_range(begin: u32, end: u32, first: u32, last: u32) -> vec2<u32> {
    if (p.a_triangle == A_UPPER) { return vec2<u32>(max(begin, first), end); }
    if (p.a_triangle == A_LOWER) { return vec2<u32>(begin, min(end, last + 1u)); }
    return vec2<u32>(begin, end);
}
