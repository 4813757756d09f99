// Writes the joined off-diagonal blocks X12 ([batch * pairs, side, side], contiguous) into their
// places in the padded inverse X ([batch, n, n]): pair p of a batch covers rows and columns
// 2 side p .. 2 side (p + 1), and X12 is its top-right quarter. (The GEMM that makes X12 reads X, so
// it cannot write there itself.)

@compute @workgroup_size(256)
fn place_blocks(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let e = element_index(wg, nwg, lid, 256u);
    let per = p.side * p.side;
    if (e >= p.blocks * per) { return; }
    let zp = e / per;
    let i = (e % per) / p.side;
    let j = e % p.side;
    let z = zp / p.pairs;
    let corner = 2u * p.side * (zp % p.pairs);
    inverse[(z * p.n + corner + i) * p.n + corner + p.side + j] = joined[e];
}
