// o[t, c] = num[t, c] / num[t, dv]: the attention numerator over its denominator column, for rows
// t < rows of each problem, written to out[out_off + z * out_stride + t * dv + c].
// A zero (or non-finite) denominator gives a zero row, never NaN (docs/math.md §1.5).

@compute @workgroup_size(256)
fn normalize(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let e = element_index(wg, nwg, lid, 256u);
    if (e >= p.problems * p.rows * p.value_dim) { return; }
    let c = e % p.value_dim;
    let zt = e / p.value_dim;
    let z = zt / p.rows;
    let t = zt % p.rows;
    let width = p.value_dim + 1u;
    let row = (z * p.scratch_rows + t) * width;
    let den = num[row + p.value_dim];
    var o = 0.0;
    // Finite means an exponent field other than all ones; tested on the bits, which no fast-math
    // assumption can fold away.
    let finite = (bitcast<u32>(den) & 0x7f800000u) != 0x7f800000u;
    if (den != 0.0 && finite) { o = num[row + c] / den; }
    out[p.out_off + z * p.out_stride + t * p.value_dim + c] = o;
}
