//! Bidirectional random-feature attention and exact softmax attention: GPU against the f64
//! reference, stabilisers at large exponents, and the statistics of FAVOR+ against exact softmax.
mod common;
use common::*;
use ortho::random::{Scaling, projection};
use ortho::{Engine, FavorOptions, Kernel, Tensor};
use ortho_ref::favor as reference;

const KERNELS: [Kernel; 3] = [Kernel::Softmax, Kernel::Trig, Kernel::Relu { eps: 1e-3 }];

/// (B, H, L, d, dv, m): ones, sizes off the 64-wide tiles, d and dv from 1 to 128, m from 1 to 512.
const SHAPES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 1, 1, 1, 1, 1),
    (1, 2, 5, 3, 2, 7),
    (2, 1, 65, 16, 9, 33),
    (1, 3, 130, 64, 64, 256),
    (1, 1, 70, 128, 128, 512),
    (2, 2, 17, 1, 128, 64),
    (1, 1, 200, 128, 1, 3),
];

fn f64_reference(q: &Tensor<f32>, k: &Tensor<f32>, v: &Tensor<f32>, w: &Tensor<f32>, kernel: Kernel) -> Tensor<f64> {
    reference::favor(&q.to_f64(), &k.to_f64(), &v.to_f64(), &w.to_f64(), kernel).unwrap()
}

/// Every adapter, and the CPU fallback's fast path (f32, blocked products) against the f64 twin.
#[test]
fn favor_matches_reference() {
    for engine in gpu_engines().into_iter().chain([Engine::cpu("fast path")]) {
        for (i, &s) in SHAPES.iter().enumerate() {
            let (_, h, _, d, _, m) = s;
            let [q, k, v] = attention_inputs(s, 0.5, 10 * i as u64);
            let w = case_projection(i, h, m, d);
            for kernel in KERNELS {
                let want = f64_reference(&q, &k, &v, &w, kernel);
                let bound = 1e-5 * denominator_condition(&q, &k, &w, kernel, false);
                // All rows in one group, and groups of 24 rows (keys folded group by group).
                for group in [None, Some(24)] {
                    let o = FavorOptions { chunk: group, ..FavorOptions::new(kernel) };
                    let got = engine.favor(&q, &k, &v, &w, &o).unwrap();
                    let err = relative_frobenius(got.data(), want.data());
                    assert!(
                        err <= bound,
                        "{} {kernel:?} {s:?} groups of {group:?}: relative error {err:e} > {bound:e}",
                        engine.describe()
                    );
                }
            }
        }
    }
}

#[test]
fn favor_on_2d_inputs_returns_2d() {
    for engine in gpu_engines().into_iter().chain([Engine::cpu("test")]) {
        let q = gaussian(&[9, 4], 0.5, 1);
        let v = gaussian(&[9, 3], 1.0, 2);
        let w = projection(8, 4, Scaling::SqrtD, 3).unwrap().to_f32();
        let o = engine.favor(&q, &q, &v, &w, &FavorOptions::default()).unwrap();
        assert_eq!(o.shape(), &[9, 3]);
    }
}

/// Exponents up to ~80: a projection row of norm 16 and inputs aligned with it (docs/math.md §1.5).
#[test]
fn large_exponents_stay_finite_and_correct() {
    let (l, d, dv, m) = (40, 8, 4, 16);
    let mut w = projection(m, d, Scaling::Chi, 5).unwrap().to_f32();
    let row0: Vec<f32> = w.data()[..d].to_vec();
    let norm = row0.iter().map(|x| x * x).sum::<f32>().sqrt();
    w.data_mut()[..d].iter_mut().zip(&row0).for_each(|(x, r)| *x = 16.0 * r / norm);
    // x~ = x d^(-1/4); a_0 = 16 |x~| along row 0: |x| = 5 d^(1/4) gives a_0 = 80.
    let along = |t: usize, scale: f32| -> Vec<f32> {
        row0.iter().map(|r| scale * (1.0 + t as f32 / l as f32) * r / norm).collect()
    };
    let big = 5.0 * (d as f32).powf(0.25);
    let mut q = gaussian(&[l, d], 0.5, 6);
    let mut k = gaussian(&[l, d], 0.5, 7);
    for t in (0..l).step_by(3) {
        q.data_mut()[t * d..(t + 1) * d].copy_from_slice(&along(t, big));
        k.data_mut()[t * d..(t + 1) * d].copy_from_slice(&along(t, big / 2.0));
    }
    let v = gaussian(&[l, dv], 1.0, 8);
    for engine in gpu_engines() {
        for kernel in [Kernel::Softmax, Kernel::Relu { eps: 1e-3 }] {
            let got = engine.favor(&q, &k, &v, &w, &FavorOptions::new(kernel)).unwrap();
            assert!(got.data().iter().all(|x| x.is_finite()), "{kernel:?}: non-finite output");
            let want = f64_reference(&q, &k, &v, &w, kernel);
            // exp(a) has condition number |a|: f32 rounding of a ~ 80 costs ~80 ulps of relative error.
            let err = relative_frobenius(got.data(), want.data());
            assert!(err <= 1e-4, "{} {kernel:?}: {err:e}", engine.describe());
        }
    }
}

/// One key entry from 1e4 to 1e18: that key's weight underflows to 0 and every other row must stay
/// exact. (Its feature shift once came from `(max_i a - |k~|^2/2) + |k~|^2/2`, which cancels to 0 in
/// f32 once `|k~|^2` dwarfs `a`, so the feature overflowed and every output became 0.)
#[test]
fn a_huge_key_entry_leaves_the_other_keys_exact() {
    let (l, d, dv, m) = (16, 8, 4, 16);
    let q = gaussian(&[l, d], 0.5, 1);
    let v = gaussian(&[l, dv], 1.0, 3);
    let w = projection(m, d, Scaling::Chi, 2).unwrap().to_f32();
    for engine in gpu_engines() {
        for big in [1e4f32, 1e8, 1e9, 1e12, 1e18] {
            let mut k = gaussian(&[l, d], 0.5, 2);
            k.data_mut()[3 * d + 2] = big;
            for o in [FavorOptions::new(Kernel::Softmax), FavorOptions::causal(Kernel::Softmax)] {
                let want = Engine::reference().favor(&q, &k, &v, &w, &o).unwrap();
                let got = engine.favor(&q, &k, &v, &w, &o).unwrap();
                let err = relative_frobenius(got.data(), want.data());
                assert!(err < 1e-5, "{} key entry {big:e} causal {}: {err:e}", engine.describe(), o.causal);
            }
        }
    }
}

#[test]
fn exact_attention_matches_reference() {
    let shapes = [
        (1, 1, 1, 1, 1),
        (1, 2, 63, 8, 5),
        (2, 1, 65, 64, 64),
        (1, 1, 129, 128, 128),
        (1, 3, 100, 1, 128),
        (1, 1, 77, 128, 1),
    ];
    for engine in gpu_engines().into_iter().chain([Engine::cpu("fast path")]) {
        for (i, &(b, h, l, d, dv)) in shapes.iter().enumerate() {
            let q = gaussian(&[b, h, l, d], 1.0, 3 * i as u64);
            let k = gaussian(&[b, h, l, d], 1.0, 3 * i as u64 + 1);
            let v = gaussian(&[b, h, l, dv], 1.0, 3 * i as u64 + 2);
            for causal in [false, true] {
                let got = engine.exact_attention(&q, &k, &v, causal).unwrap();
                let want = reference::exact(&q.to_f64(), &k.to_f64(), &v.to_f64(), causal).unwrap();
                let err = relative_frobenius(got.data(), want.data());
                assert!(err <= 1e-5, "{} causal={causal} {:?}: {err:e}", engine.describe(), (b, h, l, d, dv));
            }
        }
    }
}

#[test]
fn exact_causal_ignores_the_future() {
    let (l, d) = (150, 16);
    let q = gaussian(&[l, d], 1.0, 1);
    let k = gaussian(&[l, d], 1.0, 2);
    let v = gaussian(&[l, d], 1.0, 3);
    let t = 70;
    let mut k2 = k.clone();
    let mut v2 = v.clone();
    for x in &mut k2.data_mut()[(t + 1) * d..] {
        *x *= 40.0;
    }
    for x in &mut v2.data_mut()[(t + 1) * d..] {
        *x = 1e3;
    }
    for engine in gpu_engines().into_iter().chain([Engine::cpu("fast path")]) {
        let a = engine.exact_attention(&q, &k, &v, true).unwrap();
        let b = engine.exact_attention(&q, &k2, &v2, true).unwrap();
        assert_eq!(&a.data()[..(t + 1) * d], &b.data()[..(t + 1) * d], "{}", engine.describe());
        assert_ne!(&a.data()[(t + 1) * d..], &b.data()[(t + 1) * d..]);
    }
}

/// FAVOR+ estimates softmax attention: on small-norm inputs its error falls as m grows, and
/// orthogonal features beat i.i.d. ones at equal m (averaged over seeds; docs/math.md §1.8).
#[test]
fn favor_plus_estimates_softmax_and_orthogonality_helps() {
    let (l, d, dv) = (64, 16, 8);
    let draws = 12;
    let mean_error = |m: usize, scaling: Scaling| -> f64 {
        (0..draws)
            .map(|s| {
                let q = gaussian(&[l, d], 0.3, 1000 + s).to_f64();
                let k = gaussian(&[l, d], 0.3, 2000 + s).to_f64();
                let v = gaussian(&[l, dv], 1.0, 3000 + s).to_f64();
                let w = projection(m, d, scaling, 4000 + s).unwrap();
                let est = reference::favor(&q, &k, &v, &w, Kernel::Softmax).unwrap();
                let exact = reference::exact(&q, &k, &v, false).unwrap();
                relative_frobenius(est.data(), exact.data())
            })
            .sum::<f64>()
            / draws as f64
    };
    let ms = [16, 64, 256];
    let ort: Vec<f64> = ms.iter().map(|&m| mean_error(m, Scaling::Chi)).collect();
    let iid: Vec<f64> = ms.iter().map(|&m| mean_error(m, Scaling::Iid)).collect();
    eprintln!("m {ms:?}: orthogonal {ort:.4?}, iid {iid:.4?}");
    assert!(ort[0] > ort[1] && ort[1] > ort[2], "error must fall with m: {ort:?}");
    assert!(iid[0] > iid[1] && iid[1] > iid[2], "error must fall with m: {iid:?}");
    for i in 0..ms.len() {
        assert!(ort[i] < iid[i], "orthogonal {} vs iid {} at m = {}", ort[i], iid[i], ms[i]);
    }
    // The GPU path estimates the same thing as the reference.
    for engine in gpu_engines() {
        let q = gaussian(&[l, d], 0.3, 1);
        let v = gaussian(&[l, dv], 1.0, 2);
        let w = projection(256, d, Scaling::Chi, 3).unwrap().to_f32();
        let est = engine.favor(&q, &q, &v, &w, &FavorOptions::default()).unwrap();
        let exact = engine.exact_attention(&q, &q, &v, false).unwrap();
        assert!(relative_frobenius(est.data(), exact.data()) < 0.1);
    }
}

#[test]
fn bad_inputs_get_clear_errors() {
    let mut engines = gpu_engines();
    engines.push(Engine::cpu("test"));
    let q = gaussian(&[1, 2, 5, 4], 1.0, 1);
    let v = gaussian(&[1, 2, 5, 3], 1.0, 2);
    let w = projection(8, 4, Scaling::Chi, 3).unwrap().to_f32();
    for e in &engines {
        let o = FavorOptions::default();
        let err = |r: ortho::Result<Tensor<f32>>| r.unwrap_err().to_string();
        let bad_w = Tensor::zeros(&[8, 5]);
        assert!(err(e.favor(&q, &q, &v, &bad_w, &o)).starts_with("projection: expected shape [m, 4] or [2, m, 4]"));
        let bad_k = gaussian(&[1, 2, 6, 4], 1.0, 4);
        assert!(err(e.favor(&q, &bad_k, &v, &w, &o)).starts_with("k: expected shape"));
        let bad_v = gaussian(&[1, 2, 4, 3], 1.0, 4);
        assert!(err(e.favor(&q, &q, &bad_v, &w, &o)).starts_with("v: expected shape [1, 2, 5, dv]"));
        let mut nan_q = q.clone();
        nan_q.data_mut()[7] = f32::NAN;
        assert_eq!(err(e.favor(&nan_q, &q, &v, &w, &o)), "q: non-finite value NaN at index [0, 0, 1, 3]");
        let mut inf_v = v.clone();
        inf_v.data_mut()[0] = f32::INFINITY;
        assert!(
            err(e.exact_attention(&q, &q, &inf_v, true)).starts_with("v: non-finite value inf at index [0, 0, 0, 0]")
        );
        let empty = Tensor::<f32>::zeros(&[0, 4]);
        assert!(err(e.exact_attention(&empty, &empty, &empty, false)).contains("at least 1"));
    }
    for e in gpu_engines() {
        let wide = gaussian(&[3, 129], 1.0, 9);
        let msg = e.exact_attention(&wide, &wide, &wide, false).unwrap_err().to_string();
        assert!(msg.contains("at most 128"), "{msg}");
    }
}

/// Long sequences: every loop that walks L (key blocks, key groups) runs for many passes, and the
/// bidirectional key sums run past the 29,952 rows one GEMM dispatch may take on llvmpipe.
#[test]
fn long_sequences_match_reference() {
    let (l, d, dv) = (2500, 128, 8);
    let q = gaussian(&[l, d], 0.5, 1);
    let k = gaussian(&[l, d], 0.5, 2);
    let v = gaussian(&[l, dv], 1.0, 3);
    let exact = reference::exact(&q.to_f64(), &k.to_f64(), &v.to_f64(), false).unwrap();
    let (lf, df) = (40_000, 8);
    let qf = gaussian(&[lf, df], 0.5, 4);
    let kf = gaussian(&[lf, df], 0.5, 5);
    let vf = gaussian(&[lf, dv], 1.0, 6);
    let w = projection(16, df, Scaling::Chi, 7).unwrap().to_f32();
    let favor = [Kernel::Softmax, Kernel::Trig].map(|kernel| (kernel, f64_reference(&qf, &kf, &vf, &w, kernel)));
    for engine in gpu_engines() {
        let got = engine.exact_attention(&q, &k, &v, false).unwrap();
        let err = relative_frobenius(got.data(), exact.data());
        assert!(err <= 1e-5, "{} exact L = {l}: {err:e}", engine.describe());
        for (kernel, want) in &favor {
            let got = engine.favor(&qf, &kf, &vf, &w, &FavorOptions::new(*kernel)).unwrap();
            let err = relative_frobenius(got.data(), want.data());
            assert!(err <= 1e-5, "{} {kernel:?} L = {lf}: {err:e}", engine.describe());
        }
    }
}
