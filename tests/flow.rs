//! Batched matrix exponentials on the GPU against the f64 Padé-13 oracle over norms from 1e-8 to 1e3
//! and n from 1 to 64, orthogonality for skew input, and errors for bad input.
mod common;
use common::*;
use ortho::{Engine, Tensor};
use ortho_ref::expm as reference;

/// Relative error bound of f32 expm: 1e-5 for |A|_1 <= 1; beyond, each of the s squarings can
/// double the relative error of the scaled exponential (math.md §3.3), so 1e-5 * 2^s. (Measured:
/// about 2.5e-8 * 2^s.)
fn bound(norm: f64) -> f64 {
    let (_, squarings) = reference::plan(norm, &reference::THETA_F32);
    1e-5 * 2f64.powi(squarings as i32)
}

#[test]
fn expm_matches_the_pade_oracle() {
    for engine in gpu_engines() {
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
    for engine in gpu_engines() {
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
    }
}

#[test]
fn cayley_matches_reference() {
    for engine in gpu_engines() {
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
                    engine.record_group_map(enc, map, &ga, &inc, ExpmOutput::Increment)?;
                    engine.record_group_map(enc, map, &ga, &gw, ExpmOutput::Update)
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
