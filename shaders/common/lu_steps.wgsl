// Steps `common/lu` and `common/lu_private` share (docs/math.md §7).

// Start matrix m's factorisation (at step 0, copy `a` into `factors`: elements first_element,
// first_element + stride, ...) or resume it; either way return its running (sign, log |det|), which
// `det` carries between dispatches.
fn lu_start(m: u32, first_element: u32, stride: u32) -> vec2<f32> {
    let base = m * p.n * p.n;
    if (p.first == 0u) {
        for (var e = first_element; e < p.n * p.n; e += stride) {
            factors[base + e] = a[base + e];
        }
        return vec2<f32>(1.0, 0.0);
    }
    return vec2<f32>(det[2u * m], det[2u * m + 1u]);
}

// Record step k's pivot row and pivot value d, and fold them into the running (sign, log |det|).
fn lu_pivot(m: u32, k: u32, pivot: u32, d: f32, running: vec2<f32>) -> vec2<f32> {
    pivots[m * p.n + k] = f32(pivot);
    var s = running.x * sign(d);
    if (pivot != k) { s = -s; }
    return vec2<f32>(s, running.y + log(abs(d)));
}
