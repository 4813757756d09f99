// The matrix whose column t is lane t's `v` (t = 0..4), in every lane of the subgroup.

fn broadcast4(v: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(subgroupBroadcast(v, 0u), subgroupBroadcast(v, 1u), subgroupBroadcast(v, 2u),
                       subgroupBroadcast(v, 3u));
}
