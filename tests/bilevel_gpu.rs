//! Few-shot regression's bi-level gradients on the GPU (docs/math.md §8): the network's loss,
//! gradient and Hessian-vector products for many tasks at once against the CPU twin and against
//! finite differences, the outer gradients through the inner loop, UFOM's mean, and memory.

mod common;
use ortho::bilevel::{
    Estimator, InnerLoop, MetaGradient, Method, OuterGradient, RegressionDerivatives, SineTask, task_points,
};
use ortho::{Engine, Operation, Tensor};
use ortho_ref::random::Gaussian;
use ortho_ref::tensor::relative_frobenius;

fn tasks(count: usize, hidden: usize, shots: usize, seed: u64) -> Vec<SineTask> {
    let mut rng = Gaussian::new(seed);
    (0..count).map(|_| SineTask::random(hidden, shots, &mut rng)).collect()
}

/// Parameters for every task: the starting point, moved a little per task.
fn params(count: usize, hidden: usize, seed: u64) -> Tensor<f32> {
    let theta = SineTask::initial(hidden, seed);
    let mut rng = Gaussian::new(seed + 1);
    Tensor::from_fn(&[count, theta.len()], |i| (theta[i % theta.len()] + 0.3 * rng.sample()) as f32)
}

fn compare_derivatives(engine: &Engine, count: usize, hidden: usize, shots: usize, seed: u64) {
    let (points, _) = task_points(&tasks(count, hidden, shots, seed)).unwrap();
    let (phi, v) = (params(count, hidden, seed), params(count, hidden, seed + 7));
    let op = RegressionDerivatives { hidden };
    let got = engine.run(&op, &[&phi, &points, &v]).unwrap();
    let want = op.reference(&[phi.to_f64(), points.to_f64(), v.to_f64()]).unwrap();
    let case = format!("{} T = {count}, hidden = {hidden}, S = {shots}", engine.describe());
    for (k, name) in ["loss", "gradient", "hvp"].iter().enumerate() {
        let err = relative_frobenius(got[k].to_f64().data(), want[k].data());
        assert!(err < 2e-5, "{case}: {name} off by {err} (relative Frobenius)");
    }
}

#[test]
fn derivatives_match_the_twin_over_shapes() {
    for engine in common::gpu_engines() {
        for (case, &(count, hidden, shots)) in
            [(1, 1, 1), (3, 4, 10), (17, 40, 10), (64, 8, 33), (5, 70, 100), (200, 40, 5)].iter().enumerate()
        {
            compare_derivatives(&engine, count, hidden, shots, case as u64);
        }
    }
}

#[test]
fn meta_gradients_match_the_twin() {
    for engine in common::gpu_engines() {
        for (case, &(count, hidden, shots, steps)) in
            [(1, 3, 4, 1), (9, 8, 10, 5), (32, 40, 10, 20), (4, 2, 3, 0)].iter().enumerate()
        {
            let tasks = tasks(count, hidden, shots, 40 + case as u64);
            let (support, query) = task_points(&tasks).unwrap();
            let theta = SineTask::initial(hidden, case as u64);
            let theta32 = Tensor::new(&[theta.len()], theta.iter().map(|&x| x as f32).collect()).unwrap();
            for method in [OuterGradient::Exact, OuterGradient::ExactO1, OuterGradient::Fom] {
                let op = MetaGradient { hidden, inner: InnerLoop { steps, lr: 0.02 }, method };
                let got = engine.run(&op, &[&theta32, &support, &query]).unwrap();
                let want = op.reference(&[theta32.to_f64(), support.to_f64(), query.to_f64()]).unwrap();
                let case = format!("{} {method:?} T = {count}, hidden = {hidden}, r = {steps}", engine.describe());
                for (k, name) in ["gradient", "loss"].iter().enumerate() {
                    let err = relative_frobenius(got[k].to_f64().data(), want[k].data());
                    assert!(err < 1e-4, "{case}: {name} off by {err} (relative Frobenius)");
                }
            }
        }
    }
}

/// `H v` on the GPU against central differences of the GPU's own gradient (f32, step 1e-2: rounding
/// about 1e-5 relative, truncation about 1e-4) and of the twin's (f64, step 1e-5).
#[test]
fn hessian_vector_products_match_finite_differences() {
    let (count, hidden) = (24, 16);
    let (points, _) = task_points(&tasks(count, hidden, 10, 5)).unwrap();
    let (phi, v) = (params(count, hidden, 6), params(count, hidden, 7));
    let op = RegressionDerivatives { hidden };
    let shifted = |eps: f64| Tensor::from_fn(phi.shape(), |i| phi.data()[i] + eps as f32 * v.data()[i]);
    let twin_fd: Vec<f64> = {
        let eps = 1e-5;
        let grad = |e: f64| {
            let moved = Tensor::from_fn(phi.shape(), |i| f64::from(phi.data()[i]) + e * f64::from(v.data()[i]));
            op.reference(&[moved, points.to_f64(), v.to_f64()]).unwrap().remove(1)
        };
        let (plus, minus) = (grad(eps), grad(-eps));
        plus.data().iter().zip(minus.data()).map(|(a, b)| (a - b) / (2.0 * eps)).collect()
    };
    for engine in common::gpu_engines() {
        let hvp = engine.run(&op, &[&phi, &points, &v]).unwrap().remove(2).to_f64();
        let grad = |e: f64| engine.run(&op, &[&shifted(e), &points, &v]).unwrap().remove(1).to_f64();
        let eps = 1e-2;
        let (plus, minus) = (grad(eps), grad(-eps));
        let gpu_fd: Vec<f64> = plus.data().iter().zip(minus.data()).map(|(a, b)| (a - b) / (2.0 * eps)).collect();
        let err = relative_frobenius(hvp.data(), &gpu_fd);
        assert!(err < 2e-3, "{}: H v against the GPU's differences: {err}", engine.describe());
        let err = relative_frobenius(hvp.data(), &twin_fd);
        assert!(err < 2e-5, "{}: H v against the twin's differences: {err}", engine.describe());
    }
}

/// Exact in O(1) memory is the exact gradient recomputed: the same f32 operations in the same order.
/// The pool's peak grows with r for the stored iterates and stays flat without them.
#[test]
fn exact_o1_equals_exact_with_memory_flat_in_r() {
    let (count, hidden) = (64, 40);
    let tasks = tasks(count, hidden, 10, 9);
    let theta = SineTask::initial(hidden, 10);
    for engine in common::gpu_engines() {
        let mut peaks = Vec::new();
        for steps in [4, 16, 64] {
            let inner = InnerLoop { steps, lr: 0.02 };
            let run = |method| {
                engine.reset_peak();
                let out = engine.meta_gradient(&tasks, &theta, inner, method).unwrap();
                (out, engine.pool_stats().peak_bytes)
            };
            let ((exact, _), exact_peak) = run(OuterGradient::Exact);
            let ((o1, _), o1_peak) = run(OuterGradient::ExactO1);
            let err = relative_frobenius(exact.to_f64().data(), o1.to_f64().data());
            assert!(err < 1e-6, "{} r = {steps}: exact-o1 differs from exact by {err}", engine.describe());
            peaks.push((steps, exact_peak, o1_peak));
        }
        let stored = |steps: u64| steps * (count * (3 * hidden + 1) * 4) as u64;
        for &(steps, exact_peak, o1_peak) in &peaks {
            assert!(exact_peak >= o1_peak + stored(steps as u64) * 9 / 10, "{}: {peaks:?}", engine.describe());
            assert_eq!(o1_peak, peaks[0].2, "{}: exact-o1's peak moved with r: {peaks:?}", engine.describe());
        }
    }
}

/// Over many tasks, each UFOM estimate minus its task's exact gradient, `(xi / q - 1) (exact - FOM)`,
/// averages to zero within 5 standard errors in every coordinate; FOM's own difference does not.
#[test]
fn ufom_on_the_gpu_is_unbiased_and_fom_is_not() {
    let (count, hidden) = (2400, 6);
    let tasks = tasks(count, hidden, 10, 11);
    let theta = SineTask::initial(hidden, 12);
    let inner = InnerLoop { steps: 10, lr: 0.1 };
    for engine in common::gpu_engines() {
        let exact = Estimator::new(Method::Exact, 1).unwrap();
        let estimate = |mut estimator: Estimator| engine.meta_estimates(&mut estimator, &tasks, &theta, inner).unwrap();
        let exact = estimate(exact);
        let worst = |estimates: &[Vec<f64>]| {
            (0..theta.len())
                .map(|j| {
                    let d: Vec<f64> = estimates.iter().zip(&exact).map(|(u, e)| u[j] - e[j]).collect();
                    let mean = d.iter().sum::<f64>() / count as f64;
                    let var = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (count - 1) as f64;
                    mean.abs() / (var / count as f64).sqrt().max(1e-12)
                })
                .fold(0.0, f64::max)
        };
        let ufom = worst(&estimate(Estimator::new(Method::Ufom(0.3), 2).unwrap()));
        assert!(ufom < 5.0, "{}: UFOM's mean is {ufom} standard errors from exact", engine.describe());
        let fom = worst(&estimate(Estimator::new(Method::Fom, 3).unwrap()));
        assert!(fom > 10.0, "{}: FOM's mean is only {fom} standard errors from exact", engine.describe());
    }
}

/// Adaptive UFOM on batches drives meta-training: SGD over batches of tasks lowers the held-out query
/// loss, with q starting at 1 and staying in (0, 1].
#[test]
fn adaptive_ufom_trains_on_the_gpu() {
    let hidden = 10;
    let (train, test) = (tasks(400, hidden, 10, 13), tasks(64, hidden, 10, 14));
    let inner = InnerLoop { steps: 5, lr: 0.02 };
    for engine in common::gpu_engines() {
        let loss = |theta: &[f64]| {
            let (_, losses) = engine.meta_gradient(&test, theta, inner, OuterGradient::Fom).unwrap();
            losses.data().iter().map(|&l| f64::from(l)).sum::<f64>() / test.len() as f64
        };
        let mut theta = SineTask::initial(hidden, 15);
        let before = loss(&theta);
        let mut estimator = Estimator::new(Method::UfomAdaptive, 16).unwrap();
        let mut qs = Vec::new();
        for step in 0..100 {
            let batch = &train[(step * 10) % 400..(step * 10) % 400 + 10];
            qs.push(estimator.q());
            let estimates = engine.meta_estimates(&mut estimator, batch, &theta, inner).unwrap();
            for e in &estimates {
                theta.iter_mut().zip(e).for_each(|(t, g)| *t -= 0.05 * g / estimates.len() as f64);
            }
        }
        let after = loss(&theta);
        assert_eq!(qs[0], 1.0);
        assert!(qs.iter().all(|&q| q > 0.0 && q <= 1.0), "{}: q {qs:?}", engine.describe());
        assert!(after < 0.8 * before, "{}: meta-test loss {before} -> {after}", engine.describe());
    }
}

/// Several threads estimating on one engine get what one thread gets.
#[test]
fn threads_share_an_engine() {
    let hidden = 8;
    let inner = InnerLoop { steps: 4, lr: 0.05 };
    for engine in common::gpu_engines() {
        let sets: Vec<Vec<SineTask>> = (0..4).map(|i| tasks(16, hidden, 10, 20 + i)).collect();
        let theta = SineTask::initial(hidden, 30);
        let alone: Vec<Tensor<f32>> =
            sets.iter().map(|t| engine.meta_gradient(t, &theta, inner, OuterGradient::Exact).unwrap().0).collect();
        let together: Vec<Tensor<f32>> = std::thread::scope(|s| {
            let handles: Vec<_> = sets
                .iter()
                .map(|t| s.spawn(|| engine.meta_gradient(t, &theta, inner, OuterGradient::Exact).unwrap().0))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(alone, together, "{}", engine.describe());
    }
}

/// Bad shapes and task sets get errors naming what is wrong; an engine without a GPU answers with
/// the twin.
#[test]
fn bad_inputs_are_refused_and_the_cpu_answers() {
    let hidden = 3;
    let tasks = tasks(5, hidden, 4, 40);
    let theta = SineTask::initial(hidden, 41);
    let inner = InnerLoop { steps: 2, lr: 0.05 };
    let engine = Engine::cpu("the CPU path under test");
    let (got, losses) = engine.meta_gradient(&tasks, &theta, inner, OuterGradient::Exact).unwrap();
    let want: Vec<f64> = tasks.iter().flat_map(|t| ortho_ref::bilevel::exact(t, &theta, inner)).collect();
    assert!(relative_frobenius(got.to_f64().data(), &want) < 1e-6);
    assert_eq!(losses.shape(), &[5]);
    let mut uneven = tasks.clone();
    uneven[2].query.pop();
    let err = engine.meta_gradient(&uneven, &theta, inner, OuterGradient::Fom).unwrap_err().to_string();
    assert!(err.contains("task 2 has 3 query points"), "{err}");
    let err = engine.meta_gradient(&[], &theta, inner, OuterGradient::Fom).unwrap_err().to_string();
    assert!(err.contains("at least one task"), "{err}");
    let (support, query) = task_points(&tasks).unwrap();
    let op = MetaGradient { hidden, inner, method: OuterGradient::Fom };
    let short = Tensor::<f32>::zeros(&[9]);
    let err = engine.run(&op, &[&short, &support, &query]).unwrap_err().to_string();
    assert!(err.contains("theta") && err.contains("[10]"), "{err}");
    let err =
        engine.run(&op, &[&Tensor::zeros(&[10]), &support, &support.slice_axis(0, 0, 2)]).unwrap_err().to_string();
    assert!(err.contains("query") && err.contains("[5, points, 2]"), "{err}");
    let bad = MetaGradient { inner: InnerLoop { steps: 2, lr: f64::NAN }, ..op };
    let err = engine.run(&bad, &[&Tensor::zeros(&[10]), &support, &query]).unwrap_err().to_string();
    assert!(err.contains("inner lr"), "{err}");
    let err = engine.run(
        &RegressionDerivatives { hidden },
        &[&Tensor::zeros(&[5, 10]), &Tensor::zeros(&[5, 0, 2]), &Tensor::zeros(&[5, 10])],
    );
    assert!(err.unwrap_err().to_string().contains("at least one task and one point"));
}

/// Under a 64 KiB binding, one run cannot hold 64 tasks of 40 hidden units and 10 points (1.6 KB of
/// scratch per task and buffer); `meta_gradient` runs 40 and then 24 and gives what one run gives.
#[test]
fn many_tasks_split_into_runs_that_fit() {
    let (hidden, inner) = (40, InnerLoop { steps: 3, lr: 0.02 });
    let tasks = tasks(64, hidden, 10, 50);
    let theta = SineTask::initial(hidden, 51);
    let whole: Vec<_> = common::gpu_engines()
        .iter()
        .map(|e| e.meta_gradient(&tasks, &theta, inner, OuterGradient::Exact).unwrap())
        .collect();
    for (small, (grads, losses)) in
        common::engines_with_limits(|l| l.max_storage_buffer_binding_size = 64 << 10).iter().zip(&whole)
    {
        let err = small.run(
            &MetaGradient { hidden, inner, method: OuterGradient::Exact },
            &{
                let (support, query) = task_points(&tasks).unwrap();
                let theta = Tensor::new(&[theta.len()], theta.iter().map(|&x| x as f32).collect()).unwrap();
                [theta, support, query]
            }
            .iter()
            .collect::<Vec<_>>(),
        );
        assert!(err.unwrap_err().to_string().contains("max_storage_buffer_binding_size"));
        let (g, l) = small.meta_gradient(&tasks, &theta, inner, OuterGradient::Exact).unwrap();
        assert_eq!((&g, &l), (grads, losses), "{}", small.describe());
    }
}

/// Recorded into an application's encoder between its own copies (theta written just before, the
/// gradients read just after), the meta gradient equals what `run` returns.
#[test]
fn recorded_between_an_applications_own_work() {
    let (hidden, inner) = (6, InnerLoop { steps: 4, lr: 0.05 });
    let tasks = tasks(8, hidden, 5, 60);
    let (support, query) = task_points(&tasks).unwrap();
    let theta = SineTask::initial(hidden, 61);
    let theta = Tensor::new(&[theta.len()], theta.iter().map(|&x| x as f32).collect()).unwrap();
    let op = MetaGradient { hidden, inner, method: OuterGradient::ExactO1 };
    for engine in common::gpu_engines() {
        let want = engine.run(&op, &[&theta, &support, &query]).unwrap();
        let source = engine.upload("theta", &theta).unwrap();
        let inputs = [
            engine.empty(theta.shape()).unwrap(),
            engine.upload("s", &support).unwrap(),
            engine.upload("q", &query).unwrap(),
        ];
        let outputs = [engine.empty(want[0].shape()).unwrap(), engine.empty(want[1].shape()).unwrap()];
        let copy = engine.empty(want[0].shape()).unwrap();
        let mut encoder = engine.device().unwrap().create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(source.buffer(), 0, inputs[0].buffer(), 0, source.byte_len());
        let recorded = engine
            .record(&mut encoder, &op, &inputs.iter().collect::<Vec<_>>(), &outputs.iter().collect::<Vec<_>>())
            .unwrap();
        encoder.copy_buffer_to_buffer(outputs[0].buffer(), 0, copy.buffer(), 0, outputs[0].byte_len());
        engine.queue().unwrap().submit([encoder.finish()]);
        recorded.submitted();
        assert_eq!(engine.download(&copy).unwrap(), want[0], "{}", engine.describe());
        assert_eq!(engine.download(&outputs[1]).unwrap(), want[1], "{}", engine.describe());
    }
}
