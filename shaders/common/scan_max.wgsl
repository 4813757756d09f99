// Prefix maximum per problem, continuing a carried maximum: for rows t < rows of problem z,
//   prefix[z, t] = max(carried[z], values[z, 0..=t]);
// then `before[z]` keeps the carried value and `carried[z]` becomes the last prefix. One workgroup
// per problem walks its rows in blocks of 256 with a Hillis–Steele scan in workgroup memory.

const GROUP: u32 = 256u;
var<workgroup> block: array<f32, GROUP>;
var<workgroup> carry: f32;

@compute @workgroup_size(256)
fn scan_max(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let z = group_index(wg, nwg);
    let live = z < p.problems;
    if (lid == 0u) {
        carry = LOWEST;
        if (live) { carry = carried[z]; }
    }
    workgroupBarrier();
    for (var t0 = 0u; t0 < p.rows; t0 += GROUP) {
        let t = t0 + lid;
        var x = LOWEST;
        if (live && t < p.rows) { x = values[z * p.row_stride + t]; }
        block[lid] = x;
        workgroupBarrier();
        for (var step = 1u; step < GROUP; step *= 2u) {
            var y = block[lid];
            if (lid >= step) { y = max(y, block[lid - step]); }
            workgroupBarrier();
            block[lid] = y;
            workgroupBarrier();
        }
        let run = max(carry, block[lid]);
        if (live && t < p.rows) { prefix[z * p.row_stride + t] = run; }
        workgroupBarrier();
        if (lid == GROUP - 1u) { carry = max(carry, block[GROUP - 1u]); }
        workgroupBarrier();
    }
    if (lid == 0u && live) {
        before[z] = carried[z];
        carried[z] = carry;
    }
}
