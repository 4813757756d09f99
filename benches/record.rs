//! Host cost of recording: wall time of whole calls made of many small dispatches, where the
//! engine's per-dispatch work (uniform blocks, bind groups, pipeline lookups) is most of the time.
//! Counts dispatches per second (criterion's elem/s).
//!
//!     cargo bench --bench record

#[path = "common/mod.rs"]
mod common;
use common::*;
use criterion::Throughput;
use ortho_bench::inputs::{identities, symmetric};
use ortho_ref::flow::{Flow, Generator, Method};

/// Dispatches of one RKMK4 step on the isospectral field with n <= 20 (one group-map pass):
/// 4 fields of 4 GEMMs, 4 maps, 2 commutators of 2 GEMMs, 6 combines.
const RKMK4_STEP_DISPATCHES: u64 = 16 + 4 + 4 + 6;

fn main() {
    let mut c = criterion();
    for engine in engines() {
        let mut group = c.benchmark_group(format!("record/{}", label(&engine)));
        let n = 4;
        let steps = 50;
        let flow = Flow {
            method: Method::Rkmk4,
            dt: 0.01,
            steps,
            newton_schulz_every: None,
            generator: Generator::Isospectral { qs: symmetric(n, 1), ns: symmetric(n, 2) },
            state: None,
        };
        let w0 = engine.upload("w0", &identities(1, n)).unwrap();
        group.throughput(Throughput::Elements(steps as u64 * RKMK4_STEP_DISPATCHES));
        group.bench_function(format!("rkmk4 n={n} steps={steps}"), |b| b.iter(|| engine.flow_gpu(&flow, &w0).unwrap()));

        let (n, l) = (64, 64);
        let u = engine.upload("u", &gaussian(&[n, l], 1.0, 3)).unwrap();
        let product = ortho::ops::HouseholderProduct;
        group.throughput(Throughput::Elements(l as u64));
        group.bench_function(format!("householder product n={n} l={l}"), |b| {
            b.iter(|| engine.run_gpu(&product, &[&u]).unwrap())
        });
        group.finish();
    }
    c.final_summary();
}
