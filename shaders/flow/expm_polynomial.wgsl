// The exponential's scaling and Taylor stage, shared by `expm` (matrices spread over a workgroup) and
// `expm_private` (a matrix per invocation), which each define `product(dst, x, y)`: slot dst = slot x
// times slot y, and `combine(dst, c, add)`: slot dst = c[0] I + c[1] S1 + c[2] S2 + c[3] S3 + c[4] S4
// (+ slot add when add < SLOTS), S = slots 1..4.

// (degree index, squarings s) for a matrix of 1-norm `norm`: the lowest Bader–Blanes–Casas degree whose
// f32 switch point covers norm / 2^s, with s = 0 unless the top degree is needed.
fn exp_plan(norm: f32) -> vec2<u32> {
    var index = 5u;
    var squarings = 0u;
    for (var t = 5u; t > 0u; t--) { if (norm <= THETA[t - 1u]) { index = t - 1u; } }
    if (norm > THETA[5]) { squarings = u32(ceil(log2(norm / THETA[5]))); }
    return vec2<u32>(index, squarings);
}

// Slot 0 receives T(A) - I of degree `index` for the A in slot 1 (already scaled by 2^-s); slots 2..7
// are overwritten.
fn exp_polynomial(index: u32) {
    if (index == 0u) {
        combine(0u, array<f32, 5>(0.0, 1.0, 0.0, 0.0, 0.0), SLOTS);
    } else if (index == 1u) {
        product(2u, 1u, 1u);
        combine(0u, array<f32, 5>(0.0, 1.0, 0.5, 0.0, 0.0), SLOTS);
    } else if (index == 2u) {
        product(2u, 1u, 1u);
        combine(5u, array<f32, 5>(0.5, 1.0 / 6.0, 1.0 / 24.0, 0.0, 0.0), SLOTS);
        product(6u, 2u, 5u);
        combine(0u, array<f32, 5>(0.0, 1.0, 0.0, 0.0, 0.0), 6u);
    } else if (index == 3u) {
        // Degree 8 (eq. 13 of Bader, Blanes, Casas 2019), slot 4 holding A^4 of the scheme.
        let r = sqrt(177.0);
        let x3 = 2.0 / 3.0;
        product(2u, 1u, 1u);
        combine(5u, array<f32, 5>(0.0, x3 * (1.0 + r) / 88.0, x3 * (1.0 + r) / 352.0, 0.0, 0.0), SLOTS);
        product(4u, 2u, 5u);
        combine(5u, array<f32, 5>(0.0, 0.0, x3, 0.0, 1.0), SLOTS);
        combine(6u, array<f32, 5>((-271.0 + 29.0 * r) / (315.0 * x3), 11.0 * (-1.0 + r) / (1260.0 * x3),
                                     11.0 * (-9.0 + r) / (5040.0 * x3), 0.0, (89.0 - r) / (5040.0 * x3 * x3)), SLOTS);
        product(7u, 5u, 6u);
        combine(0u, array<f32, 5>(0.0, 1.0, (857.0 - 58.0 * r) / 630.0, 0.0, 0.0), 7u);
    } else if (index == 4u) {
        product(2u, 1u, 1u);
        product(3u, 2u, 1u);
        combine(5u, array<f32, 5>(0.0, -0.13181061013830184015, -0.02027855540589259079, -0.00675951846863086359, 0.0), SLOTS);
        product(6u, 5u, 5u);
        combine(6u, array<f32, 5>(0.21169311829980944294, 0.15822438471572672537, 0.16563516943672741501, 0.01078627793157924250, 0.0), 6u);
        combine(5u, array<f32, 5>(4.60000000000000000000, 0.99287510353848683614, -0.13244556105279963884, 0.00172990000000000000, 0.0), 6u);
        product(7u, 5u, 6u);
        combine(0u, array<f32, 5>(-0.01860232051462055322 - 1.0, -0.00500702322573317730, -0.57342012296052226390, -0.13339969394389205970, 0.0), 7u);
    } else {
        product(2u, 1u, 1u);
        product(3u, 1u, 2u);
        product(4u, 3u, 3u);
        combine(5u, array<f32, 5>(0.0, -0.10036558103014462001, -0.00802924648241156960, -0.00089213849804572995, 0.0), SLOTS);
        combine(6u, array<f32, 5>(0.0, 0.0, -0.09233646193671185927, -0.01693649390020817171, -0.00001400867981820361), SLOTS);
        product(7u, 5u, 6u);
        // Slot 6: right = B3 + A9; slot 5: left = right + B2.
        combine(6u, array<f32, 5>(-0.09043168323908105619, -0.06764045190713819075, 0.06759613017704596460, 0.02955525704293155274, -0.00001391802575160607), 7u);
        combine(5u, array<f32, 5>(-10.9676396052962062593, 1.68015813878906197182, 0.05717798464788655127, -0.00698210122488052084, 0.00003349750170860705), 6u);
        product(7u, 5u, 6u);
        combine(0u, array<f32, 5>(-1.0, 0.39784974949964507614, 1.36783778460411719922, 0.49828962252538267755, -0.00063789819459472330), 7u);
    }
}
