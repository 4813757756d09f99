//! A host tensor: a row-major `Vec` and its shape.

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct Tensor<T> {
    shape: Vec<usize>,
    data: Vec<T>,
}

/// Scalars a host tensor may hold.
pub trait Element: Copy + PartialEq + std::fmt::Debug + Default + Send + Sync + 'static {
    fn to_f64(self) -> f64;
    fn from_f64(x: f64) -> Self;
    fn is_finite(self) -> bool {
        self.to_f64().is_finite()
    }
}

impl Element for f32 {
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(x: f64) -> Self {
        x as f32
    }
}

impl Element for f64 {
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(x: f64) -> Self {
        x
    }
}

/// f16 storage: every f16 is an f64 exactly; an f64 becomes the nearest f16 (ties to even), and
/// one past f16's range (65504) becomes infinite.
impl Element for half::f16 {
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn from_f64(x: f64) -> Self {
        half::f16::from_f64(x)
    }
    fn is_finite(self) -> bool {
        half::f16::is_finite(self)
    }
}

impl<T: Element> Tensor<T> {
    /// `name` is used in the error when `data` does not fill `shape`.
    pub fn new(shape: &[usize], data: Vec<T>) -> Result<Self> {
        let expected: usize = shape.iter().product();
        if expected != data.len() {
            return Err(Error::Length { tensor: "tensor".into(), shape: shape.to_vec(), expected, got: data.len() });
        }
        Ok(Tensor { shape: shape.to_vec(), data })
    }

    pub fn zeros(shape: &[usize]) -> Self {
        Tensor { shape: shape.to_vec(), data: vec![T::default(); shape.iter().product()] }
    }

    pub fn from_fn(shape: &[usize], mut f: impl FnMut(usize) -> T) -> Self {
        let n = shape.iter().product();
        Tensor { shape: shape.to_vec(), data: (0..n).map(&mut f).collect() }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn data(&self) -> &[T] {
        &self.data
    }

    pub fn data_mut(&mut self) -> &mut [T] {
        &mut self.data
    }

    pub fn into_data(self) -> Vec<T> {
        self.data
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The same data under another shape with the same number of elements.
    pub fn reshape(self, shape: &[usize]) -> Result<Self> {
        Tensor::new(shape, self.data)
    }

    /// Indices `first..first + count` of axis `axis` (which must have them).
    pub fn slice_axis(&self, axis: usize, first: usize, count: usize) -> Tensor<T> {
        let outer: usize = self.shape[..axis].iter().product();
        let inner: usize = self.shape[axis + 1..].iter().product();
        let n = self.shape[axis];
        let mut data = Vec::with_capacity(outer * count * inner);
        for o in 0..outer {
            data.extend_from_slice(&self.data[(o * n + first) * inner..(o * n + first + count) * inner]);
        }
        let mut shape = self.shape.clone();
        shape[axis] = count;
        Tensor { shape, data }
    }

    pub fn map<U: Element>(&self, f: impl Fn(T) -> U) -> Tensor<U> {
        Tensor { shape: self.shape.clone(), data: self.data.iter().map(|&x| f(x)).collect() }
    }

    pub fn to_f64(&self) -> Tensor<f64> {
        self.map(T::to_f64)
    }

    pub fn to_f32(&self) -> Tensor<f32> {
        self.map(|x| x.to_f64() as f32)
    }

    /// The nearest f16 values (ties to even; past f16's range 65504, infinite: see
    /// [`Tensor::check_finite`]).
    pub fn to_f16(&self) -> Tensor<half::f16> {
        self.map(|x| half::f16::from_f64(x.to_f64()))
    }

    /// The multi-index of a flat position.
    pub fn unravel(&self, mut flat: usize) -> Vec<usize> {
        let mut index = vec![0; self.shape.len()];
        for (i, &n) in self.shape.iter().enumerate().rev() {
            if n > 0 {
                index[i] = flat % n;
                flat /= n;
            }
        }
        index
    }

    /// Rejects NaN and infinities, naming the tensor and the first bad index.
    pub fn check_finite(&self, name: &str) -> Result<()> {
        match self.data.iter().position(|x| !x.is_finite()) {
            None => Ok(()),
            Some(flat) => Err(Error::NonFinite {
                tensor: name.to_string(),
                index: self.unravel(flat),
                value: self.data[flat].to_f64(),
            }),
        }
    }
}

/// `|a - b|_F / |b|_F`, or `|a - b|_F` when `b` is zero.
pub fn relative_frobenius<A: Element, B: Element>(a: &[A], b: &[B]) -> f64 {
    assert_eq!(a.len(), b.len(), "relative_frobenius: lengths differ");
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x.to_f64(), y.to_f64());
        diff += (x - y) * (x - y);
        norm += y * y;
    }
    if norm == 0.0 { diff.sqrt() } else { (diff / norm).sqrt() }
}

/// `max |a - b|`.
pub fn max_abs_diff<A: Element, B: Element>(a: &[A], b: &[B]) -> f64 {
    assert_eq!(a.len(), b.len(), "max_abs_diff: lengths differ");
    a.iter().zip(b).map(|(&x, &y)| (x.to_f64() - y.to_f64()).abs()).fold(0.0, f64::max)
}
