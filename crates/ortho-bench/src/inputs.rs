//! The generated inputs and the error bounds shared by `ortho bench` and `ortho validate`.

use ortho::Tensor;
use ortho::random::Gaussian;

/// Relative Frobenius error allowed against the f64 twin: a GEMM.
pub const GEMM_BOUND: f64 = 1e-6;
/// Every other forward kernel.
pub const FORWARD_BOUND: f64 = 1e-5;
/// Gradients (a forward pass and a backward pass of products in f32).
pub const GRADIENT_BOUND: f64 = 1e-4;

/// What rounding an f32 output to f16 (to nearest) adds to the relative error: each value moves by
/// at most 2^-11 of itself.
pub const F16_ROUNDING: f64 = 1.0 / 2048.0;

/// The bound of `exp(A)` for `|A|_1 = norm`: [`FORWARD_BOUND`] where no squaring is needed, each
/// squaring allowed to double it (docs/math.md §3.3).
pub fn expm_bound(norm: f64) -> f64 {
    FORWARD_BOUND * 2f64.powi(ortho_ref::expm::plan(norm, &ortho_ref::expm::THETA_F32).1 as i32)
}

/// Independent standard normal entries times `scale`, from `seed`.
pub fn gaussian(shape: &[usize], scale: f64, seed: u64) -> Tensor<f32> {
    let mut g = Gaussian::new(seed);
    Tensor::from_fn(shape, |_| (scale * g.sample()) as f32)
}

/// `G - G^T` of a Gaussian `G: [batch, n, n]` of scale `scale`: skew-symmetric matrices.
pub fn skew(batch: usize, n: usize, scale: f64, seed: u64) -> Tensor<f32> {
    let g = gaussian(&[batch, n, n], scale, seed);
    Tensor::from_fn(&[batch, n, n], |e| {
        let (z, r) = (e / (n * n), e % (n * n));
        g.data()[e] - g.data()[z * n * n + (r % n) * n + r / n]
    })
}

/// `(G + G^T) / 2` of a Gaussian `G: [n, n]`: a symmetric generator.
pub fn symmetric(n: usize, seed: u64) -> Tensor<f64> {
    let g = gaussian(&[n, n], 1.0, seed).to_f64();
    Tensor::from_fn(&[n, n], |e| (g.data()[e] + g.data()[(e % n) * n + e / n]) / 2.0)
}

/// `batch` identity matrices of size `n`.
pub fn identities(batch: usize, n: usize) -> Tensor<f32> {
    Tensor::from_fn(&[batch, n, n], |e| if (e % (n * n)) / n == e % n { 1.0 } else { 0.0 })
}
