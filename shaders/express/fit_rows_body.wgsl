// The check and the query side of the refinement's gradient without a block of logits (docs/math.md
// §9.3), rows i = first.. first + 4 per invocation: the logits z_j = q_i . k_j are made as they are
// needed. Over the keys off each row's support, in tiles of 4 with a running maximum `top`:
// total = sum exp(z_j - top) and, for the gradient, acc = sum exp(z_j - top) k_j. Then per row, over
// its support: r_j = z_j - t_j, epsilon_i = max r - min r, mean r and lse_in.
// Writes stats[2i..] = (epsilon_i, delta_i), fits[i] = (mean r, lse_in, lse_out, h) and, for the
// gradient, dq_i = h acc / total + sum over the support of ((r_j - mean r) - h exp(z_j - lse_in)) k_j.

fn support_at(e: u32) -> u32 {
    return columns[e];
}

fn key_logit(i: u32, j: u32) -> f32 {
    var z = 0.0;
    for (var c = 0u; c < D4; c++) { z += dot(q[i * D4 + c], k[j * D4 + c]); }
    return z;
}

// Row first + r's support and sums into its stats, fit and dq; acc[c] column r is its acc.
fn finish_row(acc: ptr<function, Span>, first: u32, r: u32, top: f32, total: f32) {
    let i = first + r;
    if (i >= p.len) { return; }
    let s0 = starts[i];
    let s1 = starts[i + 1u];
    var lo = -LOWEST;
    var hi = LOWEST;
    var sum_r = 0.0;
    var top_in = LOWEST;
    for (var e = s0; e < s1; e++) {
        let z = key_logit(i, columns[e]);
        let res = z - targets[e];
        lo = min(lo, res);
        hi = max(hi, res);
        sum_r += res;
        top_in = max(top_in, z);
    }
    let mean = sum_r / f32(s1 - s0);
    var in_total = 0.0;
    for (var e = s0; e < s1; e++) { in_total += exp(key_logit(i, columns[e]) - top_in); }
    let lse_in = top_in + log(in_total);
    let outside = total > 0.0;
    let lse_out = select(LOWEST, top + log(total), outside);
    let h = select(0.0, max(0.0, lse_out - lse_in - p.tau), outside);
    stats[2u * i] = hi - lo;
    stats[2u * i + 1u] = select(0.0, 1.0 / (1.0 + exp(lse_in - lse_out)), outside);
    fits[i] = vec4<f32>(mean, lse_in, lse_out, h);
    if (p.gradient == 0u) { return; }
    let scale = select(0.0, h / total, outside);
    for (var c = 0u; c < D4; c++) { dq[i * D4 + c] = scale * (*acc)[c][r]; }
    for (var e = s0; e < s1; e++) {
        let j = columns[e];
        let z = key_logit(i, j);
        let dz = (z - targets[e] - mean) - h * exp(z - lse_in);
        for (var c = 0u; c < D4; c++) { dq[i * D4 + c] += dz * k[j * D4 + c]; }
    }
}

fn fit_rows_body(first: u32) {
    var qt: Span;
    hold(&qt, first, false);
    let rows = min(vec4<u32>(first) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.len - 1u));
    var support = start_support(vec4<u32>(starts[rows.x], starts[rows.y], starts[rows.z], starts[rows.w]),
                                vec4<u32>(starts[rows.x + 1u], starts[rows.y + 1u], starts[rows.z + 1u], starts[rows.w + 1u]));
    var acc: Span;
    for (var c = 0u; c < D4; c++) { acc[c] = mat4x4<f32>(); }
    var top = vec4<f32>(LOWEST);
    var total = vec4<f32>();
    var tile: Span;
    for (var j0 = 0u; j0 < p.len; j0 += 4u) {
        load_tile(&tile, j0);
        // Column t: the logits of key j0 + t for the 4 rows.
        var z = mat4x4<f32>();
        for (var c = 0u; c < D4; c++) { z += qt[c] * tile[c]; }
        let m = mask_tile(z, &support, j0);
        let tile_top = max(top, max(max(m.z[0], m.z[1]), max(m.z[2], m.z[3])));
        let rescale = exp(top - tile_top);
        top = tile_top;
        let w = mat4x4<f32>(exp(m.z[0] - top) * m.keep[0], exp(m.z[1] - top) * m.keep[1],
                            exp(m.z[2] - top) * m.keep[2], exp(m.z[3] - top) * m.keep[3]);
        total = total * rescale + w[0] + w[1] + w[2] + w[3];
        if (p.gradient != 0u) {
            // Column r of acc[c] (row r's vec4 c): rescaled, plus sum over t of w[t][r] key t's vec4 c.
            let wt = transpose(w);
            for (var c = 0u; c < D4; c++) { acc[c] = scale_columns(acc[c], rescale) + tile[c] * wt; }
        }
    }
    finish_row(&acc, first, 0u, top.x, total.x);
    finish_row(&acc, first, 1u, top.y, total.y);
    finish_row(&acc, first, 2u, top.z, total.z);
    finish_row(&acc, first, 3u, top.w, total.w);
}
