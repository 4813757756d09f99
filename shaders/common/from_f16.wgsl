// f16 storage to f32 values: word `w` of `src` holds elements 2w (low half) and 2w + 1 (high half).
// Every f16 is an f32 exactly; the conversion is done on the bits, subnormals included.

fn f16_value(h: u32) -> f32 {
    let negative = (h & 0x8000u) != 0u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    if (e == 0u) {
        // Zero or subnormal: m * 2^-24.
        let x = f32(m) * 5.9604645e-8;
        return select(x, -x, negative);
    }
    // Normal (rebias 15 -> 127), or with e = 31 infinity and NaN.
    let exponent = select(e + 112u, 255u, e == 31u);
    return bitcast<f32>(((h & 0x8000u) << 16u) | (exponent << 23u) | (m << 13u));
}

@compute @workgroup_size(256)
fn from_f16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let w = element_index(wg, nwg, lid, 256u);
    let first = 2u * w;
    if (first >= p.count) {
        return;
    }
    let word = src[w];
    dst[first] = f16_value(word & 0xffffu);
    if (first + 1u < p.count) {
        dst[first + 1u] = f16_value(word >> 16u);
    }
}
