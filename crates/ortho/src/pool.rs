//! Buffer reuse by size class, with live and peak byte accounting.
//!
//! Every storage and read-back buffer the engine makes comes from here; a buffer goes back to its
//! free list when its handle drops. `live` counts bytes handed out, `peak` the most ever live since
//! the last [`crate::Engine::reset_peak`]: the figures that benches and tests use to prove memory
//! claims.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Bytes in buffers currently handed out.
    pub live_bytes: u64,
    /// The most bytes ever live at once since the last reset.
    pub peak_bytes: u64,
    /// Bytes the pool has allocated from the device (live + free).
    pub held_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum BufferKind {
    /// STORAGE | COPY_SRC | COPY_DST.
    Storage,
    /// MAP_READ | COPY_DST.
    Readback,
}

impl BufferKind {
    fn usage(self) -> wgpu::BufferUsages {
        use wgpu::BufferUsages as U;
        match self {
            BufferKind::Storage => U::STORAGE | U::COPY_SRC | U::COPY_DST,
            BufferKind::Readback => U::MAP_READ | U::COPY_DST,
        }
    }
}

#[derive(Default)]
struct State {
    free: HashMap<(BufferKind, u64), Vec<wgpu::Buffer>>,
    stats: PoolStats,
}

pub(crate) struct BufferPool {
    device: wgpu::Device,
    state: Arc<Mutex<State>>,
}

/// A buffer on loan from the pool; it returns there when dropped.
pub(crate) struct PooledBuffer {
    buffer: wgpu::Buffer,
    kind: BufferKind,
    class: u64,
    state: Arc<Mutex<State>>,
}

impl PooledBuffer {
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.stats.live_bytes -= self.class;
        s.free.entry((self.kind, self.class)).or_default().push(self.buffer.clone());
    }
}

/// The size class of a request: multiples of 256 bytes up to 1 KiB, then quarter steps between
/// powers of two, so a class wastes at most a quarter of its size.
pub(crate) fn size_class(bytes: u64) -> u64 {
    let bytes = bytes.max(4);
    if bytes <= 1024 {
        return bytes.div_ceil(256) * 256;
    }
    let step = (1u64 << (63 - (bytes - 1).leading_zeros())) / 4;
    bytes.div_ceil(step) * step
}

impl BufferPool {
    pub fn new(device: wgpu::Device) -> Self {
        BufferPool { device, state: Arc::default() }
    }

    pub fn get(&self, kind: BufferKind, bytes: u64) -> PooledBuffer {
        let class = size_class(bytes);
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let reused = s.free.get_mut(&(kind, class)).and_then(Vec::pop);
        let buffer = reused.unwrap_or_else(|| {
            s.stats.held_bytes += class;
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("ortho pool"),
                size: class,
                usage: kind.usage(),
                mapped_at_creation: false,
            })
        });
        s.stats.live_bytes += class;
        s.stats.peak_bytes = s.stats.peak_bytes.max(s.stats.live_bytes);
        PooledBuffer { buffer, kind, class, state: self.state.clone() }
    }

    pub fn stats(&self) -> PoolStats {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).stats
    }

    pub fn reset_peak(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.stats.peak_bytes = s.stats.live_bytes;
    }

    /// Releases every free buffer back to the device.
    pub fn trim(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let freed: u64 = s
            .free
            .drain()
            .flat_map(|(_, v)| v)
            .map(|b| {
                let size = b.size();
                b.destroy();
                size
            })
            .sum();
        s.stats.held_bytes -= freed;
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn classes_cover_the_request_and_waste_at_most_a_quarter() {
        for bytes in (1..5000u64).chain([1 << 20, (1 << 20) + 1, 3 << 30]) {
            let c = size_class(bytes);
            assert!(c >= bytes);
            assert_eq!(c % 4, 0);
            if bytes > 1024 {
                assert!((c - bytes) * 4 <= c, "{bytes} -> {c}");
            }
        }
        assert_eq!(size_class(1025), 1280);
        assert_eq!(size_class(2048), 2048);
    }
}
