// dloss/dz on the support (docs/math.md §9.3), written into the block z over the masked logits:
// (r_j - mean r) - h exp(z_j - lse_in), from the gathered logits (support) and the row's fit
// (express/row_fit). One invocation per entry; the inverse of express/support_gather.

@compute @workgroup_size(256)
fn support_scatter(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let e = element_index(wg, nwg, lid, 256u);
    if (e >= p.entries) { return; }
    let t = entry_rows[p.first + e] - p.row0;
    let zj = support[e];
    let fit = 4u * t;
    let dz = (zj - targets[p.first + e] - fits[fit]) - fits[fit + 3u] * exp(zj - fits[fit + 1u]);
    z[t * p.len + columns[p.first + e]] = dz;
}
