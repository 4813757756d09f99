//! Batched LU with partial pivoting and its solves on every adapter against the f64 reference:
//! reconstruction `P A = L U`, determinants, residuals, and singular matrices.
mod common;
use common::*;
use ortho::{Engine, Tensor};

const SHAPES: [(usize, usize); 9] = [(1, 1), (3, 2), (2, 7), (5, 33), (2, 64), (1, 100), (1, 257), (1, 400), (1, 520)];

fn engines() -> Vec<Engine> {
    let mut all = gpu_engines();
    all.push(Engine::reference());
    all
}

/// `max |P A - L U| / max |A|` from the factors and pivots as the engine returned them.
fn reconstruction_error(a: &[f32], factors: &[f32], pivots: &[f32], n: usize) -> f64 {
    let mut pa: Vec<f64> = a.iter().map(|&x| x as f64).collect();
    for (k, &p) in pivots.iter().enumerate() {
        for c in 0..n {
            pa.swap(k * n + c, p as usize * n + c);
        }
    }
    let f = |i: usize, j: usize| factors[i * n + j] as f64;
    let mut worst = 0.0f64;
    for i in 0..n {
        for j in 0..n {
            let lu: f64 = (0..=i.min(j)).map(|k| if k == i { f(i, j) } else { f(i, k) * f(k, j) }).sum();
            worst = worst.max((pa[i * n + j] - lu).abs());
        }
    }
    worst / a.iter().fold(0.0f64, |m, &x| m.max(x.abs() as f64))
}

#[test]
fn lu_factors_reconstruct_and_determinants_match_the_reference() {
    for engine in engines() {
        for (i, &(batch, n)) in SHAPES.iter().enumerate() {
            let shape: Vec<usize> = if batch == 1 && i % 2 == 0 { vec![n, n] } else { vec![batch, n, n] };
            let a = gaussian(&shape, 1.0, 40 + i as u64);
            let (factors, pivots, det) = engine.lu(&a).unwrap();
            let (_, _, want) = Engine::reference().lu(&a).unwrap();
            assert_eq!(factors.shape(), a.shape());
            assert_eq!(pivots.shape(), &shape[..shape.len() - 1]);
            for m in 0..batch {
                let slice = |t: &Tensor<f32>, size: usize| t.data()[m * size..(m + 1) * size].to_vec();
                let err = reconstruction_error(&slice(&a, n * n), &slice(&factors, n * n), &slice(&pivots, n), n);
                // Partial pivoting keeps |L| <= 1; the growth of Gaussian matrices stays near sqrt(n).
                assert!(err < 2e-6 * n as f64, "{} n={n} matrix {m}: |PA - LU| / |A| = {err:e}", engine.describe());
                let (sign, log) = (det.data()[2 * m], det.data()[2 * m + 1]);
                assert_eq!(sign, want.data()[2 * m], "{} n={n}: sign of det", engine.describe());
                let bound = 1e-5 * n as f64 * (1.0 + want.data()[2 * m + 1].abs() as f64).sqrt();
                assert!(
                    (log - want.data()[2 * m + 1]).abs() as f64 <= bound,
                    "{} n={n}: log|det| {log} vs {}",
                    engine.describe(),
                    want.data()[2 * m + 1]
                );
            }
        }
    }
}

#[test]
fn lu_solve_inverts() {
    for engine in engines() {
        for (i, &(batch, n)) in SHAPES.iter().enumerate() {
            let r = 1 + (i * 5) % 9;
            let a = gaussian(&[batch, n, n], 1.0, 60 + i as u64);
            let b = gaussian(&[batch, n, r], 1.0, 70 + i as u64);
            let (factors, pivots, _) = engine.lu(&a).unwrap();
            let x = engine.lu_solve(&factors, &pivots, &b).unwrap();
            let want = Engine::reference().lu_solve(&factors, &pivots, &b).unwrap();
            for m in 0..batch {
                // Backward error: |A x - b| / (|A| |x|) over each right-hand side.
                for c in 0..r {
                    let (mut residual, mut norm_x, mut norm_a) = (0.0f64, 0.0f64, 0.0f64);
                    for row in 0..n {
                        let ax: f64 = (0..n)
                            .map(|j| a.data()[m * n * n + row * n + j] as f64 * x.data()[m * n * r + j * r + c] as f64)
                            .sum();
                        residual = residual.max((ax - b.data()[m * n * r + row * r + c] as f64).abs());
                        norm_x = norm_x.max(x.data()[m * n * r + row * r + c].abs() as f64);
                        norm_a = norm_a.max((0..n).map(|j| a.data()[m * n * n + row * n + j].abs() as f64).sum());
                    }
                    let backward = residual / (norm_a * norm_x);
                    assert!(backward < 1e-6 * n as f64, "{} n={n}: backward error {backward:e}", engine.describe());
                }
            }
            let worst =
                x.data().iter().zip(want.data()).map(|(p, q)| (p - q).abs() / (1.0 + q.abs())).fold(0.0, f32::max);
            assert!(worst < 1e-3, "{} n={n}: solve differs from the reference by {worst}", engine.describe());
        }
    }
}

#[test]
fn singular_and_misshapen_inputs_are_clear_errors() {
    for engine in engines() {
        let mut a = gaussian(&[2, 5, 5], 1.0, 3);
        for row in 0..5 {
            a.data_mut()[25 + row * 5 + 2] = 0.0;
        }
        let message = engine.lu(&a).unwrap_err().to_string();
        assert!(message.contains("singular"), "{}: {message}", engine.describe());
        let message = engine.lu(&gaussian(&[2, 3, 4], 1.0, 4)).unwrap_err().to_string();
        assert!(message.contains("[n, n] or [batch, n, n]"), "{message}");
        let (f, p, _) = engine.lu(&gaussian(&[2, 3, 3], 1.0, 5)).unwrap();
        let message = engine.lu_solve(&f, &p, &gaussian(&[2, 4, 1], 1.0, 6)).unwrap_err().to_string();
        assert!(message.contains("b: expected shape"), "{message}");
        let mut bad = p.clone();
        bad.data_mut()[1] = 7.0;
        let message = engine.lu_solve(&f, &bad, &gaussian(&[2, 3, 1], 1.0, 6)).unwrap_err().to_string();
        assert!(message.contains("not a row index below 3"), "{message}");
    }
}

/// Past a 32 KiB storage binding the batch runs in pieces: every output (the factors, and the pivots
/// and determinants, one row per matrix) and the solve (its pivots split with its factors) equal one
/// whole call's.
#[test]
fn batches_past_the_binding_equal_one_call() {
    let (batch, n) = (200, 8);
    let a = gaussian(&[batch, n, n], 1.0, 41);
    let b = gaussian(&[batch, n, 3], 1.0, 42);
    let lowered = engines_with_limits(|l| l.max_storage_buffer_binding_size = 32 << 10);
    for (whole, split) in gpu_engines().iter().zip(&lowered) {
        let d = whole.describe();
        let (factors, pivots, det) = whole.lu(&a).unwrap();
        let (f2, p2, d2) = split.lu(&a).unwrap();
        assert_eq!(f2.data(), factors.data(), "{d}: factors");
        assert_eq!(p2.data(), pivots.data(), "{d}: pivots");
        assert_eq!(d2.data(), det.data(), "{d}: determinants");
        let x = whole.lu_solve(&factors, &pivots, &b).unwrap();
        assert_eq!(split.lu_solve(&factors, &pivots, &b).unwrap().data(), x.data(), "{d}: solve");
    }
}
