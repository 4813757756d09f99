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
use ortho::{AttentionShape, Engine, FavorOptions, GpuTensor, Kernel, Schedule};
use ortho_ref::favor::favor_causal_flops;
use ortho_ref::favor::{exact_flops, favor_flops};

/// B = H = 1 queries, keys and values of length `l`, a projection `[m, d]` and an output buffer.
struct Inputs {
    q: GpuTensor,
    k: GpuTensor,
    v: GpuTensor,
    w: GpuTensor,
    out: GpuTensor,
    s: AttentionShape,
}

fn inputs(engine: &Engine, l: usize, d: usize, m: usize) -> Inputs {
    let shape = [1, 1, l, d];
    Inputs {
        q: engine.upload("q", &gaussian(&shape, 0.5, 1)).unwrap(),
        k: engine.upload("k", &gaussian(&shape, 0.5, 2)).unwrap(),
        v: engine.upload("v", &gaussian(&shape, 1.0, 3)).unwrap(),
        w: engine.upload("w", &projection(m, d, Scaling::Chi, 4).unwrap().to_f32()).unwrap(),
        out: engine.empty(&shape).unwrap(),
        s: AttentionShape::of(&shape, &shape, &shape, Some(&[m, d])).unwrap(),
    }
}

fn main() {
    let mut c = criterion();
    let (d, m) = (64, 256);
    for engine in engines() {
        let mut group = c.benchmark_group(format!("favor/{}", label(&engine)));
        for l in [1024usize, 4096, 16384] {
            let Inputs { q, k, v, w, out, s } = inputs(&engine, l, d, m);
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
            let Inputs { q, k, v, w, out, s } = inputs(&engine, l, d, m);
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
