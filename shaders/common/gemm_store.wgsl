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
