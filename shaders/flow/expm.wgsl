// Batched maps from the Lie algebra to the group (docs/math.md §3.1): the matrix exponential, or with
// method CAYLEY the Cayley map cay(A) = (I - A/2)^(-1) (I + A/2), for n x n matrices (n = N <= 64, a
// pipeline constant; n <= 8 goes to `expm_private`). p.lanes invocations share a matrix: 64 (one
// workgroup per matrix), or 16 for N <= 16 in large batches, where a workgroup per matrix would leave
// most invocations idle at every barrier.
// Each matrix's 1-norm picks its Taylor degree and number of squarings s from the f32 switch points
// on the device (no host round trip); a workgroup evaluates the highest degree any of its matrices
// needs (a higher degree only adds accuracy), so that every barrier stays in uniform control flow.
// The Bader–Blanes–Casas polynomial of A / 2^s minus the identity is squared in increment form
// D <- D (D + 2I), and the output is exp(A) = I + D, or D itself (`increment`), or W + W D
// (`update`: one Lie–Euler step of a flow). The Cayley map's increment cay(A) - I = (I - A/2)^(-1) A
// comes from Gauss–Jordan elimination with partial pivoting of [I - A/2 | A],
// CAYLEY_COLUMNS_PER_PASS columns a pass.
// Intermediates live in `work`: 8 slots of N x N per matrix of this dispatch; the dispatch covers
// matrices first .. first + batch of `a` and `out`. Pass 0 plans and evaluates the polynomial; every
// pass squares at most SQUARINGS_PER_PASS times and leaves the squarings still due in `plans`, and
// the pass that finishes a matrix writes its output (llvmpipe, behind lavapipe and GL, silently cuts
// short a workgroup whose barrier loops run too long, so no pass does much more).

override N: u32 = 4u;

override SQUARINGS_PER_PASS: u32 = 8u;

const GROUP: u32 = 64u;

var<workgroup> partial: array<f32, GROUP>;
var<workgroup> counts: array<u32, GROUP>;
var<workgroup> top: u32;
// N pivot-column factors per matrix of the workgroup (64 / lanes() * N <= 64).
var<workgroup> factors: array<f32, 64>;
var<workgroup> pivots: array<u32, GROUP>;

// Invocations per matrix (a divisor of 64) and the element passes each makes over an N x N matrix.
// Loops run a uniform number of passes with a bounds test inside: llvmpipe (Mesa's software rasterizer
// behind both lavapipe and GL) silently cuts short loops that hold barriers when the loops inside them
// have per-invocation trip counts. Packed matrices take the count from the uniforms (p.lanes), not
// from a pipeline constant, so that LLVM does not unroll every element loop (minutes of shader
// compilation at n = 3); a workgroup per matrix sets LANES = 64, which folds into every count (its
// loops are short and unroll well).
override LANES: u32 = 0u;

fn lanes() -> u32 { return select(p.lanes, LANES, LANES != 0u); }

fn passes() -> u32 { return (N * N + lanes() - 1u) / lanes(); }

// This invocation's matrix: its index in the dispatch, its index in the workgroup, the lane, whether
// it exists (the last workgroup may be partly empty), and where it starts in `out`.
var<private> z: u32;
var<private> m: u32;
var<private> lane: u32;
var<private> live: bool;
var<private> first: u32;

fn slot(s: u32) -> u32 { return (z * SLOTS + s) * N * N; }

// The first element of this invocation's input matrix.
fn source() -> u32 { return (p.a_first + p.first + z) * N * N; }

fn sync() {
    storageBarrier();
    workgroupBarrier();
}

// The largest `value` over the workgroup, as a uniform value.
fn workgroup_max(value: u32, lid: u32) -> u32 {
    counts[lid] = value;
    workgroupBarrier();
    if (lid == 0u) {
        var most = 0u;
        for (var t = 0u; t < GROUP; t++) { most = max(most, counts[t]); }
        top = most;
    }
    return workgroupUniformLoad(&top);
}

// work[dst] = work[x] * work[y], this invocation's elements.
fn multiply(dst: u32, x: u32, y: u32) {
    for (var t = 0u; t < passes(); t++) {
        let e = lane + t * lanes();
        if (e >= N * N) { continue; }
        let i = e / N;
        let j = e % N;
        var acc = 0.0;
        for (var k = 0u; k < N; k++) { acc += work[slot(x) + i * N + k] * work[slot(y) + k * N + j]; }
        work[slot(dst) + e] = acc;
    }
}

fn product(dst: u32, x: u32, y: u32) {
    if (live) { multiply(dst, x, y); }
    sync();
}

// work[dst] = c[0] I + c[1] S1 + c[2] S2 + c[3] S3 + c[4] S4 (+ work[add] when add < SLOTS),
// with the slots S = (1, 2, 3, 4): A, A^2, A^3, A^6 (or A^4 for degree 8).
fn combine(dst: u32, c: array<f32, 5>, add: u32) {
    for (var t = 0u; t < passes(); t++) {
        let e = lane + t * lanes();
        if (!live || e >= N * N) { continue; }
        var v = select(0.0, c[0], e / N == e % N);
        for (var s = 1u; s < 5u; s++) {
            if (c[s] != 0.0) { v += c[s] * work[slot(s) + e]; }
        }
        if (add < SLOTS) { v += work[slot(add) + e]; }
        work[slot(dst) + e] = v;
    }
    sync();
}

// Pass 0: each matrix's 1-norm, its degree and squarings, and T(A / 2^s) - I into slot 0.
fn taylor_pass(lid: u32) {
    // 1-norm: the largest column sum, the matrix's lanes() taking columns in turn.
    var best = 0.0;
    if (live) {
        for (var j = lane; j < N; j += lanes()) {
            var col = 0.0;
            for (var i = 0u; i < N; i++) { col += abs(p.alpha * a[source() + i * N + j]); }
            best = max(best, col);
        }
    }
    partial[lid] = best;
    workgroupBarrier();
    var norm = 0.0;
    for (var t = 0u; t < lanes(); t++) { norm = max(norm, partial[m * lanes() + t]); }
    let plan = exp_plan(norm);
    if (live && lane == 0u) { plans[z] = plan.y; }
    // The degree index the workgroup evaluates.
    let index = workgroup_max(select(0u, plan.x, live), lid);
    let scale = exp2(-f32(plan.y));
    // Slot 1: A / 2^s.
    for (var t = 0u; t < passes(); t++) {
        let e = lane + t * lanes();
        if (live && e < N * N) { work[slot(1u) + e] = p.alpha * a[source() + e] * scale; }
    }
    sync();
    exp_polynomial(index);
}

// Writes exp(A) = I + D, D, or W + W D (W read from `out`) from the increment D in slot 0, for the
// matrices that `writes`.
fn write_output(writes: bool) {
    for (var t = 0u; t < passes(); t++) {
        let e = lane + t * lanes();
        if (!writes || e >= N * N) { continue; }
        let inc = work[slot(0u) + e];
        if (p.mode == INCREMENT) {
            out[first + e] = inc;
        } else if (p.mode == EXP) {
            out[first + e] = inc + select(0.0, 1.0, e / N == e % N);
        } else {
            // out holds W: W + W D, row i of W times column j of D.
            let i = e / N;
            let j = e % N;
            var acc = 0.0;
            for (var k = 0u; k < N; k++) { acc += out[first + i * N + k] * work[slot(0u) + k * N + j]; }
            work[slot(2u) + e] = out[first + e] + acc;
        }
    }
    if (p.mode == UPDATE) {
        sync();
        for (var t = 0u; t < passes(); t++) {
            let e = lane + t * lanes();
            if (writes && e < N * N) { out[first + e] = work[slot(2u) + e]; }
        }
    }
}

// Element (i, j) of the augmented [L | R] of the Cayley elimination: L in slot 2, R (ending as
// cay(A) - I) in slot 0.
fn aug(i: u32, j: u32) -> u32 {
    if (j < N) { return slot(2u) + i * N + j; }
    return slot(0u) + i * N + j - N;
}

// Pass 0 of the Cayley map: [I - A/2 | A].
fn cayley_setup() {
    for (var t = 0u; t < passes(); t++) {
        let e = lane + t * lanes();
        if (live && e < N * N) {
            let v = p.alpha * a[source() + e];
            work[slot(2u) + e] = select(0.0, 1.0, e / N == e % N) - 0.5 * v;
            work[slot(0u) + e] = v;
        }
    }
    sync();
}

// Gauss–Jordan on column c: pivot, swap, normalise the pivot row, clear the column elsewhere.
fn cayley_column(c: u32) {
    if (live && lane == 0u) {
        var best = c;
        for (var i = c + 1u; i < N; i++) {
            if (abs(work[aug(i, c)]) > abs(work[aug(best, c)])) { best = i; }
        }
        pivots[m] = best;
    }
    workgroupBarrier();
    let r = pivots[m];
    for (var t = 0u; t < (2u * N + lanes() - 1u) / lanes(); t++) {
        let j = lane + t * lanes();
        if (live && j < 2u * N && r != c) {
            let x = work[aug(c, j)];
            work[aug(c, j)] = work[aug(r, j)];
            work[aug(r, j)] = x;
        }
    }
    sync();
    for (var t = 0u; t < (N + lanes() - 1u) / lanes(); t++) {
        let i = lane + t * lanes();
        if (live && i < N) { factors[m * N + i] = work[aug(i, c)]; }
    }
    workgroupBarrier();
    let pivot = factors[m * N + c];
    for (var t = 0u; t < (2u * N + lanes() - 1u) / lanes(); t++) {
        let j = lane + t * lanes();
        if (live && j < 2u * N) { work[aug(c, j)] /= pivot; }
    }
    sync();
    for (var t = 0u; t < (2u * N * N + lanes() - 1u) / lanes(); t++) {
        let e = lane + t * lanes();
        let i = e / (2u * N);
        let j = e % (2u * N);
        if (live && e < 2u * N * N && i != c) { work[aug(i, j)] -= factors[m * N + i] * work[aug(c, j)]; }
    }
    sync();
}

@compute @workgroup_size(64)
fn expm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    if (group_index(wg, nwg) * (GROUP / lanes()) >= p.batch) { return; }
    m = lid / lanes();
    lane = lid % lanes();
    z = group_index(wg, nwg) * (GROUP / lanes()) + m;
    live = z < p.batch;
    first = (p.first + z) * N * N;
    if (p.method == CAYLEY) {
        let c0 = p.pass_index * CAYLEY_COLUMNS_PER_PASS;
        if (c0 >= N) { return; }
        if (p.pass_index == 0u) { cayley_setup(); }
        for (var k = 0u; k < CAYLEY_COLUMNS_PER_PASS; k++) {
            if (c0 + k < N) { cayley_column(c0 + k); }
        }
        if (c0 + CAYLEY_COLUMNS_PER_PASS < N) { return; }
        write_output(live);
        return;
    }
    if (p.pass_index == 0u) {
        taylor_pass(lid);
    }
    var remaining = 0u;
    if (live) { remaining = plans[z]; }
    let most = workgroup_max(remaining, lid);
    if (most == 0u && p.pass_index > 0u) { return; }
    // Squarings in increment form: (I + D)^2 - I = D (D + 2I), between slots 0 and 1; every matrix
    // squares its own number of times within the workgroup's rounds.
    let now = min(remaining, SQUARINGS_PER_PASS);
    let rounds = min(most, SQUARINGS_PER_PASS);
    var d = 0u;
    for (var k = 0u; k < rounds; k++) {
        let squares = live && k < now;
        for (var t = 0u; t < passes(); t++) {
            let e = lane + t * lanes();
            if (squares && e < N * N) { work[slot(2u) + e] = work[slot(d) + e] + select(0.0, 2.0, e / N == e % N); }
        }
        sync();
        if (squares) { multiply(1u - d, d, 2u); }
        sync();
        if (squares) { d = 1u - d; }
    }
    if (live && d == 1u) {
        for (var t = 0u; t < passes(); t++) {
            let e = lane + t * lanes();
            if (e < N * N) { work[slot(0u) + e] = work[slot(1u) + e]; }
        }
    }
    sync();
    if (live && lane == 0u) { plans[z] = remaining - now; }
    // A matrix is written by the pass that finishes its squarings (a matrix finished by an earlier
    // pass has none left, and pass 0 may need none).
    write_output(live && remaining <= SQUARINGS_PER_PASS && (remaining > 0u || p.pass_index == 0u));
}
