// o[t, c] = num[t, c] / num[t, dv]: the attention numerator over its denominator column, for rows
// t < rows of each problem, written to out[out_off + z * out_stride + t * dv + c].
// A zero (or non-finite) denominator gives a zero row, never NaN (docs/math.md §1.5).

struct Normalize { rows: u32, problems: u32, scratch_rows: u32, value_dim: u32, out_off: u32, out_stride: u32, _pad0: u32, _pad1: u32 }

@group(0) @binding(0) var<uniform> p: Normalize;
@group(0) @binding(1) var<storage, read> num: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn normalize(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let e = (wg.y * nwg.x + wg.x) * 256u + lid;
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
