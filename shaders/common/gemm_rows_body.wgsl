// The product without workgroup memory or barriers (operands, prologue, epilogue and split as in
// gemm.wgsl): what CPU-like adapters run best. lavapipe loads from a buffer lane by lane, so a load
// costs far more than an FMA there, and this variant does the most FMAs per load it can keep in
// registers. The 64 invocations of a workgroup form 64 / LANES groups of LANES; a group takes ROWS
// rows of C (the same for all of its invocations) by LANES * 8 columns, 8 per invocation, over K
// four at a time as 4x4 matrix products. The entry points differ in `a_rows`, how A's 8 x 4 values
// of a step reach every invocation of a group: gemm_rows.wgsl loads them in each,
// gemm_rows_subgroup.wgsl loads one row per lane and broadcasts it.

override ROWS: u32 = 64u;
override LANES: u32 = 64u;
// The groups of a workgroup take consecutive rows of one product, or (PACKED) the same rows of
// 64 / LANES consecutive products of the batch: small matrices fill the workgroup.
override PACKED: bool = false;

// A's rows r..r+4 (`lo`) and r+4..r+8 (`hi`) over 4 steps of K: column i is row r + i (+ 4).
struct Rows8 { lo: mat4x4<f32>, hi: mat4x4<f32> }
// C's rows r..r+8 by 4 columns (`lo`, `hi` as in Rows8) and by the next 4 (`wide_lo`, `wide_hi`).
struct Block { lo: mat4x4<f32>, hi: mat4x4<f32>, wide_lo: mat4x4<f32>, wide_hi: mat4x4<f32> }

var<private> a_base: u32;
var<private> b_base: u32;
var<private> k_end: u32;

// Indices are clamped into the operands (rows and columns past C's edge are computed and not
// stored); steps past K read as 0, so that no inf or NaN beyond it reaches the sum.
fn a_at(i: u32, kk: u32) -> f32 {
    let v = f32(a[a_base + min(i, p.m - 1u) * p.a.rs + min(kk, k_end - 1u) * p.a.cs]);
    return select(select(v, 1.0, kk == p.a_ones_col), 0.0, kk >= k_end);
}

fn b_at(kk: u32, j: u32) -> f32 {
    let v = f32(b[b_base + min(kk, k_end - 1u) * p.b.rs + min(j, p.n - 1u) * p.b.cs]);
    return select(select(v, 1.0, j == p.b_ones_col), 0.0, kk >= k_end);
}

// Row i of A at K steps k0..k0+4.
fn a4(i: u32, k0: u32) -> vec4<f32> {
    return vec4<f32>(a_at(i, k0), a_at(i, k0 + 1u), a_at(i, k0 + 2u), a_at(i, k0 + 3u));
}

// B's 4 x 4 block at K steps k0..k0+4 (columns) and columns j..j+4 (rows).
fn b_block(k0: u32, j: u32) -> mat4x4<f32> {
    let row = vec4<u32>(j, j + 1u, j + 2u, j + 3u);
    return mat4x4<f32>(
        vec4<f32>(b_at(k0, row.x), b_at(k0, row.y), b_at(k0, row.z), b_at(k0, row.w)),
        vec4<f32>(b_at(k0 + 1u, row.x), b_at(k0 + 1u, row.y), b_at(k0 + 1u, row.z), b_at(k0 + 1u, row.w)),
        vec4<f32>(b_at(k0 + 2u, row.x), b_at(k0 + 2u, row.y), b_at(k0 + 2u, row.z), b_at(k0 + 2u, row.w)),
        vec4<f32>(b_at(k0 + 3u, row.x), b_at(k0 + 3u, row.y), b_at(k0 + 3u, row.z), b_at(k0 + 3u, row.w)));
}

// (B^T A^T) column i = sum over the 4 steps of A(r + i, k) B(k, j..j+4): row r + i of C.
fn accumulate(acc: ptr<function, Block>, a: Rows8, b: mat4x4<f32>, b_wide: mat4x4<f32>) {
    (*acc).lo += b * a.lo;
    (*acc).hi += b * a.hi;
    (*acc).wide_lo += b_wide * a.lo;
    (*acc).wide_hi += b_wide * a.hi;
}

// The loops run to C's edge (a bound the compiler cannot unroll: unrolled, the stores of 64 rows
// made compiling the pipeline take most of a minute on lavapipe).
fn store4(c_base: u32, m: mat4x4<f32>, row: u32, col: u32) {
    for (var r = 0u; r < min(4u, p.m - min(row, p.m)); r++) {
        for (var q = 0u; q < min(4u, p.n - min(col, p.n)); q++) {
            store_c(c_base, row + r, col + q, m[r][q]);
        }
    }
}

fn store_block(c_base: u32, acc: ptr<function, Block>, row: u32, col: u32) {
    store4(c_base, (*acc).lo, row, col);
    store4(c_base, (*acc).hi, row + 4u, col);
    store4(c_base, (*acc).wide_lo, row, col + 4u);
    store4(c_base, (*acc).wide_hi, row + 4u, col + 4u);
}

// Blocks 1..7 run only when ROWS reaches them: a pipeline constant, so the compiler drops the rest.
fn gemm_rows_body(wg: vec3<u32>, lid: u32) {
    let slice = wg.z % p.splits;
    let groups = 64u / LANES;
    let group = lid / LANES;
    // A packed group past the batch computes its last product again and stores nothing.
    var z = wg.z / p.splits;
    var row = (wg.y * groups + group) * ROWS;
    if (PACKED) {
        z = z * groups + group;
        row = wg.y * ROWS;
    }
    let stores = z < p.batch;
    z = min(z, p.batch - 1u) + p.z_base;
    let k_begin = slice * p.k_slice;
    let reach = k_range(k_begin, min(p.k, k_begin + p.k_slice), row, row + ROWS - 1u);
    k_end = reach.y;
    a_base = base(p.a, z);
    b_base = base(p.b, z);
    let c_base = base(p.c, z * p.splits + slice);
    let col = (wg.x * LANES + lid % LANES) * 8u;
    // Upper: the group's rows against all of the workgroup's LANES * 8 columns, so that a subgroup
    // broadcasting A's rows leaves or stays together.
    if (p.upper != 0u && row >= (wg.x + 1u) * LANES * 8u) { return; }
    var acc0: Block;
    var acc1: Block;
    var acc2: Block;
    var acc3: Block;
    var acc4: Block;
    var acc5: Block;
    var acc6: Block;
    var acc7: Block;
    for (var k0 = reach.x; k0 < k_end; k0 += 4u) {
        let b = b_block(k0, col);
        let b_wide = b_block(k0, col + 4u);
        accumulate(&acc0, a_rows(row, k0), b, b_wide);
        if (ROWS > 8u) { accumulate(&acc1, a_rows(row + 8u, k0), b, b_wide); }
        if (ROWS > 16u) { accumulate(&acc2, a_rows(row + 16u, k0), b, b_wide); }
        if (ROWS > 24u) { accumulate(&acc3, a_rows(row + 24u, k0), b, b_wide); }
        if (ROWS > 32u) { accumulate(&acc4, a_rows(row + 32u, k0), b, b_wide); }
        if (ROWS > 40u) { accumulate(&acc5, a_rows(row + 40u, k0), b, b_wide); }
        if (ROWS > 48u) { accumulate(&acc6, a_rows(row + 48u, k0), b, b_wide); }
        if (ROWS > 56u) { accumulate(&acc7, a_rows(row + 56u, k0), b, b_wide); }
    }
    if (!stores) { return; }
    store_block(c_base, &acc0, row, col);
    if (ROWS > 8u) { store_block(c_base, &acc1, row + 8u, col); }
    if (ROWS > 16u) { store_block(c_base, &acc2, row + 16u, col); }
    if (ROWS > 24u) { store_block(c_base, &acc3, row + 24u, col); }
    if (ROWS > 32u) { store_block(c_base, &acc4, row + 32u, col); }
    if (ROWS > 40u) { store_block(c_base, &acc5, row + 40u, col); }
    if (ROWS > 48u) { store_block(c_base, &acc6, row + 48u, col); }
    if (ROWS > 56u) { store_block(c_base, &acc7, row + 56u, col); }
}
