//! Sparse patterns from a fixed attention module (docs/math.md §9): the GPU check and gradient against
//! the CPU twin over many shapes and in blocks of rows, both constructions end to end with an
//! independent f64 recomputation, and weights that never depend on the pattern.

mod common;
use ortho::express::{ExpressFit, Method, Options, Pattern, Tolerances};
use ortho::{Engine, Tensor};
use ortho_ref::express::{Achieved, check, paper, random_pattern, weights};
use ortho_ref::tensor::relative_frobenius;
use std::sync::Arc;

fn worst(stats: &Tensor<f64>) -> Achieved {
    Achieved::worst(stats.data().chunks(2).map(|r| [r[0], r[1]]))
}

/// The GPU's `[epsilon_i, delta_i]` and `dloss/dX` against the twin's on the paper's `X` (scaled
/// down, so that rows sit on both sides of the mass target); `plain`: the variant that loads in every
/// invocation, even where the adapter has subgroups.
fn compare_fit(engine: &Engine, (len, n, dim): (usize, usize, usize), seed: u64, plain: bool) {
    let pattern = Arc::new(Pattern::from_dense(&random_pattern(len, n, seed)).unwrap());
    let tol = Tolerances::new(0.5, 0.05).unwrap();
    let (wq, wk) = weights(dim, seed).unwrap();
    let x = paper::construct(&pattern, tol, &wq, &wk, seed + 1).map(|v| v * 0.4);
    let inputs = [x.to_f32(), wq.to_f32(), wk.to_f32()];
    let refs: Vec<&Tensor<f32>> = inputs.iter().collect();
    let exact = [x, wq, wk];
    let case = format!("{} L = {len}, N = {n}, d = {dim}, plain = {plain}", engine.describe());
    let variant = |op: ExpressFit| if plain { op.without_subgroups() } else { op };
    let op = variant(ExpressFit::check(pattern.clone()));
    let got = engine.run(&op, &refs).unwrap().remove(0).to_f64();
    let want = ortho::Operation::reference(&op, &exact).unwrap().remove(0);
    // Ratios of f32 logits of magnitude up to ~30: 1e-5 relative each, a few in the worst row.
    let err = got.data().iter().zip(want.data()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(err < 2e-4, "{case}: check off by {err}");
    let op = variant(ExpressFit::gradient(pattern, 0.05).unwrap());
    let got = engine.run(&op, &refs).unwrap();
    let want = ortho::Operation::reference(&op, &exact).unwrap();
    let err = relative_frobenius(got[0].data(), want[0].data());
    assert!(err < 1e-4, "{case}: gradient off by {err} (relative Frobenius)");
}

#[test]
fn check_and_gradient_match_the_twin_over_shapes() {
    // Past d = 128 the logits stream through the GEMM in blocks of rows instead.
    let shapes =
        [(7, 1, 1), (33, 2, 3), (64, 4, 8), (150, 3, 5), (257, 16, 16), (300, 1, 2), (90, 5, 36), (150, 2, 130)];
    for engine in common::gpu_engines() {
        for (case, &shape) in shapes.iter().enumerate() {
            for plain in [false, true] {
                compare_fit(&engine, shape, case as u64, plain);
            }
        }
    }
}

#[test]
fn blocks_of_rows_give_the_whole_answer() {
    // Past d = 16, under a 64 KiB binding: six blocks of 54 rows of the 300 x 300 logits.
    for engine in common::engines_with_limits(|l| l.max_storage_buffer_binding_size = 64 << 10) {
        engine.reset_peak();
        compare_fit(&engine, (300, 3, 17), 11, false);
        // Everything the check and the gradient held at once, inputs included, stays under the
        // 352 KiB that the 300 x 300 logits alone would take.
        let peak = engine.pool_stats().peak_bytes;
        assert!(peak < 300 * 300 * 4, "{}: peak {peak} bytes", engine.describe());
    }
}

#[test]
fn the_streamed_fit_holds_no_logits() {
    // Everything the gradient holds at once, inputs included, grows like L d, not like the L^2
    // logits (16 and 64 MiB at L = 2048 and 4096).
    let tol = Tolerances::new(0.5, 0.05).unwrap();
    for engine in common::gpu_engines() {
        let peaks: Vec<u64> = [2048, 4096]
            .iter()
            .map(|&len| {
                let pattern = Arc::new(Pattern::from_dense(&random_pattern(len, 2, 5)).unwrap());
                let (wq, wk) = weights(8, 5).unwrap();
                let x = paper::construct(&pattern, tol, &wq, &wk, 6).to_f32();
                let (x, wq, wk) = (
                    engine.upload("x", &x).unwrap(),
                    engine.upload("wq", &wq.to_f32()).unwrap(),
                    engine.upload("wk", &wk.to_f32()).unwrap(),
                );
                engine.reset_peak();
                let op = ExpressFit::gradient(pattern, 0.05).unwrap();
                let out = engine.run_gpu(&op, &[&x, &wq, &wk]).unwrap();
                assert!(engine.download(&out[0]).unwrap().data().iter().all(|v| v.is_finite()));
                engine.pool_stats().peak_bytes
            })
            .collect();
        assert!(peaks[0] < 1 << 20, "{}: peak {} bytes at L = 2048", engine.describe(), peaks[0]);
        assert!(peaks[1] < 3 * peaks[0], "{}: peaks {peaks:?} at L = 2048, 4096", engine.describe());
        // Twenty steps of a draw at L = 2048 (submitted ten at a time) hold X's moments besides one
        // step's scratch, not ten steps' scratch.
        let pattern = Arc::new(Pattern::from_dense(&random_pattern(2048, 2, 5)).unwrap());
        let (wq, wk) = weights(8, 5).unwrap();
        let options =
            Options { max_iterations: 20, patience: 20, ..Options::new(Tolerances::new(1e-6, 1e-6).unwrap()) };
        engine.reset_peak();
        assert_eq!(engine.express_draw(&pattern, &options, &wq, &wk, 6).unwrap().iterations, 20);
        let draw = engine.pool_stats().peak_bytes;
        assert!(draw < 2 * peaks[0], "{}: a draw's peak {draw} bytes, one gradient's {}", engine.describe(), peaks[0]);
    }
}

#[test]
fn adam_steps_on_the_gpu_follow_the_twin() {
    // Twenty steps that cannot meet their tolerances, from the same draw: the GPU's f32 X against the
    // twin's f64 one (Adam divides by the gradient's running scale, so rounding moves a step by a
    // small fraction of the learning rate at most).
    let pattern = Pattern::from_dense(&random_pattern(60, 3, 4)).unwrap();
    let options = Options { max_iterations: 20, patience: 1000, ..Options::new(Tolerances::new(1e-6, 1e-6).unwrap()) };
    let (wq, wk) = weights(4, 8).unwrap();
    let want = ortho_ref::express::search::attempt(&pattern, &options, &wq, &wk, 9).unwrap();
    for engine in common::gpu_engines() {
        let got = engine.express_draw(&Arc::new(pattern.clone()), &options, &wq, &wk, 9).unwrap();
        assert_eq!((got.iterations, want.iterations), (20, 20));
        let err = relative_frobenius(got.x.data(), want.x.data());
        assert!(err < 1e-5, "{}: X after 20 steps off by {err}", engine.describe());
    }
}

/// Runs `method` at `dim` and rechecks the answer in f64 from scratch.
fn express_and_recheck(engine: &Engine, len: usize, n: usize, dim: usize, method: Method) -> ortho::express::Search {
    let a = random_pattern(len, n, len as u64 + n as u64);
    let pattern = Pattern::from_dense(&a).unwrap();
    let tol = Tolerances::new(0.5, 0.05).unwrap();
    let options = Options { dim: Some(dim), method, seed: 3, ..Options::new(tol) };
    let found = engine.express(&pattern, &options, |_| {}).unwrap();
    let e = &found.expressed;
    let recheck = worst(&check(&pattern, &e.x, &e.wq, &e.wk).unwrap());
    assert!(recheck.meets(tol), "{} L = {len}: {recheck:?} after {e:?}", engine.describe());
    found
}

#[test]
fn the_optimized_method_meets_the_tolerances_at_small_d() {
    for engine in common::gpu_engines() {
        let found = express_and_recheck(&engine, 512, 2, 8, Method::Optimized);
        eprintln!("{}: {} tries, {} iterations", engine.describe(), found.expressed.tries, found.expressed.iterations);
    }
}

#[test]
fn both_methods_reach_l_4096() {
    // One nonzero per row: the paper's construction needs a few hundred dimensions there (§9.2).
    for engine in common::gpu_engines() {
        express_and_recheck(&engine, 4096, 1, 256, Method::Paper);
        express_and_recheck(&engine, 4096, 1, 16, Method::Optimized);
    }
}

#[test]
fn the_search_returns_the_smallest_dimension_it_saw_succeed() {
    for engine in common::gpu_engines() {
        let pattern = Pattern::from_dense(&random_pattern(96, 3, 21)).unwrap();
        let tol = Tolerances::new(0.5, 0.05).unwrap();
        let found = engine.express(&pattern, &Options { seed: 5, ..Options::new(tol) }, |_| {}).unwrap();
        let e = &found.expressed;
        assert!(worst(&check(&pattern, &e.x, &e.wq, &e.wk).unwrap()).meets(tol));
        assert!(found.trials.iter().all(|t| t.succeeded == (t.dim >= e.dim)), "{:?}", found.trials);
        assert!(found.trials.iter().any(|t| t.dim == e.dim - 1 && !t.succeeded), "{:?}", found.trials);
        assert!(e.dim < 96 / 4, "d = {}", e.dim);
        eprintln!("{}: {:?}", engine.describe(), found.trials);
    }
}

#[test]
fn threads_share_one_engine() {
    // Four searches at once on one engine, each its own pattern: the same answers as one at a time.
    for engine in common::gpu_engines() {
        let tol = Tolerances::new(0.5, 0.05).unwrap();
        let options = Options { dim: Some(6), seed: 2, ..Options::new(tol) };
        let patterns: Vec<Pattern> =
            (0..4).map(|s| Pattern::from_dense(&random_pattern(80, 2, 40 + s)).unwrap()).collect();
        let alone: Vec<_> = patterns.iter().map(|p| engine.express(p, &options, |_| {}).unwrap().expressed).collect();
        let together: Vec<_> = std::thread::scope(|s| {
            let runs: Vec<_> =
                patterns.iter().map(|p| s.spawn(|| engine.express(p, &options, |_| {}).unwrap().expressed)).collect();
            runs.into_iter().map(|r| r.join().unwrap()).collect()
        });
        for ((p, a), t) in patterns.iter().zip(&alone).zip(&together) {
            assert_eq!((a.tries, a.iterations), (t.tries, t.iterations), "{}", engine.describe());
            assert!(relative_frobenius(a.x.data(), t.x.data()) < 1e-6, "{}", engine.describe());
            assert!(worst(&check(p, &t.x, &t.wq, &t.wk).unwrap()).meets(tol));
        }
    }
}

#[test]
fn weights_never_depend_on_the_pattern() {
    let tol = Tolerances::new(0.5, 0.05).unwrap();
    let options = Options { dim: Some(6), seed: 17, ..Options::new(tol) };
    let mut engines = common::gpu_engines();
    engines.push(Engine::reference());
    for engine in &engines {
        let one = engine.express(&Pattern::from_dense(&random_pattern(96, 2, 1)).unwrap(), &options, |_| {});
        let two = engine.express(&Pattern::from_dense(&random_pattern(96, 3, 2)).unwrap(), &options, |_| {});
        let (one, two) = (one.unwrap().expressed, two.unwrap().expressed);
        let bits = |t: &Tensor<f64>| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&one.wq), bits(&two.wq));
        assert_eq!(bits(&one.wk), bits(&two.wk));
        assert_ne!(bits(&one.x), bits(&two.x));
    }
}

#[test]
fn bad_patterns_are_named() {
    let fails = |a: Tensor<f64>, needle: &str| {
        let e = Pattern::from_dense(&a).unwrap_err().to_string();
        assert!(e.contains(needle), "{needle}: {e}");
    };
    fails(Tensor::from_fn(&[3, 4], |_| 1.0), "square");
    fails(Tensor::from_fn(&[3, 3], |e| if e == 4 { -0.5 } else { 1.0 }), "entry (1, 1) is -0.5");
    fails(Tensor::from_fn(&[3, 3], |e| if e / 3 == 2 { 0.0 } else { 1.0 }), "row 2 has no nonzero");
    fails(Tensor::from_fn(&[2, 2], |e| if e == 1 { f64::NAN } else { 1.0 }), "non-finite");
    let tol = Tolerances::new(0.5, 0.05).unwrap();
    let pattern = Pattern::from_dense(&random_pattern(16, 1, 0)).unwrap();
    let never = Options {
        dim: Some(1),
        max_tries: 2,
        max_iterations: 20,
        ..Options::new(Tolerances::new(1e-9, 1e-9).unwrap())
    };
    let e = Engine::reference().express(&pattern, &never, |_| {}).unwrap_err().to_string();
    assert!(e.contains("no draw of 2 at d = 1") && e.contains("closest"), "{e}");
    assert!(Tolerances::new(0.5, 1.0).is_err() && Tolerances::new(-1.0, 0.5).is_err());
    let unchecked = Options { tol: Tolerances { epsilon: 0.5, delta: 2.0 }, ..Options::new(tol) };
    assert!(Engine::reference().express(&pattern, &unchecked, |_| {}).unwrap_err().to_string().contains("(0, 1)"));
    let zero = Options { dim: Some(0), ..Options::new(tol) };
    assert!(Engine::reference().express(&pattern, &zero, |_| {}).unwrap_err().to_string().contains("at least 1"));
}
