//! An operation measured as a benchmark reports it: the time of its recorded work on the device by
//! GPU timestamps (wall clock where the adapter has none) over repeats after warm-up, the wall time of
//! the whole host call beside it (host overhead is a figure too), the pool's peak and scratch bytes,
//! and the error of its outputs against the f64 twin.

use crate::engine::Engine;
use crate::error::Result;
use crate::operation::Operation;
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
}

impl Default for MeasureOptions {
    fn default() -> Self {
        MeasureOptions { warmup: 1, repeats: 5 }
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
    /// once for every engine).
    pub fn measure_against<O: Operation>(
        &self,
        op: &O,
        inputs: &[&Tensor<f32>],
        want: &[Tensor<f64>],
        o: MeasureOptions,
    ) -> Result<Measurement> {
        let got = self.run(op, inputs)?;
        let error = got.iter().zip(want).map(|(g, w)| relative_frobenius(g.data(), w.data())).fold(0.0, f64::max);
        let mut call_seconds = Vec::with_capacity(o.repeats.max(1));
        for _ in 0..o.repeats.max(1) {
            let start = Instant::now();
            self.run(op, inputs)?;
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

    /// Times `op`'s recorded work on uploaded copies of `inputs`: `o.warmup` untimed runs, then
    /// `o.repeats` timed ones (on the CPU fallback, whole calls by the wall clock).
    pub fn time_device<O: Operation>(&self, op: &O, inputs: &[&Tensor<f32>], o: MeasureOptions) -> Result<DeviceTimes> {
        if !self.is_gpu() {
            for _ in 0..o.warmup {
                self.run(op, inputs)?;
            }
            let mut seconds = Vec::with_capacity(o.repeats.max(1));
            for _ in 0..o.repeats.max(1) {
                let start = Instant::now();
                self.run(op, inputs)?;
                seconds.push(start.elapsed().as_secs_f64());
            }
            return Ok(DeviceTimes { seconds, timestamps: false, peak_bytes: 0, scratch_bytes: 0 });
        }
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
        let names = O::INPUTS.iter().chain(std::iter::repeat(&"input"));
        let uploaded = inputs.iter().zip(names).map(|(t, name)| self.upload(name, t)).collect::<Result<Vec<_>>>()?;
        let outputs = op.output_shapes(&shapes)?.iter().map(|s| self.empty(s)).collect::<Result<Vec<_>>>()?;
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
