// gemm_rows_body.wgsl with every invocation loading A's values itself.

fn a_rows(r: u32, k0: u32) -> Rows8 {
    return Rows8(mat4x4<f32>(a4(r, k0), a4(r + 1u, k0), a4(r + 2u, k0), a4(r + 3u, k0)),
                 mat4x4<f32>(a4(r + 4u, k0), a4(r + 5u, k0), a4(r + 6u, k0), a4(r + 7u, k0)));
}

@compute @workgroup_size(64)
fn gemm_rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    gemm_rows_body(wg, lid);
}
