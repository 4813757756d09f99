//! GPU timing: timestamp queries around recorded work, wall clock where the adapter has none.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::pool::Recorded;
use std::time::Instant;

/// How long some recorded GPU work took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub seconds: f64,
    /// True when measured with GPU timestamp queries, false for wall clock around submit-and-wait.
    pub gpu_timestamps: bool,
}

impl Engine {
    /// Times the GPU work that `record` puts into an encoder: timestamps written by an empty compute
    /// pass before and after it, or wall clock when the device lacks `TIMESTAMP_QUERY`.
    pub fn time(&self, mut record: impl FnMut(&mut wgpu::CommandEncoder) -> Result<Recorded>) -> Result<Timing> {
        let gpu = self.gpu("timing")?;
        if !gpu.device.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            let start = Instant::now();
            self.submit("timed work", &mut record)?;
            crate::engine::poll(&gpu.device, wgpu::PollType::wait_indefinitely())?;
            return Ok(Timing { seconds: start.elapsed().as_secs_f64(), gpu_timestamps: false });
        }
        let set = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("ortho timer"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("ortho timer resolve"),
            size: 16,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let read = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("ortho timer read"),
            size: 16,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.submit("timed work", |enc| {
            let mark = |enc: &mut wgpu::CommandEncoder, begin: Option<u32>, end: Option<u32>| {
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("ortho timestamp"),
                    timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                        query_set: &set,
                        beginning_of_pass_write_index: begin,
                        end_of_pass_write_index: end,
                    }),
                });
            };
            mark(enc, Some(0), None);
            let recorded = record(enc)?;
            mark(enc, None, Some(1));
            enc.resolve_query_set(&set, 0..2, &resolve, 0);
            enc.copy_buffer_to_buffer(&resolve, 0, &read, 0, 16);
            Ok(recorded)
        })?;
        let slice = read.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        let gpu_err = |message: String| Error::Gpu { op: "timing".into(), message };
        crate::engine::poll(&gpu.device, wgpu::PollType::wait_indefinitely())?;
        rx.recv().map_err(|e| gpu_err(e.to_string()))?.map_err(|e| gpu_err(e.to_string()))?;
        let ticks: [u64; 2] = {
            let view = slice.get_mapped_range().map_err(|e| gpu_err(e.to_string()))?;
            bytemuck::pod_read_unaligned(&view[..16])
        };
        read.unmap();
        let period = gpu.queue.get_timestamp_period() as f64;
        Ok(Timing { seconds: ticks[1].saturating_sub(ticks[0]) as f64 * period * 1e-9, gpu_timestamps: true })
    }
}
