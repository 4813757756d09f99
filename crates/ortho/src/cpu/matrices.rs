//! Square f32 matrices of the CPU fallback's group maps and flows: [`Small`] (n <= 8, on the stack,
//! products by loops) and [`Dense`] (any n, products through `matrixmultiply`), both an
//! `ortho_ref::expm::Ring`, so that the exponential is `ortho_ref::expm::increment_of` with the GPU's
//! f32 switch points.

use super::{View, gemm, threads};
use ortho_ref::Tensor;
use ortho_ref::expm::{Ring, THETA_F32, increment_of};

const SMALL_N: usize = 8;

/// A square matrix the maps work on.
pub(crate) trait Square: Ring {
    fn zeros(n: usize) -> Self;
    fn n(&self) -> usize;
    fn data(&self) -> &[f32];
    fn data_mut(&mut self) -> &mut [f32];

    fn from_slice(n: usize, values: &[f32]) -> Self {
        let mut m = Self::zeros(n);
        m.data_mut().copy_from_slice(values);
        m
    }

    fn eye(n: usize, c: f32) -> Self {
        let mut m = Self::zeros(n);
        (0..n).for_each(|i| m.data_mut()[i * n + i] = c);
        m
    }

    fn one_norm(&self) -> f64 {
        let (n, d) = (self.n(), self.data());
        (0..n).map(|j| (0..n).map(|i| d[i * n + j].abs() as f64).sum::<f64>()).fold(0.0, f64::max)
    }

    /// `exp(A) - I` with the f32 switch points.
    fn exp_increment(&self) -> Self {
        increment_of(self, self.one_norm(), &THETA_F32)
    }

    /// `cay(A) - I = (I - A/2)^(-1) A`, or `None` if `I - A/2` is singular.
    fn cayley_increment(&self) -> Option<Self> {
        let n = self.n();
        let mut lhs = Self::eye(n, 1.0);
        lhs.data_mut().iter_mut().zip(self.data()).for_each(|(x, y)| *x -= 0.5 * y);
        let mut out = self.clone();
        gauss_jordan(n, lhs.data_mut(), out.data_mut()).then_some(out)
    }
}

/// Solves `L X = R` in place (`R` becomes X) by Gauss–Jordan elimination with partial pivoting;
/// false if `L` is singular.
fn gauss_jordan(n: usize, l: &mut [f32], r: &mut [f32]) -> bool {
    for c in 0..n {
        let p = (c..n).fold(c, |p, i| if l[i * n + c].abs() > l[p * n + c].abs() { i } else { p });
        if l[p * n + c] == 0.0 {
            return false;
        }
        for j in 0..n {
            l.swap(c * n + j, p * n + j);
            r.swap(c * n + j, p * n + j);
        }
        let inverse = 1.0 / l[c * n + c];
        for j in 0..n {
            l[c * n + j] *= inverse;
            r[c * n + j] *= inverse;
        }
        for i in (0..n).filter(|&i| i != c) {
            let f = l[i * n + c];
            for j in 0..n {
                l[i * n + j] -= f * l[c * n + j];
                r[i * n + j] -= f * r[c * n + j];
            }
        }
    }
    true
}

/// An n x n matrix, n <= 8, on the stack.
#[derive(Clone, Copy)]
pub(crate) struct Small {
    n: usize,
    data: [f32; SMALL_N * SMALL_N],
}

impl Square for Small {
    fn zeros(n: usize) -> Self {
        Small { n, data: [0.0; SMALL_N * SMALL_N] }
    }
    fn n(&self) -> usize {
        self.n
    }
    fn data(&self) -> &[f32] {
        &self.data[..self.n * self.n]
    }
    fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data[..self.n * self.n]
    }
}

impl Ring for Small {
    fn identity_like(&self) -> Self {
        Small::eye(self.n, 1.0)
    }
    fn add(&self, o: &Self) -> Self {
        let mut r = *self;
        r.data.iter_mut().zip(&o.data).for_each(|(a, b)| *a += b);
        r
    }
    fn scale(&self, s: f64) -> Self {
        let mut r = *self;
        r.data.iter_mut().for_each(|a| *a *= s as f32);
        r
    }
    fn mul(&self, o: &Self) -> Self {
        let n = self.n;
        let mut r = Small::zeros(n);
        for i in 0..n {
            for k in 0..n {
                let a = self.data[i * n + k];
                for j in 0..n {
                    r.data[i * n + j] += a * o.data[k * n + j];
                }
            }
        }
        r
    }
}

/// An n x n matrix on the heap, its products through `matrixmultiply`.
#[derive(Clone)]
pub(crate) struct Dense {
    n: usize,
    data: Vec<f32>,
}

impl Dense {
    pub fn transpose(&self) -> Self {
        let n = self.n;
        Dense { n, data: (0..n * n).map(|e| self.data[(e % n) * n + e / n]).collect() }
    }

    /// `A B - B A`.
    pub fn commutator(&self, o: &Self) -> Self {
        self.mul(o).add(&o.mul(self).scale(-1.0))
    }
}

impl Square for Dense {
    fn zeros(n: usize) -> Self {
        Dense { n, data: vec![0.0; n * n] }
    }
    fn n(&self) -> usize {
        self.n
    }
    fn data(&self) -> &[f32] {
        &self.data
    }
    fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }
}

impl Ring for Dense {
    fn identity_like(&self) -> Self {
        Dense::eye(self.n, 1.0)
    }
    fn add(&self, o: &Self) -> Self {
        Dense { n: self.n, data: self.data.iter().zip(&o.data).map(|(a, b)| a + b).collect() }
    }
    fn scale(&self, s: f64) -> Self {
        Dense { n: self.n, data: self.data.iter().map(|a| a * s as f32).collect() }
    }
    fn mul(&self, o: &Self) -> Self {
        let n = self.n;
        let mut r = Dense::zeros(n);
        gemm((n, n, n), 1.0, View::new(&self.data, n), View::new(&o.data, n), 0.0, &mut r.data);
        r
    }
}

/// `exp(A)` or `cay(A)` of one matrix; NaN where `I - A/2` is singular (the caller reports it).
fn map_into<M: Square>(src: &[f32], n: usize, cayley: bool, dst: &mut [f32]) {
    let m = M::from_slice(n, src);
    let increment = if cayley { m.cayley_increment() } else { Some(m.exp_increment()) };
    match increment {
        Some(d) => dst.iter_mut().zip(d.data()).enumerate().for_each(|(e, (x, y))| {
            *x = y + if e / n == e % n { 1.0 } else { 0.0 };
        }),
        None => dst.fill(f32::NAN),
    }
}

/// `exp(A)` or `cay(A)` of every matrix of `a` (`[.., n, n]`) in f32 with the GPU's switch points,
/// the batch split over the threads.
pub(crate) fn group_map(a: &Tensor<f32>, cayley: bool) -> Tensor<f32> {
    let n = a.shape()[a.shape().len() - 1];
    let mut out = vec![0.0; a.len()];
    let per_thread = (a.len() / (n * n)).div_ceil(threads()).max(1) * n * n;
    std::thread::scope(|scope| {
        for (dst, src) in out.chunks_mut(per_thread).zip(a.data().chunks(per_thread)) {
            scope.spawn(move || {
                for (dst, src) in dst.chunks_mut(n * n).zip(src.chunks(n * n)) {
                    if n <= SMALL_N {
                        map_into::<Small>(src, n, cayley, dst);
                    } else {
                        map_into::<Dense>(src, n, cayley, dst);
                    }
                }
            });
        }
    });
    Tensor::new(a.shape(), out).expect("the input's shape")
}
