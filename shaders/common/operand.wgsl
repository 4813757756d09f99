// Where batch z of a strided GEMM operand starts (see gemm.wgsl).

fn base(o: GemmOperand, z: u32) -> u32 {
    return o.off + (z / o.inner) * o.outer + (z % o.inner) * o.inner_stride;
}
