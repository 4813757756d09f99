// The engine's one tiled matrix product, batched, with strided operands:
//   C[z](i, j) = alpha * sum_p A[z](i, p) B[z](p, j) + beta * C[z](i, j) + diag * (i == j)
// Element (i, p) of A in batch z lives at base(z) + i * rs + p * cs with
//   base(z) = off + (z / inner) * outer + (z % inner) * inner_stride     (B and C alike),
// so transposes, broadcast operands (strides 0), per-head operands (inner = H) and chunks of a
// sequence (inner = chunks per problem) are all strides.
// A and B hold f32, or f16 in the `_F16` kernels of kernels.rs (the same files with f16 bindings,
// on adapters with SHADER_F16): every load widens to f32, and C and the sums stay f32.
// Prologue: column `b_ones_col` of B, and column `a_ones_col` of A, read as 1 (the denominator
// column of attention, [V | 1]).
// Each 8x8 workgroup computes a 64x64 tile of C, 8x8 per invocation, over K in steps of DEPTH (8, 16
// or 32: the variants `tiled-8`, `tiled-16`, `tiled-32` of gemm.rs), staged in workgroup memory.
// A triangular (p.a_triangle): each tile, group or invocation walks only the part of K its rows
// reach (`k_range`).
// Upper (p.upper != 0): only C's entries on and above the diagonal are wanted; a workgroup whose
// tile lies wholly below it returns at once (every variant skips what it can without splitting a
// group of invocations that share rows; the entries below are left unwritten).
// Split (splits > 1, for products of few tiles and a long K): workgroup z of the dispatch takes
// slice z % splits of K, k_slice long, of batch z / splits, and writes alpha times its partial
// product to batch z of C (beta and diag 0); gemm_sum.wgsl adds the slices up.

override DEPTH: u32 = 16u;
const TILE: u32 = GEMM_TILE;
// k-major tiles: a_tile[kk * TILE + i], b_tile[kk * TILE + j], sized for the deepest variant (16 KiB
// together, WebGPU's least workgroup storage: naga sizes workgroup arrays from constants only).
var<workgroup> a_tile: array<vec4<f32>, 512>;
var<workgroup> b_tile: array<vec4<f32>, 512>;

// `base` is computed once per invocation: an integer division per load would cost more than the
// arithmetic on a CPU adapter.
fn load_a(base: u32, i: u32, kk: u32, k_end: u32) -> f32 {
    if (i >= p.m || kk >= k_end) { return 0.0; }
    if (kk == p.a_ones_col) { return 1.0; }
    return f32(a[base + i * p.a.rs + kk * p.a.cs]);
}

fn load_b(base: u32, kk: u32, j: u32, k_end: u32) -> f32 {
    if (kk >= k_end || j >= p.n) { return 0.0; }
    if (j == p.b_ones_col) { return 1.0; }
    return f32(b[base + kk * p.b.rs + j * p.b.cs]);
}

@compute @workgroup_size(8, 8, 1)
fn gemm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32,
        @builtin(local_invocation_id) local: vec3<u32>) {
    let slice = wg.z % p.splits;
    let z = wg.z / p.splits + p.z_base;
    let k_begin = slice * p.k_slice;
    let k_end = min(p.k, k_begin + p.k_slice);
    let row0 = wg.y * TILE;
    let col0 = wg.x * TILE;
    if (p.upper != 0u && row0 >= col0 + TILE) { return; }
    let a_base = base(p.a, z);
    let b_base = base(p.b, z);
    let c_base = base(p.c, z * p.splits + slice);
    // Rows local.y * 8 + r, columns local.x * 8 + (0..4) in acc[2r] and + (4..8) in acc[2r + 1].
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    var c4 = vec4<f32>(0.0);
    var c5 = vec4<f32>(0.0);
    var c6 = vec4<f32>(0.0);
    var c7 = vec4<f32>(0.0);
    var c8 = vec4<f32>(0.0);
    var c9 = vec4<f32>(0.0);
    var c10 = vec4<f32>(0.0);
    var c11 = vec4<f32>(0.0);
    var c12 = vec4<f32>(0.0);
    var c13 = vec4<f32>(0.0);
    var c14 = vec4<f32>(0.0);
    var c15 = vec4<f32>(0.0);

    let reach = k_range(k_begin, k_end, row0, row0 + TILE - 1u);
    for (var k0 = reach.x; k0 < reach.y; k0 += DEPTH) {
        // Consecutive invocations read consecutive addresses: along k when the operand is stored
        // k-contiguous, along rows (columns for B) otherwise.
        for (var s = 0u; s < DEPTH; s++) {
            let e = lid + s * 64u;
            var i: u32; var kk: u32;
            if (p.a.cs == 1u) { kk = e % DEPTH; i = e / DEPTH; } else { i = e % TILE; kk = e / TILE; }
            let ai = kk * TILE + i;
            a_tile[ai / 4u][ai % 4u] = load_a(a_base, row0 + i, k0 + kk, k_end);
            var j: u32; var kb: u32;
            if (p.b.rs == 1u) { kb = e % DEPTH; j = e / DEPTH; } else { j = e % TILE; kb = e / TILE; }
            let bj = kb * TILE + j;
            b_tile[bj / 4u][bj % 4u] = load_b(b_base, k0 + kb, col0 + j, k_end);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < DEPTH; kk++) {
            let b0 = b_tile[kk * 16u + local.x * 2u];
            let b1 = b_tile[kk * 16u + local.x * 2u + 1u];
            let a_lo = a_tile[kk * 16u + local.y * 2u];
            let a_hi = a_tile[kk * 16u + local.y * 2u + 1u];
            let a0 = a_lo[0]; c0 += a0 * b0; c1 += a0 * b1;
            let a1 = a_lo[1]; c2 += a1 * b0; c3 += a1 * b1;
            let a2 = a_lo[2]; c4 += a2 * b0; c5 += a2 * b1;
            let a3 = a_lo[3]; c6 += a3 * b0; c7 += a3 * b1;
            let a4 = a_hi[0]; c8 += a4 * b0; c9 += a4 * b1;
            let a5 = a_hi[1]; c10 += a5 * b0; c11 += a5 * b1;
            let a6 = a_hi[2]; c12 += a6 * b0; c13 += a6 * b1;
            let a7 = a_hi[3]; c14 += a7 * b0; c15 += a7 * b1;
        }
        workgroupBarrier();
    }

    let acc = array<vec4<f32>, 16>(c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15);
    for (var r = 0u; r < 8u; r++) {
        for (var q = 0u; q < 8u; q++) {
            store_c(c_base, row0 + local.y * 8u + r, col0 + local.x * 8u + q, acc[2u * r + q / 4u][q % 4u]);
        }
    }
}
