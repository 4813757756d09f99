// The workgroup reduction of kernels that give one workgroup of REDUCE_GROUP invocations (kernels.rs)
// to each row or column and stride over its elements (so that no invocation loops over more than a
// 64th of them: Mesa's llvmpipe ends an invocation's loops silently after 65,535 iterations).

var<workgroup> reduce_part: array<f32, REDUCE_GROUP>;

// The sum (with take_max, the maximum) of x over the workgroup, in every invocation.
fn workgroup_reduce(x: f32, lid: u32, take_max: bool) -> f32 {
    reduce_part[lid] = x;
    workgroupBarrier();
    for (var s = REDUCE_GROUP / 2u; s > 0u; s /= 2u) {
        if (lid < s) {
            let y = reduce_part[lid + s];
            reduce_part[lid] = select(reduce_part[lid] + y, max(reduce_part[lid], y), take_max);
        }
        workgroupBarrier();
    }
    let all = reduce_part[0];
    workgroupBarrier();
    return all;
}
