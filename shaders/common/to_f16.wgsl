// f32 values to f16 storage: word `w` of `dst` packs elements 2w (low half) and 2w + 1 (high half;
// zero past the end). The rounding is done on the bits, so every adapter rounds alike: to nearest,
// ties to even (what `half::f16::from_f32` does), a magnitude of 65520 or more to infinity, NaN to
// NaN. (WGSL leaves the rounding direction and out-of-range results of its conversions open.)

fn f16_bits(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    let sign = (b >> 16u) & 0x8000u;
    let a = b & 0x7fffffffu;
    if (a > 0x7f800000u) {
        return sign | 0x7e00u;
    }
    // 65520 is halfway between 65504 (the largest f16) and 2^16; the tie goes to the even 2^16: inf.
    if (a >= 0x477ff000u) {
        return sign | 0x7c00u;
    }
    if (a >= 0x38800000u) {
        // A normal f16: rebias the exponent (127 - 15 = 112) and round away 13 mantissa bits.
        let m = a - 0x38000000u;
        return sign | ((m + 0xfffu + ((m >> 13u) & 1u)) >> 13u);
    }
    if (a < 0x33000000u) {
        // Below 2^-25: the nearest f16 is zero (2^-25 itself is a tie that goes to the even zero).
        return sign;
    }
    // A subnormal f16, in units of 2^-24: the 24-bit mantissa shifted right by 126 - e (14 to 24).
    let shift = 126u - (a >> 23u);
    let mant = (a & 0x7fffffu) | 0x800000u;
    let q = mant >> shift;
    let rest = mant & ((1u << shift) - 1u);
    let halfway = 1u << (shift - 1u);
    let up = rest > halfway || (rest == halfway && (q & 1u) == 1u);
    return sign | (q + select(0u, 1u, up));
}

@compute @workgroup_size(256)
fn to_f16(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let w = element_index(wg, nwg, lid, 256u);
    let first = 2u * w;
    if (first >= p.count) {
        return;
    }
    var word = f16_bits(src[first]);
    if (first + 1u < p.count) {
        word = word | (f16_bits(src[first + 1u]) << 16u);
    }
    dst[w] = word;
}
