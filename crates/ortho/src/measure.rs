//! An operation measured as a benchmark reports it: the time of its recorded work on the device by
//! GPU timestamps (wall clock where the adapter has none) over repeats after warm-up, the wall time of
//! the whole host call beside it (host overhead is a figure too), the pool's peak and scratch bytes,
//! and the error of its outputs against the f64 twin.

use crate::engine::Engine;
use crate::error::Result;
use crate::operation::Operation;
use crate::tensor::{DType, GpuTensor};
use ortho_ref::Tensor;
use ortho_ref::tensor::relative_frobenius;
use std::time::Instant;

/// How [`Engine::measure`] repeats the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeasureOptions {
    /// Untimed runs of the recorded work first (the first call also compiles the pipelines).
    pub warmup: usize,
    /// Timed runs, of the recorded work and of the whole host call each (at least 1).
    pub repeats: usize,
    /// The storage of the inputs and outputs: with [`DType::F16`], the inputs are rounded to f16
    /// ([`Engine::run_f16`]; on the device, the conversions are part of the timed work).
    pub dtype: DType,
}

impl Default for MeasureOptions {
    fn default() -> Self {
        MeasureOptions { warmup: 1, repeats: 5, dtype: DType::F32 }
    }
}

/// What [`Engine::measure`] saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// Seconds of each timed run of the recorded work: GPU timestamps where `timestamps`, else the
    /// wall clock around submit-and-wait (on the CPU fallback, the whole call).
    pub device_seconds: Vec<f64>,
    pub timestamps: bool,
    /// Seconds of each whole host call ([`Engine::run`]: checks, upload, work, download).
    pub call_seconds: Vec<f64>,
    /// The most pooled bytes live at once during the timed work, and of those the bytes that were
    /// not the inputs and outputs (or anything else live on the engine then); 0 on the CPU.
    pub peak_bytes: u64,
    pub scratch_bytes: u64,
    /// The largest relative Frobenius error of an output against the f64 twin.
    pub error: f64,
}

impl Measurement {
    /// The median of the device times.
    pub fn device_median(&self) -> f64 {
        median(&self.device_seconds)
    }

    /// The median of the whole-call times.
    pub fn call_median(&self) -> f64 {
        median(&self.call_seconds)
    }

    /// `(fastest, slowest)` of the device times, relative to their median.
    pub fn device_spread(&self) -> (f64, f64) {
        let m = self.device_median();
        let (lo, hi) = self.device_seconds.iter().fold((f64::MAX, 0.0f64), |(lo, hi), &s| (lo.min(s), hi.max(s)));
        (lo / m, hi / m)
    }
}

fn median(xs: &[f64]) -> f64 {
    let mut xs = xs.to_vec();
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

/// The device side of a [`Measurement`]: what [`Engine::time_device`] saw.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceTimes {
    /// Seconds of each timed run (GPU timestamps where `timestamps`, else the wall clock).
    pub seconds: Vec<f64>,
    pub timestamps: bool,
    pub peak_bytes: u64,
    pub scratch_bytes: u64,
}

impl Engine {
    /// Measures `op` on host `inputs` (each within one storage binding: the device work is timed on
    /// uploaded copies) as `o` says; see [`Measurement`].
    pub fn measure<O: Operation>(&self, op: &O, inputs: &[&Tensor<f32>], o: MeasureOptions) -> Result<Measurement> {
        let want = op.reference(&inputs.iter().map(|t| t.to_f64()).collect::<Vec<_>>())?;
        self.measure_against(op, inputs, &want, o)
    }

    /// [`Engine::measure`] with the f64 twin's outputs `want` already computed (a sweep computes them
    /// once for every engine). In f16 storage, `want` is the twin's on the f16-rounded inputs.
    pub fn measure_against<O: Operation>(
        &self,
        op: &O,
        inputs: &[&Tensor<f32>],
        want: &[Tensor<f64>],
        o: MeasureOptions,
    ) -> Result<Measurement> {
        let calls = HostCalls::new(inputs, o.dtype);
        let error = calls.error(self, op, want)?;
        let mut call_seconds = Vec::with_capacity(o.repeats.max(1));
        for _ in 0..o.repeats.max(1) {
            let start = Instant::now();
            calls.run(self, op)?;
            call_seconds.push(start.elapsed().as_secs_f64());
        }
        let device = if self.is_gpu() {
            self.time_device(op, inputs, o)?
        } else {
            DeviceTimes { seconds: call_seconds.clone(), timestamps: false, peak_bytes: 0, scratch_bytes: 0 }
        };
        Ok(Measurement {
            device_seconds: device.seconds,
            timestamps: device.timestamps,
            call_seconds,
            peak_bytes: device.peak_bytes,
            scratch_bytes: device.scratch_bytes,
            error,
        })
    }

    /// Times `op`'s recorded work on uploaded copies of `inputs` (of `o.dtype`): `o.warmup` untimed
    /// runs, then `o.repeats` timed ones (on the CPU fallback, whole calls by the wall clock).
    pub fn time_device<O: Operation>(&self, op: &O, inputs: &[&Tensor<f32>], o: MeasureOptions) -> Result<DeviceTimes> {
        if !self.is_gpu() {
            let calls = HostCalls::new(inputs, o.dtype);
            for _ in 0..o.warmup {
                calls.run(self, op)?;
            }
            let mut seconds = Vec::with_capacity(o.repeats.max(1));
            for _ in 0..o.repeats.max(1) {
                let start = Instant::now();
                calls.run(self, op)?;
                seconds.push(start.elapsed().as_secs_f64());
            }
            return Ok(DeviceTimes { seconds, timestamps: false, peak_bytes: 0, scratch_bytes: 0 });
        }
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
        let names = O::INPUTS.iter().chain(std::iter::repeat(&"input"));
        let upload = |t: &Tensor<f32>, name: &str| -> Result<GpuTensor> {
            match o.dtype {
                DType::F32 => self.upload(name, t),
                DType::F16 => self.upload_f16(name, &t.to_f16()),
            }
        };
        let uploaded = inputs.iter().zip(names).map(|(t, name)| upload(t, name)).collect::<Result<Vec<_>>>()?;
        let empty = |s: &Vec<usize>| self.named_empty("an output", s, o.dtype);
        let outputs = op.output_shapes(&shapes)?.iter().map(empty).collect::<Result<Vec<_>>>()?;
        let (ins, outs) = (uploaded.iter().collect::<Vec<_>>(), outputs.iter().collect::<Vec<_>>());
        for _ in 0..o.warmup {
            self.time(|enc| self.record(enc, op, &ins, &outs))?;
        }
        self.reset_peak();
        let live = self.pool_stats().live_bytes;
        let mut seconds = Vec::with_capacity(o.repeats.max(1));
        let mut timestamps = true;
        for _ in 0..o.repeats.max(1) {
            let t = self.time(|enc| self.record(enc, op, &ins, &outs))?;
            seconds.push(t.seconds);
            timestamps &= t.gpu_timestamps;
        }
        let peak_bytes = self.pool_stats().peak_bytes;
        Ok(DeviceTimes { seconds, timestamps, peak_bytes, scratch_bytes: peak_bytes.saturating_sub(live) })
    }
}

/// Host calls of a measurement: [`Engine::run`], or in f16 storage [`Engine::run_f16`] on the inputs
/// rounded to f16 once.
struct HostCalls<'a> {
    inputs: &'a [&'a Tensor<f32>],
    halves: Option<Vec<Tensor<half::f16>>>,
}

impl<'a> HostCalls<'a> {
    fn new(inputs: &'a [&'a Tensor<f32>], dtype: DType) -> Self {
        let halves = (dtype == DType::F16).then(|| inputs.iter().map(|t| t.to_f16()).collect());
        HostCalls { inputs, halves }
    }

    fn run<O: Operation>(&self, engine: &Engine, op: &O) -> Result<()> {
        match &self.halves {
            None => engine.run(op, self.inputs).map(drop),
            Some(h) => engine.run_f16(op, &h.iter().collect::<Vec<_>>()).map(drop),
        }
    }

    /// The largest relative Frobenius error of an output against `want`.
    fn error<O: Operation>(&self, engine: &Engine, op: &O, want: &[Tensor<f64>]) -> Result<f64> {
        let got: Vec<Tensor<f64>> = match &self.halves {
            None => engine.run(op, self.inputs)?.iter().map(Tensor::to_f64).collect(),
            Some(h) => engine.run_f16(op, &h.iter().collect::<Vec<_>>())?.iter().map(Tensor::to_f64).collect(),
        };
        Ok(got.iter().zip(want).map(|(g, w)| relative_frobenius(g.data(), w.data())).fold(0.0, f64::max))
    }
}
