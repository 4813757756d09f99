// What `front_qr` and `front_qr_adjoint` share: a workgroup's front (its record in `table`, laid
// out as `front_qr.wgsl` says, and its place in the set's arena) and the column ownership. The
// workgroup is FRONT_GROUP invocations: 64 on GPUs, 8 (one SIMD vector) on CPU adapters, where the
// idle invocations of a wide workgroup on a small front still pay for every barrier.

override FRONT_GROUP: u32 = 64u;

struct Front { at: u32, problem: u32, base: u32, rows: u32, columns: u32, pivots: u32 }

// The front of workgroup (x = front of this level, y = coupling set of the chunk).
fn front_of(wg: vec3<u32>) -> Front {
    let at = FRONT_WORDS * (p.level_first + wg.x);
    let problem = wg.y;
    return Front(at, problem, problem * p.arena + table[at], table[at + 1u], table[at + 2u], table[at + 3u]);
}

// The first column past `j` that invocation `lid` owns (column k belongs to k % FRONT_GROUP).
fn first_owned(j: u32, lid: u32) -> u32 {
    return j + 1u + (lid + FRONT_GROUP - (j + 1u) % FRONT_GROUP) % FRONT_GROUP;
}
