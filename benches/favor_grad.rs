//! The time-memory trade-off of causal FAVOR+ gradients (docs/math.md §1.6, SLiM): one forward pass that
//! keeps what the backward pass needs, then the backward pass, timed together with GPU timestamps,
//! at d = dv = 64, m = 256, B = H = 1, for C in {64, 256} and three checkpoint settings:
//! - none: the sequential schedule (512 rows a group), the states rebuilt in a second sweep;
//! - every 16 chunks and every chunk: the forward pass (`Auto` schedule) keeps states, the backward
//!   pass walks groups of whole segments in one sweep, rebuilding each segment's states from its
//!   checkpoint.
//!
//! Bytes come from the buffer pool: "scratch" is the peak beyond the inputs, the output, the
//! gradients and what the forward pass kept (its 8 bytes a token of row statistics and the
//! checkpoints, shown apart).
//!
//!     cargo bench --bench favor_grad [-- L...]     (default L = 65536 and, without checkpoints, 262144)

#[path = "common/mod.rs"]
mod common;
use common::*;
use ortho::random::{Scaling, projection};
use ortho::{AttentionShape, Checkpoints, FavorGrads, FavorOptions, Kernel, Schedule};

fn main() {
    let (d, dv, m) = (64, 64, 256);
    let lens: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (lens, long) = if lens.is_empty() { (vec![65_536], Some(262_144)) } else { (lens, None) };
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    let settings = [
        ("none", Schedule::Sequential, Checkpoints::None),
        ("every 16", Schedule::Auto, Checkpoints::Every(16)),
        ("every chunk", Schedule::Auto, Checkpoints::Every(1)),
    ];
    let mut runs = Vec::new();
    for &l in &lens {
        for chunk in [64, 256] {
            runs.extend(settings.iter().map(|&s| (l, chunk, s)));
        }
    }
    if let Some(l) = long {
        runs.extend([64, 256].map(|chunk| (l, chunk, settings[0])));
    }
    for engine in engines().into_iter().take(1) {
        println!("{}: causal FAVOR+ forward + backward, d = dv = {d}, m = {m}, B = H = 1", engine.describe());
        println!(
            "{:>7} {:>4} {:<12} {:>8} {:>10} {:>12} {:>10} {:>11}",
            "L", "C", "checkpoints", "time s", "peak MiB", "scratch MiB", "kept MiB", "checkpoints"
        );
        let w = engine.upload("w", &projection(m, d, Scaling::Chi, 1).unwrap().to_f32()).unwrap();
        // A short run of every setting first, so that no timing includes compiling a pipeline.
        let warm_up = [64, 256].into_iter().flat_map(|c| settings.map(|s| (32 * c, c, s, false)));
        for (l, chunk, (name, schedule, checkpoints), report) in
            warm_up.chain(runs.iter().map(|&(l, c, s)| (l, c, s, true)))
        {
            let shape = [1, 1, l, d];
            let up = |t| engine.upload("x", &t).unwrap();
            let (q, k) = (up(gaussian(&shape, 0.5, 2)), up(gaussian(&shape, 0.5, 3)));
            let (v, g) = (up(gaussian(&[1, 1, l, dv], 1.0, 4)), up(gaussian(&[1, 1, l, dv], 1.0, 5)));
            let o = FavorOptions { chunk: Some(chunk), schedule, checkpoints, ..FavorOptions::causal(Kernel::Softmax) };
            let s = AttentionShape::of(q.shape(), k.shape(), v.shape(), Some(w.shape())).unwrap();
            let saved = engine.favor_saved(&s, &o).expect("saved buffers");
            let out = engine.empty(v.shape()).unwrap();
            let [dq, dk, dv] = [q.shape(), k.shape(), v.shape()].map(|s| engine.empty(s).unwrap());
            let grads = FavorGrads { dq, dk, dv, dw: None };
            engine.trim_pool();
            engine.reset_peak();
            let base = engine.pool_stats().live_bytes;
            let t = engine
                .time(|enc| {
                    let forward = engine.record_favor_forward(enc, &q, &k, &v, &w, &out, &saved)?;
                    Ok(forward.and(engine.record_favor_backward(enc, &q, &k, &v, &w, &out, &saved, &g, &grads)?))
                })
                .expect("forward + backward");
            let peak = engine.pool_stats().peak_bytes;
            let kept = saved.byte_len();
            let rows = 8 * l as u64;
            if !report {
                continue;
            }
            println!(
                "{:>7} {:>4} {:<12} {:>8.2} {:>10.2} {:>12.2} {:>10.2} {:>11.2}",
                l,
                chunk,
                name,
                t.seconds,
                mib(peak),
                mib(peak - base),
                mib(rows),
                mib(kept - rows)
            );
        }
    }
}
