//! The sweep of `ortho bench` (crates/ortho-bench, the full sizes) under criterion, on every GPU
//! backend: one group per family and backend, one benchmark per case, each sample the GPU-timestamp
//! time of the case's recorded work. Throughput is in flops (criterion's Gelem/s = GFLOP/s), counted
//! as the report counts them.
//!
//!     cargo bench --bench sweep
//!     cargo bench --bench sweep -- 'favor-causal/vulkan.*L=4096'     (a subset)

#[path = "common/mod.rs"]
mod common;
use common::*;
use criterion::Throughput;
use ortho::MeasureOptions;
use ortho_bench::{Sweep, sweep};
use std::time::Duration;

fn main() {
    let mut c = criterion();
    let cases = sweep(Sweep::Full);
    for engine in engines() {
        let mut families: Vec<&str> = cases.iter().map(|c| c.family).collect();
        families.dedup();
        for family in families {
            let mut group = c.benchmark_group(format!("{family}/{}", label(&engine)));
            for case in cases.iter().filter(|c| c.family == family) {
                group.throughput(Throughput::Elements(case.flops as u64));
                group.bench_function(&case.name, |b| {
                    b.iter_custom(|iters| {
                        let o = MeasureOptions { warmup: 0, repeats: iters as usize, ..Default::default() };
                        let t = case.time_device(&engine, o).expect("the case runs");
                        Duration::from_secs_f64(t.seconds.iter().sum())
                    })
                });
            }
            group.finish();
        }
    }
    c.final_summary();
}
