// Unit Householder vectors, and the gradient back through them (docs/math.md §2.3). A reflector does
// not depend on its vector's length, so every CWY kernel works on unit columns; one workgroup per
// column of U ([batch, n, l], rows l apart):
//   UNIT_FORWARD:  unit = src / |src| and norms = |src|, the length taken as max|src| * |src / max|src||
//                  so that columns of 1e-25 or 1e30 neither underflow nor overflow;
//   UNIT_BACKWARD: dst = (src - unit (unit . src)) / norms: from src, the gradient with respect to
//                  the unit column, the gradient with respect to the column itself.

@compute @workgroup_size(REDUCE_GROUP)
fn unit_columns(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let column = group_index(wg, nwg);
    if (column >= p.batch * p.l) { return; }
    let first = (column / p.l) * p.n * p.l + column % p.l;
    if (p.mode == UNIT_FORWARD) {
        var big = 0.0;
        for (var r = lid; r < p.n; r += REDUCE_GROUP) { big = max(big, abs(src[first + r * p.l])); }
        let scale = workgroup_reduce(big, lid, true);
        var sq = 0.0;
        for (var r = lid; r < p.n; r += REDUCE_GROUP) {
            let x = src[first + r * p.l] / scale;
            sq += x * x;
        }
        let len = sqrt(workgroup_reduce(sq, lid, false));
        for (var r = lid; r < p.n; r += REDUCE_GROUP) { unit[first + r * p.l] = src[first + r * p.l] / scale / len; }
        if (lid == 0u) { norms[column] = scale * len; }
    } else {
        var dot = 0.0;
        for (var r = lid; r < p.n; r += REDUCE_GROUP) { dot += unit[first + r * p.l] * src[first + r * p.l]; }
        let along = workgroup_reduce(dot, lid, false);
        let norm = norms[column];
        for (var r = lid; r < p.n; r += REDUCE_GROUP) {
            let i = first + r * p.l;
            dst[i] = (src[i] - unit[i] * along) / norm;
        }
    }
}
