// express/fit_rows_body with every invocation loading the keys itself.

fn load_tile(tile: ptr<function, Span>, j0: u32) {
    let rows = span_rows(j0);
    for (var c = 0u; c < D4; c++) {
        (*tile)[c] = mat4x4<f32>(k[rows.x + c], k[rows.y + c], k[rows.z + c], k[rows.w + c]);
    }
}

@compute @workgroup_size(64)
fn fit_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    fit_rows_body(element_index(wg, nwg, lid, 64u) * 4u);
}
