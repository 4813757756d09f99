//! Compact-WY Householder accumulation: GPU against the f64 reference, orthogonality bounds, the
//! sequential product, T-CWY, apply, and errors for bad input.
mod common;
use common::*;
use ortho::{Engine, Tensor};
use ortho_ref::cwy as reference;

/// `(batch, N, L)`: L = 1, L = N, N off the 16- and 64-wide tiles, several merge levels.
const SHAPES: [(usize, usize, usize); 8] =
    [(1, 1, 1), (1, 5, 1), (2, 7, 7), (1, 17, 16), (3, 33, 20), (1, 70, 65), (2, 64, 64), (1, 130, 100)];

fn f32_eps() -> f64 {
    2f64.powi(-23)
}

/// `|Q^T Q - I|_F` and LAPACK's `|I - Q^T Q|_1 / (N eps)` (eps = 2^-24) of `[cols]` columns.
fn orthogonality(q: &[f32], n: usize, cols: usize) -> (f64, f64) {
    let mut frob: f64 = 0.0;
    let mut col_sums = vec![0.0f64; cols];
    for i in 0..cols {
        for j in 0..cols {
            let dot: f64 = (0..n).map(|r| q[r * cols + i] as f64 * q[r * cols + j] as f64).sum();
            let e = dot - if i == j { 1.0 } else { 0.0 };
            frob += e * e;
            col_sums[j] += e.abs();
        }
    }
    let one_norm = col_sums.iter().copied().fold(0.0, f64::max);
    (frob.sqrt(), one_norm / (n as f64 * 2f64.powi(-24)))
}

/// Every adapter, and the CPU fallback's fast path (f32, blocked solve and products).
#[test]
fn cwy_matches_reference_and_is_orthogonal() {
    for engine in gpu_engines().into_iter().chain([Engine::cpu("fast path")]) {
        for (i, &(b, n, l)) in SHAPES.iter().enumerate() {
            let u = gaussian(&[b, n, l], 1.0, i as u64);
            let want = reference::householder_product(&u.to_f64()).unwrap();
            let q = engine.cwy(&u).unwrap();
            let err = max_abs_diff(q.data(), want.data());
            let bound = 16.0 * f32_eps() * (l as f64).sqrt();
            assert!(err <= bound, "{} {:?}: max |Q - Q_ref| {err:e} > {bound:e}", engine.describe(), (b, n, l));
            for z in 0..b {
                let (frob, ratio) = orthogonality(&q.data()[z * n * n..(z + 1) * n * n], n, n);
                assert!(frob <= 8.0 * n as f64 * f32_eps(), "{:?}: |Q^T Q - I|_F = {frob:e}", (b, n, l));
                assert!(ratio < 30.0, "{:?}: LAPACK ratio {ratio}", (b, n, l));
            }
            let omega = engine.tcwy(&u).unwrap();
            assert_eq!(omega.shape(), &[b, n, l]);
            let want = reference::tcwy(&u.to_f64()).unwrap();
            assert!(max_abs_diff(omega.data(), want.data()) <= 16.0 * f32_eps() * (l as f64).sqrt());
        }
    }
}

/// CWY's products skip what is known to be zero or unwanted: the Gram matrix's lower triangle (S
/// reads the upper one), and the part of K where `W = S^(-1)` (upper triangular) or `W^T` is zero.
/// Under every GEMM variant (each skips its own way): Q, the apply both ways and the gradient; and
/// on a device of 8 workgroups a dimension, where `lanes-8x8` takes the 100 x 100 products in blocks
/// of 64 (the Gram block below the diagonal is not recorded).
#[test]
fn cwy_under_every_gemm_variant_and_in_blocks() {
    let cases = [(1, 130, 100), (2, 70, 65), (1, 200, 200)];
    for engine in gpu_engines() {
        for variant in engine.gemm_variants() {
            engine.force_gemm_variant(Some(variant)).unwrap();
            for (i, &(b, n, l)) in cases.iter().enumerate() {
                let u = gaussian(&[b, n, l], 1.0, 300 + i as u64);
                let err = max_abs_diff(
                    engine.cwy(&u).unwrap().data(),
                    reference::householder_product(&u.to_f64()).unwrap().data(),
                );
                let bound = 16.0 * f32_eps() * (l as f64).sqrt();
                let name = format!("{} {} {:?}", engine.describe(), variant.name(), (b, n, l));
                assert!(err <= bound, "{name}: {err:e} > {bound:e}");
                let x = gaussian(&[b, n, 5], 1.0, 320 + i as u64);
                for transpose in [false, true] {
                    let y = engine.cwy_apply(&u, &x, transpose).unwrap();
                    let want = reference::apply(&u.to_f64(), &x.to_f64(), transpose).unwrap();
                    let err = relative_frobenius(y.data(), want.data());
                    assert!(err <= 1e-5, "{name} apply, transpose {transpose}: {err:e}");
                }
                let g = gaussian(&[b, n, n], 1.0, 330 + i as u64);
                let want = reference::cwy_backward(&u.to_f64(), &g.to_f64()).unwrap();
                let err = gradient_error(&engine.cwy_backward(&u, &g).unwrap(), &want);
                assert!(err <= 1e-4, "{name} gradient: {err:e}");
            }
        }
        engine.force_gemm_variant(None).unwrap();
    }
    let u = gaussian(&[130, 100], 1.0, 310);
    let want = reference::householder_product(&u.to_f64()).unwrap();
    for engine in engines_with_limits(|l| l.max_compute_workgroups_per_dimension = 8) {
        engine.force_gemm_variant(Some(ortho::GemmVariant::Lanes { rows: 8 })).unwrap();
        let err = max_abs_diff(engine.cwy(&u).unwrap().data(), want.data());
        let bound = 16.0 * f32_eps() * 100f64.sqrt();
        assert!(err <= bound, "{}: {err:e} > {bound:e}", engine.describe());
    }
}

#[test]
fn nearly_parallel_vectors_stay_orthogonal() {
    let (n, l) = (48, 40);
    let base = gaussian(&[n, 1], 1.0, 1);
    let noise = gaussian(&[n, l], 1e-3, 2);
    let u = Tensor::from_fn(&[n, l], |e| base.data()[e / l] + noise.data()[e]);
    for engine in gpu_engines().into_iter().chain([Engine::cpu("fast path")]) {
        let q = engine.cwy(&u).unwrap();
        let (frob, ratio) = orthogonality(q.data(), n, n);
        assert!(frob <= 8.0 * n as f64 * f32_eps() && ratio < 30.0, "{}: {frob:e}, {ratio}", engine.describe());
    }
}

#[test]
fn apply_matches_reference() {
    for engine in gpu_engines().into_iter().chain([Engine::cpu("fast path")]) {
        for (i, &(b, n, l)) in SHAPES.iter().enumerate() {
            let u = gaussian(&[b, n, l], 1.0, 100 + i as u64);
            let x = gaussian(&[b, n, 3 + i], 1.0, 200 + i as u64);
            for transpose in [false, true] {
                let y = engine.cwy_apply(&u, &x, transpose).unwrap();
                let want = reference::apply(&u.to_f64(), &x.to_f64(), transpose).unwrap();
                let err = relative_frobenius(y.data(), want.data());
                assert!(err <= 1e-5, "{} {:?} transpose {transpose}: {err:e}", engine.describe(), (b, n, l));
            }
        }
    }
}

#[test]
fn sequential_householder_shader_matches_reference() {
    for engine in gpu_engines() {
        for (i, &(b, n, l)) in SHAPES.iter().enumerate() {
            let u = gaussian(&[b, n, l], 1.0, 300 + i as u64);
            let q = engine.householder_product(&u).unwrap();
            let want = reference::householder_product(&u.to_f64()).unwrap();
            assert!(max_abs_diff(q.data(), want.data()) <= 16.0 * f32_eps() * (l as f64).sqrt(), "{:?}", (b, n, l));
        }
    }
}

#[test]
fn reversed_order_differs() {
    let (n, l) = (12, 6);
    let u = gaussian(&[n, l], 1.0, 7);
    let reversed = Tensor::from_fn(&[n, l], |e| u.data()[(e / l) * l + (l - 1 - e % l)]);
    for engine in gpu_engines().into_iter().chain([Engine::cpu("test")]) {
        let a = engine.cwy(&u).unwrap();
        let b = engine.cwy(&reversed).unwrap();
        assert!(max_abs_diff(a.data(), b.data()) > 0.1);
    }
}

#[test]
fn bad_inputs_get_clear_errors() {
    for engine in gpu_engines().into_iter().chain([Engine::cpu("test")]) {
        let mut u = gaussian(&[2, 6, 3], 1.0, 1);
        for i in 0..6 {
            u.data_mut()[(6 + i) * 3 + 1] = 0.0;
        }
        let err = engine.cwy(&u).unwrap_err().to_string();
        assert!(err.contains("vector 1 of batch 1 is zero"), "{err}");
        let wide = gaussian(&[3, 4], 1.0, 2);
        assert!(engine.cwy(&wide).unwrap_err().to_string().starts_with("u: expected shape"));
        let u = gaussian(&[2, 6, 3], 1.0, 3);
        let x = gaussian(&[2, 5, 2], 1.0, 4);
        assert!(engine.cwy_apply(&u, &x, false).unwrap_err().to_string().starts_with("x: expected shape"));
        let mut nan = u.clone();
        nan.data_mut()[4] = f32::NAN;
        assert!(engine.tcwy(&nan).unwrap_err().to_string().starts_with("u: non-finite value NaN"));
    }
}

/// `|got - want|_F / max(|want|_F, 1)`: relative, except for gradients that vanish (N = 1, where Q is
/// constant) and are compared absolutely.
fn gradient_error(got: &Tensor<f32>, want: &Tensor<f64>) -> f64 {
    let norm = want.data().iter().map(|x| x * x).sum::<f64>().sqrt();
    relative_frobenius(got.data(), want.data()) * norm / norm.max(1.0)
}

#[test]
fn gradients_match_reference() {
    for engine in gpu_engines().into_iter().chain([Engine::cpu("fast path")]) {
        for (i, &(b, n, l)) in SHAPES.iter().enumerate() {
            let u = gaussian(&[b, n, l], 1.0, 400 + i as u64);
            let (u64_, k) = (u.to_f64(), 2 + i % 3);
            let g = gaussian(&[b, n, n], 1.0, 500 + i as u64);
            let du = engine.cwy_backward(&u, &g).unwrap();
            let want = reference::cwy_backward(&u64_, &g.to_f64()).unwrap();
            let err = gradient_error(&du, &want);
            assert!(err <= 1e-4, "{} cwy {:?}: {err:e}", engine.describe(), (b, n, l));
            let go = gaussian(&[b, n, l], 1.0, 600 + i as u64);
            let du = engine.tcwy_backward(&u, &go).unwrap();
            let want = reference::tcwy_backward(&u64_, &go.to_f64()).unwrap();
            let err = gradient_error(&du, &want);
            assert!(err <= 1e-4, "{} tcwy {:?}: {err:e}", engine.describe(), (b, n, l));
            let x = gaussian(&[b, n, k], 1.0, 700 + i as u64);
            let ybar = gaussian(&[b, n, k], 1.0, 800 + i as u64);
            for transpose in [false, true] {
                let (du, dx) = engine.cwy_apply_backward(&u, &x, &ybar, transpose).unwrap();
                let (want_du, want_dx) =
                    reference::apply_backward(&u64_, &x.to_f64(), &ybar.to_f64(), transpose).unwrap();
                let (e1, e2) = (gradient_error(&du, &want_du), gradient_error(&dx, &want_dx));
                assert!(
                    e1 <= 1e-4 && e2 <= 1e-4,
                    "{} apply {:?} transpose {transpose}: dU {e1:e}, dX {e2:e}",
                    engine.describe(),
                    (b, n, l)
                );
            }
        }
    }
}

/// A reflector does not depend on its vector's length: columns scaled by 1e20, 1e-20, 1e-25 and 1e30
/// give the Q of their unit columns (once NaN on the GPU: `U^T U` overflowed or underflowed), and the
/// gradient of each column scales like the inverse of its length.
#[test]
fn column_scale_does_not_matter() {
    let (b, n, l) = (2, 9, 4);
    let scales = [1e20f64, 1e-20, 1e-25, 1e30];
    let base = gaussian(&[b, n, l], 1.0, 1).to_f64();
    let scaled = Tensor::from_fn(&[b, n, l], |e| base.data()[e] * scales[e % l]);
    let u = scaled.to_f32();
    let q_want = reference::cwy(&base).unwrap();
    let g = gaussian(&[b, n, n], 1.0, 2);
    let du_want = reference::cwy_backward(&scaled, &g.to_f64()).unwrap();
    for engine in gpu_engines().into_iter().chain([Engine::cpu("fast path")]) {
        for (name, got) in [("cwy", engine.cwy(&u)), ("sequential", engine.householder_product(&u))] {
            let err = relative_frobenius(got.unwrap().data(), q_want.data());
            assert!(err < 1e-5, "{} {name}: {err:e}", engine.describe());
        }
        let du = engine.cwy_backward(&u, &g).unwrap();
        for column in 0..l {
            let pick = |t: &[f64]| (0..b * n).map(|r| t[r * l + column]).collect::<Vec<f64>>();
            let got: Vec<f64> = pick(du.to_f64().data());
            let err = relative_frobenius(&got, &pick(du_want.data()));
            assert!(
                err < 1e-4,
                "{} gradient of column {column} (scale {:e}): {err:e}",
                engine.describe(),
                scales[column]
            );
        }
    }
}
