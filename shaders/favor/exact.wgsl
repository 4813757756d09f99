// Exact softmax attention (math.md §1.7), FlashAttention-style: a workgroup owns 64 query rows (one
// per invocation) and walks the keys in blocks of `block` rows staged in workgroup memory, keeping a
// running max and denominator (online softmax). No L x L buffer exists. d, dv <= 128.

struct Exact { len: u32, dim: u32, value_dim: u32, block: u32, causal: u32, z_base: u32, scale: f32, _pad: u32 }

@group(0) @binding(0) var<uniform> p: Exact;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const ROWS: u32 = 64u;
const MAX_DIM: u32 = 128u;
const MAX_BLOCK: u32 = 64u;
const LOWEST: f32 = -3.4028234663852886e38;
// Keys [block, dim] then values [block, value_dim]; the host sizes `block` to fit 16 KiB.
var<workgroup> tile: array<f32, 4096>;

@compute @workgroup_size(64)
fn exact(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let z = wg.y + p.z_base;
    let t = wg.x * ROWS + lid;
    let valid = t < p.len;
    var qr: array<f32, MAX_DIM>;
    var acc: array<f32, MAX_DIM>;
    if (valid) {
        for (var c = 0u; c < p.dim; c++) { qr[c] = q[(z * p.len + t) * p.dim + c] * p.scale; }
    }
    for (var c = 0u; c < p.value_dim; c++) { acc[c] = 0.0; }
    var run_max = LOWEST;
    var den = 0.0;

    var key_end = p.len;
    if (p.causal != 0u) { key_end = min(p.len, (wg.x + 1u) * ROWS); }
    let values_at = p.block * p.dim;
    for (var j0 = 0u; j0 < key_end; j0 += p.block) {
        let nb = min(p.block, key_end - j0);
        for (var e = lid; e < nb * p.dim; e += ROWS) { tile[e] = k[(z * p.len + j0) * p.dim + e]; }
        for (var e = lid; e < nb * p.value_dim; e += ROWS) {
            tile[values_at + e] = v[(z * p.len + j0) * p.value_dim + e];
        }
        workgroupBarrier();
        var s: array<f32, MAX_BLOCK>;
        var block_max = LOWEST;
        for (var jj = 0u; jj < nb; jj++) {
            s[jj] = LOWEST;
            if (valid && (p.causal == 0u || j0 + jj <= t)) {
                var dot = 0.0;
                for (var c = 0u; c < p.dim; c++) { dot += qr[c] * tile[jj * p.dim + c]; }
                s[jj] = dot;
                block_max = max(block_max, dot);
            }
        }
        if (block_max > LOWEST) {
            let new_max = max(run_max, block_max);
            // exp(LOWEST - new_max) underflows to 0 on the first block: nothing to rescale yet.
            let correction = exp(run_max - new_max);
            den *= correction;
            for (var c = 0u; c < p.value_dim; c++) { acc[c] *= correction; }
            for (var jj = 0u; jj < nb; jj++) {
                let w = exp(s[jj] - new_max);
                den += w;
                for (var c = 0u; c < p.value_dim; c++) { acc[c] += w * tile[values_at + jj * p.value_dim + c]; }
            }
            run_max = new_max;
        }
        workgroupBarrier();
    }
    if (valid) {
        for (var c = 0u; c < p.value_dim; c++) { out[(z * p.len + t) * p.value_dim + c] = acc[c] / den; }
    }
}
