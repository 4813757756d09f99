// Inverts the 16 x 16 diagonal blocks of the upper-triangular S (padded, [batch, n, n]) by back
// substitution, one workgroup per block and one invocation per column:
//   X[i][j] = (delta_ij - sum_{k = i+1..j} S[i][k] X[k][j]) / S[i][i],  i = j, j - 1, ..., 0.
// The blocks are then joined by X12 = -X11 S12 X22 with the engine's GEMM (docs/math.md §2.3).

const B: u32 = TRI_BLOCK;

var<workgroup> block: array<f32, 256>;

@compute @workgroup_size(16)
fn tri_inverse_blocks(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) j: u32) {
    let id = group_index(wg, nwg);
    let blocks = p.n / B;
    let live = id < p.batch * blocks;
    let z = id / blocks;
    let first = (z * p.n + (id % blocks) * B) * p.n + (id % blocks) * B;
    for (var i = 0u; i < B; i++) {
        var v = 0.0;
        if (live) { v = s[first + i * p.n + j]; }
        block[i * B + j] = v;
    }
    workgroupBarrier();
    if (!live) { return; }
    var x: array<f32, 16>;
    for (var r = 0u; r < B; r++) {
        let i = B - 1u - r;
        var acc = select(0.0, 1.0, i == j);
        for (var k = i + 1u; k < B; k++) {
            acc -= select(0.0, block[i * B + k] * x[k], k <= j);
        }
        x[i] = select(0.0, acc / block[i * B + i], i <= j);
    }
    for (var i = 0u; i < B; i++) {
        inverse[first + i * p.n + j] = x[i];
    }
}
