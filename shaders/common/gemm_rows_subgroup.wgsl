// gemm_rows_body.wgsl with lane l of each subgroup loading A's row r + l and broadcasting it: one
// load where gemm_rows.wgsl has eight. Needs subgroups of at least 8 invocations within one group
// of LANES (gemm.rs checks the adapter's subgroup sizes); lanes past 8 load a copy.

var<private> lane: u32;

fn a_rows(r: u32, k0: u32) -> Rows8 {
    let v = a4(r + lane % 8u, k0);
    return Rows8(
        mat4x4<f32>(subgroupBroadcast(v, 0u), subgroupBroadcast(v, 1u), subgroupBroadcast(v, 2u), subgroupBroadcast(v, 3u)),
        mat4x4<f32>(subgroupBroadcast(v, 4u), subgroupBroadcast(v, 5u), subgroupBroadcast(v, 6u), subgroupBroadcast(v, 7u)));
}

@compute @workgroup_size(64)
fn gemm_rows_subgroup(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                      @builtin(subgroup_invocation_id) subgroup_lane: u32) {
    lane = subgroup_lane;
    gemm_rows_body(wg, lid);
}
