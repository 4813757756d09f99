//! Adapter choice, the device and queue (the engine's own or an application's), and the CPU fallback.

use crate::error::{Error, Result};
use crate::pool::{BufferKind, BufferPool, PoolStats, Recorded};
use crate::shaders::PipelineCache;
use crate::tensor::{DType, GpuTensor};
use crate::tune::{TuneOptions, Tuner};
use ortho_ref::Tensor;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// Which backend to use. `Auto` takes the best adapter of any backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    #[default]
    Auto,
    Vulkan,
    Gl,
    Metal,
    Dx12,
    /// No GPU: the CPU reference answers every call.
    Cpu,
}

impl BackendChoice {
    pub fn backends(self) -> wgpu::Backends {
        match self {
            BackendChoice::Auto => wgpu::Backends::all(),
            BackendChoice::Vulkan => wgpu::Backends::VULKAN,
            BackendChoice::Gl => wgpu::Backends::GL,
            BackendChoice::Metal => wgpu::Backends::METAL,
            BackendChoice::Dx12 => wgpu::Backends::DX12,
            BackendChoice::Cpu => wgpu::Backends::empty(),
        }
    }
}

impl std::str::FromStr for BackendChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "auto" => BackendChoice::Auto,
            "vulkan" => BackendChoice::Vulkan,
            "gl" => BackendChoice::Gl,
            "metal" => BackendChoice::Metal,
            "dx12" => BackendChoice::Dx12,
            "cpu" => BackendChoice::Cpu,
            _ => {
                return Err(ortho_ref::Error::argument(
                    "backend",
                    format!("'{s}' is not one of auto, vulkan, gl, metal, dx12, cpu"),
                )
                .into());
            }
        })
    }
}

/// How [`Engine::with_options`] picks its device.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    pub backend: BackendChoice,
    /// Only adapters whose name contains this (case-insensitive).
    pub adapter_name: Option<String>,
    /// With `Auto`, fail instead of falling back to the CPU reference when no adapter is usable (a
    /// backend asked for by name never falls back; an explicit `BackendChoice::Cpu` is honoured).
    pub require_gpu: bool,
    /// How the engine chooses its GEMM variants (`ORTHO_TUNE`, `ORTHO_TUNE_CACHE`).
    pub tune: TuneOptions,
}

impl EngineOptions {
    /// `ORTHO_BACKEND`, `WGPU_ADAPTER_NAME`, `ORTHO_REQUIRE_GPU=1`, `ORTHO_TUNE` and `ORTHO_TUNE_CACHE`.
    pub fn from_env() -> Result<Self> {
        let backend = match std::env::var("ORTHO_BACKEND") {
            Ok(s) if !s.is_empty() => s.parse()?,
            _ => BackendChoice::Auto,
        };
        Ok(EngineOptions {
            backend,
            adapter_name: std::env::var("WGPU_ADAPTER_NAME").ok().filter(|s| !s.is_empty()),
            require_gpu: std::env::var("ORTHO_REQUIRE_GPU").is_ok_and(|v| v == "1"),
            tune: TuneOptions::from_env()?,
        })
    }
}

/// What `ortho devices` prints about an adapter.
#[derive(Debug, Clone)]
pub struct AdapterReport {
    pub backend: String,
    pub name: String,
    pub device_type: String,
    pub driver: String,
    pub f16: bool,
    pub f64: bool,
    pub subgroups: bool,
    pub timestamps: bool,
    pub max_storage_binding: u64,
    pub max_buffer: u64,
    pub max_workgroup_storage: u32,
    pub max_invocations: u32,
}

impl AdapterReport {
    fn of(adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        let f = adapter.features();
        let l = adapter.limits();
        AdapterReport {
            backend: format!("{:?}", info.backend),
            name: info.name,
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
            f16: f.contains(wgpu::Features::SHADER_F16),
            f64: f.contains(wgpu::Features::SHADER_F64),
            subgroups: f.contains(wgpu::Features::SUBGROUP),
            timestamps: f.contains(wgpu::Features::TIMESTAMP_QUERY),
            max_storage_binding: l.max_storage_buffer_binding_size,
            max_buffer: l.max_buffer_size,
            max_workgroup_storage: l.max_compute_workgroup_storage_size,
            max_invocations: l.max_compute_invocations_per_workgroup,
        }
    }
}

pub(crate) struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub pool: BufferPool,
    pub pipelines: PipelineCache,
    pub tuner: Tuner,
}

/// The last engine on a device waits for the work it submitted before the device and the pooled
/// buffers go: a driver still running that work while they are freed corrupts the process's memory
/// (lavapipe's threads did so at exit, after `run_gpu` calls nothing had waited for).
impl Drop for Gpu {
    fn drop(&mut self) {
        let _ = poll(&self.device, wgpu::PollType::wait_indefinitely());
    }
}

/// The entry point of ortho: a GPU device, or the CPU reference with the reason there is no GPU.
#[derive(Clone)]
pub struct Engine {
    gpu: Option<Arc<Gpu>>,
    fallback_reason: Option<String>,
    /// Without a GPU: the f64 twins only ([`Engine::reference`]), not the CPU fast paths.
    reference_only: bool,
}

fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

/// `device.poll`, with a panic inside wgpu turned into an error. wgpu's GL backend serialises every
/// call on one context and panics when a call waits over 6 s for it ("Could not lock adapter
/// context"), as a poller thread can while another thread compiles a shader on llvmpipe; a poller
/// that dies that way would leave every pending future unresolved.
pub(crate) fn poll(device: &wgpu::Device, how: wgpu::PollType) -> Result<wgpu::PollStatus> {
    let gpu_err = |message: String| Error::Gpu { op: "polling the device".into(), message };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| device.poll(how))) {
        Ok(polled) => polled.map_err(|e| gpu_err(e.to_string())),
        Err(panic) => {
            let message = panic.downcast_ref::<&str>().map(|s| s.to_string());
            let message = message.or_else(|| panic.downcast_ref::<String>().cloned());
            Err(gpu_err(message.unwrap_or_else(|| "wgpu panicked".into())))
        }
    }
}

/// An instance of only `backends` (so that asking for Vulkan does not initialise GL).
fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    descriptor.backends &= backends;
    wgpu::Instance::new(descriptor)
}

/// The adapters of `choice`. `Auto` looks at GL only when no other backend has one, so that a normal
/// run does not initialise GL (and print its windowing system's complaints).
async fn adapters_of(choice: BackendChoice) -> Vec<wgpu::Adapter> {
    let backends = choice.backends();
    if choice == BackendChoice::Auto {
        let native = instance(backends - wgpu::Backends::GL).enumerate_adapters(backends - wgpu::Backends::GL).await;
        if !native.is_empty() {
            return native;
        }
    }
    instance(backends).enumerate_adapters(backends).await
}

impl Engine {
    /// The best adapter under the environment's choice (see [`EngineOptions::from_env`]).
    pub fn new() -> Result<Engine> {
        Engine::with_options(&EngineOptions::from_env()?)
    }

    pub fn with_options(options: &EngineOptions) -> Result<Engine> {
        pollster::block_on(Engine::with_options_async(options))
    }

    /// [`Engine::with_options`] without blocking. A backend asked for by name that has no usable
    /// adapter is an error; only `Auto` falls back to the CPU (unless `require_gpu`).
    pub async fn with_options_async(options: &EngineOptions) -> Result<Engine> {
        if options.backend == BackendChoice::Cpu {
            return Ok(Engine::cpu("the CPU backend was chosen"));
        }
        let mut adapters = adapters_of(options.backend).await;
        let all: Vec<String> = adapters.iter().map(|a| AdapterReport::of(a).name).collect();
        if let Some(want) = &options.adapter_name {
            let want = want.to_lowercase();
            adapters.retain(|a| a.get_info().name.to_lowercase().contains(&want));
        }
        // Discrete > integrated > virtual > software; Vulkan, Metal and DX12 before GL.
        adapters.sort_by_key(|a| {
            let info = a.get_info();
            (rank(info.device_type), info.backend == wgpu::Backend::Gl)
        });
        let Some(adapter) = adapters.into_iter().next() else {
            let reason = format!(
                "no adapter for backend {:?}{} (adapters seen: {})",
                options.backend,
                options.adapter_name.as_ref().map(|n| format!(" named like '{n}'")).unwrap_or_default(),
                if all.is_empty() { "none".to_string() } else { all.join(", ") }
            );
            if options.require_gpu || options.backend != BackendChoice::Auto {
                return Err(Error::NoAdapter(reason));
            }
            return Ok(Engine::cpu(reason));
        };
        let engine = Engine::from_adapter(&adapter).await?;
        engine.set_tuning(options.tune.clone());
        Ok(engine)
    }

    /// Opens a device on `adapter` with every limit it supports and the optional features ortho uses.
    pub async fn from_adapter(adapter: &wgpu::Adapter) -> Result<Engine> {
        let wanted = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("ortho"),
                required_features: adapter.features() & wanted,
                required_limits: adapter.limits(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Device(e.to_string()))?;
        Ok(Engine::from_device(device, queue))
    }

    /// Embeds ortho in an application that already owns a wgpu device: no second device is made,
    /// and [`GpuTensor::from_buffer`] wraps the application's buffers.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Engine {
        let info = device.adapter_info();
        Engine {
            gpu: Some(Arc::new(Gpu {
                pool: BufferPool::new(device.clone(), queue.clone()),
                device,
                queue,
                info,
                pipelines: PipelineCache::default(),
                tuner: Tuner::default(),
            })),
            fallback_reason: None,
            reference_only: false,
        }
    }

    /// An engine without a GPU: every call runs on the CPU, through the fast path of its operation
    /// (f32, blocked threaded products) where it has one, else its f64 twin.
    pub fn cpu(reason: impl Into<String>) -> Engine {
        Engine { gpu: None, fallback_reason: Some(reason.into()), reference_only: false }
    }

    /// The oracle: an engine without a GPU that runs every call's f64 twin (`ortho_ref`), never a fast
    /// path; what the tests and `ortho validate` compare against.
    pub fn reference() -> Engine {
        Engine { gpu: None, fallback_reason: Some("the f64 reference".into()), reference_only: true }
    }

    /// Whether the engine runs only the f64 twins ([`Engine::reference`]).
    pub fn is_reference(&self) -> bool {
        self.reference_only
    }

    /// Every adapter of the chosen backends (`Auto`: of every backend, GL included).
    pub fn adapters(backend: BackendChoice) -> Vec<AdapterReport> {
        let backends = backend.backends();
        pollster::block_on(instance(backends).enumerate_adapters(backends)).iter().map(AdapterReport::of).collect()
    }

    pub fn is_gpu(&self) -> bool {
        self.gpu.is_some()
    }

    /// Why the engine runs on the CPU, when it does.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// `Vulkan / llvmpipe (...)`, or `cpu`.
    pub fn describe(&self) -> String {
        match &self.gpu {
            Some(g) => format!("{:?} / {}", g.info.backend, g.info.name),
            None => "cpu".to_string(),
        }
    }

    /// A short backend name: `vulkan`, `gl`, `metal`, `dx12`, `webgpu` or `cpu`.
    pub fn backend_name(&self) -> String {
        match &self.gpu {
            Some(g) => g.info.backend.to_str().to_string(),
            None => "cpu".to_string(),
        }
    }

    pub fn device(&self) -> Option<&wgpu::Device> {
        self.gpu.as_ref().map(|g| &g.device)
    }

    pub fn queue(&self) -> Option<&wgpu::Queue> {
        self.gpu.as_ref().map(|g| &g.queue)
    }

    pub(crate) fn gpu(&self, op: &str) -> Result<&Arc<Gpu>> {
        self.gpu.as_ref().ok_or_else(|| {
            Error::Unsupported(format!(
                "{op} needs a GPU, and this engine runs on the CPU ({})",
                self.fallback_reason.as_deref().unwrap_or("no adapter")
            ))
        })
    }

    pub(crate) fn gpu_opt(&self) -> Option<&Arc<Gpu>> {
        self.gpu.as_ref()
    }

    /// Another handle on `gpu`'s engine.
    pub(crate) fn of(gpu: Arc<Gpu>) -> Engine {
        Engine { gpu: Some(gpu), fallback_reason: None, reference_only: false }
    }

    /// Live and peak bytes of the buffer pool (zero on the CPU).
    pub fn pool_stats(&self) -> PoolStats {
        self.gpu.as_ref().map(|g| g.pool.stats()).unwrap_or_default()
    }

    /// Starts a new peak measurement from the bytes live now.
    pub fn reset_peak(&self) {
        if let Some(g) = &self.gpu {
            g.pool.reset_peak();
        }
    }

    /// Gives every unused pooled buffer back to the device.
    pub fn trim_pool(&self) {
        if let Some(g) = &self.gpu {
            g.pool.trim();
        }
    }

    /// The largest buffer a shader can bind, in bytes.
    pub(crate) fn binding_limit(&self) -> Result<u64> {
        let limits = self.gpu("binding limits")?.device.limits();
        Ok(limits.max_storage_buffer_binding_size.min(limits.max_buffer_size))
    }

    /// Rejects a buffer of `bytes` that no shader could bind, naming `what`.
    pub(crate) fn check_binding(&self, what: &str, bytes: u64) -> Result<()> {
        let limit = self.binding_limit()?;
        if bytes > limit {
            return Err(Error::Limit {
                what: what.to_string(),
                needed: bytes,
                limit_name: "max_storage_buffer_binding_size",
                limit,
            });
        }
        Ok(())
    }

    /// A pooled storage tensor; its contents are unspecified until written.
    pub fn empty(&self, shape: &[usize]) -> Result<GpuTensor> {
        self.named_empty("a tensor", shape, DType::F32)
    }

    pub(crate) fn named_empty(&self, name: &str, shape: &[usize], dtype: DType) -> Result<GpuTensor> {
        let bytes = dtype.bytes(shape.iter().product());
        let what = format!("{name} of shape {shape:?} (split the work into smaller calls, or run it on the CPU)");
        // Kernels work on f32 copies of f16 tensors, so those must fit one binding too.
        self.check_binding(&what, DType::F32.bytes(shape.iter().product()))?;
        let gpu = self.gpu("allocating a tensor")?;
        Ok(GpuTensor::pooled(gpu.pool.get(BufferKind::Storage, bytes), shape, dtype))
    }

    /// Copies a host tensor to the GPU, rejecting non-finite values.
    pub fn upload(&self, name: &str, t: &Tensor<f32>) -> Result<GpuTensor> {
        t.check_finite(name)?;
        let out = self.named_empty(name, t.shape(), DType::F32)?;
        let gpu = self.gpu("upload")?;
        if !t.is_empty() {
            gpu.queue.write_buffer(out.buffer(), 0, bytemuck::cast_slice(t.data()));
        }
        Ok(out)
    }

    pub fn download(&self, t: &GpuTensor) -> Result<Tensor<f32>> {
        self.block_on(self.download_async(t))
    }

    /// Reads a tensor back. The future resolves once the device has run the copy: something must
    /// drive the device meanwhile (see [`Engine::poll_device`]); the blocking [`Engine::download`]
    /// does so itself.
    pub async fn download_async(&self, t: &GpuTensor) -> Result<Tensor<f32>> {
        if t.dtype() != DType::F32 {
            return Err(Error::Unsupported(format!(
                "download of {t:?}: the tensor holds {} values; read it with Engine::download_f16",
                t.dtype().name()
            )));
        }
        let data = self.read_back(t, |bytes| bytemuck::cast_slice::<u8, f32>(bytes)[..t.len()].to_vec()).await?;
        Ok(Tensor::new(t.shape(), data)?)
    }

    /// Copies `t`'s bytes back and decodes them with `decode` (the future resolves as
    /// [`Engine::download_async`]'s does).
    pub(crate) async fn read_back<T>(&self, t: &GpuTensor, decode: impl FnOnce(&[u8]) -> T) -> Result<T> {
        let gpu = self.gpu("download")?;
        let bytes = t.byte_len();
        if bytes == 0 {
            return Ok(decode(&[]));
        }
        let staging = gpu.pool.get(BufferKind::Readback, bytes);
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(t.buffer(), 0, staging.buffer(), 0, bytes);
        gpu.queue.submit([encoder.finish()]);
        let slice = staging.buffer().slice(..bytes);
        let (tx, rx) = futures_channel::oneshot::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        let gpu_err = |message: String| Error::Gpu { op: "download".into(), message };
        rx.await.map_err(|e| gpu_err(e.to_string()))?.map_err(|e| gpu_err(e.to_string()))?;
        let data = {
            let view = slice.get_mapped_range().map_err(|e| gpu_err(e.to_string()))?;
            decode(&view)
        };
        staging.buffer().unmap();
        Ok(data)
    }

    /// Drives the device once: runs the callbacks of completed work, which wakes the futures of the
    /// `*_async` functions. With `wait`, first waits for all submitted work to complete. A native
    /// application that awaits ortho's futures calls this from its own loop or from a poller thread;
    /// returns true when no submitted work is left.
    pub fn poll_device(&self, wait: bool) -> Result<bool> {
        let Some(gpu) = &self.gpu else { return Ok(true) };
        let how = if wait { wgpu::PollType::wait_indefinitely() } else { wgpu::PollType::Poll };
        let status = poll(&gpu.device, how)?;
        Ok(status.is_queue_empty())
    }

    /// Resolves once the GPU has completed every submission made so far (driven like the other
    /// futures, see [`Engine::poll_device`]).
    pub(crate) async fn submitted_work_done(&self) -> Result<()> {
        let gpu = self.gpu("waiting for the device")?;
        let (tx, rx) = futures_channel::oneshot::channel();
        gpu.queue.on_submitted_work_done(move || {
            let _ = tx.send(());
        });
        rx.await.map_err(|e| Error::Gpu { op: "waiting for the device".into(), message: e.to_string() })
    }

    /// Runs `future` (one of this engine's) to completion on this thread. The engine's futures only
    /// ever wait for GPU callbacks, so while one is pending this waits for the device's submitted work.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        let mut future = pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                return out;
            }
            match &self.gpu {
                Some(gpu) => drop(poll(&gpu.device, wgpu::PollType::wait_indefinitely())),
                None => std::thread::yield_now(),
            }
        }
    }

    /// Records `record` into a fresh encoder, submits it, and turns any wgpu validation or
    /// out-of-memory error raised on the way into an [`Error::Gpu`] naming `op`.
    pub(crate) fn submit(
        &self,
        op: &str,
        record: impl FnOnce(&mut wgpu::CommandEncoder) -> Result<Recorded>,
    ) -> Result<()> {
        self.block_on(self.submit_async(op, record))
    }

    /// [`Engine::submit`] without blocking: the error scopes' futures resolve once wgpu has checked
    /// the work (at once on native backends).
    pub(crate) async fn submit_async(
        &self,
        op: &str,
        record: impl FnOnce(&mut wgpu::CommandEncoder) -> Result<Recorded>,
    ) -> Result<()> {
        let gpu = self.gpu(op)?;
        let oom = gpu.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut encoder = gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(op) });
        let result = record(&mut encoder).map(|recorded| {
            gpu.queue.submit([encoder.finish()]);
            recorded.submitted();
        });
        let (validation, oom) = (validation.pop(), oom.pop());
        let errors = [validation.await, oom.await];
        if let Some(e) = errors.into_iter().flatten().next() {
            // A pipeline compiled inside the scope may be the invalid part: compile afresh next time.
            gpu.pipelines.clear();
            return Err(Error::Gpu { op: op.to_string(), message: e.to_string() });
        }
        result
    }
}
