//! Causal random-feature attention: GPU against the f64 reference over chunk sizes and schedules,
//! exact causality, the prefix-max stabiliser against a huge late key, streaming, and scratch memory
//! that does not grow with L.
mod common;
use common::*;
use ortho::random::{Scaling, projection};
use ortho::{AttentionShape, Engine, FavorOptions, Kernel, Schedule, Tensor};
use ortho_ref::favor as reference;

const KERNELS: [Kernel; 3] = [Kernel::Softmax, Kernel::Trig, Kernel::Relu { eps: 1e-3 }];

fn causal(kernel: Kernel, chunk: usize, schedule: Schedule) -> FavorOptions {
    FavorOptions { chunk: Some(chunk), schedule, ..FavorOptions::causal(kernel) }
}

fn f64_reference(q: &Tensor<f32>, k: &Tensor<f32>, v: &Tensor<f32>, w: &Tensor<f32>, kernel: Kernel) -> Tensor<f64> {
    reference::favor_quadratic(&q.to_f64(), &k.to_f64(), &v.to_f64(), &w.to_f64(), kernel, true).unwrap()
}

/// Every adapter, and the CPU fallback's fast path (chunked, blocked products) against the f64
/// quadratic form.
#[test]
fn causal_matches_reference_over_chunks_and_schedules() {
    for engine in gpu_engines().into_iter().chain([Engine::cpu("fast path")]) {
        for (i, &(b, h, l, d, dv, m, chunk)) in CAUSAL_CASES.iter().enumerate() {
            let [q, k, v] = attention_inputs((b, h, l, d, dv, m), 0.5, 10 * i as u64);
            let w = case_projection(i, h, m, d);
            for kernel in KERNELS {
                let want = f64_reference(&q, &k, &v, &w, kernel);
                let bound = 1e-5 * denominator_condition(&q, &k, &w, kernel, true);
                for schedule in [Schedule::Parallel, Schedule::Sequential] {
                    let got = engine.favor(&q, &k, &v, &w, &causal(kernel, chunk, schedule)).unwrap();
                    let err = relative_frobenius(got.data(), want.data());
                    assert!(
                        err <= bound,
                        "{} {kernel:?} {schedule:?} case {i}: {err:e} > {bound:e}",
                        engine.describe()
                    );
                }
            }
        }
    }
}

#[test]
fn both_schedules_agree() {
    let (l, d, m) = (300, 16, 32);
    let q = gaussian(&[1, 2, l, d], 0.5, 1);
    let k = gaussian(&[1, 2, l, d], 0.5, 2);
    let v = gaussian(&[1, 2, l, d], 1.0, 3);
    let w = projection(m, d, Scaling::Chi, 4).unwrap().to_f32();
    for engine in gpu_engines() {
        let par = engine.favor(&q, &k, &v, &w, &causal(Kernel::Softmax, 32, Schedule::Parallel)).unwrap();
        let seq = engine.favor(&q, &k, &v, &w, &causal(Kernel::Softmax, 32, Schedule::Sequential)).unwrap();
        let auto = engine.favor(&q, &k, &v, &w, &FavorOptions::causal(Kernel::Softmax)).unwrap();
        assert!(relative_frobenius(par.data(), seq.data()) < 1e-6);
        assert!(relative_frobenius(auto.data(), seq.data()) < 1e-6);
    }
}

/// Changing every token after t leaves the outputs up to t unchanged.
#[test]
fn no_future_token_changes_a_past_output() {
    let (l, d, dv, m, t) = (90, 8, 4, 16, 40);
    let q = gaussian(&[l, d], 0.5, 1);
    let k = gaussian(&[l, d], 0.5, 2);
    let v = gaussian(&[l, dv], 1.0, 3);
    let w = projection(m, d, Scaling::Chi, 4).unwrap().to_f32();
    let (mut q2, mut k2, mut v2) = (q.clone(), k.clone(), v.clone());
    for (x, y) in [(&mut q2, d), (&mut k2, d), (&mut v2, dv)] {
        x.data_mut()[(t + 1) * y..].iter_mut().enumerate().for_each(|(i, e)| *e = 3.0 * ((i % 7) as f32 - 3.0));
    }
    for engine in gpu_engines() {
        for kernel in KERNELS {
            for chunk in [1, 16, 90] {
                let o = causal(kernel, chunk, Schedule::Auto);
                let a = engine.favor(&q, &k, &v, &w, &o).unwrap();
                let b = engine.favor(&q2, &k2, &v2, &w, &o).unwrap();
                let err = relative_frobenius(&a.data()[..(t + 1) * dv], &b.data()[..(t + 1) * dv]);
                assert!(err <= 1e-6, "{} {kernel:?} chunk {chunk}: {err:e}", engine.describe());
            }
        }
    }
}

/// A key whose feature exponent is ~120 above the rest (a projection row of norm 16 and a key
/// aligned with it), late in a chunk: with a global key max every earlier term would underflow.
#[test]
fn a_huge_late_key_leaves_earlier_outputs_correct() {
    let (l, dv, late) = (48, 4, 29);
    let [q, k, v, w] = huge_late_key_inputs(l, dv, late);
    let want = f64_reference(&q, &k, &v, &w, Kernel::Softmax);
    for engine in gpu_engines() {
        for chunk in [16, 48] {
            for schedule in [Schedule::Parallel, Schedule::Sequential] {
                let got = engine.favor(&q, &k, &v, &w, &causal(Kernel::Softmax, chunk, schedule)).unwrap();
                assert!(got.data().iter().all(|x| x.is_finite()));
                let err = relative_frobenius(&got.data()[..late * dv], &want.data()[..late * dv]);
                assert!(
                    err <= 1e-5,
                    "{} chunk {chunk} {schedule:?}: earlier outputs off by {err:e}",
                    engine.describe()
                );
            }
        }
    }
}

#[test]
fn streaming_in_random_pieces_equals_one_shot() {
    let (h, l, d, dv, m) = (2, 77, 8, 5, 16);
    let q = gaussian(&[1, h, l, d], 0.5, 1);
    let k = gaussian(&[1, h, l, d], 0.5, 2);
    let v = gaussian(&[1, h, l, dv], 1.0, 3);
    let w = projection(m, d, Scaling::Chi, 4).unwrap().to_f32();
    let piece = |t: &Tensor<f32>, a: usize, b: usize| {
        let c = t.shape()[3];
        let data = (0..h).flat_map(|hh| t.data()[(hh * l + a) * c..(hh * l + b) * c].to_vec()).collect();
        Tensor::new(&[1, h, b - a, c], data).unwrap()
    };
    let s = AttentionShape::of(q.shape(), k.shape(), v.shape(), Some(w.shape())).unwrap();
    let mut engines = gpu_engines();
    engines.push(Engine::cpu("test"));
    for engine in engines {
        for kernel in KERNELS {
            let o = causal(kernel, 8, Schedule::Auto);
            let one_shot = engine.favor(&q, &k, &v, &w, &o).unwrap();
            let mut state = engine.causal_state(&s, kernel).unwrap();
            let mut pieces = vec![Vec::new(); h];
            let mut rng = ortho_ref::random::Gaussian::new(9);
            let mut a = 0;
            while a < l {
                let b = (a + 1 + (rng.uniform() * 12.0) as usize).min(l);
                let out = engine
                    .favor_stream(&piece(&q, a, b), &piece(&k, a, b), &piece(&v, a, b), &w, &o, &mut state)
                    .unwrap();
                for (hh, p) in pieces.iter_mut().enumerate() {
                    p.extend_from_slice(&out.data()[hh * (b - a) * dv..(hh + 1) * (b - a) * dv]);
                }
                a = b;
            }
            let streamed: Vec<f32> = pieces.concat();
            let err = relative_frobenius(&streamed, one_shot.data());
            assert!(err <= 1e-6, "{} {kernel:?}: {err:e}", engine.describe());
            let values = engine.causal_state_values(&state).unwrap();
            assert_eq!(values.s.len(), h * kernel.feature_count(m) * (dv + 1));
            let other = AttentionShape { features: m + 1, ..s };
            assert!(
                engine.favor_stream(&q, &k, &v, &w, &o, &mut engine.causal_state(&other, kernel).unwrap()).is_err()
            );
        }
    }
}

/// Scratch (peak pool bytes minus inputs and the output) of the sequential schedule does not grow
/// with L; the parallel schedule's does.
#[test]
fn sequential_scratch_does_not_grow_with_l() {
    let (d, m) = (16, 32);
    for engine in gpu_engines() {
        let scratch = |l: usize, schedule: Schedule| -> u64 {
            let q = engine.upload("q", &gaussian(&[1, 1, l, d], 0.5, 1)).unwrap();
            let w = engine.upload("w", &projection(m, d, Scaling::Chi, 2).unwrap().to_f32()).unwrap();
            engine.reset_peak();
            let before = engine.pool_stats().live_bytes;
            let out = engine.favor_gpu(&q, &q, &q, &w, &causal(Kernel::Softmax, 32, schedule)).unwrap();
            let out_bytes = engine.pool_stats().live_bytes - before;
            drop(out);
            engine.pool_stats().peak_bytes - before - out_bytes
        };
        let (short, long) = (scratch(512, Schedule::Sequential), scratch(4096, Schedule::Sequential));
        assert_eq!(short, long, "{}: sequential scratch {short} at L = 512, {long} at L = 4096", engine.describe());
        let (short, long) = (scratch(512, Schedule::Parallel), scratch(4096, Schedule::Parallel));
        assert!(long > 4 * short, "{}: parallel scratch {short} -> {long}", engine.describe());
    }
}

#[test]
fn bad_causal_arguments() {
    let q = gaussian(&[6, 4], 0.5, 1);
    let w = projection(8, 4, Scaling::Chi, 2).unwrap().to_f32();
    for engine in gpu_engines().into_iter().chain([Engine::cpu("test")]) {
        let err = engine.favor(&q, &q, &q, &w, &causal(Kernel::Softmax, 0, Schedule::Auto)).unwrap_err();
        assert!(err.to_string().contains("chunk size must be at least 1"), "{err}");
    }
    assert!("diagonal".parse::<Schedule>().unwrap_err().to_string().contains("auto, parallel, sequential"));
}

/// One parallel group over a long sequence: the prefix-max scan and the state scan walk hundreds of
/// blocks and chunks.
#[test]
fn long_sequences_match_reference() {
    let (l, d, dv, m) = (20_000, 8, 4, 16);
    let q = gaussian(&[l, d], 0.5, 1);
    let k = gaussian(&[l, d], 0.5, 2);
    let v = gaussian(&[l, dv], 1.0, 3);
    let w = projection(m, d, Scaling::Chi, 4).unwrap().to_f32();
    let want =
        reference::favor_causal(&q.to_f64(), &k.to_f64(), &v.to_f64(), &w.to_f64(), Kernel::Softmax, 64, None).unwrap();
    for engine in gpu_engines() {
        for schedule in [Schedule::Parallel, Schedule::Sequential] {
            let got = engine.favor(&q, &k, &v, &w, &causal(Kernel::Softmax, 64, schedule)).unwrap();
            let err = relative_frobenius(got.data(), want.data());
            assert!(err <= 1e-5, "{} {schedule:?}: {err:e}", engine.describe());
        }
    }
}

/// The sequential schedule's on-chip walk: many state tiles (dv = 37), many walk dispatches per group
/// (C = 8: 64 chunks a group) and several groups; and past the features it keeps on chip (trig with
/// m = 600: f = 1200), the scan that replaces it.
#[test]
fn sequential_walk_matches_reference_across_tiles_and_dispatches() {
    for (l, d, dv, m, chunk, kernel) in [(1500, 8, 37, 24, 8, Kernel::Softmax), (300, 4, 5, 600, 16, Kernel::Trig)] {
        let q = gaussian(&[1, 2, l, d], 0.5, 1);
        let k = gaussian(&[1, 2, l, d], 0.5, 2);
        let v = gaussian(&[1, 2, l, dv], 1.0, 3);
        let w = projection(m, d, Scaling::Chi, 4).unwrap().to_f32();
        let want = f64_reference(&q, &k, &v, &w, kernel);
        let bound = 1e-5 * denominator_condition(&q, &k, &w, kernel, true);
        for engine in gpu_engines() {
            let got = engine.favor(&q, &k, &v, &w, &causal(kernel, chunk, Schedule::Sequential)).unwrap();
            let err = relative_frobenius(got.data(), want.data());
            assert!(err <= bound, "{} {kernel:?} L = {l}: {err:e} > {bound:e}", engine.describe());
        }
    }
}

/// Full walks at the benchmarked shape (d = dv = 64, m = 256: 8 chunks of 64 rows a dispatch, or 2
/// of 256) and at the most features the walk keeps on chip (trig, m = 384: f = 768), against the f64
/// chunked reference. Mesa's llvmpipe once ended long barrier loops early; these are the longest.
#[test]
fn sequential_walk_at_full_size_matches_reference() {
    for (l, d, dv, m, chunk, kernel) in [
        (2048, 64, 64, 256, 64, Kernel::Softmax),
        (1024, 64, 64, 256, 256, Kernel::Softmax),
        (600, 8, 8, 384, 8, Kernel::Trig),
    ] {
        let q = gaussian(&[l, d], 0.5, 11);
        let k = gaussian(&[l, d], 0.5, 12);
        let v = gaussian(&[l, dv], 1.0, 13);
        let w = projection(m, d, Scaling::Chi, 14).unwrap().to_f32();
        let (q64, k64, v64, w64) = (q.to_f64(), k.to_f64(), v.to_f64(), w.to_f64());
        let want = reference::favor_causal(&q64, &k64, &v64, &w64, kernel, chunk, None).unwrap();
        let bound = 1e-5 * denominator_condition(&q, &k, &w, kernel, true);
        for engine in gpu_engines() {
            let got = engine.favor(&q, &k, &v, &w, &causal(kernel, chunk, Schedule::Sequential)).unwrap();
            let err = relative_frobenius(got.data(), want.data());
            assert!(err <= bound, "{} {kernel:?} L = {l}, C = {chunk}: {err:e} > {bound:e}", engine.describe());
        }
    }
}
