//! `GpuTensor`: a storage buffer, its row-major shape and its element type (f32, or f16 storage).

use crate::error::{Error, Result};
use crate::pool::PooledBuffer;

#[derive(Clone)]
enum Storage {
    Pooled(PooledBuffer),
    /// A buffer owned by the application (see [`GpuTensor::from_buffer`]).
    External(wgpu::Buffer),
}

/// How a tensor's elements are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    /// f16 storage: element `i` in the low (`i` even) or high half of 32-bit word `i / 2`, the last
    /// word padded with zero. Kernels compute in f32: the operations convert f16 inputs on the device
    /// as they start and round their f16 outputs as they end (docs/math.md §0).
    F16,
}

impl DType {
    /// Bytes `len` elements take (an f16 tensor: whole 32-bit words).
    pub fn bytes(self, len: usize) -> u64 {
        match self {
            DType::F32 => 4 * len as u64,
            DType::F16 => 4 * len.div_ceil(2) as u64,
        }
    }

    /// Bytes of one element.
    pub fn element_bytes(self) -> u64 {
        match self {
            DType::F32 => 4,
            DType::F16 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
        }
    }
}

impl std::str::FromStr for DType {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "f32" => Ok(DType::F32),
            "f16" => Ok(DType::F16),
            _ => Err(ortho_ref::Error::argument("dtype", format!("'{s}' is not one of f32, f16")).into()),
        }
    }
}

/// A device-resident tensor of f32 values or of f16 storage ([`DType`]); clones share its buffer. A pooled tensor's buffer returns to the engine's pool when it drops,
/// once the GPU work submitted until then has completed (and not before the [`crate::Recorded`]
/// guard of any call it was recorded into is released).
#[derive(Clone)]
pub struct GpuTensor {
    storage: Storage,
    shape: Vec<usize>,
    dtype: DType,
}

impl GpuTensor {
    pub(crate) fn pooled(buffer: PooledBuffer, shape: &[usize], dtype: DType) -> Self {
        GpuTensor { storage: Storage::Pooled(buffer), shape: shape.to_vec(), dtype }
    }

    /// Wraps an application's buffer (usage must include `STORAGE`) holding `shape` f32 values from
    /// offset 0. To read it back through [`crate::Engine::download`] it also needs `COPY_SRC`.
    pub fn from_buffer(buffer: wgpu::Buffer, shape: &[usize]) -> Result<Self> {
        Self::from_buffer_as(buffer, shape, DType::F32)
    }

    /// [`GpuTensor::from_buffer`] of `dtype` values (f16: packed as [`DType::F16`] says).
    pub fn from_buffer_as(buffer: wgpu::Buffer, shape: &[usize], dtype: DType) -> Result<Self> {
        let bytes = dtype.bytes(shape.iter().product());
        if !buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
            return Err(Error::Unsupported(format!(
                "buffer {:?} lacks STORAGE usage (it has {:?})",
                buffer,
                buffer.usage()
            )));
        }
        if buffer.size() < bytes {
            return Err(ortho_ref::Error::Length {
                tensor: "buffer".into(),
                shape: shape.to_vec(),
                expected: shape.iter().product(),
                got: (buffer.size() / dtype.element_bytes()) as usize,
            }
            .into());
        }
        Ok(GpuTensor { storage: Storage::External(buffer), shape: shape.to_vec(), dtype })
    }

    /// The pool's loan behind a pooled tensor.
    pub(crate) fn loan(&self) -> Option<&PooledBuffer> {
        match &self.storage {
            Storage::Pooled(p) => Some(p),
            Storage::External(_) => None,
        }
    }

    pub fn buffer(&self) -> &wgpu::Buffer {
        match &self.storage {
            Storage::Pooled(p) => p.buffer(),
            Storage::External(b) => b,
        }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Bytes of data (the buffer may be larger).
    pub fn byte_len(&self) -> u64 {
        self.dtype.bytes(self.len())
    }

    /// The same buffer under another shape with as many elements.
    pub fn reshape(mut self, shape: &[usize]) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != self.len() {
            return Err(ortho_ref::Error::shape("tensor", format!("{} elements", self.len()), shape).into());
        }
        self.shape = shape.to_vec();
        Ok(self)
    }
}

impl std::fmt::Debug for GpuTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.dtype {
            DType::F32 => write!(f, "GpuTensor{:?}", self.shape),
            DType::F16 => write!(f, "GpuTensor{:?} f16", self.shape),
        }
    }
}
