//! Shared by the integration tests: the engines to test on, seeded inputs and error measures.
#![allow(dead_code)]

use ortho::{BackendChoice, Engine, EngineOptions, Tensor};
use ortho_ref::random::Gaussian;

/// One engine per GPU backend present (Vulkan, Metal, DX12, GL), restricted by `ORTHO_BACKEND`.
/// Without any, tests print "skipped: no GPU adapter" and pass, unless `ORTHO_REQUIRE_GPU=1`.
pub fn gpu_engines() -> Vec<Engine> {
    let env = EngineOptions::from_env().expect("ORTHO_BACKEND");
    let wanted = [
        BackendChoice::Vulkan,
        BackendChoice::Metal,
        BackendChoice::Dx12,
        BackendChoice::Gl,
    ];
    let engines: Vec<Engine> = wanted
        .into_iter()
        .filter(|b| env.backend == BackendChoice::Auto || env.backend == *b)
        .filter_map(|backend| {
            let options = EngineOptions {
                backend,
                adapter_name: env.adapter_name.clone(),
                require_gpu: true,
            };
            Engine::with_options(&options).ok()
        })
        .collect();
    if engines.is_empty() {
        assert!(
            !env.require_gpu,
            "ORTHO_REQUIRE_GPU=1 but no GPU adapter could be opened"
        );
        eprintln!("skipped: no GPU adapter");
    }
    engines
}

pub fn gaussian(shape: &[usize], scale: f64, seed: u64) -> Tensor<f32> {
    let mut g = Gaussian::new(seed);
    Tensor::from_fn(shape, |_| (scale * g.sample()) as f32)
}

#[allow(unused_imports)]
pub use ortho_ref::tensor::{max_abs_diff, relative_frobenius};
