//! Gradients of random-feature attention: the GPU's bidirectional backward pass against the f64
//! reference (itself checked against finite differences in `ortho_ref`), and clear refusals.
mod common;
use common::*;
use ortho::random::{Scaling, projection};
use ortho::{Engine, FavorOptions, Kernel, Tensor};
use ortho_ref::favor as reference;

const KERNELS: [Kernel; 3] = [Kernel::Softmax, Kernel::Trig, Kernel::Relu { eps: 1e-3 }];

#[test]
fn bidirectional_gradients_match_reference() {
    // (B, H, L, d, dv, m): ones, sizes off the tiles, per-head projections.
    let shapes = [(1, 1, 1, 1, 1, 1), (1, 2, 9, 4, 3, 8), (2, 1, 70, 16, 9, 33), (1, 2, 130, 32, 16, 64)];
    for engine in gpu_engines() {
        for (i, &(b, h, l, d, dv, m)) in shapes.iter().enumerate() {
            let [q, k, v] = attention_inputs((b, h, l, d, dv, m), 0.5, 10 * i as u64);
            let g = gaussian(&[b, h, l, dv], 1.0, 10 * i as u64 + 3);
            let w = case_projection(i, h, m, d);
            for kernel in KERNELS {
                let o = FavorOptions::new(kernel);
                let got = engine.favor_backward(&q, &k, &v, &w, &o, &g).unwrap();
                let want = reference::favor_backward(
                    &q.to_f64(),
                    &k.to_f64(),
                    &v.to_f64(),
                    &w.to_f64(),
                    kernel,
                    false,
                    &g.to_f64(),
                )
                .unwrap();
                for (name, (a, b)) in ["dq", "dk", "dv"].iter().zip(got.iter().zip(&want)) {
                    let norm = b.data().iter().map(|x| x * x).sum::<f64>().sqrt();
                    let err = relative_frobenius(a.data(), b.data()) * norm / norm.max(1e-3);
                    let bound = 1e-4 * denominator_condition(&q, &k, &w, kernel, false);
                    assert!(
                        err <= bound,
                        "{} {kernel:?} {:?} {name}: {err:e} > {bound:e}",
                        engine.describe(),
                        (b, h, l, d, dv, m)
                    );
                }
            }
        }
    }
}

#[test]
fn gradients_stay_finite_at_large_exponents() {
    let (l, d, dv, m) = (24, 8, 4, 16);
    let q = gaussian(&[l, d], 6.0, 1);
    let k = gaussian(&[l, d], 6.0, 2);
    let v = gaussian(&[l, dv], 1.0, 3);
    let g = gaussian(&[l, dv], 1.0, 4);
    let w = projection(m, d, Scaling::Chi, 5).unwrap().to_f32();
    for engine in gpu_engines() {
        let grads = engine.favor_backward(&q, &k, &v, &w, &FavorOptions::default(), &g).unwrap();
        assert!(grads.iter().all(|t| t.data().iter().all(|x| x.is_finite())), "{}", engine.describe());
    }
}

#[test]
fn causal_gradients_run_on_the_reference_and_are_refused_on_the_gpu() {
    let q = gaussian(&[6, 3], 0.5, 1);
    let w = projection(4, 3, Scaling::Chi, 2).unwrap().to_f32();
    let o = FavorOptions::causal(Kernel::Softmax);
    let cpu = Engine::cpu("test").favor_backward(&q, &q, &q, &w, &o, &q).unwrap();
    assert_eq!(cpu[0].shape(), &[6, 3]);
    for engine in gpu_engines() {
        let err = engine.favor_backward(&q, &q, &q, &w, &o, &q).unwrap_err().to_string();
        assert!(err.contains("causal gradients run on the CPU reference only"), "{err}");
        let bad = Tensor::<f32>::zeros(&[5, 3]);
        let err = engine.favor_backward(&q, &q, &q, &w, &FavorOptions::default(), &bad).unwrap_err().to_string();
        assert!(err.starts_with("grad: expected shape [6, 3]"), "{err}");
    }
}
