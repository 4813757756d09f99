// Batched maps from the Lie algebra to the group (docs/math.md §3.1): the matrix exponential, or with
// method CAYLEY the Cayley map cay(A) = (I - A/2)^(-1) (I + A/2). One workgroup per n x n matrix (n = N <= 64, a pipeline
// constant so that every loop has a fixed trip count). The workgroup computes its matrix's 1-norm,
// picks the Taylor degree and the number of squarings s from the f32 switch points itself (no host
// round trip), evaluates the Bader–Blanes–Casas polynomial of A / 2^s minus the identity, squares in
// increment form D <- D (D + 2I), and writes exp(A) = I + D, or D itself (`increment`), or
// W + W D (`update`: one Lie–Euler step of a flow). The Cayley map's increment
// cay(A) - I = (I - A/2)^(-1) A comes from Gauss–Jordan elimination with partial pivoting of
// [I - A/2 | A], CAYLEY_COLUMNS_PER_PASS columns a pass.
// Intermediates live in `work`: 8 slots of N x N per matrix of this dispatch; the dispatch covers
// matrices first .. first + batch of `a` and `out`. Pass 0 plans and evaluates the polynomial; every
// pass squares at most SQUARINGS_PER_PASS times and leaves the squarings still due in `plans`, and
// the pass that finishes a matrix writes its output (llvmpipe, behind lavapipe and GL, silently cuts
// short a workgroup whose barrier loops run too long, so no pass does much more).

override N: u32 = 4u;

override SQUARINGS_PER_PASS: u32 = 8u;

const GROUP: u32 = 64u;

var<workgroup> partial: array<f32, GROUP>;
var<workgroup> plan: vec2<u32>;
var<workgroup> due: u32;
var<workgroup> factors: array<f32, 64>;
var<workgroup> pivot: u32;

// Element passes per invocation over an N x N matrix. Loops run a fixed number of passes with a
// bounds test inside: llvmpipe (Mesa's software rasterizer behind both lavapipe and GL) silently cuts
// short loops that hold barriers when the loops inside them have per-invocation trip counts.
override PASSES: u32 = (N * N + GROUP - 1u) / GROUP;

fn slot(z: u32, s: u32) -> u32 { return (z * SLOTS + s) * N * N; }

// The first element of this workgroup's input matrix.
fn source(z: u32) -> u32 { return (p.a_first + p.first + z) * N * N; }

fn sync() {
    storageBarrier();
    workgroupBarrier();
}

// work[dst] = work[x] * work[y].
fn product(z: u32, dst: u32, x: u32, y: u32, lid: u32) {
    for (var t = 0u; t < PASSES; t++) {
        let e = lid + t * GROUP;
        if (e >= N * N) { continue; }
        let i = e / N;
        let j = e % N;
        var acc = 0.0;
        for (var k = 0u; k < N; k++) { acc += work[slot(z, x) + i * N + k] * work[slot(z, y) + k * N + j]; }
        work[slot(z, dst) + e] = acc;
    }
    sync();
}

// work[dst] = c[0] I + c[1] S1 + c[2] S2 + c[3] S3 + c[4] S4 (+ work[add] when add < SLOTS),
// with the slots S = (1, 2, 3, 4): A, A^2, A^3, A^6 (or A^4 for degree 8).
fn combine(z: u32, dst: u32, c: array<f32, 5>, add: u32, lid: u32) {
    for (var t = 0u; t < PASSES; t++) {
        let e = lid + t * GROUP;
        if (e >= N * N) { continue; }
        var v = select(0.0, c[0], e / N == e % N);
        for (var s = 1u; s < 5u; s++) {
            if (c[s] != 0.0) { v += c[s] * work[slot(z, s) + e]; }
        }
        if (add < SLOTS) { v += work[slot(z, add) + e]; }
        work[slot(z, dst) + e] = v;
    }
    sync();
}

// Pass 0: the matrix's 1-norm, its degree and squarings, and T(A / 2^s) - I into slot 0.
fn taylor_pass(z: u32, first: u32, lid: u32) {
    // 1-norm: the largest column sum.
    var best = 0.0;
    for (var j = lid; j < N; j += GROUP) {
        var col = 0.0;
        for (var i = 0u; i < N; i++) { col += abs(p.alpha * a[source(z) + i * N + j]); }
        best = max(best, col);
    }
    partial[lid] = best;
    workgroupBarrier();
    if (lid == 0u) {
        var norm = 0.0;
        for (var t = 0u; t < GROUP; t++) { norm = max(norm, partial[t]); }
        var index = 5u;
        var squarings = 0u;
        for (var t = 5u; t > 0u; t--) { if (norm <= THETA[t - 1u]) { index = t - 1u; } }
        if (norm > THETA[5]) { squarings = u32(ceil(log2(norm / THETA[5]))); }
        plan = vec2<u32>(index, squarings);
    }
    let chosen = workgroupUniformLoad(&plan);
    let index = chosen.x;
    let squarings = chosen.y;
    if (lid == 0u) { plans[z] = squarings; }
    let scale = exp2(-f32(squarings));
    // Slot 1: A / 2^s.
    for (var t = 0u; t < PASSES; t++) {
        let e = lid + t * GROUP;
        if (e < N * N) { work[slot(z, 1u) + e] = p.alpha * a[source(z) + e] * scale; }
    }
    sync();
    // Slot 0 receives T(A) - I.
    if (index == 0u) {
        combine(z, 0u, array<f32, 5>(0.0, 1.0, 0.0, 0.0, 0.0), SLOTS, lid);
    } else if (index == 1u) {
        product(z, 2u, 1u, 1u, lid);
        combine(z, 0u, array<f32, 5>(0.0, 1.0, 0.5, 0.0, 0.0), SLOTS, lid);
    } else if (index == 2u) {
        product(z, 2u, 1u, 1u, lid);
        combine(z, 5u, array<f32, 5>(0.5, 1.0 / 6.0, 1.0 / 24.0, 0.0, 0.0), SLOTS, lid);
        product(z, 6u, 2u, 5u, lid);
        combine(z, 0u, array<f32, 5>(0.0, 1.0, 0.0, 0.0, 0.0), 6u, lid);
    } else if (index == 3u) {
        // Degree 8 (eq. 13 of Bader, Blanes, Casas 2019), slot 4 holding A^4 of the scheme.
        let r = sqrt(177.0);
        let x3 = 2.0 / 3.0;
        product(z, 2u, 1u, 1u, lid);
        combine(z, 5u, array<f32, 5>(0.0, x3 * (1.0 + r) / 88.0, x3 * (1.0 + r) / 352.0, 0.0, 0.0), SLOTS, lid);
        product(z, 4u, 2u, 5u, lid);
        combine(z, 5u, array<f32, 5>(0.0, 0.0, x3, 0.0, 1.0), SLOTS, lid);
        combine(z, 6u, array<f32, 5>((-271.0 + 29.0 * r) / (315.0 * x3), 11.0 * (-1.0 + r) / (1260.0 * x3),
                                     11.0 * (-9.0 + r) / (5040.0 * x3), 0.0, (89.0 - r) / (5040.0 * x3 * x3)), SLOTS, lid);
        product(z, 7u, 5u, 6u, lid);
        combine(z, 0u, array<f32, 5>(0.0, 1.0, (857.0 - 58.0 * r) / 630.0, 0.0, 0.0), 7u, lid);
    } else if (index == 4u) {
        product(z, 2u, 1u, 1u, lid);
        product(z, 3u, 2u, 1u, lid);
        combine(z, 5u, array<f32, 5>(0.0, -0.13181061013830184015, -0.02027855540589259079, -0.00675951846863086359, 0.0), SLOTS, lid);
        product(z, 6u, 5u, 5u, lid);
        combine(z, 6u, array<f32, 5>(0.21169311829980944294, 0.15822438471572672537, 0.16563516943672741501, 0.01078627793157924250, 0.0), 6u, lid);
        combine(z, 5u, array<f32, 5>(4.60000000000000000000, 0.99287510353848683614, -0.13244556105279963884, 0.00172990000000000000, 0.0), 6u, lid);
        product(z, 7u, 5u, 6u, lid);
        combine(z, 0u, array<f32, 5>(-0.01860232051462055322 - 1.0, -0.00500702322573317730, -0.57342012296052226390, -0.13339969394389205970, 0.0), 7u, lid);
    } else {
        product(z, 2u, 1u, 1u, lid);
        product(z, 3u, 1u, 2u, lid);
        product(z, 4u, 3u, 3u, lid);
        combine(z, 5u, array<f32, 5>(0.0, -0.10036558103014462001, -0.00802924648241156960, -0.00089213849804572995, 0.0), SLOTS, lid);
        combine(z, 6u, array<f32, 5>(0.0, 0.0, -0.09233646193671185927, -0.01693649390020817171, -0.00001400867981820361), SLOTS, lid);
        product(z, 7u, 5u, 6u, lid);
        // Slot 6: right = B3 + A9; slot 5: left = right + B2.
        combine(z, 6u, array<f32, 5>(-0.09043168323908105619, -0.06764045190713819075, 0.06759613017704596460, 0.02955525704293155274, -0.00001391802575160607), 7u, lid);
        combine(z, 5u, array<f32, 5>(-10.9676396052962062593, 1.68015813878906197182, 0.05717798464788655127, -0.00698210122488052084, 0.00003349750170860705), 6u, lid);
        product(z, 7u, 5u, 6u, lid);
        combine(z, 0u, array<f32, 5>(-1.0, 0.39784974949964507614, 1.36783778460411719922, 0.49828962252538267755, -0.00063789819459472330), 7u, lid);
    }
}

// Writes exp(A) = I + D, D, or W + W D (W read from `out`) from the increment D in slot 0.
fn write_output(z: u32, first: u32, lid: u32) {
    for (var t = 0u; t < PASSES; t++) {
        let e = lid + t * GROUP;
        if (e >= N * N) { continue; }
        let inc = work[slot(z, 0u) + e];
        if (p.mode == INCREMENT) {
            out[first + e] = inc;
        } else if (p.mode == EXP) {
            out[first + e] = inc + select(0.0, 1.0, e / N == e % N);
        } else {
            // out holds W: W + W D, row i of W times column j of D.
            let i = e / N;
            let j = e % N;
            var acc = 0.0;
            for (var k = 0u; k < N; k++) { acc += out[first + i * N + k] * work[slot(z, 0u) + k * N + j]; }
            work[slot(z, 2u) + e] = out[first + e] + acc;
        }
    }
    if (p.mode == UPDATE) {
        sync();
        for (var t = 0u; t < PASSES; t++) {
            let e = lid + t * GROUP;
            if (e < N * N) { out[first + e] = work[slot(z, 2u) + e]; }
        }
    }
}

// Element (i, j) of the augmented [L | R] of the Cayley elimination: L in slot 2, R (ending as
// cay(A) - I) in slot 0.
fn aug(z: u32, i: u32, j: u32) -> u32 {
    if (j < N) { return slot(z, 2u) + i * N + j; }
    return slot(z, 0u) + i * N + j - N;
}

// Pass 0 of the Cayley map: [I - A/2 | A].
fn cayley_setup(z: u32, first: u32, lid: u32) {
    for (var t = 0u; t < PASSES; t++) {
        let e = lid + t * GROUP;
        if (e < N * N) {
            let v = p.alpha * a[source(z) + e];
            work[slot(z, 2u) + e] = select(0.0, 1.0, e / N == e % N) - 0.5 * v;
            work[slot(z, 0u) + e] = v;
        }
    }
    sync();
}

// Gauss–Jordan on column c: pivot, swap, normalise the pivot row, clear the column elsewhere.
fn cayley_column(z: u32, c: u32, lid: u32) {
    if (lid == 0u) {
        var best = c;
        for (var i = c + 1u; i < N; i++) {
            if (abs(work[aug(z, i, c)]) > abs(work[aug(z, best, c)])) { best = i; }
        }
        pivot = best;
    }
    let r = workgroupUniformLoad(&pivot);
    for (var t = 0u; t < (2u * N + GROUP - 1u) / GROUP; t++) {
        let j = lid + t * GROUP;
        if (j < 2u * N && r != c) {
            let x = work[aug(z, c, j)];
            work[aug(z, c, j)] = work[aug(z, r, j)];
            work[aug(z, r, j)] = x;
        }
    }
    sync();
    if (lid < N) { factors[lid] = work[aug(z, lid, c)]; }
    workgroupBarrier();
    let p = factors[c];
    for (var t = 0u; t < (2u * N + GROUP - 1u) / GROUP; t++) {
        let j = lid + t * GROUP;
        if (j < 2u * N) { work[aug(z, c, j)] /= p; }
    }
    sync();
    for (var t = 0u; t < (2u * N * N + GROUP - 1u) / GROUP; t++) {
        let e = lid + t * GROUP;
        let i = e / (2u * N);
        let j = e % (2u * N);
        if (e < 2u * N * N && i != c) { work[aug(z, i, j)] -= factors[i] * work[aug(z, c, j)]; }
    }
    sync();
}

@compute @workgroup_size(64)
fn expm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let z = group_index(wg, nwg);
    if (z >= p.batch) { return; }
    let first = (p.first + z) * N * N;
    if (p.method == CAYLEY) {
        let c0 = p.pass_index * CAYLEY_COLUMNS_PER_PASS;
        if (c0 >= N) { return; }
        if (p.pass_index == 0u) { cayley_setup(z, first, lid); }
        for (var k = 0u; k < CAYLEY_COLUMNS_PER_PASS; k++) {
            if (c0 + k < N) { cayley_column(z, c0 + k, lid); }
        }
        if (c0 + CAYLEY_COLUMNS_PER_PASS < N) { return; }
        write_output(z, first, lid);
        return;
    }
    if (p.pass_index == 0u) {
        taylor_pass(z, first, lid);
    }
    if (lid == 0u) { due = plans[z]; }
    let remaining = workgroupUniformLoad(&due);
    if (remaining == 0u && p.pass_index > 0u) { return; }
    // Squarings in increment form: (I + D)^2 - I = D (D + 2I), between slots 0 and 1.
    let now = min(remaining, SQUARINGS_PER_PASS);
    var d = 0u;
    for (var k = 0u; k < now; k++) {
        for (var t = 0u; t < PASSES; t++) {
            let e = lid + t * GROUP;
            if (e < N * N) { work[slot(z, 2u) + e] = work[slot(z, d) + e] + select(0.0, 2.0, e / N == e % N); }
        }
        sync();
        product(z, 1u - d, d, 2u, lid);
        d = 1u - d;
    }
    if (d == 1u) {
        for (var t = 0u; t < PASSES; t++) {
            let e = lid + t * GROUP;
            if (e < N * N) { work[slot(z, 0u) + e] = work[slot(z, 1u) + e]; }
        }
        sync();
    }
    if (lid == 0u) { plans[z] = remaining - now; }
    if (remaining > now) { return; }
    write_output(z, first, lid);
}
