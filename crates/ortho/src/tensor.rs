//! `GpuTensor`: an f32 storage buffer and its row-major shape.

use crate::error::{Error, Result};
use crate::pool::PooledBuffer;

#[derive(Clone)]
enum Storage {
    Pooled(PooledBuffer),
    /// A buffer owned by the application (see [`GpuTensor::from_buffer`]).
    External(wgpu::Buffer),
}

/// A device-resident f32 tensor; clones share its buffer. A pooled tensor's buffer returns to the engine's pool when it drops,
/// once the GPU work submitted until then has completed (and not before the [`crate::Recorded`]
/// guard of any call it was recorded into is released).
#[derive(Clone)]
pub struct GpuTensor {
    storage: Storage,
    shape: Vec<usize>,
}

impl GpuTensor {
    pub(crate) fn pooled(buffer: PooledBuffer, shape: &[usize]) -> Self {
        GpuTensor { storage: Storage::Pooled(buffer), shape: shape.to_vec() }
    }

    /// Wraps an application's buffer (usage must include `STORAGE`) holding `shape` f32 values from
    /// offset 0. To read it back through [`crate::Engine::download`] it also needs `COPY_SRC`.
    pub fn from_buffer(buffer: wgpu::Buffer, shape: &[usize]) -> Result<Self> {
        let bytes = 4 * shape.iter().product::<usize>() as u64;
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
                got: (buffer.size() / 4) as usize,
            }
            .into());
        }
        Ok(GpuTensor { storage: Storage::External(buffer), shape: shape.to_vec() })
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

    /// Bytes of data (the buffer may be larger).
    pub fn byte_len(&self) -> u64 {
        4 * self.len() as u64
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
        write!(f, "GpuTensor{:?}", self.shape)
    }
}
