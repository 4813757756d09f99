// The sequential schedule of causal attention with the state on chip (docs/math.md §1.6): one workgroup
// per (problem, tile of 4 columns of [S | z]) holds its columns of the state in workgroup memory and
// walks the chunks [first, first + count) of a group in order. Per chunk c, with the query and key
// features already decayed (`favor/row_scale.wgsl`) and the intra-chunk term already in `num`:
//   num_t += phi~(q_t) [S | z]                                    (t in chunk c)
//   [S | z] <- [S | z] exp(gamma_end(c - 1) - gamma_end(c)) + phi~(K_c)^T [V_c | 1]
// where gamma_end(c) is the prefix max at the last row of chunk c and gamma_end(-1) = before. Each
// workgroup reads and writes only its own columns, so tiles never race, and the state is carried
// between dispatches in `state` ([B*H, f, dv + 1]), a few chunks per dispatch (Mesa's llvmpipe ends
// long loops that hold barriers early). An invocation owns a row (then a feature) and its 4
// columns as one vec4. f <= 768, C <= 256.
// The state adds one delta per chunk for the whole sequence (16,384 of them at 2^20 tokens): in f32
// the rounding of that running sum would grow with the number of chunks, so it is compensated
// (Kahan): `lost` ([B*H, f, dv + 1], zero at the start of a call) carries what each addition
// rounded away, decayed with the state, and the next addition puts it back.

const GROUP: u32 = 256u;
// Row i: this workgroup's 4 columns of state row i.
var<workgroup> s: array<vec4<f32>, WALK_MAX_FEATURES>;
// Row t of the chunk: its 4 columns of [V | 1].
var<workgroup> vt: array<vec4<f32>, 256>;

// Rows of the state one invocation owns (f <= 768 = 3 x GROUP).
const OWNED: u32 = 3u;

fn end_of(z: u32, c: u32) -> f32 {
    return gamma[z * p.scratch_rows + min(c * p.chunk + p.chunk, p.rows) - 1u];
}

@compute @workgroup_size(256)
fn state_walk(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let z = wg.y + p.z_base;
    let col0 = wg.x * WALK_TILE;
    let f = p.features;
    let width = p.value_dim + 1u;
    var comp: array<vec4<f32>, OWNED>;
    for (var i = lid; i < f; i += GROUP) {
        var x = vec4<f32>(0.0);
        var y = vec4<f32>(0.0);
        for (var e = 0u; e < 4u; e++) {
            let col = col0 + e;
            if (col < width) {
                x[e] = state[(z * f + i) * width + col];
                y[e] = lost[(z * f + i) * width + col];
            }
        }
        s[i] = x;
        comp[i / GROUP] = y;
    }
    for (var c = p.first; c < p.first + p.count; c++) {
        let t0 = c * p.chunk;
        let n = min(t0 + p.chunk, p.rows) - t0;
        if (lid < n) {
            var x = vec4<f32>(0.0);
            for (var e = 0u; e < 4u; e++) {
                let col = col0 + e;
                if (col < p.value_dim) {
                    x[e] = v[(z * p.len + p.start + t0 + lid) * p.value_dim + col];
                } else if (col == p.value_dim) {
                    x[e] = 1.0;
                }
            }
            vt[lid] = x;
        }
        workgroupBarrier();
        // The inter-chunk term, from the state entering chunk c.
        if (lid < n) {
            let row = z * p.scratch_rows + t0 + lid;
            var acc = vec4<f32>(0.0);
            for (var i = 0u; i < f; i++) { acc += phi_q[row * f + i] * s[i]; }
            for (var e = 0u; e < 4u; e++) {
                let col = col0 + e;
                if (col < width) { num[row * width + col] += acc[e]; }
            }
        }
        workgroupBarrier();
        var prev = before[z];
        if (c > 0u) { prev = end_of(z, c - 1u); }
        let decay = exp(prev - end_of(z, c));
        for (var i = lid; i < f; i += GROUP) {
            var delta = vec4<f32>(0.0);
            let k0 = (z * p.scratch_rows + t0) * f + i;
            for (var t = 0u; t < n; t++) { delta += phi_k[k0 + t * f] * vt[t]; }
            let sum = s[i] * decay;
            let y = delta - comp[i / GROUP] * decay;
            // unit = 1, from the uniforms: a compiler free to reassociate (Mesa's is) would otherwise
            // fold (sum + y) - sum - y to 0.
            let next = (sum + y) * p.unit;
            comp[i / GROUP] = (next - sum) - y;
            s[i] = next;
        }
        workgroupBarrier();
    }
    for (var i = lid; i < f; i += GROUP) {
        for (var e = 0u; e < 4u; e++) {
            let col = col0 + e;
            if (col < width) {
                state[(z * f + i) * width + col] = s[i][e];
                lost[(z * f + i) * width + col] = comp[i / GROUP][e];
            }
        }
    }
}
