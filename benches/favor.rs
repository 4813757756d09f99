//! Bidirectional FAVOR+ against exact softmax attention on the same adapter, d = dv = 64, m = 256,
//! B = H = 1, L in {1024, 4096, 16384}. Throughput is in flops (criterion's Gelem/s = GFLOP/s).
//!
//!     cargo bench --bench favor
//!     cargo bench --bench favor -- 'favor/vulkan.*/1024'     (a subset)

#[path = "common/mod.rs"]
mod common;
use common::*;
use criterion::Throughput;
use ortho::random::{Scaling, projection};
use ortho::{AttentionShape, FavorOptions, Kernel};
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
            let w = engine
                .upload("w", &projection(m, d, Scaling::Chi, 4).unwrap().to_f32())
                .unwrap();
            let out = engine.empty(&shape).unwrap();
            let s = AttentionShape::of(&shape, &shape, &shape, Some(&[m, d])).unwrap();
            let options = FavorOptions::new(Kernel::Softmax);
            group.throughput(Throughput::Elements(favor_flops(&s, Kernel::Softmax) as u64));
            group.bench_function(format!("favor+ L={l}"), |b| {
                b.iter_custom(|iters| {
                    gpu_time(&engine, iters, |enc| {
                        engine.record_favor(enc, &q, &k, &v, &w, &options, &out)
                    })
                })
            });
            group.throughput(Throughput::Elements(exact_flops(&s, false) as u64));
            group.bench_function(format!("exact L={l}"), |b| {
                b.iter_custom(|iters| {
                    gpu_time(&engine, iters, |enc| {
                        engine.record_exact_attention(enc, &q, &k, &v, false, &out)
                    })
                })
            });
        }
        group.finish();
    }
    c.final_summary();
}
