//! The engine's one tiled GEMM at 1024^3 on every backend: the GFLOP/s ceiling every other kernel is
//! judged against. Timed with GPU timestamps.
//!
//!     cargo bench --bench gemm

#[path = "common/mod.rs"]
mod common;
use common::*;
use criterion::Throughput;

fn main() {
    let mut c = criterion();
    for engine in engines() {
        let mut group = c.benchmark_group(format!("gemm/{}", label(&engine)));
        for n in [256usize, 1024] {
            let a = engine.upload("a", &gaussian(&[n, n], 1.0, 1)).unwrap();
            let b = engine.upload("b", &gaussian(&[n, n], 1.0, 2)).unwrap();
            let out = engine.empty(&[n, n]).unwrap();
            // Throughput in "elements" = flops, so criterion's Gelem/s reads as GFLOP/s.
            group.throughput(Throughput::Elements(2 * (n * n * n) as u64));
            group.bench_function(format!("{n}x{n}x{n}"), |bench| {
                bench.iter_custom(|iters| {
                    gpu_time(&engine, iters, |enc| engine.record_matmul(enc, &a, &b, &out, Default::default()))
                })
            });
        }
        group.finish();
    }
    c.final_summary();
}
