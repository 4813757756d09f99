//! `ortho validate`: every implemented kernel on every adapter and on the CPU fallback, against the
//! f64 reference, over a set of shapes; a table, and failure if any case misses its bound.

use ortho::random::{Scaling, projection, projection_per_head};
use ortho::{
    BackendChoice, Checkpoints, DType, Engine, EngineOptions, FavorOptions, GemmVariant, Kernel, MatmulOptions,
    Schedule, Tensor,
};
use ortho_bench::inputs::{
    FORWARD_BOUND, GEMM_BOUND, GRADIENT_BOUND, expm_bound, gaussian, identities, skew, symmetric,
};
use ortho_bench::storage::storage_cases;
use ortho_ref::cwy;
use ortho_ref::favor as reference;
use ortho_ref::flow::{Flow, Generator, Method};
use ortho_ref::tensor::relative_frobenius;

/// Runs a case on an engine: its output and the f64 reference.
type Run = Box<dyn Fn(&Engine) -> ortho::Result<(Tensor<f32>, Tensor<f64>)>>;

struct Case {
    kernel: String,
    shape: String,
    /// Relative Frobenius error allowed against the f64 reference.
    bound: f64,
    /// The engine's output and the f64 reference.
    run: Run,
    /// The GEMM variant the case forces (run on the engines whose device has it).
    variant: Option<GemmVariant>,
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let variants = std::iter::once(None).chain(GemmVariant::ALL.map(Some));
    for variant in variants {
        for (i, (z, m, k, n)) in [(1, 1, 1, 1), (2, 65, 17, 63), (1, 130, 129, 70)].into_iter().enumerate() {
            let a = gaussian(&[z, m, k], 1.0, i as u64);
            let b = gaussian(&[z, k, n], 1.0, 10 + i as u64);
            cases.push(Case {
                kernel: variant.map_or("gemm".into(), |v| format!("gemm {}", v.name())),
                shape: format!("[{z}, {m}, {k}] x [{z}, {k}, {n}]"),
                bound: GEMM_BOUND,
                run: Box::new(move |e| {
                    let want = Engine::reference().matmul(&a, &b, MatmulOptions::default())?.to_f64();
                    Ok((e.matmul(&a, &b, MatmulOptions::default())?, want))
                }),
                variant,
            });
        }
    }
    let favor_shapes = [(1, 1, 1, 1, 1, 1), (2, 3, 65, 16, 9, 64), (1, 2, 130, 64, 64, 256)];
    for kernel in [Kernel::Softmax, Kernel::Trig, Kernel::Relu { eps: Kernel::DEFAULT_RELU_EPS }] {
        for (i, (b, h, l, d, dv, m)) in favor_shapes.into_iter().enumerate() {
            let q = gaussian(&[b, h, l, d], 0.5, 100 + i as u64);
            let k = gaussian(&[b, h, l, d], 0.5, 200 + i as u64);
            let v = gaussian(&[b, h, l, dv], 1.0, 300 + i as u64);
            let per_head = i % 2 == 1;
            let w = if per_head {
                projection_per_head(h, m, d, Scaling::Chi, i as u64)
            } else {
                projection(m, d, Scaling::Chi, i as u64)
            };
            let w = w.expect("valid projection sizes").to_f32();
            cases.push(Case {
                kernel: format!("favor {}", kernel.name()),
                shape: format!("B{b} H{h} L{l} d{d} dv{dv} m{m}{}", if per_head { " per-head W" } else { "" }),
                bound: FORWARD_BOUND,
                run: Box::new(move |e| {
                    let want = reference::favor(&q.to_f64(), &k.to_f64(), &v.to_f64(), &w.to_f64(), kernel)?;
                    Ok((e.favor(&q, &k, &v, &w, &FavorOptions::new(kernel))?, want))
                }),
                variant: None,
            });
        }
    }
    let causal_shapes = [(1, 1, 1, 1, 1, 1, 4), (1, 2, 65, 16, 9, 32, 16), (2, 1, 130, 64, 64, 256, 64)];
    for kernel in [Kernel::Softmax, Kernel::Trig, Kernel::Relu { eps: Kernel::DEFAULT_RELU_EPS }] {
        for (i, (b, h, l, d, dv, m, chunk)) in causal_shapes.into_iter().enumerate() {
            for schedule in [Schedule::Parallel, Schedule::Sequential] {
                let q = gaussian(&[b, h, l, d], 0.5, 700 + i as u64);
                let k = gaussian(&[b, h, l, d], 0.5, 800 + i as u64);
                let v = gaussian(&[b, h, l, dv], 1.0, 900 + i as u64);
                let w = projection(m, d, Scaling::Chi, i as u64).expect("valid projection sizes").to_f32();
                let options = FavorOptions { chunk: Some(chunk), schedule, ..FavorOptions::causal(kernel) };
                cases.push(Case {
                    kernel: format!("favor {} causal", kernel.name()),
                    shape: format!("B{b} H{h} L{l} d{d} dv{dv} m{m} C{chunk} {schedule:?}").to_lowercase(),
                    bound: FORWARD_BOUND,
                    run: Box::new(move |e| {
                        let want = reference::favor_quadratic(
                            &q.to_f64(),
                            &k.to_f64(),
                            &v.to_f64(),
                            &w.to_f64(),
                            kernel,
                            true,
                        )?;
                        Ok((e.favor(&q, &k, &v, &w, &options)?, want))
                    }),
                    variant: None,
                });
            }
        }
    }
    let gradients = [
        ("", FavorOptions::new(Kernel::Softmax)),
        (" causal C16 no checkpoints", FavorOptions { chunk: Some(16), ..FavorOptions::causal(Kernel::Softmax) }),
        (
            " causal C16 checkpoints every 2",
            FavorOptions {
                chunk: Some(16),
                checkpoints: Checkpoints::Every(2),
                ..FavorOptions::causal(Kernel::Softmax)
            },
        ),
    ];
    for kernel in [Kernel::Softmax, Kernel::Trig, Kernel::Relu { eps: Kernel::DEFAULT_RELU_EPS }] {
        let (b, h, l, d, dv, m) = (1, 2, 70, 16, 9, 32);
        let q = gaussian(&[b, h, l, d], 0.5, 1600);
        let k = gaussian(&[b, h, l, d], 0.5, 1601);
        let v = gaussian(&[b, h, l, dv], 1.0, 1602);
        let g = gaussian(&[b, h, l, dv], 1.0, 1603);
        let w = projection(m, d, Scaling::Chi, 1604).expect("valid projection sizes").to_f32();
        for (setting, options) in gradients {
            let options = FavorOptions { kernel, ..options };
            for (which, name) in ["dq", "dk", "dv", "dw"].into_iter().enumerate() {
                let (q, k, v, g, w) = (q.clone(), k.clone(), v.clone(), g.clone(), w.clone());
                cases.push(Case {
                    kernel: format!("favor {} grad {name}", kernel.name()),
                    shape: format!("B{b} H{h} L{l} d{d} dv{dv} m{m}{setting}"),
                    bound: GRADIENT_BOUND,
                    run: Box::new(move |e| {
                        let got = e.favor_backward(&q, &k, &v, &w, &options, &g)?;
                        let want = reference::favor_backward(
                            &q.to_f64(),
                            &k.to_f64(),
                            &v.to_f64(),
                            &w.to_f64(),
                            kernel,
                            options.causal,
                            &g.to_f64(),
                        )?;
                        Ok((got[which].clone(), want[which].clone()))
                    }),
                    variant: None,
                });
            }
        }
    }
    for causal in [false, true] {
        for (i, (b, h, l, d, dv)) in [(1, 1, 1, 1, 1), (2, 2, 65, 64, 64), (1, 1, 200, 128, 32)].into_iter().enumerate()
        {
            let q = gaussian(&[b, h, l, d], 1.0, 400 + i as u64);
            let k = gaussian(&[b, h, l, d], 1.0, 500 + i as u64);
            let v = gaussian(&[b, h, l, dv], 1.0, 600 + i as u64);
            cases.push(Case {
                kernel: format!("exact {}", if causal { "causal" } else { "bidirectional" }),
                shape: format!("B{b} H{h} L{l} d{d} dv{dv}"),
                bound: FORWARD_BOUND,
                run: Box::new(move |e| {
                    let want = reference::exact(&q.to_f64(), &k.to_f64(), &v.to_f64(), causal)?;
                    Ok((e.exact_attention(&q, &k, &v, causal)?, want))
                }),
                variant: None,
            });
        }
    }
    for (i, (b, n, l)) in [(1, 1, 1), (2, 33, 20), (1, 130, 100), (1, 64, 64)].into_iter().enumerate() {
        let u = gaussian(&[b, n, l], 1.0, 1000 + i as u64);
        let x = gaussian(&[b, n, 5], 1.0, 1100 + i as u64);
        let g = gaussian(&[b, n, n], 1.0, 1200 + i as u64);
        let shape = format!("batch{b} N{n} L{l}");
        let cwy_case = |kernel: &str, bound: f64, run: Run| Case {
            kernel: kernel.to_string(),
            shape: shape.clone(),
            bound,
            run,
            variant: None,
        };
        let u1 = u.clone();
        cases.push(cwy_case(
            "cwy",
            FORWARD_BOUND,
            Box::new(move |e| Ok((e.cwy(&u1)?, cwy::householder_product(&u1.to_f64())?))),
        ));
        let u1 = u.clone();
        cases.push(cwy_case(
            "cwy stiefel",
            FORWARD_BOUND,
            Box::new(move |e| Ok((e.tcwy(&u1)?, cwy::tcwy(&u1.to_f64())?))),
        ));
        let u1 = u.clone();
        cases.push(cwy_case(
            "householder sequential",
            FORWARD_BOUND,
            Box::new(move |e| Ok((e.householder_product(&u1)?, cwy::householder_product(&u1.to_f64())?))),
        ));
        for transpose in [false, true] {
            let (u1, x1) = (u.clone(), x.clone());
            let name = if transpose { "cwy apply Q^T" } else { "cwy apply Q" };
            cases.push(cwy_case(
                name,
                FORWARD_BOUND,
                Box::new(move |e| {
                    Ok((e.cwy_apply(&u1, &x1, transpose)?, cwy::apply(&u1.to_f64(), &x1.to_f64(), transpose)?))
                }),
            ));
        }
        if n > 1 {
            let (u1, g1) = (u.clone(), g.clone());
            cases.push(cwy_case(
                "cwy gradient",
                GRADIENT_BOUND,
                Box::new(move |e| Ok((e.cwy_backward(&u1, &g1)?, cwy::cwy_backward(&u1.to_f64(), &g1.to_f64())?))),
            ));
        }
    }
    for (i, (b, n, scale)) in
        [(1, 1, 0.5), (4, 3, 1e-3), (2, 8, 0.5), (3, 33, 2.0), (1, 64, 20.0)].into_iter().enumerate()
    {
        let skew = skew(b, n, scale / (n as f64).sqrt(), 1300 + i as u64);
        let norm = skew.to_f64().data().chunks(n * n).map(|m| ortho_ref::expm::one_norm(m, n)).fold(0.0, f64::max);
        let shape = format!("batch{b} n{n} skew |A|_1 {norm:.2}");
        let a = skew.clone();
        cases.push(Case {
            kernel: "expm".into(),
            shape: shape.clone(),
            bound: expm_bound(norm),
            run: Box::new(move |e| Ok((e.expm(&a)?, ortho_ref::expm::expm_pade13(&a.to_f64())?))),
            variant: None,
        });
        let a = skew;
        cases.push(Case {
            kernel: "cayley".into(),
            shape,
            bound: FORWARD_BOUND,
            run: Box::new(move |e| Ok((e.cayley(&a)?, ortho_ref::expm::cayley(&a.to_f64())?))),
            variant: None,
        });
    }
    for method in Method::ALL {
        for (i, n) in [1usize, 4, 16].into_iter().enumerate() {
            let flow = Flow {
                method,
                dt: 0.2 / n as f64,
                steps: 25,
                newton_schulz_every: Some(10),
                generator: Generator::Isospectral {
                    qs: symmetric(n, 1400 + i as u64),
                    ns: symmetric(n, 1500 + i as u64),
                },
                state: None,
            };
            let w0 = identities(2, n);
            cases.push(Case {
                kernel: format!("flow {}", method.name()),
                shape: format!("batch2 n{n} isospectral 25 steps"),
                bound: FORWARD_BOUND,
                run: Box::new(move |e| Ok((e.flow(&flow, &w0)?.0, flow.run(&w0.to_f64())?.0))),
                variant: None,
            });
        }
    }
    cases.extend(ising_cases());
    cases.extend(express_cases());
    cases.extend(bilevel_cases());
    cases
}

/// The few-shot regression network's gradient and Hessian-vector product, and the outer gradients
/// through its inner loop, for a batch of tasks against the f64 twin.
fn bilevel_cases() -> Vec<Case> {
    use ortho::Operation;
    use ortho::bilevel::{InnerLoop, MetaGradient, OuterGradient, RegressionDerivatives, SineTask, task_points};
    let (count, hidden, shots, steps) = (32, 40, 10, 5);
    let mut rng = ortho_ref::random::Gaussian::new(1700);
    let tasks: Vec<SineTask> = (0..count).map(|_| SineTask::random(hidden, shots, &mut rng)).collect();
    let (support, query) = task_points(&tasks).expect("tasks of one shape");
    let theta = Tensor::new(&[3 * hidden + 1], SineTask::initial(hidden, 1701).iter().map(|&x| x as f32).collect())
        .expect("a vector");
    let shape = format!("T{count} hidden{hidden} S{shots}");
    let mut cases = Vec::new();
    for (output, name) in [(1, "gradient"), (2, "hvp")] {
        let phi = gaussian(&[count, 3 * hidden + 1], 0.5, 1702);
        let v = gaussian(&[count, 3 * hidden + 1], 0.5, 1703);
        let support = support.clone();
        cases.push(Case {
            kernel: format!("regression {name}"),
            shape: shape.clone(),
            bound: 1e-5,
            run: Box::new(move |e| {
                let op = RegressionDerivatives { hidden };
                let got = e.run(&op, &[&phi, &support, &v])?.remove(output);
                Ok((got, op.reference(&[phi.to_f64(), support.to_f64(), v.to_f64()])?.remove(output)))
            }),
            variant: None,
        });
    }
    for (method, name) in
        [(OuterGradient::Exact, "exact"), (OuterGradient::ExactO1, "exact-o1"), (OuterGradient::Fom, "fom")]
    {
        let (theta, support, query) = (theta.clone(), support.clone(), query.clone());
        cases.push(Case {
            kernel: format!("meta gradient {name}"),
            shape: format!("{shape} r{steps}"),
            bound: 1e-4,
            run: Box::new(move |e| {
                let op = MetaGradient { hidden, inner: InnerLoop { steps, lr: 0.02 }, method };
                let got = e.run(&op, &[&theta, &support, &query])?.remove(0);
                Ok((got, op.reference(&[theta.to_f64(), support.to_f64(), query.to_f64()])?.remove(0)))
            }),
            variant: None,
        });
    }
    cases
}

/// The expressivity check (per-row epsilon and delta) and the refinement's gradient of the paper's
/// `X` (scaled down so that rows fall on both sides of the mass target) against the f64 twin: made
/// logit by logit (d <= 16; with subgroups where the adapter has them, and `plain`, without) and in
/// blocks of rows (d > 16).
fn express_cases() -> Vec<Case> {
    use ortho::express::{ExpressFit, Pattern, Tolerances, paper, weights};
    let mut cases = Vec::new();
    let shapes = [(33, 3, false), (200, 8, false), (200, 8, true), (120, 20, false)];
    for (i, (len, dim, plain)) in shapes.into_iter().enumerate() {
        let a = Tensor::from_fn(&[len, len], |e| {
            let (r, c) = (e / len, e % len);
            if c == (r * 5 + 2) % len || c == (r + 1) % len { 0.2 + 0.1 * (r % 7) as f64 } else { 0.0 }
        });
        let pattern = std::sync::Arc::new(Pattern::from_dense(&a).expect("a valid pattern"));
        let tol = Tolerances { epsilon: 0.5, delta: 0.05 };
        for gradient in [false, true] {
            let pattern = pattern.clone();
            let kernel = if gradient { "express gradient" } else { "express check" };
            cases.push(Case {
                kernel: if plain { format!("{kernel} plain") } else { kernel.into() },
                shape: format!("L{len} N2 d{dim}"),
                bound: 1e-4,
                run: Box::new(move |e| {
                    let (wq, wk) = weights(dim, i as u64)?;
                    let x = paper::construct(&pattern, tol, &wq, &wk, 7).map(|v| 0.4 * v);
                    let op = if gradient {
                        ExpressFit::gradient(pattern.clone(), tol.delta)?
                    } else {
                        ExpressFit::check(pattern.clone())
                    };
                    let op = if plain { op.without_subgroups() } else { op };
                    let inputs = [x.to_f32(), wq.to_f32(), wk.to_f32()];
                    let got = e.run(&op, &inputs.iter().collect::<Vec<_>>())?.remove(0);
                    let want = ortho::Operation::reference(&op, &[x, wq, wk])?.remove(0);
                    Ok((got, want))
                }),
                variant: None,
            });
        }
    }
    cases
}

/// Zero-field Ising `log Z` and marginals of a batch of coupling sets (the GPU's dense and frontal f32
/// paths, on planar graphs and on the planar pieces of a glued graph; the CPU's sparse solver) against
/// the f64 solver.
fn ising_cases() -> Vec<Case> {
    use ortho::ops::{Factorisation, IsingBatch};
    use ortho_ref::ising::{Glued, Graph, generate};
    // A glued graph: K5s and Wagner graphs on planar parts (enumerated and planar pieces).
    let part = |p: usize| match p % 3 {
        0 => (5, generate::complete(5)),
        1 => (8, generate::wagner()),
        _ => (10, generate::random_planar(10, 1.0, p as u64)),
    };
    let (glued_n, glued_edges) = generate::glued(9, 3, 17, part);
    let mut cases = Vec::new();
    let graphs = [
        ("grid 6x8", 48, generate::grid(6, 8)),
        ("random planar", 40, generate::random_planar(40, 0.8, 7)),
        ("glued K5 + Wagner + planar", glued_n, glued_edges),
    ];
    for (i, (name, n, edges)) in graphs.into_iter().enumerate() {
        let ids: Vec<(i64, i64)> = edges.iter().map(|&(u, v)| (u as i64, v as i64)).collect();
        let graph = Graph::new(Some(n), &ids).expect("a valid graph");
        let batch = 8;
        let j = ortho_ref::ising::generate::couplings(batch * graph.edges.len(), 1e-3, 2.0, 1600 + i as u64);
        let couplings = Tensor::new(&[batch, graph.edges.len()], j.iter().map(|&x| x as f32).collect())
            .expect("couplings of the graph's edges");
        for (path, factorisation) in [("dense", Factorisation::Dense), ("frontal", Factorisation::Frontal)] {
            for marginals in [false, true] {
                let (graph, couplings) = (graph.clone(), couplings.clone());
                cases.push(Case {
                    kernel: format!("ising {path} {}", if marginals { "marginals" } else { "log Z" }),
                    shape: format!("{name} N{n} E{} batch{batch}", graph.edges.len()),
                    bound: 1e-5,
                    run: Box::new(move |e| {
                        let op = IsingBatch::with_factorisation(&graph, marginals, factorisation)?;
                        let (log_z, m) = e.ising(&op, &couplings)?;
                        // The glued solver is the planar one on a planar graph (one piece).
                        let oracle = Glued::new(&graph)?;
                        let (mut want_z, mut want_m) = (Vec::new(), Vec::new());
                        for row in couplings.to_f64().data().chunks(graph.edges.len()) {
                            let result = oracle.infer(row)?;
                            want_z.push(result.log_z);
                            want_m.extend(result.marginals);
                        }
                        Ok(if marginals {
                            (m.expect("asked for"), ortho_ref::Tensor::new(couplings.shape(), want_m)?)
                        } else {
                            (log_z, ortho_ref::Tensor::new(&[batch], want_z)?)
                        })
                    }),
                    variant: None,
                });
            }
        }
    }
    cases
}

/// The engines to validate: the one backend asked for, or every GPU backend present and the CPU.
/// The engines a backend choice names: `auto` opens every GPU backend that has an adapter, then the
/// CPU fallback.
pub fn engines(backend: Option<BackendChoice>) -> Result<Vec<Engine>, String> {
    let env = EngineOptions::from_env().map_err(|e| e.to_string())?;
    let backend = backend.unwrap_or(env.backend);
    let open = |backend| {
        Engine::with_options(&EngineOptions {
            backend,
            adapter_name: env.adapter_name.clone(),
            require_gpu: backend != BackendChoice::Cpu,
            tune: env.tune.clone(),
        })
    };
    if backend != BackendChoice::Auto {
        return open(backend).map(|e| vec![e]).map_err(|e| e.to_string());
    }
    let mut engines: Vec<Engine> =
        [BackendChoice::Vulkan, BackendChoice::Metal, BackendChoice::Dx12, BackendChoice::Gl]
            .into_iter()
            .filter_map(|b| open(b).ok())
            .collect();
    if engines.is_empty() {
        if env.require_gpu {
            return Err("ORTHO_REQUIRE_GPU=1 but no GPU adapter could be opened".into());
        }
        eprintln!("ortho: no GPU adapter; validating the CPU fallback only");
    }
    engines.push(Engine::cpu("validation of the CPU fallback"));
    Ok(engines)
}

pub fn run(backend: Option<BackendChoice>, dtype: DType) -> Result<(), String> {
    let engines = engines(backend)?;
    if dtype == DType::F16 {
        return run_f16(&engines);
    }
    let cases = cases();
    let width = cases.iter().map(|c| c.shape.len()).max().unwrap_or(5).max(5);
    println!("{:<22} {:<40} {:<w$} {:>10} {:>8} result", "kernel", "backend", "shape", "rel error", "bound", w = width);
    let (mut failures, mut total) = (0, 0);
    for engine in &engines {
        let name = engine.describe();
        for case in &cases {
            if let Some(v) = case.variant {
                if !engine.gemm_variants().contains(&v) {
                    continue;
                }
                engine.force_gemm_variant(Some(v)).map_err(|e| e.to_string())?;
            }
            let result = (case.run)(engine);
            if case.variant.is_some() {
                engine.force_gemm_variant(None).map_err(|e| e.to_string())?;
            }
            total += 1;
            let (error, verdict) = match result {
                Ok((got, want)) if got.shape() != want.shape() => {
                    ("-".to_string(), format!("FAIL: shape {:?}, expected {:?}", got.shape(), want.shape()))
                }
                Ok((got, want)) => {
                    let err = relative_frobenius(got.data(), want.data());
                    let ok = err <= case.bound;
                    (format!("{err:10.2e}"), if ok { "pass".to_string() } else { "FAIL".to_string() })
                }
                Err(e) => ("-".to_string(), format!("FAIL: {e}")),
            };
            failures += verdict.starts_with("FAIL") as usize;
            println!(
                "{:<22} {:<40} {:<w$} {:>10} {:>8.0e} {verdict}",
                case.kernel,
                name,
                case.shape,
                error,
                case.bound,
                w = width
            );
        }
    }
    println!("{} passed, {failures} failed", total - failures);
    if failures > 0 { Err(format!("{failures} of {total} validation cases failed")) } else { Ok(()) }
}

/// `--dtype f16`: every case of [`storage_cases`] on every engine, each output's error against the
/// twin on the f16 inputs (bounded) and on the f32 inputs before rounding (reported).
fn run_f16(engines: &[Engine]) -> Result<(), String> {
    let cases = storage_cases();
    println!(
        "{:<46} {:<40} {:>6} {:>10} {:>8} {:>14} result",
        "kernel (f16 storage)", "backend", "output", "rel error", "bound", "vs f32 inputs"
    );
    let (mut failures, mut total) = (0, 0);
    for engine in engines {
        for case in &cases {
            let results = case.run(engine);
            for (i, output) in case.outputs.iter().enumerate() {
                total += 1;
                let (error, unrounded, verdict) = match &results {
                    Ok(results) => {
                        let r = &results[i];
                        let err = relative_frobenius(r.output.data(), r.want.data());
                        let unrounded = relative_frobenius(r.output.data(), r.want_unrounded.data());
                        let verdict = if err <= case.bound { "pass".to_string() } else { "FAIL".to_string() };
                        (format!("{err:10.2e}"), format!("{unrounded:14.2e}"), verdict)
                    }
                    Err(e) => ("-".into(), "-".into(), format!("FAIL: {e}")),
                };
                failures += verdict.starts_with("FAIL") as usize;
                let name = engine.describe();
                println!(
                    "{:<46} {name:<40} {output:>6} {error:>10} {:>8.1e} {unrounded:>14} {verdict}",
                    case.name, case.bound
                );
            }
        }
    }
    println!("{} passed, {failures} failed", total - failures);
    if failures > 0 { Err(format!("{failures} of {total} validation cases failed")) } else { Ok(()) }
}
