// The key side of the refinement's gradient, dk_j = sum_i dz_ij q_i, keys j = first.. first + 4 per
// invocation (docs/math.md §9.3), from the rows' fits (express/fit_rows) without a block of logits:
// every row with h_i > 0 and j off its support adds h_i exp(z_ij - lse_out_i) q_i (a tile of 4 rows
// all with h_i = 0, under the mass target, is skipped whole); then each support entry (i, j) of
// column j (col_starts, col_entries: the pattern by columns, rows ascending) adds its own,
// ((r_ij - mean r_i) - h_i exp(z_ij - lse_in_i)) q_i.

fn support_at(e: u32) -> u32 {
    return entry_rows[col_entries[e]];
}

// Key first + r's support entries into dk; acc[c] column r is its sum over the rows off them.
fn finish_key(acc: ptr<function, Span>, first: u32, r: u32) {
    let j = first + r;
    if (j >= p.len) { return; }
    for (var c = 0u; c < D4; c++) { dk[j * D4 + c] = (*acc)[c][r]; }
    for (var e = col_starts[j]; e < col_starts[j + 1u]; e++) {
        let entry = col_entries[e];
        let i = entry_rows[entry];
        var z = 0.0;
        for (var c = 0u; c < D4; c++) { z += dot(k[j * D4 + c], q[i * D4 + c]); }
        let fit = fits[i];
        let dz = (z - targets[entry] - fit.x) - fit.w * exp(z - fit.y);
        for (var c = 0u; c < D4; c++) { dk[j * D4 + c] += dz * q[i * D4 + c]; }
    }
}

fn fit_columns_body(first: u32) {
    var kt: Span;
    hold(&kt, first, true);
    let keys = min(vec4<u32>(first) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.len - 1u));
    var support = start_support(
        vec4<u32>(col_starts[keys.x], col_starts[keys.y], col_starts[keys.z], col_starts[keys.w]),
        vec4<u32>(col_starts[keys.x + 1u], col_starts[keys.y + 1u], col_starts[keys.z + 1u], col_starts[keys.w + 1u]));
    var acc: Span;
    for (var c = 0u; c < D4; c++) { acc[c] = mat4x4<f32>(); }
    var tile: Span;
    for (var i0 = 0u; i0 < p.len; i0 += 4u) {
        // Rows i0.. i0 + 4's lse_out and h (0 past p.len), the same in every invocation.
        let fit = transpose(load_fits(i0));
        let past = vec4<u32>(i0) + vec4<u32>(0u, 1u, 2u, 3u) >= vec4<u32>(p.len);
        let h = select(fit[3], vec4<f32>(), past);
        if (any(h > vec4<f32>())) {
            load_tile(&tile, i0);
            // Column t: the logits of row i0 + t against the 4 keys, weighted.
            var z = mat4x4<f32>();
            for (var c = 0u; c < D4; c++) { z += kt[c] * tile[c]; }
            let m = mask_tile(z, &support, i0);
            let w = mat4x4<f32>(weight(m, 0u, h.x, fit[2].x), weight(m, 1u, h.y, fit[2].y),
                                weight(m, 2u, h.z, fit[2].z), weight(m, 3u, h.w, fit[2].w));
            let wt = transpose(w);
            for (var c = 0u; c < D4; c++) { acc[c] += tile[c] * wt; }
        } else {
            // The support must still step past these rows.
            mask_tile(mat4x4<f32>(), &support, i0);
        }
    }
    finish_key(&acc, first, 0u);
    finish_key(&acc, first, 1u);
    finish_key(&acc, first, 2u);
    finish_key(&acc, first, 3u);
}

// Column t of the weights, h exp(z - lse_out) where kept, and 0 where h = 0 (where exp(z - lse_out)
// may overflow).
fn weight(m: Masked, t: u32, h: f32, lse_out: f32) -> vec4<f32> {
    return select(vec4<f32>(), h * exp(m.z[t] - lse_out) * m.keep[t], h > 0.0);
}
