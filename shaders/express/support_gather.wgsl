// Moves the support logits of rows row0..row0 + rows out of the block of logits z ([rows, len]) into
// `support` (entry e - first of the pattern at support[e - first]) and masks them in z with LOWEST,
// so that the row reduction sees the columns off the support alone. One invocation per entry.

@compute @workgroup_size(256)
fn support_gather(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let e = element_index(wg, nwg, lid, 256u);
    if (e >= p.entries) { return; }
    let at = (entry_rows[p.first + e] - p.row0) * p.len + columns[p.first + e];
    support[e] = z[at];
    z[at] = LOWEST;
}
