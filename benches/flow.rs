//! Batched matrix exponentials, n in {3, 8, 32, 64}, batch in {1, 1024, 65536} (65536 only for
//! n <= 8: at n >= 32 one such input passes the 128 MiB storage binding), timed with GPU
//! timestamps. Every matrix has 1-norm 1 (degree 12 in f32, no squaring); throughput counts 2 n^3
//! flops per product of that degree. And RKMK4 steps per second (criterion's elem/s = steps/s) for
//! n = 32, batch 1024.
//!
//!     cargo bench --bench flow

#[path = "common/mod.rs"]
mod common;
use common::*;
use criterion::Throughput;
use ortho::{ExpmOutput, Tensor};
use ortho_ref::expm::{THETA_F32, one_norm, plan};
use ortho_ref::flow::{Flow, Generator, Method};

fn main() {
    let mut c = criterion();
    for engine in engines() {
        let mut group = c.benchmark_group(format!("expm/{}", label(&engine)));
        for n in [3usize, 8, 32, 64] {
            for batch in [1usize, 1024, 65536] {
                if batch == 65536 && n > 8 {
                    continue;
                }
                let g = gaussian(&[batch, n, n], 1.0, n as u64);
                // Scale every matrix to 1-norm 1.
                let a = Tensor::from_fn(&[batch, n, n], |e| {
                    let z = e / (n * n);
                    let m: Vec<f64> = g.data()[z * n * n..(z + 1) * n * n].iter().map(|&x| x as f64).collect();
                    (g.data()[e] as f64 / one_norm(&m, n)) as f32
                });
                let (index, squarings) = plan(1.0, &THETA_F32);
                let flops = 2.0 * (n * n * n) as f64 * (index + squarings as usize) as f64 * batch as f64;
                let ga = engine.upload("a", &a).unwrap();
                let out = engine.empty(&[batch, n, n]).unwrap();
                group.throughput(Throughput::Elements(flops as u64));
                group.bench_function(format!("n={n} batch={batch}"), |b| {
                    b.iter_custom(|iters| {
                        gpu_time(&engine, iters, |enc| engine.record_expm(enc, &ga, &out, ExpmOutput::Exp))
                    })
                });
            }
        }
        group.finish();

        // RKMK4 steps per second, n = 32, batch 1024, isospectral field: wall clock of a whole
        // integration of 2 steps (upload and read-back of W included, about 4 MiB each way).
        let mut group = c.benchmark_group(format!("rkmk4/{}", label(&engine)));
        let (n, batch, steps) = (32usize, 1024usize, 2usize);
        let sym = |seed| {
            let g = gaussian(&[n, n], 1.0, seed);
            Tensor::from_fn(&[n, n], |e| (g.data()[e] as f64 + g.data()[(e % n) * n + e / n] as f64) / 2.0)
        };
        let flow = Flow {
            method: Method::Rkmk4,
            dt: 0.01,
            steps,
            newton_schulz_every: None,
            generator: Generator::Isospectral { qs: sym(1), ns: sym(2) },
            state: None,
        };
        let w0 = Tensor::from_fn(&[batch, n, n], |e| if (e % (n * n)) / n == e % n { 1.0 } else { 0.0 });
        group.throughput(Throughput::Elements(steps as u64));
        group.bench_function(format!("n={n} batch={batch} steps={steps}"), |b| {
            b.iter(|| engine.flow(&flow, &w0).unwrap())
        });
        group.finish();
    }
    c.final_summary();
}
