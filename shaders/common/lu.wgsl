// Batched LU factorisation with partial pivoting, P A = L U, one workgroup per n x n matrix
// (docs/math.md §7): at step k the largest |a[i][k]|, i >= k (the first of equals), is swapped into
// row k, the multipliers a[i][k] / a[k][k] are stored below the diagonal and the trailing block takes
// the rank-1 update. `pivots[k]` is the row swapped with row k (as f32), `det` = (sign, log |det A|).
// A dispatch takes steps first..last (the host bounds each invocation's loop iterations, which
// llvmpipe caps); the running sign and log carry between dispatches in `det`.

const LU_GROUP: u32 = 256u;

var<workgroup> best_value: array<f32, 256>;
var<workgroup> best_row: array<u32, 256>;

@compute @workgroup_size(256)
fn lu(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
      @builtin(local_invocation_index) lid: u32) {
    let m = group_index(wg, nwg);
    if (m >= p.batch) { return; }
    let n = p.n;
    let base = m * n * n;
    var running = lu_start(m, lid, LU_GROUP);
    storageBarrier();
    for (var k = p.first; k < p.last; k++) {
        var value = -1.0;
        var row = k;
        for (var i = k + lid; i < n; i += LU_GROUP) {
            let x = abs(factors[base + i * n + k]);
            if (x > value) { value = x; row = i; }
        }
        best_value[lid] = value;
        best_row[lid] = row;
        workgroupBarrier();
        for (var stride = LU_GROUP / 2u; stride > 0u; stride >>= 1u) {
            if (lid < stride) {
                let v = best_value[lid + stride];
                let r = best_row[lid + stride];
                if (v > best_value[lid] || (v == best_value[lid] && r < best_row[lid])) {
                    best_value[lid] = v;
                    best_row[lid] = r;
                }
            }
            workgroupBarrier();
        }
        let pivot = workgroupUniformLoad(&best_row[0]);
        if (pivot != k) {
            for (var c = lid; c < n; c += LU_GROUP) {
                let t = factors[base + k * n + c];
                factors[base + k * n + c] = factors[base + pivot * n + c];
                factors[base + pivot * n + c] = t;
            }
        }
        storageBarrier();
        let d = factors[base + k * n + k];
        if (lid == 0u) {
            running = lu_pivot(m, k, pivot, d, running);
        }
        if (d != 0.0) {
            for (var i = k + 1u + lid; i < n; i += LU_GROUP) {
                factors[base + i * n + k] /= d;
            }
        }
        storageBarrier();
        let w = n - k - 1u;
        if (d != 0.0) {
            for (var t = lid; t < w * w; t += LU_GROUP) {
                let i = k + 1u + t / w;
                let c = k + 1u + t % w;
                factors[base + i * n + c] -= factors[base + i * n + k] * factors[base + k * n + c];
            }
        }
        storageBarrier();
    }
    if (lid == 0u) {
        det[2u * m] = running.x;
        det[2u * m + 1u] = running.y;
    }
}
