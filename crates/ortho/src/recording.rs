//! One call being recorded: its scratch, the pooled buffers its commands use, and the uniform blocks
//! of its dispatches.

use crate::engine::{Engine, Gpu};
use crate::error::{Error, Result};
use crate::kernels::{Params, Shader};
use crate::pool::{BufferKind, PooledBuffer, Recorded};
use crate::scratch::ScratchSize;
use crate::shaders::{Constants, Pipeline};
use crate::tensor::{DType, GpuTensor};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// Bytes of the first uniform buffer of a recording; each next one doubles, up to [`UNIFORM_MAX_BYTES`].
const UNIFORM_FIRST_BYTES: u64 = 4 << 10;
const UNIFORM_MAX_BYTES: u64 = 256 << 10;

/// A bind group is shared by every dispatch of one layout over the same uniform buffer and storage
/// buffers; the dispatches differ only in their dynamic uniform offset.
type BindKey = (wgpu::BindGroupLayout, usize, Vec<wgpu::Buffer>);

/// The uniform blocks of a recording, packed at the device's offset alignment into buffers mapped at
/// creation and unmapped when the recording ends (before anything can submit its commands). A block
/// written before is bound where it already is, so a loop that repeats its dispatches (a flow's
/// steps, a scan's levels) takes no new uniform memory.
#[derive(Default)]
struct Uniforms {
    buffers: Vec<wgpu::Buffer>,
    used: u64,
    written: HashMap<Vec<u8>, (usize, u64)>,
    bind_groups: HashMap<BindKey, wgpu::BindGroup>,
}

/// The device while one call is recorded: scratch comes from the pool, and every pooled buffer the
/// recorded commands use is kept in the [`Recorded`] guard that [`Recording::finish`] returns.
/// Dropped without `finish` (a call that failed half-way), its buffers are never reused, since the
/// caller's encoder may still hold commands that use them.
pub(crate) struct Recording<'g> {
    gpu: &'g Arc<Gpu>,
    kept: RefCell<Vec<PooledBuffer>>,
    uniforms: RefCell<Uniforms>,
    /// The partial products of split GEMMs, one buffer that every split product of the recording
    /// reuses (its dispatches run in order).
    partials: RefCell<Option<PooledBuffer>>,
    /// Scratch taken so far (what [`Recording::reusing`] releases) and scratch released: the
    /// recording's dispatches run in order, so what is recorded later may take it again.
    taken: RefCell<Vec<PooledBuffer>>,
    spare: RefCell<Vec<PooledBuffer>>,
}

impl Engine {
    /// The device for recording `op`, keeping `tensors` (the call's inputs and outputs) with the
    /// scratch it takes until the recorded commands have run.
    pub(crate) fn recording(&self, op: &str, tensors: &[&GpuTensor]) -> Result<Recording<'_>> {
        if let Some(t) = tensors.iter().find(|t| t.dtype() != DType::F32) {
            return Err(Error::Unsupported(format!(
                "{op} records f32 tensors, and {t:?} holds {}: pass it to Engine::run_gpu or Engine::record \
                 with the operation (ortho::ops), which convert it on the device, or convert it with \
                 Engine::convert_gpu",
                t.dtype().name()
            )));
        }
        let recording = Recording {
            gpu: self.gpu(op)?,
            kept: RefCell::default(),
            uniforms: RefCell::default(),
            partials: RefCell::default(),
            taken: RefCell::default(),
            spare: RefCell::default(),
        };
        recording.keep(tensors);
        Ok(recording)
    }
}

impl Recording<'_> {
    /// A storage buffer of at least `bytes` (4 at the least) for the recorded commands to write, kept
    /// until the work has run: scratch that [`Recording::reusing`] released, else a pooled buffer.
    pub fn scratch(&self, bytes: u64) -> PooledBuffer {
        let bytes = bytes.max(4);
        let mut spare = self.spare.borrow_mut();
        let fitting = (0..spare.len()).filter(|&i| spare[i].buffer().size() >= bytes);
        let buffer = match fitting.min_by_key(|&i| spare[i].buffer().size()) {
            Some(i) => spare.swap_remove(i),
            None => self.fresh(bytes),
        };
        self.taken.borrow_mut().push(buffer.clone());
        buffer
    }

    /// A pooled storage buffer no other use of this recording shares, kept until the work has run.
    fn fresh(&self, bytes: u64) -> PooledBuffer {
        let buffer = self.gpu.pool.get(BufferKind::Storage, bytes.max(4));
        self.kept.borrow_mut().push(buffer.clone());
        buffer
    }

    /// Records `f`, then releases the scratch it took to what is recorded after it (the dispatches
    /// run in recording order). `f`'s results must lie in buffers taken before.
    pub fn reusing<T>(&self, f: impl FnOnce() -> T) -> T {
        let mark = self.taken.borrow().len();
        let out = f();
        let released: Vec<PooledBuffer> = self.taken.borrow_mut().drain(mark..).collect();
        self.spare.borrow_mut().extend(released);
        out
    }

    /// A pooled storage buffer holding `data`, written through the queue now (a pooled buffer is free
    /// of earlier work, and the write lands before any later submission), kept until the work has run.
    /// Never reused within the recording: every write lands before any of its dispatches runs.
    pub fn upload(&self, data: &[u8]) -> PooledBuffer {
        let buffer = self.fresh(data.len() as u64);
        self.gpu.queue.write_buffer(buffer.buffer(), 0, data);
        buffer
    }

    /// The recording's buffer for the partial products of split GEMMs, `bytes` long (the same
    /// `bytes` on every call).
    pub fn partials(&self, bytes: u64) -> PooledBuffer {
        self.partials.borrow_mut().get_or_insert_with(|| self.fresh(bytes)).clone()
    }

    /// The scratch buffers of `sizes`, after checking that each fits one binding (`what` names the
    /// call in the error).
    pub fn allocate<S: ScratchSize>(&self, what: &str, sizes: &S) -> Result<S::Buffers> {
        let limit = self.binding_limit();
        let largest = sizes.largest_bytes();
        if largest > limit {
            return Err(Error::Limit {
                what: format!("a scratch buffer of {what}"),
                needed: largest,
                limit_name: "max_storage_buffer_binding_size",
                limit,
            });
        }
        Ok(sizes.allocate(self))
    }

    /// Bytes one storage binding may cover.
    pub fn binding_limit(&self) -> u64 {
        let limits = self.gpu.device.limits();
        limits.max_storage_buffer_binding_size.min(limits.max_buffer_size)
    }

    /// Whether the adapter is a CPU rasteriser (lavapipe, llvmpipe): a workgroup's invocations run
    /// eight at a time there, and barriers cost every one of them.
    pub fn is_cpu_adapter(&self) -> bool {
        self.gpu.info.device_type == wgpu::DeviceType::Cpu
    }

    /// Whether the device has `SHADER_F16`, so that the products can read f16 operands.
    pub fn shader_f16(&self) -> bool {
        self.gpu.device.features().contains(wgpu::Features::SHADER_F16)
    }

    pub fn adapter_name(&self) -> &str {
        &self.gpu.info.name
    }

    /// Workgroups one dimension of a dispatch may have (65,535 on most devices).
    pub fn max_groups(&self) -> usize {
        self.gpu.device.limits().max_compute_workgroups_per_dimension as usize
    }

    /// Workgroup counts for `invocations` threads in groups of `group`, spread over x, y and z so that
    /// no dimension passes [`Recording::max_groups`]; shaders rebuild the linear index from
    /// `num_workgroups` (`group_index`, `element_index`), a u32.
    pub fn grid(&self, invocations: u64, group: u32) -> Result<[u32; 3]> {
        let max = self.max_groups() as u64;
        let groups = invocations.div_ceil(group as u64).max(1);
        let x = groups.min(max);
        let y = groups.div_ceil(x).min(max);
        let z = groups.div_ceil(x * y);
        if z > max || x * y * z * group as u64 > u32::MAX as u64 {
            return Err(Error::Limit {
                what: format!("a grid of {invocations} invocations"),
                needed: invocations,
                limit_name: "invocations one dispatch can index (u32, and max_compute_workgroups_per_dimension cubed)",
                limit: (max * max * max * group as u64).min(u32::MAX as u64),
            });
        }
        Ok([x as u32, y as u32, z as u32])
    }

    /// Keeps the pooled buffers of `tensors` until the work has run.
    pub fn keep(&self, tensors: &[&GpuTensor]) {
        self.kept.borrow_mut().extend(tensors.iter().filter_map(|t| t.loan().cloned()));
    }

    pub fn finish(self) -> Recorded {
        self.unmap_uniforms();
        Recorded::new(self.kept.take())
    }

    fn unmap_uniforms(&self) {
        self.uniforms.borrow_mut().unmap();
    }

    /// Records one dispatch of `shader` with uniform block `params` at binding 0 and `buffers` at
    /// bindings 1...
    pub fn dispatch<P: Params>(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        shader: &Shader<P>,
        params: &P,
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) -> Result<()> {
        self.dispatch_with(pass, shader, &[], params, buffers, groups)
    }

    /// Records `buffer[0..count] = value`.
    pub fn fill(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        buffer: &wgpu::Buffer,
        count: usize,
        value: f32,
    ) -> Result<()> {
        let params = crate::kernels::Fill { count: count as u32, off: 0, value, _pad: 0 };
        self.dispatch(pass, &crate::kernels::FILL, &params, &[buffer], self.grid(count as u64, 256)?)
    }

    /// Whether the adapter's subgroups hold at least 8 invocations (see `gemm::subgroups_of_8`).
    pub fn subgroups_of_8(&self) -> bool {
        crate::gemm::subgroups_of_8(&self.gpu.device, &self.gpu.info)
    }

    /// The GEMM variant for products of `class` (tuning the class first if it is new).
    pub fn gemm_variant(&self, class: crate::tune::GemmClass) -> Result<crate::gemm::GemmVariant> {
        self.gpu.tuner.variant(self.gpu, class)
    }

    /// [`Recording::dispatch`] of a pipeline specialised by override `constants`.
    pub fn dispatch_with<P: Params>(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        shader: &Shader<P>,
        constants: Constants,
        params: &P,
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) -> Result<()> {
        let pipeline = self.gpu.pipelines.get(&self.gpu.device, &shader.source, constants)?;
        let (bind_group, offset) = self.bind(&pipeline, shader.source.name, bytemuck::bytes_of(params), buffers)?;
        pass.set_pipeline(pipeline.pipeline());
        pass.set_bind_group(0, &bind_group, &[offset]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        Ok(())
    }

    /// Writes `params` into the recording's uniform buffers and returns the bind group of `pipeline`
    /// over them and `buffers`, with the dynamic offset of `params`.
    fn bind(
        &self,
        pipeline: &Arc<Pipeline>,
        name: &str,
        params: &[u8],
        buffers: &[&wgpu::Buffer],
    ) -> Result<(wgpu::BindGroup, u32)> {
        let device = &self.gpu.device;
        let align = device.limits().min_uniform_buffer_offset_alignment as u64;
        let size = (params.len() as u64).next_multiple_of(16);
        let mut u = self.uniforms.borrow_mut();
        let (index, offset) = match u.written.get(params) {
            Some(&at) => at,
            None => {
                let at = u.write(device, params, size, align, name)?;
                u.written.insert(params.to_vec(), at);
                at
            }
        };
        let uniform = u.buffers[index].clone();
        let key = (pipeline.layout().clone(), index, buffers.iter().map(|&b| b.clone()).collect());
        let bind_group = u.bind_groups.entry(key).or_insert_with(|| {
            let whole = wgpu::BufferBinding { buffer: &uniform, offset: 0, size: wgpu::BufferSize::new(size) };
            let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: wgpu::BindingResource::Buffer(whole) }];
            entries.extend(
                buffers
                    .iter()
                    .enumerate()
                    .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32 + 1, resource: b.as_entire_binding() }),
            );
            device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(name),
                layout: pipeline.layout(),
                entries: &entries,
            })
        });
        Ok((bind_group.clone(), offset as u32))
    }
}

impl Uniforms {
    /// Writes `params` at the next free offset: `(buffer index, offset)`.
    fn write(
        &mut self,
        device: &wgpu::Device,
        params: &[u8],
        size: u64,
        align: u64,
        name: &str,
    ) -> Result<(usize, u64)> {
        let full = self.buffers.last().is_none_or(|b| self.used + size > b.size());
        if full {
            let bytes = self.buffers.last().map_or(UNIFORM_FIRST_BYTES, |b| (2 * b.size()).min(UNIFORM_MAX_BYTES));
            self.buffers.push(device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("uniforms"),
                size: bytes.max(size),
                usage: wgpu::BufferUsages::UNIFORM,
                mapped_at_creation: true,
            }));
            self.used = 0;
        }
        let (index, offset) = (self.buffers.len() - 1, self.used);
        let mut view = self.buffers[index]
            .slice(offset..offset + size)
            .get_mapped_range_mut()
            .map_err(|e| Error::Gpu { op: name.to_string(), message: format!("writing its uniforms: {e}") })?;
        view.slice(..params.len()).copy_from_slice(params);
        drop(view);
        self.used = (offset + size).next_multiple_of(align);
        Ok((index, offset))
    }

    fn unmap(&mut self) {
        for buffer in self.buffers.drain(..) {
            buffer.unmap();
        }
        self.written.clear();
        self.bind_groups.clear();
    }
}

impl Drop for Recording<'_> {
    fn drop(&mut self) {
        self.unmap_uniforms();
        drop(Recorded::new(self.kept.take()));
    }
}

impl std::ops::Deref for Recording<'_> {
    type Target = Gpu;
    fn deref(&self) -> &Gpu {
        self.gpu
    }
}

/// `outer x inner` blocks of `len` floats; `src` and `dst` are `[offset, outer stride, inner
/// stride]` (see `common/copy.wgsl`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Blocks {
    pub outer: usize,
    pub inner: usize,
    pub len: usize,
    pub src: [usize; 3],
    pub dst: [usize; 3],
}

impl Recording<'_> {
    /// Records the copy of `b` from `src` to `dst`.
    pub fn copy(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        src: &wgpu::Buffer,
        dst: &wgpu::Buffer,
        b: Blocks,
    ) -> Result<()> {
        let u = |x: usize| x as u32;
        let params = crate::kernels::CopyBlocks {
            outer: u(b.outer),
            inner: u(b.inner),
            len: u(b.len),
            src_off: u(b.src[0]),
            src_outer: u(b.src[1]),
            src_inner: u(b.src[2]),
            dst_off: u(b.dst[0]),
            dst_outer: u(b.dst[1]),
            dst_inner: u(b.dst[2]),
            ..Default::default()
        };
        let n = (b.outer * b.inner * b.len) as u64;
        self.dispatch(pass, &crate::kernels::COPY, &params, &[src, dst], self.grid(n, 256)?)
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::{Engine, EngineOptions};

    /// What [`super::Recording::reusing`] releases goes to later scratch of the same recording only:
    /// never to an upload (written before any dispatch runs), to the split products' buffer, or to
    /// anything taken outside the scope.
    #[test]
    fn reusing_hands_released_scratch_only_to_later_scratch() {
        let options = EngineOptions::from_env().expect("ORTHO_BACKEND");
        let Ok(engine) = Engine::with_options(&EngineOptions { require_gpu: true, ..options.clone() }) else {
            assert!(!options.require_gpu, "ORTHO_REQUIRE_GPU=1 but no GPU adapter could be opened");
            return;
        };
        let gpu = engine.recording("test", &[]).unwrap();
        let before = gpu.scratch(4096);
        let (released, upload_inside) = gpu.reusing(|| (gpu.scratch(4096), gpu.upload(&[0; 4096])));
        // Released and free: still not for an upload or the split products' buffer.
        let upload = gpu.upload(&[0; 4096]);
        let partials = gpu.partials(4096);
        for other in [&before, &upload_inside, &upload, &partials] {
            assert!(other.buffer() != released.buffer());
        }
        let again = gpu.scratch(3000);
        assert_eq!(again.buffer(), released.buffer(), "released scratch is taken again");
        let held = [&before, &upload_inside, &upload, &partials, &again].map(|b| b.buffer().clone());
        for _ in 0..4 {
            assert!(!held.contains(gpu.scratch(4096).buffer()));
        }
        drop(gpu.finish());
    }
}
