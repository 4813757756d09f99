// express/fit_columns_body with lane t of each subgroup loading query row i0 + t of a tile and its
// fit, and broadcasting them: one load where fit_columns.wgsl has four. Needs subgroups of at least
// 4 invocations; lanes past 4 load a copy.

var<private> lane: u32;

fn load_tile(tile: ptr<function, Span>, i0: u32) {
    let row = min(i0 + lane % 4u, p.len - 1u) * D4;
    for (var c = 0u; c < D4; c++) { (*tile)[c] = broadcast4(q[row + c]); }
}

fn load_fits(i0: u32) -> mat4x4<f32> {
    return broadcast4(fits[min(i0 + lane % 4u, p.len - 1u)]);
}

@compute @workgroup_size(64)
fn fit_columns_subgroup(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) subgroup_lane: u32) {
    lane = subgroup_lane;
    fit_columns_body(element_index(wg, nwg, lid, 64u) * 4u);
}
