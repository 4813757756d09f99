// Strided block copy: for o < outer, i < inner, x < len,
//   dst[dst_off + o * dst_outer + i * dst_inner + x] = src[src_off + o * src_outer + i * src_inner + x].

@compute @workgroup_size(256)
fn copy(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let e = element_index(wg, nwg, lid, 256u);
    if (e >= p.outer * p.inner * p.len) { return; }
    let x = e % p.len;
    let i = (e / p.len) % p.inner;
    let o = e / (p.len * p.inner);
    dst[p.dst_off + o * p.dst_outer + i * p.dst_inner + x] = src[p.src_off + o * p.src_outer + i * p.src_inner + x];
}
