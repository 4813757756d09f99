// The chain rule through the stabilised feature maps, one workgroup per row (docs/math.md §1.3, §1.5).
// Per-row positive factors of queries and the stabilising key offsets (one shared offset, or the
// per-key offsets and prefix max of causal attention) are constants the output does not depend on,
// so they pass no gradient; what remains, with a = x~ W^T and x~ = x d^(-1/4):
//   softmax: phi_i = exp(a_i - c) (queries), exp(a_i - |k~|^2/2 - c) (keys): da_i = dphi_i phi_i,
//            and for keys d x~ gains -(sum_i da_i) x~;
//   trig:    phi = s [cos a, sin a] (s = exp(|k~|^2/2 - c) for keys, 1 for queries):
//            da_i = -dphi_cos_i phi_sin_i + dphi_sin_i phi_cos_i, and keys gain
//            (sum_i dphi_cos_i phi_cos_i + dphi_sin_i phi_sin_i) x~;
//   relu:    da_i = dphi_i where a_i > 0.
// Writes da [rows, m] and dx [rows, d] = scale^2 * coefficient * x (the GEMM then adds scale * da W;
// with accumulate, for a block of the features after the first, dx += instead)
// for rows t < rows of each problem: row t of problem z is x[x_off + z * x_stride + t * dim] (and
// the same in dx), row z * scratch_rows + t in the scratch buffers.

@compute @workgroup_size(REDUCE_GROUP)
fn features_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let e = group_index(wg, nwg);
    if (e >= p.rows * p.problems) { return; }
    let row = (e / p.rows) * p.scratch_rows + e % p.rows;
    let x0 = p.x_off + (e / p.rows) * p.x_stride + (e % p.rows) * p.dim;
    let m = p.features;
    var part = 0.0;
    for (var i = lid; i < m; i += REDUCE_GROUP) {
        var g = 0.0;
        if (p.kernel == KERNEL_SOFTMAX) {
            g = dphi[row * m + i] * phi[row * m + i];
            part -= g;
        } else if (p.kernel == KERNEL_TRIG) {
            let base = row * 2u * m;
            let pc = phi[base + i];
            let ps = phi[base + m + i];
            let gc = dphi[base + i];
            let gs = dphi[base + m + i];
            g = -gc * ps + gs * pc;
            part += gc * pc + gs * ps;
        } else {
            g = select(0.0, dphi[row * m + i], a[row * m + i] > 0.0);
        }
        da[row * m + i] = g;
    }
    var coefficient = workgroup_reduce(part, lid, false);
    if (p.is_key == 0u || p.kernel > KERNEL_TRIG) { coefficient = 0.0; }
    for (var c = lid; c < p.dim; c += REDUCE_GROUP) {
        let g = p.scale * p.scale * coefficient * x[x0 + c];
        dx[x0 + c] = select(g, dx[x0 + c] + g, p.accumulate != 0u);
    }
}
