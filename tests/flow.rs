//! Batched matrix exponentials on the GPU against the f64 Padé-13 oracle over norms from 1e-8 to 1e3
//! and n from 1 to 64, orthogonality for skew input, and errors for bad input.
mod common;
use common::*;
use ortho::{Engine, Tensor};
use ortho_ref::expm as reference;

/// Relative error bound of f32 expm: 1e-5 for |A|_1 <= 1; beyond, each of the s squarings can
/// double the relative error of the scaled exponential (docs/math.md §3.3), so 1e-5 * 2^s. (Measured:
/// about 2.5e-8 * 2^s.)
fn bound(norm: f64) -> f64 {
    let (_, squarings) = reference::plan(norm, &reference::THETA_F32);
    1e-5 * 2f64.powi(squarings as i32)
}

/// Every adapter, and the CPU fallback (its f32 fast path).
#[test]
fn expm_matches_the_pade_oracle() {
    for engine in gpu_engines().into_iter().chain([Engine::cpu("fast path")]) {
        for (i, n) in [1usize, 3, 8, 33, 64].into_iter().enumerate() {
            for (j, scale) in [1e-8, 1e-4, 1e-2, 0.1, 0.3, 1.0, 10.0, 100.0, 1000.0].into_iter().enumerate() {
                // |A|_1 ~ scale, carried by a skew part so that exp(A) stays representable in f32,
                // plus a general part of norm ~ min(scale, 1).
                let k = gaussian(&[3, n, n], scale / (n as f64).sqrt() / 2.0, (100 * i + j) as u64);
                let g = gaussian(&[3, n, n], scale.min(1.0) / (n as f64).sqrt() / 2.0, (100 * i + j) as u64 + 7);
                let a = Tensor::from_fn(&[3, n, n], |e| {
                    let (z, r) = (e / (n * n), e % (n * n));
                    k.data()[e] - k.data()[z * n * n + (r % n) * n + r / n] + g.data()[e]
                });
                let a64 = a.to_f64();
                let want = reference::expm_pade13(&a64).unwrap();
                let got = engine.expm(&a).unwrap();
                for z in 0..3 {
                    let norm = reference::one_norm(&a64.data()[z * n * n..(z + 1) * n * n], n);
                    let (g, w) = (&got.data()[z * n * n..(z + 1) * n * n], &want.data()[z * n * n..(z + 1) * n * n]);
                    let err = relative_frobenius(g, w);
                    assert!(
                        err <= bound(norm),
                        "{} n {n} |A|_1 {norm:.3e}: {err:e} > {:e}",
                        engine.describe(),
                        bound(norm)
                    );
                }
            }
        }
    }
}

#[test]
fn skew_input_gives_orthogonal_output() {
    for engine in gpu_engines().into_iter().chain([Engine::cpu("fast path")]) {
        for n in [3usize, 8, 33, 64] {
            let g = gaussian(&[4, n, n], 0.5, n as u64);
            let skew = Tensor::from_fn(&[4, n, n], |e| {
                let (z, r) = (e / (n * n), e % (n * n));
                g.data()[z * n * n + r] - g.data()[z * n * n + (r % n) * n + r / n]
            });
            let q = engine.expm(&skew).unwrap();
            for z in 0..4 {
                let m = Tensor::new(&[n, n], q.data()[z * n * n..(z + 1) * n * n].iter().map(|&x| x as f64).collect())
                    .unwrap();
                let err = ortho_ref::flow::orthogonality_error(&m).unwrap();
                assert!(
                    err <= 8.0 * n as f64 * 2f64.powi(-23) * 4.0,
                    "{} n {n}: |E^T E - I|_F = {err:e}",
                    engine.describe()
                );
            }
        }
    }
}

#[test]
fn bad_inputs_get_clear_errors() {
    for engine in gpu_engines().into_iter().chain([Engine::cpu("test")]) {
        assert!(engine.expm(&Tensor::zeros(&[2, 3])).unwrap_err().to_string().starts_with("a: expected shape"));
        let mut a = gaussian(&[3, 3], 1.0, 1);
        a.data_mut()[4] = f32::NAN;
        assert!(engine.expm(&a).unwrap_err().to_string().starts_with("a: non-finite value NaN at index [1, 1]"));
        let big = Tensor::<f32>::zeros(&[65, 65]);
        assert!(engine.expm(&big).unwrap_err().to_string().contains("n <= 64"));
        // A = 2I makes I - A/2 zero, in the small-matrix paths (n = 3) and the workgroup one (n = 33).
        for n in [3, 33] {
            let twice = Tensor::from_fn(&[2, n, n], |e| if (e % (n * n)) / n == e % n { 2.0 } else { 0.0 });
            let err = engine.cayley(&twice).unwrap_err().to_string();
            assert!(err.contains("singular"), "{} n {n}: {err}", engine.describe());
        }
    }
}

#[test]
fn cayley_matches_reference() {
    for engine in gpu_engines().into_iter().chain([Engine::cpu("fast path")]) {
        for (i, n) in [1usize, 3, 8, 33, 64].into_iter().enumerate() {
            // Skew (the use in flows) and general matrices with I - A/2 well conditioned.
            let g = gaussian(&[3, n, n], 0.8 / (n as f64).sqrt(), 50 + i as u64);
            let skew = Tensor::from_fn(&[3, n, n], |e| {
                let (z, r) = (e / (n * n), e % (n * n));
                4.0 * (g.data()[e] - g.data()[z * n * n + (r % n) * n + r / n])
            });
            for a in [skew, g] {
                let want = reference::cayley(&a.to_f64()).unwrap();
                let got = engine.cayley(&a).unwrap();
                let err = relative_frobenius(got.data(), want.data());
                assert!(err <= 1e-5, "{} n {n}: {err:e}", engine.describe());
            }
        }
    }
}

/// `exp(A) - I` directly, and the in-place Lie–Euler update `W <- W + W (map(A) - I)` for both maps.
#[test]
fn increment_and_update_outputs() {
    use ortho::{ExpmOutput, GroupMap};
    let n = 6;
    let g = gaussian(&[2, n, n], 0.3, 1);
    let a = Tensor::from_fn(&[2, n, n], |e| {
        let (z, r) = (e / (n * n), e % (n * n));
        g.data()[e] - g.data()[z * n * n + (r % n) * n + r / n]
    });
    let w = gaussian(&[2, n, n], 1.0, 2);
    for engine in gpu_engines() {
        for map in [GroupMap::Exp, GroupMap::Cayley] {
            let e = match map {
                GroupMap::Exp => reference::expm_pade13(&a.to_f64()).unwrap(),
                GroupMap::Cayley => reference::cayley(&a.to_f64()).unwrap(),
            };
            let ga = engine.upload("a", &a).unwrap();
            let inc = engine.empty(&[2, n, n]).unwrap();
            let gw = engine.upload("w", &w).unwrap();
            engine
                .time(|enc| {
                    let increment = engine.record_group_map(enc, map, &ga, &inc, ExpmOutput::Increment)?;
                    Ok(increment.and(engine.record_group_map(enc, map, &ga, &gw, ExpmOutput::Update)?))
                })
                .unwrap();
            let want_inc: Vec<f64> = e
                .data()
                .iter()
                .enumerate()
                .map(|(i, x)| x - if (i % (n * n)) / n == i % n { 1.0 } else { 0.0 })
                .collect();
            assert!(max_abs_diff(engine.download(&inc).unwrap().data(), &want_inc) < 1e-6, "{map:?} increment");
            let mut want_w = Vec::new();
            for z in 0..2 {
                let wz: Vec<f64> = w.data()[z * n * n..(z + 1) * n * n].iter().map(|&x| x as f64).collect();
                want_w.extend(ortho_ref::linalg::matmul(&wz, &e.data()[z * n * n..(z + 1) * n * n], n, n, n));
            }
            let got = engine.download(&gw).unwrap();
            assert!(relative_frobenius(got.data(), &want_w) < 1e-6, "{map:?} update");
        }
    }
}

fn identities(b: usize, n: usize) -> Tensor<f32> {
    Tensor::from_fn(&[b, n, n], |e| if (e % (n * n)) / n == e % n { 1.0 } else { 0.0 })
}

fn isospectral(method: Method, n: usize, dt: f64, steps: usize) -> Flow {
    Flow {
        method,
        dt,
        steps,
        newton_schulz_every: None,
        generator: Generator::Isospectral { qs: symmetric(n, 0.5, 1), ns: symmetric(n, 0.5, 2) },
        state: None,
    }
}

use ortho_ref::flow::{Flow, Generator, Method};

#[test]
fn trajectories_match_reference() {
    for engine in gpu_engines().into_iter().chain([Engine::cpu("fast path")]) {
        for method in [Method::LieEuler, Method::CayleyEuler, Method::Rkmk4] {
            for n in [1usize, 3, 8] {
                let flow = isospectral(method, n, 0.05, 20);
                let w0 = identities(2, n);
                let (got, _) = engine.flow(&flow, &w0).unwrap();
                let (want, _) = flow.run(&w0.to_f64()).unwrap();
                let err = relative_frobenius(got.data(), want.data());
                assert!(err <= 1e-5, "{} {method:?} n {n}: {err:e}", engine.describe());
            }
            // Given per-step generators, one per flow.
            let (steps, b, n) = (5, 3, 4);
            let g = gaussian(&[steps, b, n, n], 1.0, 9).to_f64();
            let omega = Tensor::from_fn(&[steps, b, n, n], |e| {
                let (m, r) = (e / (n * n), e % (n * n));
                g.data()[e] - g.data()[m * n * n + (r % n) * n + r / n]
            });
            let flow = Flow {
                method,
                dt: 0.1,
                steps,
                newton_schulz_every: None,
                generator: Generator::Given(omega),
                state: None,
            };
            let w0 = identities(b, n);
            let (got, _) = engine.flow(&flow, &w0).unwrap();
            let (want, _) = flow.run(&w0.to_f64()).unwrap();
            assert!(relative_frobenius(got.data(), want.data()) <= 1e-5, "{} {method:?} given", engine.describe());
        }
    }
}

/// f32 drift after 1,000 Lie–Euler steps (n = 8, h |b|_1 ~ 0.024) in increment form: |W^T W - I|_F
/// <= 1e-5, and <= 1e-6 with a Newton–Schulz step every 100 (docs/math.md §3.3). The isospectral
/// invariant, the spectrum of W^T Qs W (here its power traces), holds along the way.
#[test]
fn f32_drift_stays_small() {
    let n = 8;
    let probe = isospectral(Method::LieEuler, n, 1.0, 1);
    let Generator::Isospectral { qs, ns } = &probe.generator else { unreachable!() };
    // Scale the step so that h |b(I)|_1 ~ 0.024.
    let b0 = {
        let (q, s) = (qs.data(), ns.data());
        let prod = |a: &[f64], b: &[f64]| ortho_ref::linalg::matmul(a, b, n, n, n);
        let (qn, nq) = (prod(q, s), prod(s, q));
        let c: Vec<f64> = qn.iter().zip(&nq).map(|(a, b)| a - b).collect();
        reference::one_norm(&c, n)
    };
    let dt = 0.024 / b0;
    for engine in gpu_engines().into_iter().chain([Engine::cpu("fast path")]) {
        for (every, bound) in [(None, 1e-5), (Some(100), 1e-6)] {
            let mut flow = isospectral(Method::LieEuler, n, dt, 1000);
            flow.newton_schulz_every = every;
            let (w, _) = engine.flow(&flow, &identities(1, n)).unwrap();
            let drift = ortho_ref::flow::orthogonality_error(&w.to_f64()).unwrap();
            eprintln!("{} Newton–Schulz {every:?}: drift {drift:e}", engine.describe());
            assert!(drift <= bound, "{} Newton–Schulz {every:?}: |W^T W - I|_F = {drift:e}", engine.describe());
            let wm = w.to_f64();
            let moved = {
                let wt = ortho_ref::cwy::transpose_of(wm.data(), n, n);
                let t = ortho_ref::linalg::matmul(&wt, qs.data(), n, n, n);
                ortho_ref::linalg::matmul(&t, wm.data(), n, n, n)
            };
            let trace2 =
                |a: &[f64]| (0..n).map(|i| (0..n).map(|k| a[i * n + k] * a[k * n + i]).sum::<f64>()).sum::<f64>();
            assert!((trace2(&moved) - trace2(qs.data())).abs() <= 1e-3 * trace2(qs.data()).abs());
        }
    }
}

/// The nested ODEtoODE state x' = sigma(W x) on the GPU against the reference, for every method,
/// activation and generator.
#[test]
fn nested_state_matches_reference() {
    use ortho_ref::flow::Activation;
    let (b, n, steps) = (2, 5, 8);
    let x0 = gaussian(&[b, n], 0.7, 3).to_f64();
    let g = gaussian(&[steps, b, n, n], 1.0, 4).to_f64();
    let omega = Tensor::from_fn(&[steps, b, n, n], |e| {
        let (m, r) = (e / (n * n), e % (n * n));
        g.data()[e] - g.data()[m * n * n + (r % n) * n + r / n]
    });
    for engine in gpu_engines().into_iter().chain([Engine::cpu("fast path")]) {
        for method in [Method::LieEuler, Method::CayleyEuler, Method::Rkmk4] {
            for (activation, given) in
                [(Activation::Tanh, false), (Activation::Relu, true), (Activation::Identity, false)]
            {
                let mut flow = isospectral(method, n, 0.1, steps);
                if given {
                    flow.generator = Generator::Given(omega.clone());
                }
                flow.state = Some((x0.clone(), activation));
                let w0 = identities(b, n);
                let (w, x) = engine.flow(&flow, &w0).unwrap();
                let (want_w, want_x) = flow.run(&w0.to_f64()).unwrap();
                let (ew, ex) = (
                    relative_frobenius(w.data(), want_w.data()),
                    relative_frobenius(x.unwrap().data(), want_x.unwrap().data()),
                );
                assert!(
                    ew <= 1e-5 && ex <= 1e-5,
                    "{} {method:?} {activation:?} given {given}: W {ew:e}, x {ex:e}",
                    engine.describe()
                );
            }
        }
    }
    let mut bad = isospectral(Method::LieEuler, 3, 0.1, 2);
    bad.generator = Generator::Isospectral { qs: Tensor::from_fn(&[3, 3], |e| e as f64), ns: symmetric(3, 0.5, 2) };
    assert!(Engine::cpu("test").flow(&bad, &identities(1, 3)).unwrap_err().to_string().contains("not symmetric"));
}

/// A flow of 260 steps runs through `run` and `run_gpu` as three submissions of at most 128 steps,
/// and through `record` into one encoder: with a nested state and Newton–Schulz every 7 steps (so W
/// changes buffers inside segments and across their boundaries), all three match the reference.
#[test]
fn long_flows_match_reference_in_every_entry_point() {
    let n = 4;
    let mut flow = isospectral(Method::Rkmk4, n, 0.01, 260);
    flow.newton_schulz_every = Some(7);
    flow.state = Some((gaussian(&[2, n], 1.0, 3).to_f64(), ortho_ref::flow::Activation::Tanh));
    let w0 = identities(2, n);
    let (w_want, x_want) = flow.run(&w0.to_f64()).unwrap();
    let x_want = x_want.unwrap();
    for engine in gpu_engines() {
        let check = |what: &str, w: &Tensor<f32>, x: &Tensor<f32>| {
            let (ew, ex) = (relative_frobenius(w.data(), w_want.data()), relative_frobenius(x.data(), x_want.data()));
            assert!(ew < 1e-4 && ex < 1e-4, "{} {what}: W {ew:e}, x {ex:e}", engine.describe());
        };
        let (w, x) = engine.flow(&flow, &w0).unwrap();
        check("run", &w, &x.unwrap());
        let gw0 = engine.upload("w0", &w0).unwrap();
        let (w, x) = engine.flow_gpu(&flow, &gw0).unwrap();
        check("run_gpu", &engine.download(&w).unwrap(), &engine.download(&x.unwrap()).unwrap());
        let (w, x) = (engine.empty(&[2, n, n]).unwrap(), engine.empty(&[2, n]).unwrap());
        let mut encoder = engine.device().unwrap().create_command_encoder(&Default::default());
        let recorded = engine.record(&mut encoder, &flow, &[&gw0], &[&w, &x]).unwrap();
        engine.queue().unwrap().submit([encoder.finish()]);
        recorded.submitted();
        check("record", &engine.download(&w).unwrap(), &engine.download(&x).unwrap());
    }
}

#[test]
fn flow_scratch_does_not_grow_with_steps() {
    for engine in gpu_engines() {
        let peak = |steps| {
            let flow = isospectral(Method::Rkmk4, 8, 0.01, steps);
            let w0 = engine.upload("w0", &identities(2, 8)).unwrap();
            engine.trim_pool();
            engine.reset_peak();
            let before = engine.pool_stats().live_bytes;
            let (w, _) = engine.flow_gpu(&flow, &w0).unwrap();
            drop(w);
            engine.pool_stats().peak_bytes - before
        };
        let (short, long, segmented) = (peak(2), peak(40), peak(260));
        assert_eq!(short, long, "{}: peak pool bytes of 2 and 40 RKMK4 steps", engine.describe());
        assert_eq!(short, segmented, "{}: peak pool bytes of 2 and 260 RKMK4 steps", engine.describe());
    }
}

/// Small matrices in large batches share a workgroup (64 of n <= 8, 4 of n <= 16), each with its own
/// norm, degree and squarings: a batch whose neighbours range from zero to |A|_1 ~ 1e3, with a last
/// workgroup only partly filled, in every output mode of both maps, against the f64 oracles matrix by
/// matrix.
#[test]
fn packed_matrices_keep_their_own_plans() {
    use ortho::{ExpmOutput, GroupMap};
    let scales: [f64; 8] = [0.0, 1e-8, 1e-4, 1e-2, 0.3, 1.0, 10.0, 1000.0];
    for engine in gpu_engines() {
        for n in [1usize, 3, 8, 12, 16] {
            let b = 4 * 64 + 2;
            let k = gaussian(&[b, n, n], 1.0 / (n as f64).sqrt() / 2.0, n as u64);
            let g = gaussian(&[b, n, n], 0.5 / (n as f64).sqrt(), n as u64 + 1);
            // A skew part of norm ~ scale (exp stays representable) plus a general part up to 0.5;
            // the Cayley map's scales stop at 1, where I - A/2 stays well conditioned.
            let input = |largest: f64| {
                Tensor::from_fn(&[b, n, n], |e| {
                    let (z, r) = (e / (n * n), e % (n * n));
                    let scale = scales[z % scales.len()].min(largest) as f32;
                    scale * (k.data()[e] - k.data()[z * n * n + (r % n) * n + r / n]) + scale.min(1.0) * g.data()[e]
                })
            };
            let w = gaussian(&[b, n, n], 1.0, n as u64 + 2);
            for map in [GroupMap::Exp, GroupMap::Cayley] {
                let a = input(if map == GroupMap::Exp { f64::INFINITY } else { 1.0 });
                let want = match map {
                    GroupMap::Exp => reference::expm_pade13(&a.to_f64()).unwrap(),
                    GroupMap::Cayley => reference::cayley(&a.to_f64()).unwrap(),
                };
                let ga = engine.upload("a", &a).unwrap();
                let (exp, inc, gw) = (
                    engine.empty(&[b, n, n]).unwrap(),
                    engine.empty(&[b, n, n]).unwrap(),
                    engine.upload("w", &w).unwrap(),
                );
                engine
                    .time(|enc| {
                        let mut all = engine.record_group_map(enc, map, &ga, &exp, ExpmOutput::Exp)?;
                        all = all.and(engine.record_group_map(enc, map, &ga, &inc, ExpmOutput::Increment)?);
                        Ok(all.and(engine.record_group_map(enc, map, &ga, &gw, ExpmOutput::Update)?))
                    })
                    .unwrap();
                let (exp, inc, gw) =
                    (engine.download(&exp).unwrap(), engine.download(&inc).unwrap(), engine.download(&gw).unwrap());
                for z in 0..b {
                    let at = z * n * n..(z + 1) * n * n;
                    let norm = reference::one_norm(&a.to_f64().data()[at.clone()], n);
                    let e = &want.data()[at.clone()];
                    let identity = |i: usize| if i / n == i % n { 1.0 } else { 0.0 };
                    let e_minus_i: Vec<f64> = e.iter().enumerate().map(|(i, x)| x - identity(i)).collect();
                    let wz: Vec<f64> = w.data()[at.clone()].iter().map(|&x| x as f64).collect();
                    let we = ortho_ref::linalg::matmul(&wz, e, n, n, n);
                    let allowed = match map {
                        GroupMap::Exp => bound(norm),
                        GroupMap::Cayley => 1e-5,
                    };
                    let what = format!("{} {map:?} n {n} matrix {z} |A|_1 {norm:.1e}", engine.describe());
                    assert!(relative_frobenius(&exp.data()[at.clone()], e) <= allowed, "{what}: exp");
                    // The increment is small where A is: measured against the size of map(A).
                    let inc_err = max_abs_diff(&inc.data()[at.clone()], &e_minus_i) / (1.0 + norm);
                    assert!(inc_err <= allowed, "{what}: increment {inc_err:e}");
                    // A matrix mapped on its own (n <= 8, one per invocation) takes its own degree, so
                    // the increment keeps its relative accuracy however small A is.
                    if n <= 8 && norm > 0.0 && norm <= 1.0 {
                        let relative = relative_frobenius(&inc.data()[at.clone()], &e_minus_i);
                        assert!(relative <= allowed, "{what}: relative increment {relative:e}");
                    }
                    assert!(relative_frobenius(&gw.data()[at.clone()], &we) <= allowed, "{what}: update");
                }
            }
        }
    }
}
