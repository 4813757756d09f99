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

impl Engine {
    /// Measures `op` on host `inputs` (each within one storage binding: the device work is timed on
    /// uploaded copies) as `o` says; see [`Measurement`].
    pub fn measure<O: Operation>(&self, op: &O, inputs: &[&Tensor<f32>], o: MeasureOptions) -> Result<Measurement> {
        let want = op.reference(&inputs.iter().map(|t| t.to_f64()).collect::<Vec<_>>())?;
        let got = self.run(op, inputs)?;
        let error = got.iter().zip(&want).map(|(g, w)| relative_frobenius(g.data(), w.data())).fold(0.0, f64::max);
        let mut call_seconds = Vec::with_capacity(o.repeats.max(1));
        for _ in 0..o.repeats.max(1) {
            let start = Instant::now();
            self.run(op, inputs)?;
            call_seconds.push(start.elapsed().as_secs_f64());
        }
        if !self.is_gpu() {
            let device_seconds = call_seconds.clone();
            return Ok(Measurement {
                device_seconds,
                timestamps: false,
                call_seconds,
                peak_bytes: 0,
                scratch_bytes: 0,
                error,
            });
        }
        let names = O::INPUTS.iter().chain(std::iter::repeat(&"input"));
        let uploaded = inputs.iter().zip(names).map(|(t, name)| self.upload(name, t)).collect::<Result<Vec<_>>>()?;
        let outputs = got.iter().map(|t| self.empty(t.shape())).collect::<Result<Vec<_>>>()?;
        let (ins, outs) = (uploaded.iter().collect::<Vec<_>>(), outputs.iter().collect::<Vec<_>>());
        for _ in 0..o.warmup {
            self.time(|enc| self.record(enc, op, &ins, &outs))?;
        }
        self.reset_peak();
        let live = self.pool_stats().live_bytes;
        let mut device_seconds = Vec::with_capacity(o.repeats.max(1));
        let mut timestamps = true;
        for _ in 0..o.repeats.max(1) {
            let t = self.time(|enc| self.record(enc, op, &ins, &outs))?;
            device_seconds.push(t.seconds);
            timestamps &= t.gpu_timestamps;
        }
        let peak_bytes = self.pool_stats().peak_bytes;
        Ok(Measurement {
            device_seconds,
            timestamps,
            call_seconds,
            peak_bytes,
            scratch_bytes: peak_bytes.saturating_sub(live),
            error,
        })
    }
}
