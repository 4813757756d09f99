// The product with one element of C per invocation (operands, prologue, epilogue and split as in
// gemm.wgsl): for batches of small products, whose few rows and columns the tiled variants would
// spread over mostly idle lanes. A workgroup covers LANE_ROWS x (64 / LANE_ROWS) elements of one
// product, each invocation walking its slice of K alone.

override LANE_ROWS: u32 = 8u;

@compute @workgroup_size(64)
fn gemm_lanes(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let cols = 64u / LANE_ROWS;
    let i = wg.y * LANE_ROWS + lid / cols;
    let j = wg.x * cols + lid % cols;
    let slice = wg.z % p.splits;
    if (i >= p.m || j >= p.n || wg.z / p.splits >= p.batch || (p.upper != 0u && i > j)) { return; }
    let z = wg.z / p.splits + p.z_base;
    let k_begin = slice * p.k_slice;
    let k_end = min(p.k, k_begin + p.k_slice);
    let a_row = base(p.a, z) + i * p.a.rs;
    let b_col = base(p.b, z) + j * p.b.cs;
    var acc = 0.0;
    let reach = k_range(k_begin, k_end, i, i);
    for (var kk = reach.x; kk < reach.y; kk++) {
        let av = select(f32(a[a_row + kk * p.a.cs]), 1.0, kk == p.a_ones_col);
        let bv = select(f32(b[b_col + kk * p.b.rs]), 1.0, j == p.b_ones_col);
        acc += av * bv;
    }
    store_c(base(p.c, z * p.splits + slice), i, j, acc);
}
