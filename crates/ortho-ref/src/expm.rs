//! Matrix exponential by the Bader–Blanes–Casas optimized Taylor polynomials with scaling and
//! squaring (docs/math.md §3.1), an independent Padé-13 oracle (Higham 2005), and the Cayley map.
//!
//! The Taylor schemes are written once over [`Ring`], so the same code evaluates them on matrices and
//! expands them as scalar polynomials, whose coefficients the tests compare with `1/k!`.

use crate::error::{Error, Result};
use crate::linalg::{matmul, solve};
use crate::tensor::Tensor;

/// The degrees of the optimized Taylor polynomials; degree `DEGREES[i]` costs `i` matrix products.
pub const DEGREES: [usize; 6] = [1, 2, 4, 8, 12, 18];

/// 1-norm switch points for f32 arithmetic: use `DEGREES[i]` while `|A|_1 <= THETA_F32[i]`.
#[allow(clippy::excessive_precision)]
pub const THETA_F32: [f64; 6] = [
    1.192092800768788e-07,
    5.978858893805233e-04,
    5.116619363445086e-02,
    5.800524627688768e-01,
    1.461661507209034e+00,
    3.010066362817634e+00,
];

/// 1-norm switch points for f64 arithmetic.
#[allow(clippy::excessive_precision)]
pub const THETA_F64: [f64; 6] = [
    2.220446049250313e-16,
    2.580956802971767e-08,
    3.397168839976962e-04,
    4.991228871115323e-02,
    2.996158913811580e-01,
    1.090863719290036e+00,
];

/// What the Taylor schemes need: an identity, sums, scalar multiples and products.
pub trait Ring: Clone {
    fn identity_like(&self) -> Self;
    fn add(&self, other: &Self) -> Self;
    fn scale(&self, s: f64) -> Self;
    fn mul(&self, other: &Self) -> Self;
}

/// `sum_i c_i x_i` over terms `(c_i, x_i)`.
fn combine<R: Ring>(terms: &[(f64, &R)]) -> R {
    let mut acc = terms[0].1.scale(terms[0].0);
    for (c, x) in &terms[1..] {
        if *c != 0.0 {
            acc = acc.add(&x.scale(*c));
        }
    }
    acc
}

/// The optimized Taylor polynomial of degree `DEGREES[index]` (Bader, Blanes, Casas 2019), with
/// `index` matrix products.
pub fn taylor<R: Ring>(a: &R, index: usize) -> R {
    scheme(a, index, 1.0)
}

/// `T(A) - I` evaluated directly: the identity is left out of the final sum rather than subtracted
/// afterwards, exactly for degrees up to 8, whose schemes are `I + (terms in A)` (docs/math.md §3.2's
/// increment form).
pub fn taylor_increment<R: Ring>(a: &R, index: usize) -> R {
    scheme(a, index, 0.0)
}

/// The scheme of degree `DEGREES[index]` with the identity term's coefficient `identity` (1 for T).
/// The coefficients are the paper's, digit for digit.
#[allow(clippy::excessive_precision)]
fn scheme<R: Ring>(a: &R, index: usize, identity: f64) -> R {
    let i = a.identity_like();
    let less = 1.0 - identity;
    match DEGREES[index] {
        1 => combine(&[(identity, &i), (1.0, a)]),
        2 => combine(&[(identity, &i), (1.0, a), (0.5, &a.mul(a))]),
        4 => {
            let a2 = a.mul(a);
            let tail = combine(&[(0.5, &i), (1.0 / 6.0, a), (1.0 / 24.0, &a2)]);
            combine(&[(identity, &i), (1.0, a)]).add(&a2.mul(&tail))
        }
        8 => {
            // Eq. (13) of the paper; x7 is (89 - sqrt(177)) / (5040 x3^2) (the value PyTorch once
            // had wrong, pytorch #196592).
            let r = 177f64.sqrt();
            let x3 = 2.0 / 3.0;
            let (x1, x2) = (x3 * (1.0 + r) / 88.0, x3 * (1.0 + r) / 352.0);
            let x4 = (-271.0 + 29.0 * r) / (315.0 * x3);
            let x5 = 11.0 * (-1.0 + r) / (1260.0 * x3);
            let x6 = 11.0 * (-9.0 + r) / (5040.0 * x3);
            let x7 = (89.0 - r) / (5040.0 * x3 * x3);
            let y2 = (857.0 - 58.0 * r) / 630.0;
            let a2 = a.mul(a);
            let a4 = a2.mul(&combine(&[(x1, a), (x2, &a2)]));
            let a8 = combine(&[(x3, &a2), (1.0, &a4)]).mul(&combine(&[(x4, &i), (x5, a), (x6, &a2), (x7, &a4)]));
            combine(&[(identity, &i), (1.0, a), (y2, &a2), (1.0, &a8)])
        }
        12 => {
            const C: [[f64; 4]; 4] = [
                [-0.01860232051462055322, -0.00500702322573317730, -0.57342012296052226390, -0.13339969394389205970],
                [4.60000000000000000000, 0.99287510353848683614, -0.13244556105279963884, 0.00172990000000000000],
                [0.21169311829980944294, 0.15822438471572672537, 0.16563516943672741501, 0.01078627793157924250],
                [0.0, -0.13181061013830184015, -0.02027855540589259079, -0.00675951846863086359],
            ];
            let a2 = a.mul(a);
            let a3 = a2.mul(a);
            let cubic = |c: &[f64; 4]| combine(&[(c[0], &i), (c[1], a), (c[2], &a2), (c[3], &a3)]);
            let b4 = cubic(&C[3]);
            let a6 = b4.mul(&b4).add(&cubic(&C[2]));
            let constant = combine(&[(C[0][0] - less, &i), (C[0][1], a), (C[0][2], &a2), (C[0][3], &a3)]);
            constant.add(&a6.add(&cubic(&C[1])).mul(&a6))
        }
        _ => {
            // Degree 18: [I, A, A^2, A^3, A^6] coefficients of B1, B2, B3, B4 and the result's B0.
            const A1: [f64; 4] = [0.0, -0.10036558103014462001, -0.00802924648241156960, -0.00089213849804572995];
            const B: [[f64; 5]; 4] = [
                [0.0, 0.39784974949964507614, 1.36783778460411719922, 0.49828962252538267755, -0.00063789819459472330],
                [
                    -10.9676396052962062593,
                    1.68015813878906197182,
                    0.05717798464788655127,
                    -0.00698210122488052084,
                    0.00003349750170860705,
                ],
                [
                    -0.09043168323908105619,
                    -0.06764045190713819075,
                    0.06759613017704596460,
                    0.02955525704293155274,
                    -0.00001391802575160607,
                ],
                [0.0, 0.0, -0.09233646193671185927, -0.01693649390020817171, -0.00001400867981820361],
            ];
            let a2 = a.mul(a);
            let a3 = a.mul(&a2);
            let a6 = a3.mul(&a3);
            let basis = |c: &[f64; 5]| combine(&[(c[0], &i), (c[1], a), (c[2], &a2), (c[3], &a3), (c[4], &a6)]);
            let b1 = combine(&[(A1[0], &i), (A1[1], a), (A1[2], &a2), (A1[3], &a3)]);
            let a9 = b1.mul(&basis(&B[3]));
            let right = basis(&B[2]).add(&a9);
            let left = right.add(&basis(&B[1]));
            let constant =
                combine(&[(B[0][0] - less, &i), (B[0][1], a), (B[0][2], &a2), (B[0][3], &a3), (B[0][4], &a6)]);
            constant.add(&left.mul(&right))
        }
    }
}

/// A dense row-major square matrix as a [`Ring`].
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    pub n: usize,
    pub data: Vec<f64>,
}

impl Ring for Matrix {
    fn identity_like(&self) -> Self {
        Matrix {
            n: self.n,
            data: (0..self.n * self.n).map(|e| if e / self.n == e % self.n { 1.0 } else { 0.0 }).collect(),
        }
    }
    fn add(&self, o: &Self) -> Self {
        Matrix { n: self.n, data: self.data.iter().zip(&o.data).map(|(a, b)| a + b).collect() }
    }
    fn scale(&self, s: f64) -> Self {
        Matrix { n: self.n, data: self.data.iter().map(|a| a * s).collect() }
    }
    fn mul(&self, o: &Self) -> Self {
        Matrix { n: self.n, data: matmul(&self.data, &o.data, self.n, self.n, self.n) }
    }
}

/// `max_j sum_i |a_ij|`.
pub fn one_norm(a: &[f64], n: usize) -> f64 {
    (0..n).map(|j| (0..n).map(|i| a[i * n + j].abs()).sum::<f64>()).fold(0.0, f64::max)
}

/// The degree index and the number of squarings for a matrix of 1-norm `norm` under the switch
/// points `theta`: the cheapest degree whose switch point covers the norm, else degree 18 with
/// `s = ceil(log2(norm / theta_18))` halvings.
pub fn plan(norm: f64, theta: &[f64; 6]) -> (usize, u32) {
    match theta.iter().position(|&t| norm <= t) {
        Some(i) => (i, 0),
        None => (5, (norm / theta[5]).log2().ceil().max(0.0) as u32),
    }
}

/// Flops of `exp(A)` for every matrix of `a` (`[n, n]` or `[batch, n, n]`) as the f32 kernels
/// evaluate it: `2 n^3` per product, `i` products for degree `DEGREES[i]` and one per squaring.
pub fn expm_flops(a: &Tensor<f64>) -> Result<f64> {
    let (_, n) = square_shape("a", a)?;
    let products: usize = a.data().chunks(n * n).map(|m| expm_products(one_norm(m, n), &THETA_F32)).sum();
    Ok(2.0 * (n * n * n) as f64 * products as f64)
}

/// Matrix products of `exp(A)` for `|A|_1 = norm` under the switch points `theta`.
pub fn expm_products(norm: f64, theta: &[f64; 6]) -> usize {
    let (index, squarings) = plan(norm, theta);
    index + squarings as usize
}

/// Flops of `cay(A)` for a batch of `n x n` matrices: the LU factorisation of `I - A/2` (`2 n^3 / 3`)
/// and its solve for `n` right-hand sides (`2 n^3`).
pub fn cayley_flops(batch: usize, n: usize) -> f64 {
    8.0 / 3.0 * (batch * n * n * n) as f64
}

/// `(batch, n)` of `[n, n]` or `[batch, n, n]`.
pub fn square_shape(name: &str, a: &Tensor<f64>) -> Result<(usize, usize)> {
    square_dims(name, a.shape())
}

/// `(batch, n)` of the shape `[n, n]` or `[batch, n, n]`.
pub fn square_dims(name: &str, shape: &[usize]) -> Result<(usize, usize)> {
    match *shape {
        [r, c] if r == c && r > 0 => Ok((1, r)),
        [b, r, c] if r == c && r > 0 && b > 0 => Ok((b, r)),
        _ => Err(Error::shape(name, "[n, n] or [batch, n, n] with n >= 1", shape)),
    }
}

fn per_matrix(name: &str, a: &Tensor<f64>, f: impl Fn(Matrix) -> Result<Matrix>) -> Result<Tensor<f64>> {
    let (b, n) = square_shape(name, a)?;
    a.check_finite(name)?;
    let mut out = Vec::with_capacity(b * n * n);
    for z in 0..b {
        out.extend(f(Matrix { n, data: a.data()[z * n * n..(z + 1) * n * n].to_vec() })?.data);
    }
    Tensor::new(a.shape(), out)
}

/// `exp(A)` for every matrix of `a` by optimized Taylor polynomials with the switch points `theta`
/// ([`THETA_F64`] for f64 accuracy, [`THETA_F32`] to mirror the GPU's choices).
pub fn expm(a: &Tensor<f64>, theta: &[f64; 6]) -> Result<Tensor<f64>> {
    per_matrix("a", a, |m| Ok(expm_increment(&m, theta).add(&m.identity_like())))
}

/// `exp(A) - I` of one matrix, kept in increment form through the squarings:
/// `D <- D (D + 2I)` is `(I + D)^2 - I`.
pub fn expm_increment(m: &Matrix, theta: &[f64; 6]) -> Matrix {
    increment_of(m, one_norm(&m.data, m.n), theta)
}

/// [`expm_increment`] over any [`Ring`], given the matrix's 1-norm.
pub fn increment_of<R: Ring>(m: &R, norm: f64, theta: &[f64; 6]) -> R {
    let (index, squarings) = plan(norm, theta);
    let mut d = taylor_increment(&m.scale(0.5f64.powi(squarings as i32)), index);
    let two = m.identity_like().scale(2.0);
    for _ in 0..squarings {
        d = d.mul(&d.add(&two));
    }
    d
}

/// `cay(A) - I = (I - A/2)^(-1) A` of one matrix.
pub fn cayley_increment(m: &Matrix) -> Result<Matrix> {
    let q = m.identity_like().add(&m.scale(-0.5));
    let data = solve(&q.data, &m.data, m.n, m.n).ok_or_else(|| Error::argument("a", "I - A/2 is singular"))?;
    Ok(Matrix { n: m.n, data })
}

/// `exp(A)` by Higham's scaling and squaring with the [13/13] Padé approximant (the oracle).
pub fn expm_pade13(a: &Tensor<f64>) -> Result<Tensor<f64>> {
    const B: [f64; 14] = [
        64764752532480000.0,
        32382376266240000.0,
        7771770303897600.0,
        1187353796428800.0,
        129060195264000.0,
        10559470521600.0,
        670442572800.0,
        33522128640.0,
        1323241920.0,
        40840800.0,
        960960.0,
        16380.0,
        182.0,
        1.0,
    ];
    const THETA_13: f64 = 5.371920351148152;
    per_matrix("a", a, |m| {
        let s = (one_norm(&m.data, m.n) / THETA_13).log2().ceil().max(0.0) as i32;
        let a = m.scale(0.5f64.powi(s));
        let i = a.identity_like();
        let a2 = a.mul(&a);
        let a4 = a2.mul(&a2);
        let a6 = a4.mul(&a2);
        let u_inner = a6.mul(&combine(&[(B[13], &a6), (B[11], &a4), (B[9], &a2)]));
        let u = a.mul(&u_inner.add(&combine(&[(B[7], &a6), (B[5], &a4), (B[3], &a2), (B[1], &i)])));
        let v_inner = a6.mul(&combine(&[(B[12], &a6), (B[10], &a4), (B[8], &a2)]));
        let v = v_inner.add(&combine(&[(B[6], &a6), (B[4], &a4), (B[2], &a2), (B[0], &i)]));
        let (p, q) = (v.add(&u), v.add(&u.scale(-1.0)));
        let data =
            solve(&q.data, &p.data, m.n, m.n).ok_or_else(|| Error::argument("a", "Padé denominator is singular"))?;
        let mut e = Matrix { n: m.n, data };
        for _ in 0..s {
            e = e.mul(&e);
        }
        Ok(e)
    })
}

/// The Cayley map `cay(A) = (I - A/2)^(-1) (I + A/2)`; orthogonal for skew-symmetric A.
pub fn cayley(a: &Tensor<f64>) -> Result<Tensor<f64>> {
    per_matrix("a", a, |m| Ok(cayley_increment(&m)?.add(&m.identity_like())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::Gaussian;

    /// Scalar polynomials truncated at degree 64, to expand the schemes.
    #[derive(Clone)]
    struct Poly(Vec<f64>);

    impl Ring for Poly {
        fn identity_like(&self) -> Self {
            let mut c = vec![0.0; 65];
            c[0] = 1.0;
            Poly(c)
        }
        fn add(&self, o: &Self) -> Self {
            Poly(self.0.iter().zip(&o.0).map(|(a, b)| a + b).collect())
        }
        fn scale(&self, s: f64) -> Self {
            Poly(self.0.iter().map(|a| a * s).collect())
        }
        fn mul(&self, o: &Self) -> Self {
            let mut c = vec![0.0; 65];
            for (i, a) in self.0.iter().enumerate() {
                for (j, b) in o.0.iter().enumerate().take(65 - i) {
                    c[i + j] += a * b;
                }
            }
            Poly(c)
        }
    }

    #[test]
    fn every_taylor_scheme_expands_to_the_exponential_series() {
        let mut x = vec![0.0; 65];
        x[1] = 1.0;
        let x = Poly(x);
        for (index, &degree) in DEGREES.iter().enumerate() {
            let p = taylor(&x, index);
            let mut factorial = 1.0;
            for k in 0..=degree {
                if k > 0 {
                    factorial *= k as f64;
                }
                let want = 1.0 / factorial;
                assert!((p.0[k] - want).abs() <= 1e-15, "degree {degree}: coefficient {k} is {} not {want}", p.0[k]);
            }
        }
    }

    fn gaussian(shape: &[usize], scale: f64, seed: u64) -> Tensor<f64> {
        let mut g = Gaussian::new(seed);
        Tensor::from_fn(shape, |_| scale * g.sample())
    }

    #[test]
    fn increments_are_the_schemes_less_the_identity() {
        let a = Matrix { n: 4, data: gaussian(&[4, 4], 0.7, 9).into_data() };
        for index in 0..DEGREES.len() {
            let d = taylor_increment(&a, index).add(&a.identity_like());
            let t = taylor(&a, index);
            assert!(d.data.iter().zip(&t.data).all(|(x, y)| (x - y).abs() < 1e-14), "degree {}", DEGREES[index]);
        }
    }

    #[test]
    fn taylor_matches_the_pade_oracle_over_norms() {
        for (i, scale) in [1e-9, 1e-5, 1e-2, 0.1, 0.5, 1.0, 3.0, 10.0, 100.0].into_iter().enumerate() {
            let a = gaussian(&[3, 6, 6], scale, i as u64);
            let e = expm(&a, &THETA_F64).unwrap();
            let o = expm_pade13(&a).unwrap();
            let err = crate::tensor::relative_frobenius(e.data(), o.data());
            assert!(err < 1e-11 * (1.0 + scale), "scale {scale}: {err:e}");
        }
    }

    #[test]
    fn skew_input_gives_orthogonal_exponential_and_cayley() {
        let g = gaussian(&[5, 5], 1.0, 4);
        let skew = Tensor::from_fn(&[5, 5], |e| g.data()[e] - g.data()[(e % 5) * 5 + e / 5]);
        for q in [expm(&skew, &THETA_F64).unwrap(), cayley(&skew).unwrap()] {
            let qtq = matmul(&crate::cwy::transpose_of(q.data(), 5, 5), q.data(), 5, 5, 5);
            for e in 0..25 {
                let want = if e / 5 == e % 5 { 1.0 } else { 0.0 };
                assert!((qtq[e] - want).abs() < 1e-13);
            }
        }
    }

    #[test]
    fn plan_picks_the_cheapest_covering_degree() {
        assert_eq!(plan(0.0, &THETA_F32), (0, 0));
        assert_eq!(plan(0.3, &THETA_F32), (3, 0));
        assert_eq!(plan(3.0, &THETA_F32), (5, 0));
        assert_eq!(plan(3.02, &THETA_F32), (5, 1));
        assert_eq!(plan(1000.0, &THETA_F32), (5, 9));
    }

    #[test]
    fn bad_inputs_are_named() {
        assert!(expm(&Tensor::zeros(&[2, 3]), &THETA_F64).unwrap_err().to_string().starts_with("a: expected shape"));
        let mut a = gaussian(&[2, 2], 1.0, 1);
        a.data_mut()[3] = f64::INFINITY;
        assert!(cayley(&a).unwrap_err().to_string().starts_with("a: non-finite"));
    }
}
