//! Buffer reuse by size class, with live and peak byte accounting.
//!
//! Every storage and read-back buffer the engine makes comes from here. **A buffer belongs to the GPU
//! work that uses it**: when its last handle drops, it waits until the work submitted so far has
//! completed (`Queue::on_submitted_work_done`) before it joins a free list, so nothing recorded or
//! submitted earlier can still touch it when it is handed out again. Recorded commands hold their
//! buffers through a [`Recorded`] guard until the caller has submitted them; a guard dropped without
//! [`Recorded::submitted`] gives its buffers back to wgpu instead of the free lists (the encoder may
//! still be submitted later, and wgpu keeps a buffer alive for as long as submitted work uses it).
//!
//! `live` counts bytes handed out, `peak` the most ever live since the last
//! [`crate::Engine::reset_peak`]: the figures that benches and tests use to prove memory claims.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// Bytes in buffers currently handed out.
    pub live_bytes: u64,
    /// The most bytes ever live at once since the last reset.
    pub peak_bytes: u64,
    /// Bytes the pool has allocated from the device (live, waiting and free).
    pub held_bytes: u64,
    /// Bytes released by their owners but still waiting for earlier GPU work to complete.
    pub waiting_bytes: u64,
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

struct Shared {
    state: Mutex<State>,
    queue: wgpu::Queue,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(crate) struct BufferPool {
    device: wgpu::Device,
    shared: Arc<Shared>,
}

struct Loan {
    buffer: wgpu::Buffer,
    kind: BufferKind,
    class: u64,
    /// Set when a [`Recorded`] guard was dropped unsubmitted: the buffer may be used by an encoder
    /// submitted at any later time, so it never returns to a free list.
    abandoned: AtomicBool,
    shared: Arc<Shared>,
}

/// A buffer on loan from the pool; clones share it, and it goes back when the last one drops.
#[derive(Clone)]
pub(crate) struct PooledBuffer(Arc<Loan>);

impl PooledBuffer {
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.0.buffer
    }
}

impl Drop for Loan {
    fn drop(&mut self) {
        let (buffer, kind, class) = (self.buffer.clone(), self.kind, self.class);
        let abandoned = self.abandoned.load(Ordering::Acquire);
        {
            let mut s = self.shared.lock();
            s.stats.live_bytes -= class;
            if abandoned {
                s.stats.held_bytes -= class;
                return;
            }
            s.stats.waiting_bytes += class;
        }
        // Registered outside the lock: wgpu may run the callback from inside this call.
        let shared = self.shared.clone();
        self.shared.queue.on_submitted_work_done(move || {
            let mut s = shared.lock();
            s.stats.waiting_bytes -= class;
            s.free.entry((kind, class)).or_default().push(buffer);
        });
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
    pub fn new(device: wgpu::Device, queue: wgpu::Queue) -> Self {
        BufferPool { device, shared: Arc::new(Shared { state: Mutex::default(), queue }) }
    }

    pub fn get(&self, kind: BufferKind, bytes: u64) -> PooledBuffer {
        // Lets wgpu run the callbacks of completed work, so that released buffers are reusable.
        let _ = crate::engine::poll(&self.device, wgpu::PollType::Poll);
        let class = size_class(bytes);
        let mut s = self.shared.lock();
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
        PooledBuffer(Arc::new(Loan {
            buffer,
            kind,
            class,
            abandoned: AtomicBool::new(false),
            shared: self.shared.clone(),
        }))
    }

    pub fn stats(&self) -> PoolStats {
        let _ = crate::engine::poll(&self.device, wgpu::PollType::Poll);
        self.shared.lock().stats
    }

    pub fn reset_peak(&self) {
        let mut s = self.shared.lock();
        s.stats.peak_bytes = s.stats.live_bytes;
    }

    /// Releases every free buffer back to the device. Buffers still loaned out or waiting for GPU
    /// work stay.
    pub fn trim(&self) {
        let _ = crate::engine::poll(&self.device, wgpu::PollType::Poll);
        let mut s = self.shared.lock();
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

/// The pooled buffers that recorded GPU commands use: the scratch of a `record_*` call and the
/// tensors it reads and writes. Keep it until the encoder holding those commands has been submitted,
/// then call [`Recorded::submitted`]: from then on the buffers go back to the pool once the GPU has
/// finished with them. Dropping it without that call is safe too, but its buffers are then not reused.
#[must_use = "keep it until the encoder is submitted, then call `submitted()`"]
#[derive(Default)]
pub struct Recorded {
    held: Vec<PooledBuffer>,
}

impl Recorded {
    pub(crate) fn new(held: Vec<PooledBuffer>) -> Self {
        Recorded { held }
    }

    /// The encoder holding the recorded commands has been submitted: the buffers may return to the
    /// pool once the GPU work submitted so far has completed.
    pub fn submitted(mut self) {
        self.held.clear();
    }

    /// Both guards in one.
    pub fn and(mut self, mut other: Recorded) -> Recorded {
        self.held.append(&mut other.held);
        self
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        for b in &self.held {
            b.0.abandoned.store(true, Ordering::Release);
        }
    }
}

impl std::fmt::Debug for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Recorded({} buffers)", self.held.len())
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
