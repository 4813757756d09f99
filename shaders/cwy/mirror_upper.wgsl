// P + P^T for P = striu(B) + diag(B) / 2 (docs/math.md §2.2): B on and above the diagonal, mirrored
// below it. One invocation per element of [batch, l, l].

struct Mirror { count: u32, l: u32, _pad0: u32, _pad1: u32 }

@group(0) @binding(0) var<uniform> p: Mirror;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn mirror_upper(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let e = (wg.y * nwg.x + wg.x) * 256u + lid;
    if (e >= p.count) { return; }
    let per = p.l * p.l;
    let first = (e / per) * per;
    let i = (e % per) / p.l;
    let j = e % p.l;
    out[e] = b[first + min(i, j) * p.l + max(i, j)];
}
