//! Shared by the integration tests: the engines to test on, seeded inputs and error measures.
#![allow(dead_code)]

use ortho::{BackendChoice, Engine, EngineOptions, Tensor};
use ortho_ref::random::Gaussian;

/// One engine per GPU backend present (Vulkan, Metal, DX12, GL), restricted by `ORTHO_BACKEND`, with
/// the documented GEMM variants (tuning is tested in `tune.rs`; every variant in `gemm.rs`).
/// Without any, tests print "skipped: no GPU adapter" and pass, unless `ORTHO_REQUIRE_GPU=1`.
pub fn gpu_engines() -> Vec<Engine> {
    let env = EngineOptions::from_env().expect("ORTHO_BACKEND");
    let wanted = [BackendChoice::Vulkan, BackendChoice::Metal, BackendChoice::Dx12, BackendChoice::Gl];
    let engines: Vec<Engine> = wanted
        .into_iter()
        .filter(|b| env.backend == BackendChoice::Auto || env.backend == *b)
        .filter_map(|backend| {
            let options = EngineOptions {
                backend,
                adapter_name: env.adapter_name.clone(),
                require_gpu: true,
                tune: ortho::TuneOptions { mode: ortho::TuneMode::Off, cache: None },
            };
            Engine::with_options(&options).ok()
        })
        .collect();
    if engines.is_empty() {
        assert!(!env.require_gpu, "ORTHO_REQUIRE_GPU=1 but no GPU adapter could be opened");
        eprintln!("skipped: no GPU adapter");
    }
    engines
}

/// Every engine of [`gpu_engines`], reopened on its adapter with limits lowered by `lower` (as an
/// application embedding ortho may ask for), so that tests reach the limits with small problems.
pub fn engines_with_limits(lower: impl Fn(&mut ortho::wgpu::Limits)) -> Vec<Engine> {
    use ortho::wgpu;
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    let engines: Vec<Engine> = gpu_engines()
        .iter()
        .map(|e| {
            let adapter = adapters
                .iter()
                .find(|a| format!("{:?} / {}", a.get_info().backend, a.get_info().name) == e.describe())
                .expect("the adapter of an open engine");
            let mut limits = adapter.limits();
            lower(&mut limits);
            let descriptor = wgpu::DeviceDescriptor { required_limits: limits, ..Default::default() };
            let (device, queue) = pollster::block_on(adapter.request_device(&descriptor)).expect("a device");
            let engine = Engine::from_device(device, queue);
            engine.set_tuning(ortho::TuneOptions { mode: ortho::TuneMode::Off, cache: None });
            engine
        })
        .collect();
    engines
}

pub fn gaussian(shape: &[usize], scale: f64, seed: u64) -> Tensor<f32> {
    let mut g = Gaussian::new(seed);
    Tensor::from_fn(shape, |_| (scale * g.sample()) as f32)
}

/// `G + G^T` for a Gaussian `G` of `[n, n]` entries of scale `scale`: a symmetric generator.
pub fn symmetric(n: usize, scale: f64, seed: u64) -> Tensor<f64> {
    let g = gaussian(&[n, n], scale, seed).to_f64();
    Tensor::from_fn(&[n, n], |e| g.data()[e] + g.data()[(e % n) * n + e / n])
}

/// `q, k: [B, H, L, d]` (entries of scale `scale`) and `v: [B, H, L, dv]`, seeded `seed..seed + 3`.
pub fn attention_inputs(s: (usize, usize, usize, usize, usize, usize), scale: f64, seed: u64) -> [Tensor<f32>; 3] {
    let (b, h, l, d, dv, _) = s;
    [
        gaussian(&[b, h, l, d], scale, seed),
        gaussian(&[b, h, l, d], scale, seed + 1),
        gaussian(&[b, h, l, dv], 1.0, seed + 2),
    ]
}

/// Causal shapes `(B, H, L, d, dv, m, chunk)`: L < C, L = kC - 1, kC, kC + 1, C = 1, C = L, C not a
/// power of two, and the benchmarked d = dv = 64, m = 256 (with [`case_projection`], odd cases have
/// per-head projections).
pub const CAUSAL_CASES: [(usize, usize, usize, usize, usize, usize, usize); 9] = [
    (1, 1, 1, 1, 1, 1, 4),
    (1, 2, 5, 3, 2, 7, 16),
    (2, 1, 63, 16, 9, 33, 16),
    (1, 1, 64, 8, 8, 16, 16),
    (1, 2, 65, 16, 16, 64, 16),
    (1, 1, 37, 4, 3, 8, 1),
    (1, 1, 70, 32, 16, 24, 70),
    (2, 2, 100, 8, 5, 12, 24),
    (1, 1, 130, 64, 64, 256, 64),
];

/// `[q, k, v, w]` (`[l, ·]`, m = 16, d = 16) where key `late` has a feature exponent ~127 above the
/// rest: projection row 0 scaled to norm 16 and the key aligned with it, so that
/// a_0 - |k~|^2/2 = 16 s - s^2/2 with s = |k~| = 15 gives 127.5 while the other keys stay near 0.
pub fn huge_late_key_inputs(l: usize, dv: usize, late: usize) -> [Tensor<f32>; 4] {
    let (d, m) = (16, 16);
    let mut w = ortho_ref::random::projection(m, d, ortho_ref::random::Scaling::Chi, 5).unwrap().to_f32();
    let row0: Vec<f32> = w.data()[..d].to_vec();
    let norm = row0.iter().map(|x| x * x).sum::<f32>().sqrt();
    w.data_mut()[..d].iter_mut().zip(&row0).for_each(|(x, r)| *x = 16.0 * r / norm);
    let q = gaussian(&[l, d], 0.3, 6);
    let mut k = gaussian(&[l, d], 0.3, 7);
    let s = 15.0 * (d as f32).powf(0.25);
    k.data_mut()[late * d..(late + 1) * d].iter_mut().zip(&row0).for_each(|(x, r)| *x = s * r / norm);
    [q, k, gaussian(&[l, dv], 1.0, 8), w]
}

/// Case `i`'s projection `[m, d]`, or `[h, m, d]` for odd `i` (per-head projections).
pub fn case_projection(i: usize, h: usize, m: usize, d: usize) -> Tensor<f32> {
    use ortho_ref::random::{Scaling, projection, projection_per_head};
    let w = if i.is_multiple_of(2) {
        projection(m, d, Scaling::Chi, i as u64)
    } else {
        projection_per_head(h, m, d, Scaling::Chi, i as u64)
    };
    w.unwrap().to_f32()
}

#[allow(unused_imports)]
pub use ortho_ref::tensor::{max_abs_diff, relative_frobenius};

/// `max_t sum_{j in S(t)} |A[t, j]| / |sum_{j in S(t)} A[t, j]|`: how much rounding in the terms of a
/// denominator can be amplified by cancellation. 1 for the positive kernels; `trig` features are
/// signed, and with few features their sums can nearly cancel, so its tolerances scale with this.
pub fn denominator_condition(
    q: &Tensor<f32>,
    k: &Tensor<f32>,
    w: &Tensor<f32>,
    kernel: ortho::Kernel,
    causal: bool,
) -> f64 {
    if kernel != ortho::Kernel::Trig {
        return 1.0;
    }
    let s = ortho::AttentionShape::of(q.shape(), k.shape(), k.shape(), Some(w.shape())).unwrap();
    let (l, d, m, f) = (s.len, s.dim, s.features, kernel.feature_count(s.features));
    let (q, k, w) = (q.to_f64(), k.to_f64(), w.to_f64());
    let mut worst: f64 = 1.0;
    for z in 0..s.problems() {
        let wh = (z % s.heads) % s.projection_heads;
        let block = |t: &Tensor<f64>| t.data()[z * l * d..(z + 1) * l * d].to_vec();
        let w = &w.data()[wh * m * d..(wh + 1) * m * d];
        let (pq, pk, g) = ortho_ref::favor::causal_features(kernel, &block(&q), &block(&k), w, l, d, m);
        for t in 0..l {
            let keys = if causal { t + 1 } else { l };
            let top = g[..keys].iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let a: Vec<f64> = (0..keys)
                .map(|j| (0..f).map(|i| pq[t * f + i] * pk[j * f + i]).sum::<f64>() * (g[j] - top).exp())
                .collect();
            let (abs, sum): (f64, f64) = (a.iter().map(|x| x.abs()).sum(), a.iter().sum());
            worst = worst.max(abs / sum.abs());
        }
    }
    worst
}

/// Pearson's statistic and degrees of freedom of Ising samples `[count, n]` against the exact
/// distribution by enumeration (configurations folded under the global flip; bins expecting fewer
/// than 5 pooled).
pub fn ising_chi_square(n: usize, edges: &[(usize, usize)], j: &[f64], samples: &[i8]) -> (f64, f64) {
    let count = samples.len() / n;
    let p = ortho_ref::ising::brute::probabilities(n, edges, j);
    let mut observed = vec![0usize; p.len()];
    for s in samples.chunks(n) {
        let index = (1..n).fold(0, |acc, i| acc | (usize::from(s[i] != s[0]) << (i - 1)));
        observed[index] += 1;
    }
    let (mut statistic, mut bins, mut pooled_expected, mut pooled_observed) = (0.0, 0, 0.0, 0.0);
    for (&pi, &o) in p.iter().zip(&observed) {
        let expected = 2.0 * pi * count as f64;
        if expected >= 5.0 {
            statistic += (o as f64 - expected).powi(2) / expected;
            bins += 1;
        } else {
            pooled_expected += expected;
            pooled_observed += o as f64;
        }
    }
    if pooled_expected > 0.0 {
        statistic += (pooled_observed - pooled_expected).powi(2) / pooled_expected;
        bins += 1;
    }
    assert!(bins > 20, "the test needs bins: {bins}");
    (statistic, (bins - 1) as f64)
}

/// Every edge's sampled mean of `s_u s_v` (samples `[count, nodes]`) within 5 standard errors of its
/// exact marginal (the standard error floored at 1e-3 for edges that are nearly certain).
pub fn assert_edge_correlations(name: &str, nodes: usize, edges: &[(usize, usize)], exact: &[f64], samples: &[i8]) {
    let count = samples.len() / nodes;
    for (e, &(u, v)) in edges.iter().enumerate() {
        let mean = samples.chunks(nodes).map(|s| f64::from(s[u] * s[v])).sum::<f64>() / count as f64;
        let standard_error = ((1.0 - exact[e] * exact[e]) / count as f64).sqrt().max(1e-3);
        assert!(
            (mean - exact[e]).abs() < 5.0 * standard_error,
            "{name} edge {e}: sampled {mean} vs exact {}",
            exact[e]
        );
    }
}
