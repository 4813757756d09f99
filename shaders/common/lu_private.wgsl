// `common/lu` for small matrices: one invocation per matrix, no barriers (docs/math.md §7). The same
// steps and pivot rule, steps first..last per dispatch; the running sign and log carry in `det`.

@compute @workgroup_size(64)
fn lu_private(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let m = element_index(wg, nwg, lid, 64u);
    if (m >= p.batch) { return; }
    let n = p.n;
    let base = m * n * n;
    var running = lu_start(m, 0u, 1u);
    for (var k = p.first; k < p.last; k++) {
        var pivot = k;
        var value = abs(factors[base + k * n + k]);
        for (var i = k + 1u; i < n; i++) {
            let x = abs(factors[base + i * n + k]);
            if (x > value) { value = x; pivot = i; }
        }
        if (pivot != k) {
            for (var c = 0u; c < n; c++) {
                let t = factors[base + k * n + c];
                factors[base + k * n + c] = factors[base + pivot * n + c];
                factors[base + pivot * n + c] = t;
            }
        }
        let d = factors[base + k * n + k];
        running = lu_pivot(m, k, pivot, d, running);
        if (d != 0.0) {
            for (var i = k + 1u; i < n; i++) {
                let l = factors[base + i * n + k] / d;
                factors[base + i * n + k] = l;
                for (var c = k + 1u; c < n; c++) {
                    factors[base + i * n + c] -= l * factors[base + k * n + c];
                }
            }
        }
    }
    det[2u * m] = running.x;
    det[2u * m + 1u] = running.y;
}
