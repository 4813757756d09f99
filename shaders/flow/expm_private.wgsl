// The group maps of `expm` (docs/math.md §3.1) for n <= 8, one matrix per invocation with every
// intermediate in private variables: no workgroup memory, barriers or scratch buffer, so a batch of
// small matrices runs at the adapter's arithmetic rate. A matrix is held as 2 x 2 blocks of mat4x4
// (only the first block where N <= 4), zero-padded: every map keeps the padding's block apart, so the
// n x n block is exact. Nothing indexes a matrix dynamically: the slots are separate variables, and
// rows, columns and entries are picked with one-hot vectors (exact: the other terms are zeros) and
// selects (a dynamically indexed private array costs a gather per element on CPU adapters, and GL
// drivers expand it into a branch per element, minutes of compilation at n = 6). Each matrix takes
// its own degree and squarings; the output modes are those of `expm`.

override N: u32 = 3u;

struct Mat { a: mat4x4<f32>, b: mat4x4<f32>, c: mat4x4<f32>, d: mat4x4<f32> }

const ZERO4 = mat4x4<f32>();
const EYE4 = mat4x4<f32>(1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0);

var<private> s0: Mat;
var<private> s1: Mat;
var<private> s2: Mat;
var<private> s3: Mat;
var<private> s4: Mat;
var<private> s5: Mat;
var<private> s6: Mat;
var<private> s7: Mat;

fn slot(i: u32) -> Mat {
    switch i {
        case 0u: { return s0; }
        case 1u: { return s1; }
        case 2u: { return s2; }
        case 3u: { return s3; }
        case 4u: { return s4; }
        case 5u: { return s5; }
        case 6u: { return s6; }
        default: { return s7; }
    }
}

fn set_slot(i: u32, m: Mat) {
    switch i {
        case 0u: { s0 = m; }
        case 1u: { s1 = m; }
        case 2u: { s2 = m; }
        case 3u: { s3 = m; }
        case 4u: { s4 = m; }
        case 5u: { s5 = m; }
        case 6u: { s6 = m; }
        default: { s7 = m; }
    }
}

fn wide() -> bool { return N > 4u; }

fn mul(x: Mat, y: Mat) -> Mat {
    if (!wide()) { return Mat(x.a * y.a, ZERO4, ZERO4, ZERO4); }
    return Mat(x.a * y.a + x.b * y.c, x.a * y.b + x.b * y.d, x.c * y.a + x.d * y.c, x.c * y.b + x.d * y.d);
}

fn scaled(c: f32, x: Mat) -> Mat {
    if (!wide()) { return Mat(c * x.a, ZERO4, ZERO4, ZERO4); }
    return Mat(c * x.a, c * x.b, c * x.c, c * x.d);
}

fn sum(x: Mat, y: Mat) -> Mat {
    if (!wide()) { return Mat(x.a + y.a, ZERO4, ZERO4, ZERO4); }
    return Mat(x.a + y.a, x.b + y.b, x.c + y.c, x.d + y.d);
}

fn eye(c: f32) -> Mat { return Mat(c * EYE4, ZERO4, ZERO4, c * EYE4); }

fn product(dst: u32, x: u32, y: u32) { set_slot(dst, mul(slot(x), slot(y))); }

fn combine(dst: u32, c: array<f32, 5>, add: u32) {
    var v = sum(sum(eye(c[0]), scaled(c[1], s1)), sum(scaled(c[2], s2), sum(scaled(c[3], s3), scaled(c[4], s4))));
    if (add < SLOTS) { v = sum(v, slot(add)); }
    set_slot(dst, v);
}

// A column or row of 8 as two halves.
struct Vec8 { t: vec4<f32>, b: vec4<f32> }

fn unit(c: u32) -> Vec8 {
    let lanes = vec4<u32>(0u, 1u, 2u, 3u);
    return Vec8(select(vec4<f32>(), vec4<f32>(1.0), lanes == vec4<u32>(c)), select(vec4<f32>(), vec4<f32>(1.0), lanes + 4u == vec4<u32>(c)));
}

fn entry(v: Vec8, i: u32) -> f32 {
    let e = unit(i);
    return dot(v.t, e.t) + dot(v.b, e.b);
}

// m e_c: column c.
fn column(m: Mat, c: u32) -> Vec8 {
    let e = unit(c);
    if (!wide()) { return Vec8(m.a * e.t, vec4<f32>()); }
    return Vec8(m.a * e.t + m.b * e.b, m.c * e.t + m.d * e.b);
}

// e_r^T m: row r.
fn row(m: Mat, r: u32) -> Vec8 {
    let e = unit(r);
    if (!wide()) { return Vec8(e.t * m.a, vec4<f32>()); }
    return Vec8(e.t * m.a + e.b * m.c, e.t * m.b + e.b * m.d);
}

fn outer4(u: vec4<f32>, v: vec4<f32>) -> mat4x4<f32> { return mat4x4<f32>(u * v.x, u * v.y, u * v.z, u * v.w); }

// f u v^T.
fn outer(f: f32, u: Vec8, v: Vec8) -> Mat {
    let fu = Vec8(f * u.t, f * u.b);
    if (!wide()) { return Mat(outer4(fu.t, v.t), ZERO4, ZERO4, ZERO4); }
    return Mat(outer4(fu.t, v.t), outer4(fu.t, v.b), outer4(fu.b, v.t), outer4(fu.b, v.b));
}

// Row i of the row-major n x n matrix at `first` of `a` times alpha (or of `out`), zero past n.
fn load_row(first: u32, i: u32, from_out: bool) -> Vec8 {
    var r = Vec8(vec4<f32>(), vec4<f32>());
    if (i >= N) { return r; }
    for (var j = 0u; j < N; j++) {
        var x = 0.0;
        if (from_out) { x = out[first + i * N + j]; } else { x = p.alpha * a[first + i * N + j]; }
        let e = unit(j);
        r = Vec8(r.t + x * e.t, r.b + x * e.b);
    }
    return r;
}

// Rows i0..i0 + 4 as the left and right blocks, each block's transpose having them as columns (no
// index is dynamic).
fn load_rows(first: u32, i0: u32, from_out: bool) -> array<mat4x4<f32>, 2> {
    let r0 = load_row(first, i0, from_out);
    let r1 = load_row(first, i0 + 1u, from_out);
    let r2 = load_row(first, i0 + 2u, from_out);
    let r3 = load_row(first, i0 + 3u, from_out);
    return array<mat4x4<f32>, 2>(transpose(mat4x4<f32>(r0.t, r1.t, r2.t, r3.t)), transpose(mat4x4<f32>(r0.b, r1.b, r2.b, r3.b)));
}

fn load(first: u32, from_out: bool) -> Mat {
    let top = load_rows(first, 0u, from_out);
    if (!wide()) { return Mat(top[0], top[1], ZERO4, ZERO4); }
    let bottom = load_rows(first, 4u, from_out);
    return Mat(top[0], top[1], bottom[0], bottom[1]);
}

fn store_row(first: u32, i: u32, r: Vec8) {
    if (i >= N) { return; }
    for (var j = 0u; j < N; j++) { out[first + i * N + j] = entry(r, j); }
}

// Rows i0..i0 + 4, held in the blocks left and right.
fn store_rows(first: u32, i0: u32, left: mat4x4<f32>, right: mat4x4<f32>) {
    let lt = transpose(left);
    let rt = transpose(right);
    store_row(first, i0, Vec8(lt[0], rt[0]));
    store_row(first, i0 + 1u, Vec8(lt[1], rt[1]));
    store_row(first, i0 + 2u, Vec8(lt[2], rt[2]));
    store_row(first, i0 + 3u, Vec8(lt[3], rt[3]));
}

fn store(first: u32, m: Mat) {
    store_rows(first, 0u, m.a, m.b);
    if (wide()) { store_rows(first, 4u, m.c, m.d); }
}

fn abs4(m: mat4x4<f32>) -> mat4x4<f32> { return mat4x4<f32>(abs(m[0]), abs(m[1]), abs(m[2]), abs(m[3])); }

// The largest column sum of |m|.
fn one_norm(m: Mat) -> f32 {
    let ones = vec4<f32>(1.0);
    let left = ones * abs4(m.a) + ones * abs4(m.c);
    let right = ones * abs4(m.b) + ones * abs4(m.d);
    let most = max(left, right);
    return max(max(most.x, most.y), max(most.z, most.w));
}

// exp(A) - I.
fn exp_increment(source: u32) -> Mat {
    let x = load(source, false);
    let plan = exp_plan(one_norm(x));
    s1 = scaled(exp2(-f32(plan.y)), x);
    // Each matrix its own degree: the top degree's increment form cancels for small matrices.
    exp_polynomial(plan.x);
    // Squarings in increment form: (I + D)^2 - I = D (D + 2I).
    for (var k = 0u; k < plan.y; k++) { s0 = mul(s0, sum(s0, eye(2.0))); }
    return s0;
}

// Rows c and p of the columns of the blocks top over bottom swapped (exactly).
fn swap_halves(top: mat4x4<f32>, bottom: mat4x4<f32>, c: u32, p: u32) -> array<mat4x4<f32>, 2> {
    let ec = unit(c);
    let ep = unit(p);
    var t = top;
    var b = bottom;
    for (var k = 0u; k < 4u; k++) {
        let x = Vec8(top[k], bottom[k]);
        let xc = dot(x.t, ec.t) + dot(x.b, ec.b);
        let xp = dot(x.t, ep.t) + dot(x.b, ep.b);
        t[k] = select(select(x.t, vec4<f32>(xc), ep.t == vec4<f32>(1.0)), vec4<f32>(xp), ec.t == vec4<f32>(1.0));
        b[k] = select(select(x.b, vec4<f32>(xc), ep.b == vec4<f32>(1.0)), vec4<f32>(xp), ec.b == vec4<f32>(1.0));
    }
    return array<mat4x4<f32>, 2>(t, b);
}

fn swap_rows(m: Mat, c: u32, p: u32) -> Mat {
    let left = swap_halves(m.a, m.c, c, p);
    if (!wide()) { return Mat(left[0], ZERO4, ZERO4, ZERO4); }
    let right = swap_halves(m.b, m.d, c, p);
    return Mat(left[0], right[0], left[1], right[1]);
}

// Row c of m times s.
fn scale_row(m: Mat, c: u32, s: f32) -> Mat {
    let e = unit(c);
    let t = select(vec4<f32>(1.0), vec4<f32>(s), e.t == vec4<f32>(1.0));
    let b = select(vec4<f32>(1.0), vec4<f32>(s), e.b == vec4<f32>(1.0));
    let top = mat4x4<f32>(t, t, t, t);
    let bottom = mat4x4<f32>(b, b, b, b);
    if (!wide()) { return Mat(times4(top, m.a), ZERO4, ZERO4, ZERO4); }
    return Mat(times4(top, m.a), times4(top, m.b), times4(bottom, m.c), times4(bottom, m.d));
}

fn times4(x: mat4x4<f32>, y: mat4x4<f32>) -> mat4x4<f32> { return mat4x4<f32>(x[0] * y[0], x[1] * y[1], x[2] * y[2], x[3] * y[3]); }

// cay(A) - I = (I - A/2)^(-1) A by Gauss–Jordan elimination of [I - A/2 | A] with partial pivoting,
// with no dynamic index into a matrix: rows swap through selects, and with l the pivot column less
// its pivot l_c, the other rows lose the rank-one l row_c^T / l_c before row c is divided by l_c.
fn cayley_increment(source: u32) -> Mat {
    var r = load(source, false);
    var l = sum(eye(1.0), scaled(-0.5, r));
    for (var c = 0u; c < N; c++) {
        let col = column(l, c);
        let size = Vec8(abs(col.t), abs(col.b));
        var pivot = c;
        var largest = entry(size, c);
        for (var i = c + 1u; i < N; i++) {
            let x = entry(size, i);
            if (x > largest) {
                pivot = i;
                largest = x;
            }
        }
        l = swap_rows(l, c, pivot);
        r = swap_rows(r, c, pivot);
        let pivot_value = entry(col, pivot);
        // Column c after the swap, less its pivot: the entry moved from row c to row `pivot`.
        let e = unit(c);
        let ep = unit(pivot);
        let moved = entry(col, c);
        let others = Vec8(select(select(col.t, vec4<f32>(moved), ep.t == vec4<f32>(1.0)), vec4<f32>(), e.t == vec4<f32>(1.0)),
                          select(select(col.b, vec4<f32>(moved), ep.b == vec4<f32>(1.0)), vec4<f32>(), e.b == vec4<f32>(1.0)));
        let f = -1.0 / pivot_value;
        l = scale_row(sum(l, outer(f, others, row(l, c))), c, 1.0 / pivot_value);
        r = scale_row(sum(r, outer(f, others, row(r, c))), c, 1.0 / pivot_value);
    }
    return r;
}

@compute @workgroup_size(64)
fn expm_private(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let z = element_index(wg, nwg, lid, 64u);
    if (z >= p.batch) { return; }
    let first = (p.first + z) * N * N;
    let source = (p.a_first + p.first + z) * N * N;
    var inc: Mat;
    if (p.method == CAYLEY) { inc = cayley_increment(source); } else { inc = exp_increment(source); }
    if (p.mode == EXP) {
        inc = sum(inc, eye(1.0));
    } else if (p.mode == UPDATE) {
        // W + W D, the small increment W D formed first and added to W once.
        let w = load(first, true);
        inc = sum(w, mul(w, inc));
    }
    store(first, inc);
}
