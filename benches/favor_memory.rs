//! Scratch memory of causal FAVOR+ (d = dv = 64, m = 256, B = H = 1, C = 64), measured with the
//! buffer pool's peak-byte counter: peak pool bytes minus the inputs and the output (no host
//! transfer happens inside the measured call). The sequential schedule's scratch must not grow with
//! L; the parallel schedule's grows like (L/C) m dv.
//!
//!     cargo bench --bench favor_memory

#[path = "common/mod.rs"]
mod common;
use common::*;
use ortho::random::{Scaling, projection};
use ortho::{FavorOptions, Kernel, SEQUENTIAL_ROWS, Schedule};
use std::time::Instant;

fn main() {
    let (d, dv, m, chunk) = (64, 64, 256, 64);
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    for engine in engines().into_iter().take(1) {
        println!("{}: causal FAVOR+, d = dv = {d}, m = {m}, C = {chunk}", engine.describe());
        println!(
            "{:<11} {:>7} {:>12} {:>10} {:>16} {:>8}",
            "schedule", "L", "scratch MiB", "model MiB", "chunk states MiB", "time s"
        );
        let w = engine.upload("w", &projection(m, d, Scaling::Chi, 1).unwrap().to_f32()).unwrap();
        let runs = [
            (Schedule::Sequential, 4096),
            (Schedule::Sequential, 65_536),
            (Schedule::Sequential, 262_144),
            (Schedule::Parallel, 4096),
            (Schedule::Parallel, 16_384),
            (Schedule::Parallel, 65_536),
        ];
        for (schedule, l) in runs {
            let q = engine.upload("q", &gaussian(&[1, 1, l, d], 0.5, 2)).unwrap();
            let k = engine.upload("k", &gaussian(&[1, 1, l, d], 0.5, 3)).unwrap();
            let v = engine.upload("v", &gaussian(&[1, 1, l, dv], 1.0, 4)).unwrap();
            engine.trim_pool();
            engine.reset_peak();
            let before = engine.pool_stats().live_bytes;
            let options = FavorOptions { chunk: Some(chunk), schedule, ..FavorOptions::causal(Kernel::Softmax) };
            let start = Instant::now();
            let out = engine.favor_gpu(&q, &k, &v, &w, &options).expect("causal FAVOR+");
            // Scratch is taken from the pool while recording and returned before this line; the
            // read-back below allocates staging, so the peak is read first.
            let stats = engine.pool_stats();
            engine.download(&out).expect("read back");
            let seconds = start.elapsed().as_secs_f64();
            let out_bytes = stats.live_bytes - before;
            let scratch = stats.peak_bytes - before - out_bytes;
            // Rows held per group: all L in parallel, SEQUENTIAL_ROWS in sequence. Per row: the
            // projections and both feature maps (3m), its row of the C x C block, the numerator
            // (dv + 1) and four row statistics; per chunk held in parallel a state (m (dv + 1)), none
            // in sequence (the state walks on chip); per problem the carried state.
            let sequential = schedule == Schedule::Sequential;
            let rows = if sequential { SEQUENTIAL_ROWS.min(l) } else { l };
            let deltas = if sequential { 0 } else { (rows / chunk) * m * (dv + 1) };
            let model = 4 * (rows * (3 * m + chunk + dv + 1 + 4) + deltas + m * (dv + 1) + 2) as u64;
            println!(
                "{:<11} {:>7} {:>12.2} {:>10.2} {:>16.2} {:>8.2}",
                format!("{schedule:?}").to_lowercase(),
                l,
                mib(scratch),
                mib(model),
                mib(4 * deltas as u64),
                seconds
            );
        }
    }
}
