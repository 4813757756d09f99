// express/fit_columns_body with every invocation loading the queries and fits itself.

fn load_tile(tile: ptr<function, Span>, i0: u32) {
    let rows = span_rows(i0);
    for (var c = 0u; c < D4; c++) {
        (*tile)[c] = mat4x4<f32>(q[rows.x + c], q[rows.y + c], q[rows.z + c], q[rows.w + c]);
    }
}

fn load_fits(i0: u32) -> mat4x4<f32> {
    let rows = span_rows(i0) / D4;
    return mat4x4<f32>(fits[rows.x], fits[rows.y], fits[rows.z], fits[rows.w]);
}

@compute @workgroup_size(64)
fn fit_columns(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    fit_columns_body(element_index(wg, nwg, lid, 64u) * 4u);
}
