//! Shared by the benches: one engine per GPU backend, and GPU-timestamp timing for criterion.
#![allow(dead_code)]

use criterion::Criterion;
use ortho::{BackendChoice, Engine, EngineOptions};
#[allow(unused_imports)]
pub use ortho_bench::inputs::gaussian;
use std::time::Duration;

/// One engine per GPU backend present, restricted by `ORTHO_BACKEND`.
pub fn engines() -> Vec<Engine> {
    let env = EngineOptions::from_env().expect("ORTHO_BACKEND");
    let engines: Vec<Engine> = [BackendChoice::Vulkan, BackendChoice::Metal, BackendChoice::Dx12, BackendChoice::Gl]
        .into_iter()
        .filter(|b| env.backend == BackendChoice::Auto || env.backend == *b)
        .filter_map(|backend| {
            Engine::with_options(&EngineOptions {
                backend,
                adapter_name: env.adapter_name.clone(),
                require_gpu: true,
                tune: env.tune.clone(),
            })
            .ok()
        })
        .collect();
    if engines.is_empty() {
        eprintln!("no GPU adapter: nothing to bench");
    }
    engines
}

/// A short label for a bench id: `vulkan-llvmpipe`.
pub fn label(e: &Engine) -> String {
    let name = e.describe();
    let adapter = name.split(" / ").nth(1).unwrap_or("").split_whitespace().next().unwrap_or("").to_lowercase();
    format!("{}-{adapter}", e.backend_name())
}

/// GPU time of `iters` back-to-back recordings of `record` in one submission (timestamp queries).
pub fn gpu_time(
    engine: &Engine,
    iters: u64,
    record: impl Fn(&mut ortho::wgpu::CommandEncoder) -> ortho::Result<ortho::Recorded>,
) -> Duration {
    let t = engine
        .time(|enc| (0..iters).try_fold(ortho::Recorded::default(), |all, _| Ok(all.and(record(enc)?))))
        .expect("timed GPU work");
    Duration::from_secs_f64(t.seconds)
}

/// Few samples: every iteration is a real GPU run, and software adapters are slow.
pub fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args()
}
