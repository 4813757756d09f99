//! Property tests: random shapes, scales (powers of ten from 1e-30 to 1e30 where f32 holds the
//! result) and layouts for every operation against its f64 twin. Each case runs on one engine drawn
//! from every GPU backend, each as opened and again with shrunk limits (64 KiB bindings, 16 workgroups
//! per dimension), so that the paths which split work past a limit run on small problems. Few cases
//! a property: every case runs real shaders, on a software adapter in CI.
mod common;
use common::*;
use ortho::ops::*;
use ortho::{Engine, FavorOptions, GroupMap, Kernel, MatmulOptions, Schedule, Tensor};
use ortho_ref::flow::{Activation, Flow, Generator, Method};
use proptest::prelude::*;
use std::sync::OnceLock;

/// The engines a case draws from: every GPU backend, then each again with shrunk limits.
fn engines() -> &'static [Engine] {
    static ENGINES: OnceLock<Vec<Engine>> = OnceLock::new();
    ENGINES.get_or_init(|| {
        let mut engines = gpu_engines();
        engines.extend(engines_with_limits(|l| {
            l.max_storage_buffer_binding_size = 64 << 10;
            l.max_compute_workgroups_per_dimension = 16;
        }));
        engines
    })
}

fn cpu() -> &'static Engine {
    static CPU: OnceLock<Engine> = OnceLock::new();
    CPU.get_or_init(Engine::reference)
}

/// `cases` cases from a fixed seed (the same cases on every run, unless `PROPTEST_RNG_SEED` says
/// otherwise), and no failure files written into the source tree.
fn config(cases: u32) -> ProptestConfig {
    let default = ProptestConfig::default();
    let rng_seed = match default.rng_seed {
        proptest::test_runner::RngSeed::Random => proptest::test_runner::RngSeed::Fixed(0x0b5e55ed),
        fixed => fixed,
    };
    ProptestConfig { cases, failure_persistence: None, rng_seed, ..default }
}

/// `10^e` for `e` drawn from `lo..=hi`.
fn scale(lo: i32, hi: i32) -> impl Strategy<Value = f64> {
    (lo..=hi).prop_map(|e| 10f64.powi(e))
}

/// Gaussian entries of `scale`, seeded.
fn filled(shape: &[usize], scale: f64, seed: u64) -> Tensor<f32> {
    gaussian(shape, scale, seed)
}

/// Runs `op` on engine `pick` (modulo the engines present) and on the CPU twin, and bounds the
/// relative error of every output. Without a GPU engine the case passes (as `gpu_engines` says).
fn agrees<O: ortho::Operation>(pick: usize, op: &O, inputs: &[&Tensor<f32>], bound: f64) -> Result<(), TestCaseError> {
    let engines = engines();
    if engines.is_empty() {
        return Ok(());
    }
    let e = &engines[pick % engines.len()];
    let want = cpu().run(op, inputs).map_err(|err| TestCaseError::fail(format!("reference: {err}")))?;
    // One property at a time on the shared engines: wgpu's GL backend gives up on its context lock
    // after a second, which a cold shader compile on another thread can hold (README, "Threads").
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let got = e.run(op, inputs).map_err(|err| TestCaseError::fail(format!("{}: {err}", e.describe())))?;
    prop_assert_eq!(got.len(), want.len());
    for (i, (got, want)) in got.iter().zip(&want).enumerate() {
        prop_assert_eq!(got.shape(), want.shape());
        let err = relative_frobenius(got.data(), want.data());
        prop_assert!(err < bound, "{} output {}: relative error {:e} > {:e}", e.describe(), i, err, bound);
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
struct AttentionCase {
    shape: (usize, usize, usize, usize, usize, usize),
    /// `[L, d]` inputs (one problem) rather than `[B, H, L, d]`.
    flat: bool,
    per_head: bool,
    qk_scale: f64,
    v_scale: f64,
    seed: u64,
}

fn attention_case(max_len: usize) -> impl Strategy<Value = AttentionCase> {
    ((1..=2usize, 1..=3usize, 1..=max_len, 1..=17usize, 1..=9usize, 1..=40usize), any::<bool>(), any::<bool>())
        .prop_flat_map(|(shape, flat, per_head)| {
            (Just(shape), Just(flat), Just(per_head), scale(-30, 0), scale(-25, 30), any::<u64>())
        })
        .prop_map(|(shape, flat, per_head, qk_scale, v_scale, seed)| {
            let (b, h, l, d, dv, m) = shape;
            let shape = if flat { (1, 1, l, d, dv, m) } else { (b, h, l, d, dv, m) };
            AttentionCase { shape, flat, per_head: per_head && !flat, qk_scale, v_scale, seed }
        })
}

impl AttentionCase {
    fn inputs(&self) -> [Tensor<f32>; 4] {
        let (b, h, l, d, dv, m) = self.shape;
        let lead: &[usize] = if self.flat { &[] } else { &[b, h] };
        let shape = |last: usize| [lead, &[l, last]].concat();
        let w = if self.per_head {
            ortho_ref::random::projection_per_head(h, m, d, ortho_ref::random::Scaling::Chi, self.seed)
        } else {
            ortho_ref::random::projection(m, d, ortho_ref::random::Scaling::Chi, self.seed)
        };
        [
            filled(&shape(d), self.qk_scale, self.seed),
            filled(&shape(d), self.qk_scale, self.seed + 1),
            filled(&shape(dv), self.v_scale, self.seed + 2),
            w.unwrap().to_f32(),
        ]
    }
}

fn kernel() -> impl Strategy<Value = Kernel> {
    prop_oneof![Just(Kernel::Softmax), Just(Kernel::Trig), Just(Kernel::Relu { eps: 1e-3 })]
}

fn schedule() -> impl Strategy<Value = Schedule> {
    prop_oneof![Just(Schedule::Auto), Just(Schedule::Parallel), Just(Schedule::Sequential)]
}

/// The error bound of attention: f32 rounding, amplified for trig features by the cancellation in
/// their denominators.
fn attention_bound(case: &AttentionCase, kernel: Kernel, causal: bool, base: f64) -> f64 {
    let [q, k, _, w] = case.inputs();
    base * denominator_condition(&q, &k, &w, kernel, causal)
}

proptest! {
    #![proptest_config(config(6))]

    #[test]
    fn favor_matches_the_reference(
        case in attention_case(300),
        kernel in kernel(),
        causal in any::<bool>(),
        chunk in 1..=70usize,
        schedule in schedule(),
        pick in any::<usize>(),
    ) {
        let [q, k, v, w] = case.inputs();
        let o = FavorOptions { causal, chunk: causal.then_some(chunk), schedule, ..FavorOptions::new(kernel) };
        let bound = attention_bound(&case, kernel, causal, 1e-4);
        agrees(pick, &Favor(o), &[&q, &k, &v, &w], bound)?;
    }

    #[test]
    fn favor_gradients_match_the_reference(
        case in attention_case(120),
        kernel in kernel(),
        causal in any::<bool>(),
        pick in any::<usize>(),
    ) {
        // Below q, k ~ 1e-3 the features barely vary, and dq, dk become differences of nearly equal
        // O(1) terms: their f32 error grows like f32's epsilon over the scale, whatever the kernel.
        let case = AttentionCase { qk_scale: case.qk_scale.max(1e-3), v_scale: case.v_scale.min(1e10), ..case };
        let [q, k, v, w] = case.inputs();
        let (b, h, l, _, dv, _) = case.shape;
        let grad = if case.flat { filled(&[l, dv], 1.0, 9) } else { filled(&[b, h, l, dv], 1.0, 9) };
        let op = FavorBackward(FavorOptions { causal, chunk: causal.then_some(16), ..FavorOptions::new(kernel) });
        let bound = attention_bound(&case, kernel, causal, 2e-3);
        agrees(pick, &op, &[&q, &k, &v, &w, &grad], bound)?;
    }

    #[test]
    fn exact_attention_matches_the_reference(
        (b, h, l) in (1..=2usize, 1..=3usize, 1..=200usize),
        (d, dv) in (1..=8usize, 1..=8usize),
        qk_scale in scale(-30, 0),
        v_scale in scale(-25, 30),
        causal in any::<bool>(),
        pick in any::<usize>(),
    ) {
        let (q, k, v) = (filled(&[b, h, l, d], qk_scale, 1), filled(&[b, h, l, d], qk_scale, 2), filled(&[b, h, l, dv], v_scale, 3));
        agrees(pick, &ExactAttention { causal }, &[&q, &k, &v], 1e-5)?;
    }

    #[test]
    fn cwy_matches_the_reference(
        (batch, n, l) in (1..=3usize, 1..=70usize, 1..=70usize),
        column_scales in proptest::collection::vec(scale(-30, 30), 70),
        stiefel in any::<bool>(),
        flat in any::<bool>(),
        pick in any::<usize>(),
    ) {
        let l = l.min(n);
        let mut u = if flat { filled(&[n, l], 1.0, 4) } else { filled(&[batch, n, l], 1.0, 4) };
        let columns = u.len() / n / l;
        for (i, x) in u.data_mut().iter_mut().enumerate() {
            *x *= column_scales[i % l] as f32;
        }
        prop_assume!(columns > 0);
        agrees(pick, &Cwy { stiefel }, &[&u], 1e-4)?;
        let x = if flat { filled(&[n, 5], 1.0, 5) } else { filled(&[batch, n, 5], 1.0, 5) };
        agrees(pick, &CwyApply { transpose: stiefel }, &[&u, &x], 1e-4)?;
    }

    #[test]
    fn matmul_matches_the_reference(
        (batch, m, k, n) in (1..=3usize, 1..=80usize, 1..=80usize, 1..=80usize),
        (a_scale, b_scale) in (scale(-15, 15), scale(-15, 15)),
        (transpose_a, transpose_b, shared_b, flat) in (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        pick in any::<usize>(),
    ) {
        let (ra, ca) = if transpose_a { (k, m) } else { (m, k) };
        let (rb, cb) = if transpose_b { (n, k) } else { (k, n) };
        let a = if flat { filled(&[ra, ca], a_scale, 6) } else { filled(&[batch, ra, ca], a_scale, 6) };
        let b = if flat || shared_b { filled(&[rb, cb], b_scale, 7) } else { filled(&[batch, rb, cb], b_scale, 7) };
        agrees(pick, &Matmul(MatmulOptions { transpose_a, transpose_b }), &[&a, &b], 1e-5)?;
    }

    #[test]
    fn group_maps_match_the_reference(
        // Sides the other tests use: each side is its own pipeline, compiled on first use (for some
        // sides, a minute on llvmpipe).
        (batch, n) in (1..=40usize, prop::sample::select(vec![1usize, 3, 4, 6, 8])),
        skew_scale in scale(-30, 1),
        cayley in any::<bool>(),
        pick in any::<usize>(),
    ) {
        // Skew-symmetric A: exp(A) and cay(A) are orthogonal at any scale, and I - A/2 is invertible.
        let g = filled(&[batch, n, n], skew_scale, 8);
        let a = Tensor::from_fn(&[batch, n, n], |e| {
            let (z, i, j) = (e / (n * n), e / n % n, e % n);
            g.data()[z * n * n + i * n + j] - g.data()[z * n * n + j * n + i]
        });
        let map = if cayley { GroupMap::Cayley } else { GroupMap::Exp };
        agrees(pick, &MatrixMap(map), &[&a], 1e-4)?;
    }

    #[test]
    fn flows_match_the_reference(
        (batch, n, steps) in (1..=6usize, prop::sample::select(vec![3usize, 4, 6, 8]), 1..=6usize),
        method in prop_oneof![Just(Method::LieEuler), Just(Method::CayleyEuler), Just(Method::Rkmk4)],
        dt in scale(-3, -1),
        nested in any::<bool>(),
        pick in any::<usize>(),
    ) {
        // Symmetric Qs, Ns of norm ~1, so that h |b| <= ~0.1: a flow whose f32 and f64 trajectories
        // stay close (with larger steps rounding is amplified like the flow's own sensitivity).
        let symmetric = |seed| {
            let g = filled(&[batch, n, n], 0.5 / n as f64, seed).to_f64();
            Tensor::from_fn(&[batch, n, n], |e| {
                let (z, i, j) = (e / (n * n), e / n % n, e % n);
                g.data()[z * n * n + i * n + j] + g.data()[z * n * n + j * n + i]
            })
        };
        // Random orthogonal starting points: rows of norm sqrt(n), scaled down.
        let w0: Vec<f32> = (0..batch)
            .flat_map(|z| ortho_ref::random::projection(n, n, ortho_ref::random::Scaling::SqrtD, z as u64).unwrap().into_data())
            .map(|x| (x / (n as f64).sqrt()) as f32)
            .collect();
        let w0 = Tensor::new(&[batch, n, n], w0).unwrap();
        let flow = Flow {
            method,
            dt,
            steps,
            newton_schulz_every: None,
            generator: Generator::Isospectral { qs: symmetric(11), ns: symmetric(12) },
            state: nested.then(|| (filled(&[batch, n], 1.0, 13).to_f64(), Activation::Tanh)),
        };
        agrees(pick, &flow, &[&w0], 1e-4)?;
    }
}

proptest! {
    // Bidirectional attention past 2^15 rows (one problem; a few cases, each some seconds). Trig
    // features are left to the short cases: their error bound needs an O(L^2) conditioning sum.
    #![proptest_config(config(3))]

    #[test]
    fn long_bidirectional_favor_matches_the_reference(
        l in 32_769..=40_000usize,
        kernel in prop_oneof![Just(Kernel::Softmax), Just(Kernel::Relu { eps: 1e-3 })],
        qk_scale in scale(-30, 0),
        pick in any::<usize>(),
    ) {
        let case = AttentionCase { shape: (1, 1, l, 2, 1, 4), flat: true, per_head: false, qk_scale, v_scale: 1.0, seed: 14 };
        let [q, k, mut v, w] = case.inputs();
        // Values of mean 1: the output is then not a cancellation of ~L terms of either sign. What
        // remains is f32's recursive summation of ~L positive terms, accurate to about L u / 4.
        v.data_mut().iter_mut().for_each(|x| *x += 1.0);
        let bound = (l as f64 * f32::EPSILON as f64 / 4.0).max(1e-5);
        agrees(pick, &Favor(FavorOptions::new(kernel)), &[&q, &k, &v, &w], bound)?;
    }
}
