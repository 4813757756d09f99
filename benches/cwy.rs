//! Compact WY against L sequential Householder reflections on the same adapter, N = L in {64, ...,
//! 1024} and batch in {1, 64} (N <= 256 for batch 64): forming Q, and the CWY gradient dU.
//! Throughput is in flops (criterion's Gelem/s = GFLOP/s): `cwy_flops` and `householder_flops`.
//!
//!     cargo bench --bench cwy
//!     cargo bench --bench cwy -- 'cwy/vulkan.*n=512'     (a subset)

#[path = "common/mod.rs"]
mod common;
use common::*;
use criterion::Throughput;
use ortho_ref::cwy::{cwy_backward_flops, cwy_flops, householder_flops};

fn main() {
    let mut c = criterion();
    for engine in engines() {
        let mut group = c.benchmark_group(format!("cwy/{}", label(&engine)));
        for (batch, n) in [(1, 64), (1, 128), (1, 256), (1, 512), (1, 1024), (64, 64), (64, 128), (64, 256)] {
            let u = engine.upload("u", &gaussian(&[batch, n, n], 1.0, 1)).unwrap();
            let g = engine.upload("g", &gaussian(&[batch, n, n], 1.0, 2)).unwrap();
            let q = engine.empty(&[batch, n, n]).unwrap();
            let du = engine.empty(&[batch, n, n]).unwrap();
            group.throughput(Throughput::Elements(cwy_flops(batch, n, n) as u64));
            group.bench_function(format!("cwy batch={batch} n={n}"), |b| {
                b.iter_custom(|iters| gpu_time(&engine, iters, |enc| engine.record_cwy(enc, &u, &q, false)))
            });
            group.throughput(Throughput::Elements(householder_flops(batch, n, n) as u64));
            group.bench_function(format!("sequential batch={batch} n={n}"), |b| {
                b.iter_custom(|iters| gpu_time(&engine, iters, |enc| engine.record_householder_product(enc, &u, &q)))
            });
            group.throughput(Throughput::Elements(cwy_backward_flops(batch, n, n) as u64));
            group.bench_function(format!("cwy backward batch={batch} n={n}"), |b| {
                b.iter_custom(|iters| {
                    gpu_time(&engine, iters, |enc| engine.record_cwy_backward(enc, &u, &g, &du, false))
                })
            });
        }
        group.finish();
    }
    c.final_summary();
}
