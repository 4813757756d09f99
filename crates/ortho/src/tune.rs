//! Autotuning: the engine times every [`GemmVariant`] the device supports the first time it meets a
//! shape class of product, keeps the fastest for that class, and remembers it on disk, keyed by
//! adapter, driver, ortho version and the list of variants; causal attention's default chunk is
//! tuned the same way (`chunk`). `ORTHO_TUNE=off` uses [`default_variant`] and `DEFAULT_CHUNK`
//! instead; `ortho tune` fills the cache ahead of time.

mod chunk;
pub use chunk::{CHUNK_CANDIDATES, ChunkClass, ChunkResult, FeatureMap};

use crate::engine::{Engine, Gpu};
use crate::error::{Error, Result};
use crate::gemm::{Gemm, GemmVariant, Operand, record_gemm_as};
use crate::tensor::DType;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Whether the engine tunes (`ORTHO_TUNE=on`, the default), uses [`default_variant`] (`off`), or one
/// variant for every product (`ORTHO_TUNE=tiled-16`, any [`GemmVariant::name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TuneMode {
    #[default]
    On,
    Off,
    Fixed(GemmVariant),
}

/// How an engine chooses its variants.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TuneOptions {
    pub mode: TuneMode,
    /// The file of choices; `None`: `ORTHO_TUNE_CACHE`, else `$XDG_CACHE_HOME/ortho/tune.json`, else
    /// `~/.cache/ortho/tune.json` (no file at all when none of them is set: choices last a process).
    pub cache: Option<PathBuf>,
}

impl TuneOptions {
    /// `ORTHO_TUNE` (`on`, `off` or a variant's name) and `ORTHO_TUNE_CACHE` (a path).
    pub fn from_env() -> Result<Self> {
        let mode = match std::env::var("ORTHO_TUNE").unwrap_or_default().as_str() {
            "" | "on" => TuneMode::On,
            "off" => TuneMode::Off,
            other => TuneMode::Fixed(GemmVariant::parse(other).ok_or_else(|| {
                let names: Vec<String> = GemmVariant::ALL.iter().map(|v| v.name()).collect();
                Error::Unsupported(format!("ORTHO_TUNE={other}: expected on, off or one of {}", names.join(", ")))
            })?),
        };
        Ok(TuneOptions {
            mode,
            cache: std::env::var_os("ORTHO_TUNE_CACHE").filter(|p| !p.is_empty()).map(PathBuf::from),
        })
    }

    fn path(&self) -> Option<PathBuf> {
        let var = |name| std::env::var_os(name).filter(|p| !p.is_empty()).map(PathBuf::from);
        self.cache
            .clone()
            .or_else(|| var("ORTHO_TUNE_CACHE"))
            .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("ortho/tune.json")))
            .or_else(|| var("HOME").map(|d| d.join(".cache/ortho/tune.json")))
    }
}

/// Sizes in powers of four: 1, 2..=4, 5..=16, ..., 1025..=4096, more.
fn bucket(x: usize) -> u8 {
    let mut b = 0;
    while b < 7 && 4usize.pow(b as u32) < x {
        b += 1;
    }
    b
}

/// Products that tuning treats alike: batch, rows, columns and inner dimension in powers of four,
/// whether A and B are read transposed, and whether they hold f16.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GemmClass {
    pub batch: u8,
    pub m: u8,
    pub n: u8,
    pub k: u8,
    pub a_transposed: bool,
    pub b_transposed: bool,
    #[serde(default)]
    pub f16_inputs: bool,
}

impl GemmClass {
    /// The class of `batch` products `[m, k] x [k, n]` of f32 operands.
    pub fn new(batch: usize, m: usize, n: usize, k: usize, a_transposed: bool, b_transposed: bool) -> Self {
        let (batch, m, n, k) = (bucket(batch), bucket(m), bucket(n), bucket(k));
        GemmClass { batch, m, n, k, a_transposed, b_transposed, f16_inputs: false }
    }

    /// The same products reading f16 A and B (on adapters with `SHADER_F16`).
    pub fn with_f16_inputs(self) -> Self {
        GemmClass { f16_inputs: true, ..self }
    }

    pub(crate) fn of(g: &Gemm, a: &Operand, b: &Operand) -> Self {
        let class = GemmClass::new(g.batch, g.m, g.n, g.k, a.col_stride != 1, b.col_stride != 1);
        if a.dtype == DType::F16 { class.with_f16_inputs() } else { class }
    }

    /// The product tuning times for the class: the top of each range, within 2^28 multiply-adds
    /// (m, n at most 512, K at most 1024, then fewer batches).
    pub fn shape(&self) -> (usize, usize, usize, usize) {
        let top = |b: u8, cap: usize| 4usize.pow(b as u32).min(cap);
        let (m, n, k) = (top(self.m, 512), top(self.n, 512), top(self.k, 1024));
        (top(self.batch, ((1 << 28) / (m * n * k)).max(1)), m, n, k)
    }

    /// `batch 1, A 512x1024, B^T 1024x512` (the timed shape) with the transposes, and `, f16` for f16
    /// inputs.
    pub fn describe(&self) -> String {
        let (z, m, n, k) = self.shape();
        let t = |on: bool| if on { "^T" } else { "" };
        let f16 = if self.f16_inputs { ", f16" } else { "" };
        format!("batch {z}, A{} {m}x{k}, B{} {k}x{n}{f16}", t(self.a_transposed), t(self.b_transposed))
    }
}

/// The variant used with tuning off. On CPU adapters (lavapipe), from what `ortho tune` measured
/// there: a batch of products of at most 4 columns and an inner dimension of at most 64 takes one
/// element per invocation in columns of 64 rows, of one row in rows of 64 columns; other batches of products of at most 64 columns pack
/// 8 per workgroup, a single one takes 128 x 64 tiles, one of at most 256 columns 512 x 64 tiles,
/// wider ones 64 x 512 (each in its subgroup form where the adapter has it); elsewhere the
/// workgroup-memory tiles.
pub fn default_variant(device: &wgpu::Device, info: &wgpu::AdapterInfo, class: GemmClass) -> GemmVariant {
    if info.device_type != wgpu::DeviceType::Cpu {
        return GemmVariant::DEFAULT;
    }
    let small = class.batch >= bucket(8) && class.k <= bucket(64);
    if small && class.n <= bucket(4) {
        return GemmVariant::Lanes { rows: 64 };
    }
    if small && class.m == bucket(1) {
        return GemmVariant::Lanes { rows: 1 };
    }
    let (rows, lanes, packed) = match (class.batch, class.n) {
        (b, n) if b >= bucket(8) && n <= bucket(64) => (32, 8, true),
        (_, n) if n <= bucket(64) => (16, 8, false),
        (_, n) if n <= bucket(256) => (64, 8, false),
        _ => (64, 64, false),
    };
    let subgroup = GemmVariant::Rows { rows, lanes, subgroup: true, packed };
    if subgroup.supported(device, info) { subgroup } else { GemmVariant::Rows { rows, lanes, subgroup: false, packed } }
}

/// What tuning measured for one class on one adapter.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TuneResult {
    pub class: GemmClass,
    /// The fastest variant's name.
    pub chosen: String,
    /// Every supported variant's name and best time in seconds, in the order timed.
    pub seconds: Vec<(String, f64)>,
}

impl TuneResult {
    /// How much faster the chosen variant ran than `name` (`None` when `name` was not timed).
    pub fn speedup_over(&self, name: &str) -> Option<f64> {
        let of = |n: &str| self.seconds.iter().find(|(v, _)| v == n).map(|(_, s)| *s);
        Some(of(name)? / of(&self.chosen)?)
    }
}

/// One entry of the cache file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    adapter: String,
    driver: String,
    ortho: String,
    /// The variants there were to choose from: a build with others tunes again.
    variants: String,
    result: TuneResult,
}

fn variant_list() -> String {
    GemmVariant::ALL.map(|v| v.name()).join(",")
}

impl Entry {
    fn matches(&self, adapter: &str, driver: &str) -> bool {
        self.adapter == adapter
            && self.driver == driver
            && self.ortho == env!("CARGO_PKG_VERSION")
            && self.variants == variant_list()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    entries: Vec<Entry>,
    #[serde(default)]
    chunks: Vec<chunk::ChunkEntry>,
}

#[derive(Default)]
struct State {
    results: HashMap<GemmClass, TuneResult>,
    forced: Option<GemmVariant>,
    loaded: bool,
}

/// An engine's choices: forced, tuned, or the defaults.
#[derive(Default)]
pub(crate) struct Tuner {
    options: Mutex<TuneOptions>,
    state: Mutex<State>,
    chunks: Mutex<chunk::ChunkChoices>,
}

/// `(adapter, driver)` as the cache file keys them.
fn adapter_key(info: &wgpu::AdapterInfo) -> (String, String) {
    (format!("{:?} / {}", info.backend, info.name), format!("{} {}", info.driver, info.driver_info).trim().to_string())
}

impl Tuner {
    pub fn set_options(&self, options: TuneOptions) {
        *self.options.lock().unwrap_or_else(|e| e.into_inner()) = options;
    }

    pub fn options(&self) -> TuneOptions {
        self.options.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn force(&self, variant: Option<GemmVariant>) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).forced = variant;
    }

    /// The variant for products of `class`, tuning the class first if it is new.
    pub fn variant(&self, gpu: &Arc<Gpu>, class: GemmClass) -> Result<GemmVariant> {
        let options = self.options();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = state.forced {
            return Ok(v);
        }
        match options.mode {
            TuneMode::Off => return Ok(default_variant(&gpu.device, &gpu.info, class)),
            TuneMode::Fixed(v) if v.supported(&gpu.device, &gpu.info) => return Ok(v),
            TuneMode::Fixed(v) => {
                return Err(Error::Unsupported(format!("GEMM variant {} on {}", v.name(), gpu.info.name)));
            }
            TuneMode::On => {}
        }
        if !state.loaded {
            state.loaded = true;
            state.results.extend(load(&options, &gpu.info).into_iter().map(|r| (r.class, r)));
        }
        let result = match state.results.get(&class) {
            Some(r) => r.clone(),
            None => {
                eprintln!(
                    "ortho: tuning the product for {} on {} (once; ORTHO_TUNE=off skips)",
                    class.describe(),
                    gpu.info.name
                );
                let r = tune(gpu, class)?;
                save(&options, &gpu.info, &r);
                state.results.insert(class, r.clone());
                r
            }
        };
        GemmVariant::parse(&result.chosen)
            .filter(|v| v.supported(&gpu.device, &gpu.info))
            .ok_or_else(|| Error::Unsupported(format!("tuned GEMM variant {} on this device", result.chosen)))
    }

    /// Tunes `class` now (again, if it was), keeping the result.
    pub fn retune(&self, gpu: &Arc<Gpu>, class: GemmClass) -> Result<TuneResult> {
        let options = self.options();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let r = tune(gpu, class)?;
        save(&options, &gpu.info, &r);
        state.results.insert(class, r.clone());
        Ok(r)
    }
}

/// Times every variant `gpu` supports on `class`'s product (one untimed run, which compiles it,
/// then the best of two timed ones).
fn tune(gpu: &Arc<Gpu>, class: GemmClass) -> Result<TuneResult> {
    if class.f16_inputs && !gpu.device.features().contains(wgpu::Features::SHADER_F16) {
        return Err(Error::Unsupported(format!(
            "products of f16 operands on {}, which lacks SHADER_F16",
            gpu.info.name
        )));
    }
    let engine = Engine::of(gpu.clone());
    let (z, m, n, k) = class.shape();
    let inputs = if class.f16_inputs { DType::F16 } else { DType::F32 };
    let buffer = |len: usize, dtype: DType| {
        let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("ortho tuning operand"),
            size: dtype.bytes(len),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let values: Vec<f32> = (0..len).map(|i| ((i * 7919) % 1024) as f32 / 1024.0 - 0.5).collect();
        let tensor = ortho_ref::Tensor::new(&[len], values).expect("a vector");
        let mut bytes: Vec<u8> = match dtype {
            DType::F32 => bytemuck::cast_slice(tensor.data()).to_vec(),
            DType::F16 => bytemuck::cast_slice(tensor.to_f16().data()).to_vec(),
        };
        bytes.resize(dtype.bytes(len) as usize, 0);
        gpu.queue.write_buffer(&buffer, 0, &bytes);
        buffer
    };
    let (a, b, c) = (buffer(z * m * k, inputs), buffer(z * k * n, inputs), buffer(z * m * n, DType::F32));
    let g = Gemm::new(z, m, n, k);
    let operand = |buffer, rows, cols, transposed: bool| {
        let o = Operand::rows(buffer, if transposed { cols } else { rows }, if transposed { rows } else { cols });
        if transposed { o.t().holding(inputs) } else { o.holding(inputs) }
    };
    let (ao, bo) = (operand(&a, m, k, class.a_transposed), operand(&b, k, n, class.b_transposed));
    let co = Operand::rows(&c, m, n);
    let mut seconds = Vec::new();
    for variant in GemmVariant::ALL.into_iter().filter(|v| v.supported(&gpu.device, &gpu.info)) {
        let run = || {
            engine.time(|enc| {
                let recording = engine.recording("tuning", &[])?;
                let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
                record_gemm_as(&recording, &mut pass, variant, &g, ao, bo, co)?;
                drop(pass);
                Ok(recording.finish())
            })
        };
        run()?;
        let best = run()?.seconds.min(run()?.seconds);
        seconds.push((variant.name(), best));
    }
    let chosen = seconds.iter().min_by(|x, y| x.1.total_cmp(&y.1)).map(|(v, _)| v.clone());
    let chosen = chosen.ok_or_else(|| Error::Unsupported("no GEMM variant on this device".into()))?;
    Ok(TuneResult { class, chosen, seconds })
}

/// The cache file (empty when it is missing or unreadable: its choices are measured again).
fn read_cache(options: &TuneOptions) -> CacheFile {
    let text = options.path().and_then(|p| std::fs::read_to_string(p).ok());
    text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
}

/// Changes the cache file by `change`, written through a temporary file and a rename so that a
/// reader never sees half a file; a cache that cannot be written only costs tuning again next time.
fn write_cache(options: &TuneOptions, change: impl FnOnce(&mut CacheFile)) {
    let Some(path) = options.path() else { return };
    let mut file = read_cache(options);
    change(&mut file);
    let write = || -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, serde_json::to_string_pretty(&file).map_err(std::io::Error::other)?)?;
        std::fs::rename(&tmp, &path)
    };
    if let Err(e) = write() {
        eprintln!("ortho: could not write the tuning cache {}: {e}", path.display());
    }
}

/// This adapter's GEMM results in the cache file.
fn load(options: &TuneOptions, info: &wgpu::AdapterInfo) -> Vec<TuneResult> {
    let (adapter, driver) = adapter_key(info);
    read_cache(options).entries.into_iter().filter(|e| e.matches(&adapter, &driver)).map(|e| e.result).collect()
}

/// Adds `result` to the cache file.
fn save(options: &TuneOptions, info: &wgpu::AdapterInfo, result: &TuneResult) {
    let (adapter, driver) = adapter_key(info);
    write_cache(options, |file| {
        file.entries.retain(|e| !(e.matches(&adapter, &driver) && e.result.class == result.class));
        let (ortho, variants) = (env!("CARGO_PKG_VERSION").to_string(), variant_list());
        file.entries.push(Entry { adapter, driver, ortho, variants, result: result.clone() });
    });
}

impl Engine {
    /// Sets how this engine chooses its GEMM variants (an engine made with
    /// [`Engine::with_options`] takes them from its options; one made with [`Engine::from_device`]
    /// tunes, with the default cache file, until this is called).
    pub fn set_tuning(&self, options: TuneOptions) {
        if let Some(gpu) = self.gpu_opt() {
            gpu.tuner.set_options(options);
        }
    }

    /// Makes every product use `variant` (`None`: back to tuning or the defaults). Fails when the
    /// device cannot run it.
    pub fn force_gemm_variant(&self, variant: Option<GemmVariant>) -> Result<()> {
        let gpu = self.gpu("choosing a GEMM variant")?;
        if let Some(v) = variant.filter(|v| !v.supported(&gpu.device, &gpu.info)) {
            return Err(Error::Unsupported(format!("GEMM variant {} on {}", v.name(), gpu.info.name)));
        }
        gpu.tuner.force(variant);
        Ok(())
    }

    /// The variants this engine's device can run.
    pub fn gemm_variants(&self) -> Vec<GemmVariant> {
        let Some(gpu) = self.gpu_opt() else { return Vec::new() };
        GemmVariant::ALL.into_iter().filter(|v| v.supported(&gpu.device, &gpu.info)).collect()
    }

    /// The variant products of `class` use now, tuning the class first if the engine tunes and has
    /// not met it.
    pub fn gemm_variant(&self, class: GemmClass) -> Result<GemmVariant> {
        let gpu = self.gpu("choosing a GEMM variant")?;
        gpu.tuner.variant(gpu, class)
    }

    /// Times every variant on `class` now and keeps (and caches) the fastest, as `ortho tune` does.
    pub fn tune_gemm(&self, class: GemmClass) -> Result<TuneResult> {
        let gpu = self.gpu("tuning")?;
        gpu.tuner.retune(gpu, class)
    }
}
