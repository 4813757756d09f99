// One workgroup per row i = row0 + t of the block (docs/math.md §9.3): from the support logits
// (support, gathered by express/support_gather) and the masked row of z,
//   r_j = z_j - t_j on the support, epsilon_i = max r - min r, mean r;
//   lse_in, lse_out: log-sum-exp on and off the support, each shifted by its own maximum;
//   delta_i = 1 / (1 + exp(lse_in - lse_out)), 0 when the support is the whole row;
// written to stats[2i], stats[2i + 1], and fits[4t..4t + 4] = (mean r, lse_in, lse_out, h) for the
// gradient, h = max(0, lse_out - lse_in - tau) (0 without an outside).

@compute @workgroup_size(REDUCE_GROUP)
fn row_fit(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let t = group_index(wg, nwg);
    if (t >= p.rows) { return; }
    let i = p.row0 + t;
    let s0 = starts[i];
    let count = starts[i + 1u] - s0;
    var lo = -LOWEST;
    var hi = LOWEST;
    var sum = 0.0;
    var top_in = LOWEST;
    for (var e = lid; e < count; e += REDUCE_GROUP) {
        let zj = support[s0 - p.first + e];
        let r = zj - targets[s0 + e];
        lo = min(lo, r);
        hi = max(hi, r);
        sum += r;
        top_in = max(top_in, zj);
    }
    lo = -workgroup_reduce(-lo, lid, true);
    hi = workgroup_reduce(hi, lid, true);
    let mean = workgroup_reduce(sum, lid, false) / f32(count);
    top_in = workgroup_reduce(top_in, lid, true);
    var sum_in = 0.0;
    for (var e = lid; e < count; e += REDUCE_GROUP) {
        sum_in += exp(support[s0 - p.first + e] - top_in);
    }
    let lse_in = top_in + log(workgroup_reduce(sum_in, lid, false));
    let row = t * p.len;
    var top_out = LOWEST;
    for (var j = lid; j < p.len; j += REDUCE_GROUP) {
        top_out = max(top_out, z[row + j]);
    }
    top_out = workgroup_reduce(top_out, lid, true);
    var sum_out = 0.0;
    for (var j = lid; j < p.len; j += REDUCE_GROUP) {
        sum_out += exp(z[row + j] - top_out);
    }
    sum_out = workgroup_reduce(sum_out, lid, false);
    if (lid == 0u) {
        let outside = count < p.len;
        let lse_out = top_out + log(sum_out);
        stats[2u * i] = hi - lo;
        stats[2u * i + 1u] = select(0.0, 1.0 / (1.0 + exp(lse_in - lse_out)), outside);
        fits[4u * t] = mean;
        fits[4u * t + 1u] = lse_in;
        fits[4u * t + 2u] = lse_out;
        fits[4u * t + 3u] = select(0.0, max(0.0, lse_out - lse_in - p.tau), outside);
    }
}
