// The sequential schedule of causal attention with the state on chip (math.md §1.6): one workgroup
// per (problem, tile of 4 columns of [S | z]) holds its columns of the state in workgroup memory and
// walks the chunks [first, first + count) of a group in order. Per chunk c, with the query and key
// features already decayed (`favor/row_scale.wgsl`) and the intra-chunk term already in `num`:
//   num_t += phi~(q_t) [S | z]                                    (t in chunk c)
//   [S | z] <- [S | z] exp(gamma_end(c - 1) - gamma_end(c)) + phi~(K_c)^T [V_c | 1]
// where gamma_end(c) is the prefix max at the last row of chunk c and gamma_end(-1) = before. Each
// workgroup reads and writes only its own columns, so tiles never race, and the state is carried
// between dispatches in `state` ([B*H, f, dv + 1]), a few chunks per dispatch (Mesa's llvmpipe ends
// long loops that hold barriers early). f <= 1024.

struct Walk {
    rows: u32, problems: u32, scratch_rows: u32, features: u32,
    value_dim: u32, chunk: u32, first: u32, count: u32,
    len: u32, start: u32, _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Walk;
@group(0) @binding(1) var<storage, read> phi_q: array<f32>;
@group(0) @binding(2) var<storage, read> phi_k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> gamma: array<f32>;
@group(0) @binding(5) var<storage, read> before: array<f32>;
@group(0) @binding(6) var<storage, read_write> state: array<f32>;
@group(0) @binding(7) var<storage, read_write> num: array<f32>;

const TILE: u32 = 4u;
const GROUP: u32 = 256u;
// [f, TILE]: this workgroup's columns of the state.
var<workgroup> s: array<f32, 4096>;

fn end_of(z: u32, c: u32) -> f32 {
    return gamma[z * p.scratch_rows + min(c * p.chunk + p.chunk, p.rows) - 1u];
}

@compute @workgroup_size(256)
fn state_walk(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let z = wg.y;
    let col0 = wg.x * TILE;
    let f = p.features;
    let width = p.value_dim + 1u;
    let items = f * TILE;
    for (var e = lid; e < items; e += GROUP) {
        let col = col0 + e % TILE;
        var x = 0.0;
        if (col < width) { x = state[(z * f + e / TILE) * width + col]; }
        s[e] = x;
    }
    workgroupBarrier();
    for (var c = p.first; c < p.first + p.count; c++) {
        let t0 = c * p.chunk;
        let t1 = min(t0 + p.chunk, p.rows);
        // The inter-chunk term, from the state entering chunk c.
        for (var e = lid; e < p.chunk * TILE; e += GROUP) {
            let t = t0 + e / TILE;
            let col = col0 + e % TILE;
            if (t < t1 && col < width) {
                let row = z * p.scratch_rows + t;
                var acc = 0.0;
                for (var i = 0u; i < f; i++) { acc += phi_q[row * f + i] * s[i * TILE + e % TILE]; }
                num[row * width + col] += acc;
            }
        }
        workgroupBarrier();
        var prev = before[z];
        if (c > 0u) { prev = end_of(z, c - 1u); }
        let decay = exp(prev - end_of(z, c));
        for (var e = lid; e < items; e += GROUP) {
            let i = e / TILE;
            let col = col0 + e % TILE;
            var acc = s[e] * decay;
            for (var t = t0; t < t1; t++) {
                var x = 1.0;
                if (col < p.value_dim) { x = v[(z * p.len + p.start + t) * p.value_dim + col]; }
                acc += phi_k[(z * p.scratch_rows + t) * f + i] * x;
            }
            s[e] = acc;
        }
        workgroupBarrier();
    }
    for (var e = lid; e < items; e += GROUP) {
        let col = col0 + e % TILE;
        if (col < width) { state[(z * f + e / TILE) * width + col] = s[e]; }
    }
}
