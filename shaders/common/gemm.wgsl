// The engine's one tiled matrix product, batched, with strided operands:
//   C[z](i, j) = alpha * sum_p A[z](i, p) B[z](p, j) + beta * C[z](i, j) + diag * (i == j)
// Element (i, p) of A in batch z lives at a_off + (z % a_mod) * a_bs + i * a_rs + p * a_cs (B and C
// alike), so transposes, broadcast operands (stride 0) and per-head operands (a_mod = H) are strides.
// Prologue: column `b_ones_col` of B reads as 1 (appends the denominator column of attention).
// Each 16x16 workgroup computes a 64x64 tile of C, 4x4 per invocation, over K in steps of 16.

struct Gemm {
    m: u32, n: u32, k: u32, z_base: u32,
    a_off: u32, a_bs: u32, a_rs: u32, a_cs: u32,
    b_off: u32, b_bs: u32, b_rs: u32, b_cs: u32,
    c_off: u32, c_bs: u32, c_rs: u32, c_cs: u32,
    a_mod: u32, b_mod: u32, c_mod: u32, b_ones_col: u32,
    alpha: f32, beta: f32, diag: f32, _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Gemm;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

const TILE: u32 = 64u;
const KT: u32 = 16u;
// k-major tiles: a_tile[kk * TILE + i], b_tile[kk * TILE + j].
var<workgroup> a_tile: array<f32, 1024>;
var<workgroup> b_tile: array<f32, 1024>;

fn load_a(z: u32, i: u32, kk: u32) -> f32 {
    if (i >= p.m || kk >= p.k) { return 0.0; }
    return a[p.a_off + (z % p.a_mod) * p.a_bs + i * p.a_rs + kk * p.a_cs];
}

fn load_b(z: u32, kk: u32, j: u32) -> f32 {
    if (kk >= p.k || j >= p.n) { return 0.0; }
    if (j == p.b_ones_col) { return 1.0; }
    return b[p.b_off + (z % p.b_mod) * p.b_bs + kk * p.b_rs + j * p.b_cs];
}

@compute @workgroup_size(16, 16, 1)
fn gemm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32,
        @builtin(local_invocation_id) local: vec3<u32>) {
    let z = wg.z + p.z_base;
    let row0 = wg.y * TILE;
    let col0 = wg.x * TILE;
    var acc: array<vec4<f32>, 4>;
    for (var r = 0u; r < 4u; r++) { acc[r] = vec4<f32>(0.0); }

    for (var k0 = 0u; k0 < p.k; k0 += KT) {
        // Consecutive invocations read consecutive addresses: along k when the operand is stored
        // k-contiguous, along rows (columns for B) otherwise.
        for (var s = 0u; s < 4u; s++) {
            let e = lid + s * 256u;
            var i: u32; var kk: u32;
            if (p.a_cs == 1u) { kk = e % KT; i = e / KT; } else { i = e % TILE; kk = e / TILE; }
            a_tile[kk * TILE + i] = load_a(z, row0 + i, k0 + kk);
            var j: u32; var kb: u32;
            if (p.b_rs == 1u) { kb = e % KT; j = e / KT; } else { j = e % TILE; kb = e / TILE; }
            b_tile[kb * TILE + j] = load_b(z, k0 + kb, col0 + j);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < KT; kk++) {
            let bv = vec4<f32>(b_tile[kk * TILE + local.x * 4u], b_tile[kk * TILE + local.x * 4u + 1u],
                               b_tile[kk * TILE + local.x * 4u + 2u], b_tile[kk * TILE + local.x * 4u + 3u]);
            for (var r = 0u; r < 4u; r++) {
                acc[r] += a_tile[kk * TILE + local.y * 4u + r] * bv;
            }
        }
        workgroupBarrier();
    }

    for (var r = 0u; r < 4u; r++) {
        let i = row0 + local.y * 4u + r;
        for (var q = 0u; q < 4u; q++) {
            let j = col0 + local.x * 4u + q;
            if (i < p.m && j < p.n) {
                let at = p.c_off + (z % p.c_mod) * p.c_bs + i * p.c_rs + j * p.c_cs;
                var v = p.alpha * acc[r][q];
                if (p.beta != 0.0) { v += p.beta * c[at]; }
                if (i == j) { v += p.diag; }
                c[at] = v;
            }
        }
    }
}
