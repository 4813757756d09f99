// Strided block copy: for o < outer, i < inner, x < len,
//   dst[dst_off + o * dst_outer + i * dst_inner + x] = src[src_off + o * src_outer + i * src_inner + x].

struct Copy {
    outer: u32, inner: u32, len: u32, src_off: u32,
    src_outer: u32, src_inner: u32, dst_off: u32, dst_outer: u32,
    dst_inner: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Copy;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn copy(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let e = (wg.y * nwg.x + wg.x) * 256u + lid;
    if (e >= p.outer * p.inner * p.len) { return; }
    let x = e % p.len;
    let i = (e / p.len) % p.inner;
    let o = e / (p.len * p.inner);
    dst[p.dst_off + o * p.dst_outer + i * p.dst_inner + x] = src[p.src_off + o * p.src_outer + i * p.src_inner + x];
}
