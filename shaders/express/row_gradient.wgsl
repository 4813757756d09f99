// dloss/dz off the support for the block's rows (docs/math.md §9.3): z[t][j] <- h_t exp(z[t][j] -
// lse_out_t), with h_t and lse_out_t from express/row_fit; the masked support entries become 0 and
// express/support_scatter then writes theirs. One invocation per logit.

@compute @workgroup_size(256)
fn row_gradient(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let e = element_index(wg, nwg, lid, 256u);
    if (e >= p.rows * p.len) { return; }
    let t = e / p.len;
    z[e] = fits[4u * t + 3u] * exp(z[e] - fits[4u * t + 2u]);
}
