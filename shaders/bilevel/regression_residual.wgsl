// Per task t (one invocation): the predictions r[t, s] become the mean squared error's gradient
// scale * (r - y) with scale = 2 / points, and loss[t] = mean over s of (r - y)^2; y is column 1 of
// the task's points [points, 2].

@compute @workgroup_size(64)
fn regression_residual(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let t = element_index(wg, nwg, lid, 64u);
    if (t >= p.tasks) { return; }
    var sum = 0.0;
    for (var s = 0u; s < p.points; s++) {
        let at = t * p.points + s;
        let d = r[at] - points[2u * at + 1u];
        sum += d * d;
        r[at] = p.scale * d;
    }
    loss[t] = sum / f32(p.points);
}
