//! Seeded, portable orthogonal random features (docs/math.md §1.2).
//!
//! The generator is ChaCha20 (`rand_chacha`) keyed by the seed's 8 little-endian bytes followed by 24
//! zero bytes. Uniforms are `(next_u64 >> 11) * 2^-53`; Gaussians come from the Box–Muller transform
//! (both values of each pair are used, cosine first) with `libm`'s pure-Rust `log`, `sin` and `cos`,
//! so the same `(m, d, scaling, seed)` gives a bit-identical matrix on every machine.
//!
//! Draw order: the `ceil(m/d)` Gaussian `d x d` blocks, row-major, one after another; then, for
//! `chi`, one `d`-vector per row whose norm scales that row. `iid` draws `m` rows of `d` Gaussians.

use crate::error::{Error, Result};
use crate::linalg::qr;
use crate::tensor::Tensor;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

/// How the rows of the projection are scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scaling {
    /// Orthogonal rows, each multiplied by the norm of an independent N(0, I_d) vector, so each row is
    /// marginally Gaussian.
    #[default]
    Chi,
    /// Orthogonal rows of norm exactly `sqrt(d)`.
    SqrtD,
    /// Plain i.i.d. Gaussian rows, no orthogonalisation: the baseline.
    Iid,
}

impl std::str::FromStr for Scaling {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "chi" => Ok(Scaling::Chi),
            "sqrt-d" => Ok(Scaling::SqrtD),
            "iid" => Ok(Scaling::Iid),
            _ => Err(Error::argument("scaling", format!("'{s}' is not one of chi, sqrt-d, iid"))),
        }
    }
}

/// Standard normal samples from ChaCha20 through Box–Muller.
pub struct Gaussian {
    rng: ChaCha20Rng,
    spare: Option<f64>,
}

impl Gaussian {
    pub fn new(seed: u64) -> Self {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        Gaussian { rng: ChaCha20Rng::from_seed(key), spare: None }
    }

    /// Uniform on `[0, 1)` with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    pub fn sample(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        // 1 - u lies in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        let r = (-2.0 * libm::log(u1)).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u2;
        self.spare = Some(r * libm::sin(theta));
        r * libm::cos(theta)
    }

    pub fn fill(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.sample()).collect()
    }
}

/// The `[m, d]` projection matrix of docs/math.md §1.2.
pub fn projection(m: usize, d: usize, scaling: Scaling, seed: u64) -> Result<Tensor<f64>> {
    projection_from(&mut Gaussian::new(seed), m, d, scaling)
}

/// `[heads, m, d]`: one independent projection per head, drawn one after another from one stream.
pub fn projection_per_head(heads: usize, m: usize, d: usize, scaling: Scaling, seed: u64) -> Result<Tensor<f64>> {
    let mut g = Gaussian::new(seed);
    let mut data = Vec::with_capacity(heads * m * d);
    for _ in 0..heads {
        data.extend(projection_from(&mut g, m, d, scaling)?.into_data());
    }
    Tensor::new(&[heads, m, d], data)
}

fn projection_from(g: &mut Gaussian, m: usize, d: usize, scaling: Scaling) -> Result<Tensor<f64>> {
    if m == 0 || d == 0 {
        return Err(Error::argument(
            "projection",
            format!("features m = {m} and dimension d = {d} must both be at least 1"),
        ));
    }
    // The whole projection is reserved first, so that a size the host cannot hold is an error
    // rather than an abort.
    let floats = m.div_ceil(d).checked_mul(d * d);
    let mut rows = Vec::new();
    if floats.is_none_or(|n| rows.try_reserve_exact(n).is_err()) {
        return Err(Error::argument(
            "projection",
            format!("{m} features of dimension {d} need more memory than this machine can allocate"),
        ));
    }
    if scaling == Scaling::Iid {
        rows.extend((0..m * d).map(|_| g.sample()));
        return Tensor::new(&[m, d], rows);
    }
    for _ in 0..m.div_ceil(d) {
        let block = g.fill(d * d);
        let (q, r) = qr(&block, d);
        // Mezzadri's sign fix Q <- Q diag(sign(diag R)) makes Q Haar-distributed; the block's rows
        // are the rows of Q^T, i.e. the columns of Q.
        for col in 0..d {
            let sign = if r[col * d + col] < 0.0 { -1.0 } else { 1.0 };
            rows.extend((0..d).map(|i| sign * q[i * d + col]));
        }
    }
    rows.truncate(m * d);
    for row in rows.chunks_mut(d) {
        let norm = match scaling {
            Scaling::Chi => g.fill(d).iter().map(|x| x * x).sum::<f64>().sqrt(),
            Scaling::SqrtD => (d as f64).sqrt(),
            Scaling::Iid => unreachable!("handled above"),
        };
        row.iter_mut().for_each(|x| *x *= norm);
    }
    Tensor::new(&[m, d], rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_moments() {
        let mut g = Gaussian::new(7);
        let xs = g.fill(200_000);
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.01, "variance {var}");
    }

    #[test]
    fn blocks_are_orthogonal_with_the_requested_norms() {
        let (m, d) = (10, 4);
        for scaling in [Scaling::Chi, Scaling::SqrtD] {
            let w = projection(m, d, scaling, 3).unwrap();
            let w = w.data();
            for block in 0..m.div_ceil(d) {
                let rows: Vec<usize> = (block * d..((block + 1) * d).min(m)).collect();
                for &i in &rows {
                    for &j in &rows {
                        let dot: f64 = (0..d).map(|c| w[i * d + c] * w[j * d + c]).sum();
                        if i != j {
                            assert!(dot.abs() < 1e-12, "rows {i} and {j} not orthogonal: {dot}");
                        } else if scaling == Scaling::SqrtD {
                            assert!((dot - d as f64).abs() < 1e-12);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn seeded_and_distinct() {
        let a = projection(8, 3, Scaling::Chi, 11).unwrap();
        let b = projection(8, 3, Scaling::Chi, 11).unwrap();
        let c = projection(8, 3, Scaling::Chi, 12).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn zero_sizes_are_errors() {
        assert!(projection(0, 3, Scaling::Chi, 1).is_err());
        assert!(projection(3, 0, Scaling::Iid, 1).is_err());
    }
}

/// The projection is pinned bit for bit: a change of generator, Box–Muller or QR shows up here.
#[cfg(test)]
mod golden {
    use super::*;

    #[test]
    fn projection_bits_are_pinned() {
        let w = projection(5, 3, Scaling::Chi, 2024).unwrap();
        let bits: Vec<u64> = w.data().iter().map(|x| x.to_bits()).collect();
        assert_eq!(bits[..4], PINNED);
    }

    const PINNED: [u64; 4] = [0x3feeffb9550fe969, 0xbfcdd3b9335980ff, 0x3fea1fb83f78073b, 0x3fed9e093281ec22];
}
