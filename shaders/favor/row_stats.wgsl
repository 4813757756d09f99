// Per-row statistics of random-feature projections, one workgroup per row t < rows of problem z:
//   row_max = max_i a_i (the shift of the softmax features, so that exp(a_i - row_max) <= 1 is
//             exact however large |x~|^2 is: subtracting half_sq and adding it back would cancel);
//   offset  = the row's stabiliser (docs/math.md §1.5), with half_sq = |x~|^2 / 2, x~ = x d^(-1/4):
//     QUERY_MAX: max_i a_i (softmax queries)        KEY_MAX: max_i a_i - half_sq (softmax keys)
//     HALF_SQ:   half_sq (trig keys)                 ZERO: 0 (relu, trig queries)
// where a = x~ W^T came from the GEMM. With combine, a is one block of the features and both are the
// maximum of what is there and this block's (every offset above is a maximum over the features
// less a per-row constant). Row t of problem z is x[x_off + z * x_stride + t * dim] in
// the input and row z * scratch_rows + t in the scratch buffers.

@compute @workgroup_size(REDUCE_GROUP)
fn row_stats(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let e = group_index(wg, nwg);
    if (e >= p.rows * p.problems) { return; }
    let z = e / p.rows;
    let t = e % p.rows;
    let row = z * p.scratch_rows + t;
    let x0 = p.x_off + z * p.x_stride + t * p.dim;
    var sq = 0.0;
    for (var c = lid; c < p.dim; c += REDUCE_GROUP) {
        let v = x[x0 + c];
        sq += v * v;
    }
    let hs = workgroup_reduce(sq, lid, false) / (2.0 * sqrt(f32(p.dim)));
    var best = LOWEST;
    for (var i = lid; i < p.features; i += REDUCE_GROUP) {
        best = max(best, a[row * p.features + i]);
    }
    best = workgroup_reduce(best, lid, true);
    if (lid == 0u) {
        var off = 0.0;
        if (p.kind == QUERY_MAX) { off = best; }
        if (p.kind == KEY_MAX) { off = best - hs; }
        if (p.kind == HALF_SQ) { off = hs; }
        if (p.combine != 0u) {
            best = max(best, row_max[row]);
            off = max(off, offset[row]);
        }
        row_max[row] = best;
        offset[row] = off;
    }
}
