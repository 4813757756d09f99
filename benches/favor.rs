//! FAVOR+ against exact softmax attention on the same adapter, d = dv = 64, m = 256, B = H = 1,
//! L in {1024, 4096, 16384}: bidirectional (`favor/…`), and causal with chunks C in {16, 64, 256} in
//! both schedules (`favor-causal/…`). Throughput is in flops (criterion's Gelem/s = GFLOP/s).
//!
//!     cargo bench --bench favor
//!     cargo bench --bench favor -- 'favor-causal/vulkan.*L=4096'     (a subset)

#[path = "common/mod.rs"]
mod common;
use common::*;
use criterion::Throughput;
use ortho::random::{Scaling, projection};
use ortho::{AttentionShape, FavorOptions, Kernel, Schedule};
use ortho_ref::favor::favor_causal_flops;
use ortho_ref::favor::{exact_flops, favor_flops};

fn main() {
    let mut c = criterion();
    let (d, m) = (64, 256);
    for engine in engines() {
        let mut group = c.benchmark_group(format!("favor/{}", label(&engine)));
        for l in [1024usize, 4096, 16384] {
            let shape = [1, 1, l, d];
            let q = engine.upload("q", &gaussian(&shape, 0.5, 1)).unwrap();
            let k = engine.upload("k", &gaussian(&shape, 0.5, 2)).unwrap();
            let v = engine.upload("v", &gaussian(&shape, 1.0, 3)).unwrap();
            let w = engine.upload("w", &projection(m, d, Scaling::Chi, 4).unwrap().to_f32()).unwrap();
            let out = engine.empty(&shape).unwrap();
            let s = AttentionShape::of(&shape, &shape, &shape, Some(&[m, d])).unwrap();
            let options = FavorOptions::new(Kernel::Softmax);
            group.throughput(Throughput::Elements(favor_flops(&s, Kernel::Softmax) as u64));
            group.bench_function(format!("favor+ L={l}"), |b| {
                b.iter_custom(|iters| {
                    gpu_time(&engine, iters, |enc| engine.record_favor(enc, &q, &k, &v, &w, &options, &out))
                })
            });
            group.throughput(Throughput::Elements(exact_flops(&s, false) as u64));
            group.bench_function(format!("exact L={l}"), |b| {
                b.iter_custom(|iters| {
                    gpu_time(&engine, iters, |enc| engine.record_exact_attention(enc, &q, &k, &v, false, &out))
                })
            });
        }
        group.finish();

        let mut group = c.benchmark_group(format!("favor-causal/{}", label(&engine)));
        for l in [1024usize, 4096, 16384] {
            let shape = [1, 1, l, d];
            let q = engine.upload("q", &gaussian(&shape, 0.5, 1)).unwrap();
            let k = engine.upload("k", &gaussian(&shape, 0.5, 2)).unwrap();
            let v = engine.upload("v", &gaussian(&shape, 1.0, 3)).unwrap();
            let w = engine.upload("w", &projection(m, d, Scaling::Chi, 4).unwrap().to_f32()).unwrap();
            let out = engine.empty(&shape).unwrap();
            let s = AttentionShape::of(&shape, &shape, &shape, Some(&[m, d])).unwrap();
            for chunk in [16, 64, 256] {
                for schedule in [Schedule::Parallel, Schedule::Sequential] {
                    let options =
                        FavorOptions { chunk: Some(chunk), schedule, ..FavorOptions::causal(Kernel::Softmax) };
                    group.throughput(Throughput::Elements(favor_causal_flops(&s, Kernel::Softmax, chunk) as u64));
                    group.bench_function(format!("favor+ {schedule:?} C={chunk} L={l}").to_lowercase(), |b| {
                        b.iter_custom(|iters| {
                            gpu_time(&engine, iters, |enc| engine.record_favor(enc, &q, &k, &v, &w, &options, &out))
                        })
                    });
                }
            }
            group.throughput(Throughput::Elements(exact_flops(&s, true) as u64));
            group.bench_function(format!("exact L={l}"), |b| {
                b.iter_custom(|iters| {
                    gpu_time(&engine, iters, |enc| engine.record_exact_attention(enc, &q, &k, &v, true, &out))
                })
            });
        }
        group.finish();
    }
    c.final_summary();
}
