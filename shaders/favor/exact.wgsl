// Exact softmax attention (math.md §1.7), FlashAttention-style: a workgroup owns 64 query rows (one
// per invocation) and walks the keys in blocks of `block` rows staged in workgroup memory, keeping a
// running max and denominator (online softmax). No L x L buffer exists. d, dv <= 128.
// Rows are handled as vec4s, zero-padded past d and dv, so the inner loops read 4 floats a step.

struct Exact { len: u32, dim: u32, value_dim: u32, block: u32, causal: u32, z_base: u32, scale: f32, _pad: u32 }

@group(0) @binding(0) var<uniform> p: Exact;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const ROWS: u32 = 64u;
const MAX_DIM4: u32 = 32u;
const MAX_BLOCK: u32 = 64u;
const LOWEST: f32 = -3.4028234663852886e38;
// Keys [block, d4] then values [block, dv4]; the host sizes `block` to fit 16 KiB.
var<workgroup> tile: array<vec4<f32>, 1024>;

// Element c of row `row` of a [rows, width] matrix, 0 past the row's end.
fn padded(x: f32, c: u32, width: u32) -> f32 {
    return select(0.0, x, c < width);
}

@compute @workgroup_size(64)
fn exact(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let z = wg.y + p.z_base;
    let t = wg.x * ROWS + lid;
    let valid = t < p.len;
    let d4 = (p.dim + 3u) / 4u;
    let dv4 = (p.value_dim + 3u) / 4u;
    var qr: array<vec4<f32>, MAX_DIM4>;
    var acc: array<vec4<f32>, MAX_DIM4>;
    let q_row = (z * p.len + min(t, p.len - 1u)) * p.dim;
    for (var c = 0u; c < d4; c++) {
        var x = vec4<f32>(0.0);
        for (var e = 0u; e < 4u; e++) {
            let col = 4u * c + e;
            x[e] = padded(q[q_row + min(col, p.dim - 1u)], col, p.dim);
        }
        qr[c] = x * p.scale;
    }
    for (var c = 0u; c < dv4; c++) { acc[c] = vec4<f32>(0.0); }
    var run_max = LOWEST;
    var den = 0.0;

    var key_end = p.len;
    if (p.causal != 0u) { key_end = min(p.len, (wg.x + 1u) * ROWS); }
    let values_at = p.block * d4;
    for (var j0 = 0u; j0 < key_end; j0 += p.block) {
        let nb = min(p.block, key_end - j0);
        for (var e = lid; e < nb * d4 * 4u; e += ROWS) {
            let row = e / (d4 * 4u);
            let col = e % (d4 * 4u);
            tile[e / 4u][e % 4u] = padded(k[(z * p.len + j0 + row) * p.dim + min(col, p.dim - 1u)], col, p.dim);
        }
        for (var e = lid; e < nb * dv4 * 4u; e += ROWS) {
            let row = e / (dv4 * 4u);
            let col = e % (dv4 * 4u);
            tile[values_at + e / 4u][e % 4u] =
                padded(v[(z * p.len + j0 + row) * p.value_dim + min(col, p.value_dim - 1u)], col, p.value_dim);
        }
        workgroupBarrier();
        var s: array<f32, MAX_BLOCK>;
        var block_max = LOWEST;
        for (var jj = 0u; jj < nb; jj++) {
            s[jj] = LOWEST;
            if (valid && (p.causal == 0u || j0 + jj <= t)) {
                var dot4 = vec4<f32>(0.0);
                for (var c = 0u; c < d4; c++) { dot4 += qr[c] * tile[jj * d4 + c]; }
                let score = dot4.x + dot4.y + dot4.z + dot4.w;
                s[jj] = score;
                block_max = max(block_max, score);
            }
        }
        if (block_max > LOWEST) {
            let new_max = max(run_max, block_max);
            // exp(LOWEST - new_max) underflows to 0 on the first block: nothing to rescale yet.
            let correction = exp(run_max - new_max);
            den *= correction;
            for (var c = 0u; c < dv4; c++) { acc[c] *= correction; }
            for (var jj = 0u; jj < nb; jj++) {
                let w = exp(s[jj] - new_max);
                den += w;
                for (var c = 0u; c < dv4; c++) { acc[c] += w * tile[values_at + jj * dv4 + c]; }
            }
            run_max = new_max;
        }
        workgroupBarrier();
    }
    if (valid) {
        let o_row = (z * p.len + t) * p.value_dim;
        for (var c = 0u; c < p.value_dim; c++) { out[o_row + c] = acc[c / 4u][c % 4u] / den; }
    }
}
