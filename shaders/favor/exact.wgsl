// Exact softmax attention (docs/math.md §1.7), FlashAttention-style: a workgroup owns 64 query rows (one
// per invocation) and walks the keys in blocks of BLOCK rows staged in workgroup memory, keeping a
// running max and denominator (online softmax). No L x L buffer exists. d, dv <= 128.
// Rows are handled as vec4s, zero-padded past d and dv, so the inner loops read 4 floats a step.
// One dispatch covers keys [key_first, key_last): the running (max, denominator, accumulator) of
// each row is carried between dispatches in `carry`, so that no invocation loops over more than a
// few dozen key blocks (Mesa's lavapipe ends longer loops that hold barriers early, silently).
// Loop bounds inside the key loop are pipeline constants for the same reason.

override D4: u32 = 16u;      // ceil(d / 4)
override DV4: u32 = 16u;     // ceil(dv / 4)
override BLOCK: u32 = 32u;   // keys per block, <= 64, with BLOCK * (D4 + DV4) <= 1024

// Per row: DV4 accumulator vec4s, then (running max, denominator, 0, 0).

const ROWS: u32 = EXACT_ROWS;
// Keys [BLOCK, D4] then values [BLOCK, DV4]: 16 KiB.
var<workgroup> tile: array<vec4<f32>, EXACT_TILE_VEC4>;

// x where c < width, else 0 (the zero padding of a row to whole vec4s).
fn padded(x: f32, c: u32, width: u32) -> f32 {
    return select(0.0, x, c < width);
}

// Stage `rows` key (value) rows starting at element `first` into the tile, zero-padded to vec4s.
fn stage_keys(first: u32, rows: u32, lid: u32) {
    for (var s = 0u; s < (BLOCK * D4 * 4u + ROWS - 1u) / ROWS; s++) {
        let e = lid + s * ROWS;
        let row = e / (D4 * 4u);
        let col = e % (D4 * 4u);
        if (row < rows) {
            tile[e / 4u][e % 4u] = padded(k[first + row * p.dim + min(col, p.dim - 1u)], col, p.dim);
        }
    }
}

fn stage_values(first: u32, rows: u32, lid: u32) {
    for (var s = 0u; s < (BLOCK * DV4 * 4u + ROWS - 1u) / ROWS; s++) {
        let e = lid + s * ROWS;
        let row = e / (DV4 * 4u);
        let col = e % (DV4 * 4u);
        if (row < rows) {
            tile[BLOCK * D4 + e / 4u][e % 4u] = padded(v[first + row * p.value_dim + min(col, p.value_dim - 1u)], col, p.value_dim);
        }
    }
}

@compute @workgroup_size(64)
fn exact(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let z = wg.y + p.z_base;
    let t = (wg.x + p.row_base) * ROWS + lid;
    let valid = t < p.len;
    var qr: array<vec4<f32>, 32>;
    var acc: array<vec4<f32>, 32>;
    let q_row = (z * p.len + min(t, p.len - 1u)) * p.dim;
    for (var c = 0u; c < D4; c++) {
        var x = vec4<f32>(0.0);
        for (var e = 0u; e < 4u; e++) {
            let col = 4u * c + e;
            x[e] = padded(q[q_row + min(col, p.dim - 1u)], col, p.dim);
        }
        qr[c] = x * p.scale;
    }
    let row = z * p.len + min(t, p.len - 1u);
    let carried = row * (DV4 + 1u);
    var run_max = LOWEST;
    var den = 0.0;
    for (var c = 0u; c < DV4; c++) { acc[c] = vec4<f32>(0.0); }
    if (p.key_first > 0u) {
        for (var c = 0u; c < DV4; c++) { acc[c] = carry[carried + c]; }
        run_max = carry[carried + DV4].x;
        den = carry[carried + DV4].y;
    }

    var key_end = min(p.len, p.key_last);
    if (p.causal != 0u) { key_end = min(key_end, (wg.x + p.row_base + 1u) * ROWS); }
    for (var j0 = p.key_first; j0 < key_end; j0 += BLOCK) {
        let nb = min(BLOCK, key_end - j0);
        stage_keys((z * p.len + j0) * p.dim, nb, lid);
        stage_values((z * p.len + j0) * p.value_dim, nb, lid);
        workgroupBarrier();
        var s: array<f32, 64>;
        var block_max = LOWEST;
        for (var jj = 0u; jj < BLOCK; jj++) {
            s[jj] = LOWEST;
            if (valid && jj < nb && (p.causal == 0u || j0 + jj <= t)) {
                var dot4 = vec4<f32>(0.0);
                for (var c = 0u; c < D4; c++) { dot4 += qr[c] * tile[jj * D4 + c]; }
                s[jj] = dot4.x + dot4.y + dot4.z + dot4.w;
                block_max = max(block_max, s[jj]);
            }
        }
        if (block_max > LOWEST) {
            let new_max = max(run_max, block_max);
            // exp(LOWEST - new_max) underflows to 0 on the first block: nothing to rescale yet.
            let correction = exp(run_max - new_max);
            den *= correction;
            for (var c = 0u; c < DV4; c++) { acc[c] *= correction; }
            for (var jj = 0u; jj < BLOCK; jj++) {
                if (s[jj] > LOWEST) {
                    let w = exp(s[jj] - new_max);
                    den += w;
                    for (var c = 0u; c < DV4; c++) { acc[c] += w * tile[BLOCK * D4 + jj * DV4 + c]; }
                }
            }
            run_max = new_max;
        }
        workgroupBarrier();
    }
    if (!valid) { return; }
    if (p.key_last < p.len) {
        for (var c = 0u; c < DV4; c++) { carry[carried + c] = acc[c]; }
        carry[carried + DV4] = vec4<f32>(run_max, den, 0.0, 0.0);
    } else {
        for (var c = 0u; c < p.value_dim; c++) { out[row * p.value_dim + c] = acc[c / 4u][c % 4u] / den; }
    }
}
