//! The causal chunk, tuned: causal attention on a GPU whose [`FavorOptions::chunk`] is unset takes
//! the chunk size that ran fastest on this adapter for its class of shapes, timed the first time the
//! class is met and cached beside the GEMM choices (also when one GEMM variant is pinned). With
//! tuning off it is [`DEFAULT_CHUNK`]. Every chunk size computes the same attention up to float
//! rounding.

use super::{TuneMode, adapter_key, read_cache, write_cache};
use crate::engine::{Engine, Gpu};
use crate::error::{Error, Result};
use crate::favor::{DEFAULT_CHUNK, FavorOptions, Schedule};
use ortho_ref::Tensor;
use ortho_ref::favor::{AttentionShape, Kernel};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// The chunk sizes tuning times.
pub const CHUNK_CANDIDATES: [usize; 5] = [16, 32, 64, 128, 256];
/// Tokens of the timed sequence (one problem).
const TIMED_LEN: usize = 2048;

/// The feature map of a [`ChunkClass`] (ReLU's epsilon does not change its cost).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureMap {
    Softmax,
    Trig,
    Relu,
}

/// Causal attention that tuning treats alike: the feature map, the head, feature and value
/// dimensions in powers of four, and the schedule asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChunkClass {
    pub kernel: FeatureMap,
    pub dim: u8,
    pub features: u8,
    pub value_dim: u8,
    pub schedule: Schedule,
}

impl ChunkClass {
    pub fn new(kernel: Kernel, dim: usize, features: usize, value_dim: usize, schedule: Schedule) -> Self {
        let kernel = match kernel {
            Kernel::Softmax => FeatureMap::Softmax,
            Kernel::Trig => FeatureMap::Trig,
            Kernel::Relu { .. } => FeatureMap::Relu,
        };
        let (dim, features, value_dim) = (super::bucket(dim), super::bucket(features), super::bucket(value_dim));
        ChunkClass { kernel, dim, features, value_dim, schedule }
    }

    pub(crate) fn of(s: &AttentionShape, o: &FavorOptions) -> Self {
        ChunkClass::new(o.kernel, s.dim, s.features, s.value_dim, o.schedule)
    }

    /// The timed problem's `(d, m, dv)`: the top of each range, within 128, 1024 and 128.
    pub fn shape(&self) -> (usize, usize, usize) {
        let top = |b: u8, cap: usize| 4usize.pow(b as u32).min(cap);
        (top(self.dim, 128), top(self.features, 1024), top(self.value_dim, 128))
    }

    fn options(&self, chunk: usize) -> FavorOptions {
        let kernel = match self.kernel {
            FeatureMap::Softmax => Kernel::Softmax,
            FeatureMap::Trig => Kernel::Trig,
            FeatureMap::Relu => Kernel::Relu { eps: Kernel::DEFAULT_RELU_EPS },
        };
        FavorOptions { chunk: Some(chunk), schedule: self.schedule, ..FavorOptions::causal(kernel) }
    }

    /// `softmax auto, L 2048, d 64, m 256, dv 64` (the timed shape).
    pub fn describe(&self) -> String {
        let (d, m, dv) = self.shape();
        let schedule = format!("{:?}", self.schedule).to_lowercase();
        format!("{} {schedule}, L {TIMED_LEN}, d {d}, m {m}, dv {dv}", self.options(1).kernel.name())
    }
}

/// What tuning measured for one class of causal attention on one adapter.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChunkResult {
    pub class: ChunkClass,
    pub chosen: usize,
    /// Every candidate and its best time in seconds.
    pub seconds: Vec<(usize, f64)>,
}

impl ChunkResult {
    /// How much faster the chosen chunk ran than `chunk` (`None` when it was not timed).
    pub fn speedup_over(&self, chunk: usize) -> Option<f64> {
        let of = |c: usize| self.seconds.iter().find(|(x, _)| *x == c).map(|(_, s)| *s);
        Some(of(chunk)? / of(self.chosen)?)
    }
}

/// One cached choice.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ChunkEntry {
    adapter: String,
    driver: String,
    ortho: String,
    candidates: Vec<usize>,
    result: ChunkResult,
}

impl ChunkEntry {
    fn matches(&self, adapter: &str, driver: &str) -> bool {
        self.adapter == adapter
            && self.driver == driver
            && self.ortho == env!("CARGO_PKG_VERSION")
            && self.candidates == CHUNK_CANDIDATES
    }
}

/// An engine's tuned chunks.
#[derive(Default)]
pub(super) struct ChunkChoices {
    results: HashMap<ChunkClass, ChunkResult>,
    loaded: bool,
}

impl super::Tuner {
    /// The chunk for causal attention of `class` with no chunk given, tuning the class first if it
    /// is new (the lock is held meanwhile, so a class is tuned once; the timed attention asks for
    /// its chunks, never for this).
    pub fn causal_chunk(&self, gpu: &Arc<Gpu>, class: ChunkClass, retune: bool) -> Result<ChunkResult> {
        let options = self.options();
        let mut choices = self.chunks.lock().unwrap_or_else(|e| e.into_inner());
        if !choices.loaded {
            choices.loaded = true;
            let (adapter, driver) = adapter_key(&gpu.info);
            let cached = read_cache(&options).chunks.into_iter().filter(|e| e.matches(&adapter, &driver));
            choices.results.extend(cached.map(|e| (e.result.class, e.result)));
        }
        if let Some(r) = choices.results.get(&class).filter(|_| !retune) {
            return Ok(r.clone());
        }
        if !retune {
            eprintln!(
                "ortho: tuning the causal chunk for {} on {} (once; ORTHO_TUNE=off skips)",
                class.describe(),
                gpu.info.name
            );
        }
        let r = tune_chunk(gpu, class)?;
        let (adapter, driver) = adapter_key(&gpu.info);
        write_cache(&options, |file| {
            file.chunks.retain(|e| !(e.matches(&adapter, &driver) && e.result.class == class));
            let ortho = env!("CARGO_PKG_VERSION").to_string();
            file.chunks.push(ChunkEntry {
                adapter,
                driver,
                ortho,
                candidates: CHUNK_CANDIDATES.to_vec(),
                result: r.clone(),
            });
        });
        choices.results.insert(class, r.clone());
        Ok(r)
    }
}

/// Times causal attention of `class`'s timed shape at every candidate chunk (one untimed run, then
/// the best of two).
fn tune_chunk(gpu: &Arc<Gpu>, class: ChunkClass) -> Result<ChunkResult> {
    let engine = Engine::of(gpu.clone());
    let (d, m, dv) = class.shape();
    let values =
        |shape: &[usize], seed: usize| Tensor::from_fn(shape, |i| (((i + seed) * 7919) % 1024) as f32 / 4096.0 - 0.125);
    let q = engine.upload("q", &values(&[TIMED_LEN, d], 1))?;
    let k = engine.upload("k", &values(&[TIMED_LEN, d], 2))?;
    let v = engine.upload("v", &values(&[TIMED_LEN, dv], 3))?;
    let w = engine.upload("projection", &values(&[m, d], 4))?;
    let out = engine.empty(&[TIMED_LEN, dv])?;
    let mut seconds = Vec::new();
    for chunk in CHUNK_CANDIDATES {
        let o = class.options(chunk);
        let run = || engine.time(|enc| engine.record_favor(enc, &q, &k, &v, &w, &o, &out));
        run()?;
        seconds.push((chunk, run()?.seconds.min(run()?.seconds)));
    }
    let chosen = seconds.iter().min_by(|x, y| x.1.total_cmp(&y.1)).map(|(c, _)| *c);
    let chosen = chosen.ok_or_else(|| Error::Unsupported("no chunk candidates".into()))?;
    Ok(ChunkResult { class, chosen, seconds })
}

impl Engine {
    /// The chunk causal attention of shape `s` takes when `o` gives none: tuned, or
    /// [`DEFAULT_CHUNK`] with tuning off or on the CPU.
    pub(crate) fn default_chunk(&self, s: &AttentionShape, o: &FavorOptions) -> Result<usize> {
        let Some(gpu) = self.gpu_opt() else { return Ok(DEFAULT_CHUNK) };
        if gpu.tuner.options().mode == TuneMode::Off {
            return Ok(DEFAULT_CHUNK);
        }
        Ok(gpu.tuner.causal_chunk(gpu, ChunkClass::of(s, o), false)?.chosen)
    }

    /// Times every candidate chunk on `class` now and keeps (and caches) the fastest, as `ortho tune`
    /// does.
    pub fn tune_causal_chunk(&self, class: ChunkClass) -> Result<ChunkResult> {
        let gpu = self.gpu("tuning")?;
        gpu.tuner.causal_chunk(gpu, class, true)
    }
}
