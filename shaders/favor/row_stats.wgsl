// Per-row statistics of random-feature projections, one invocation per row (z, t):
//   half_sq[row] = |x~|^2 / 2 with x~ = x d^(-1/4), i.e. |x|^2 / (2 sqrt(d));
//   row_max[row] = max_i (a_i - shift), shift = half_sq for keys and 0 for queries,
// where a = x~ W^T was computed by the GEMM. These are the stabiliser offsets of math.md §1.5.

struct RowStats { rows: u32, dim: u32, features: u32, subtract_half_sq: u32 }

@group(0) @binding(0) var<uniform> p: RowStats;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read_write> half_sq: array<f32>;
@group(0) @binding(4) var<storage, read_write> row_max: array<f32>;

@compute @workgroup_size(64)
fn row_stats(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let row = (wg.y * nwg.x + wg.x) * 64u + lid;
    if (row >= p.rows) { return; }
    var sq = 0.0;
    for (var c = 0u; c < p.dim; c++) {
        let v = x[row * p.dim + c];
        sq += v * v;
    }
    let hs = sq / (2.0 * sqrt(f32(p.dim)));
    var shift = 0.0;
    if (p.subtract_half_sq != 0u) { shift = hs; }
    var best = a[row * p.features] - shift;
    for (var i = 1u; i < p.features; i++) {
        best = max(best, a[row * p.features + i] - shift);
    }
    half_sq[row] = hs;
    row_max[row] = best;
}
