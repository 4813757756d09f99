//! Work past a device's limits, on devices opened with shrunk limits (as an application embedding
//! ortho may do): a clear error naming the call and the limit, never a wgpu panic or a wrong answer.
mod common;
use common::*;
use ortho::{Error, Tensor};

#[test]
fn scratch_past_the_binding_limit_is_a_clear_error() {
    for e in engines_with_limits(|l| l.max_storage_buffer_binding_size = 512 << 10) {
        // U is 264 KB, but the inverse of S is padded to 512 x 512 (1 MiB).
        let u = e.upload("u", &gaussian(&[257, 257], 1.0, 1)).unwrap();
        let err = e.run_gpu(&ortho::ops::Cwy { stiefel: true }, &[&u]).unwrap_err();
        assert!(matches!(err, Error::Limit { .. }), "{err}");
        assert!(err.to_string().contains("a scratch buffer of cwy"), "{err}");
        // An input past the limit is named, with what to do.
        let err = e.upload("q", &Tensor::zeros(&[200_000])).unwrap_err().to_string();
        assert!(err.contains("q of shape [200000]") && err.contains("split the work"), "{err}");
        // Within the limit the same engine still answers.
        let u = e.upload("u", &gaussian(&[100, 40], 1.0, 2)).unwrap();
        let q = e.download(&e.run_gpu(&ortho::ops::Cwy { stiefel: true }, &[&u]).unwrap()[0]).unwrap();
        let want = ortho_ref::cwy::tcwy(&e.download(&u).unwrap().to_f64()).unwrap();
        assert!(relative_frobenius(q.data(), want.data()) < 1e-5);
    }
}

/// On devices opened with 16 workgroups per dimension, every kernel whose grid would pass that
/// (rows of exact attention, problems of the sequential walk, tiles of CWY's products, batches of
/// matrix maps) splits its dispatches and still matches the reference.
#[test]
fn work_past_the_workgroup_limit_is_split() {
    use ortho::ops::*;
    use ortho::{FavorOptions, GroupMap, Kernel, Schedule};
    let cpu = ortho::Engine::reference();
    // Rows of one long problem, and many short problems.
    let long = attention_inputs((1, 1, 1100, 4, 3, 8), 0.5, 1);
    let [q, k, v] = attention_inputs((2, 10, 40, 4, 3, 8), 0.5, 2);
    let w = gaussian(&[8, 4], 1.0, 4);
    let sequential =
        FavorOptions { chunk: Some(16), schedule: Schedule::Sequential, ..FavorOptions::causal(Kernel::Softmax) };
    let u = gaussian(&[1100, 20], 1.0, 5);
    let a = gaussian(&[300, 3, 3], 0.5, 6);
    for e in engines_with_limits(|l| l.max_compute_workgroups_per_dimension = 16) {
        let check = |name: &str, got: Vec<Tensor<f32>>, want: Vec<Tensor<f32>>, bound: f64| {
            for (got, want) in got.iter().zip(&want) {
                let err = relative_frobenius(got.data(), want.data());
                assert!(err < bound, "{} {name}: {err:e}", e.describe());
            }
        };
        for ([q, k, v], causal) in [(&long, false), (&long, true), (&[q.clone(), k.clone(), v.clone()], true)] {
            let op = ExactAttention { causal };
            check("exact", e.run(&op, &[q, k, v]).unwrap(), cpu.run(&op, &[q, k, v]).unwrap(), 1e-5);
        }
        let op = Favor(sequential);
        check(
            "sequential favor",
            e.run(&op, &[&q, &k, &v, &w]).unwrap(),
            cpu.run(&op, &[&q, &k, &v, &w]).unwrap(),
            1e-5,
        );
        for op in [Cwy { stiefel: false }, Cwy { stiefel: true }] {
            check("cwy", e.run(&op, &[&u]).unwrap(), cpu.run(&op, &[&u]).unwrap(), 1e-5);
        }
        let op = MatrixMap(GroupMap::Exp);
        check("expm", e.run(&op, &[&a]).unwrap(), cpu.run(&op, &[&a]).unwrap(), 1e-5);
    }
}

/// CWY's `Q = I - W U^T` adds the identity in the product's epilogue: on a device with 16
/// workgroups per dimension its 1100 x 1100 output takes several blocks, and the diagonal must land
/// in the right ones whatever the variant's tile shape.
#[test]
fn the_identity_term_crosses_blocks_in_every_gemm_variant() {
    use ortho::ops::Cwy;
    let u = gaussian(&[1100, 20], 1.0, 5);
    let want = ortho::Engine::reference().run(&Cwy { stiefel: false }, &[&u]).unwrap();
    for e in engines_with_limits(|l| l.max_compute_workgroups_per_dimension = 16) {
        for v in e.gemm_variants() {
            e.force_gemm_variant(Some(v)).unwrap();
            let got = e.run(&Cwy { stiefel: false }, &[&u]).unwrap();
            let err = relative_frobenius(got[0].data(), want[0].data());
            assert!(err < 1e-5, "{} {}: {err:e}", e.describe(), v.name());
        }
    }
}

/// On devices opened with a 64 KiB binding limit, host calls whose tensors pass it run in pieces:
/// batches a slice at a time, or one long sequence in segments with the attention state carried
/// between them (bidirectional: every segment's keys before any queries; gradients: dq in order, then
/// dk and dv with the queries' state carried backwards). Each matches the reference.
#[test]
fn host_work_past_the_binding_limit_is_split() {
    use ortho::ops::*;
    use ortho::{Checkpoints, FavorOptions, GroupMap, Kernel, MatmulOptions};
    let cpu = ortho::Engine::reference();
    // One long problem (q: 96 KB), four heads of one batch (segments), three batches (slices).
    let long = attention_inputs((1, 1, 3000, 8, 4, 16), 0.5, 1);
    let heads = attention_inputs((1, 4, 700, 8, 8, 16), 0.5, 2);
    let batches = attention_inputs((3, 2, 400, 8, 4, 16), 0.5, 3);
    let (w, w_heads) = (gaussian(&[16, 8], 1.0, 4), gaussian(&[4, 16, 8], 1.0, 5));
    let grad = gaussian(&[3, 2, 400, 4], 1.0, 6);
    let (grad_long, grad_heads) = (gaussian(&[1, 1, 3000, 4], 1.0, 13), gaussian(&[1, 4, 700, 8], 1.0, 14));
    let (a, u, x) = (gaussian(&[1100, 4, 4], 0.5, 7), gaussian(&[3, 100, 60], 1.0, 8), gaussian(&[3, 80, 80], 1.0, 9));
    // 300 flows of 8 x 8 (W0: 75 KB) with shared Qs, Ns and a nested state sliced alike.
    let flow = ortho_ref::flow::Flow {
        method: ortho_ref::flow::Method::Rkmk4,
        dt: 0.05,
        steps: 3,
        newton_schulz_every: None,
        generator: ortho_ref::flow::Generator::Isospectral { qs: symmetric(8, 0.1, 10), ns: symmetric(8, 0.1, 11) },
        state: Some((gaussian(&[300, 8], 1.0, 12).to_f64(), ortho_ref::flow::Activation::Tanh)),
    };
    let w0 = Tensor::from_fn(&[300, 8, 8], |e| if e % 64 % 9 == 0 { 1.0 } else { 0.0 });
    for e in engines_with_limits(|l| l.max_storage_buffer_binding_size = 64 << 10) {
        let check = |name: &str, got: Vec<Tensor<f32>>, want: Vec<Tensor<f32>>, bound: f64| {
            assert_eq!(got.len(), want.len());
            for (got, want) in got.iter().zip(&want) {
                assert_eq!(got.shape(), want.shape(), "{name}");
                let err = relative_frobenius(got.data(), want.data());
                assert!(err < bound, "{} {name}: {err:e}", e.describe());
            }
        };
        let run = |name: &str, op: &dyn Fn(&ortho::Engine) -> Vec<Tensor<f32>>, bound: f64| {
            check(name, op(&e), op(&cpu), bound)
        };
        for kernel in [Kernel::Softmax, Kernel::Trig, Kernel::Relu { eps: 1e-3 }] {
            for causal in [false, true] {
                let op = Favor(FavorOptions { causal, chunk: causal.then_some(32), ..FavorOptions::new(kernel) });
                let name = format!("favor {kernel:?} causal {causal}");
                for ([q, k, v], w) in [(&long, &w), (&heads, &w_heads), (&batches, &w)] {
                    run(&name, &|e| e.run(&op, &[q, k, v, w]).unwrap(), 1e-4);
                }
            }
        }
        let [q, k, v] = &batches;
        let op = FavorBackward(FavorOptions::causal(Kernel::Softmax));
        run("favor backward", &|e| e.run(&op, &[q, k, v, &w, &grad]).unwrap(), 1e-4);
        // Gradients of one long sequence (and of heads with their own projections) in segments.
        for (kernel, causal) in [(Kernel::Softmax, false), (Kernel::Trig, false), (Kernel::Softmax, true)] {
            let o = FavorOptions { causal, chunk: causal.then_some(32), ..FavorOptions::new(kernel) };
            let op = FavorBackward(FavorOptions { checkpoints: Checkpoints::Every(2), ..o });
            let name = format!("favor backward {kernel:?} causal {causal}");
            for ([q, k, v], w, g) in [(&long, &w, &grad_long), (&heads, &w_heads, &grad_heads)] {
                run(&name, &|e| e.run(&op, &[q, k, v, w, g]).unwrap(), 1e-4);
            }
        }
        run("exact", &|e| e.run(&ExactAttention { causal: true }, &[q, k, v]).unwrap(), 1e-5);
        run("expm", &|e| e.run(&MatrixMap(GroupMap::Exp), &[&a]).unwrap(), 1e-5);
        run("cwy", &|e| e.run(&Cwy { stiefel: false }, &[&u]).unwrap(), 1e-5);
        run("matmul", &|e| e.run(&Matmul(MatmulOptions::default()), &[&x, &x]).unwrap(), 1e-5);
        run("flow", &|e| e.run(&flow, &[&w0]).unwrap(), 1e-5);
    }
}

/// More features than llvmpipe lets one invocation loop over (65,535): the per-row reductions over
/// the features (the stabiliser's maximum, the features' backward coefficient) stay exact.
#[test]
fn features_past_an_invocations_loop_limit() {
    use ortho::ops::*;
    use ortho::{FavorOptions, Kernel};
    let cpu = ortho::Engine::reference();
    let [q, k, v] = attention_inputs((1, 1, 4, 2, 2, 0), 0.5, 1);
    let w = gaussian(&[66_000, 2], 1.0, 2);
    let grad = gaussian(&[1, 1, 4, 2], 1.0, 3);
    for e in gpu_engines() {
        for kernel in [Kernel::Softmax, Kernel::Trig] {
            let op = FavorBackward(FavorOptions::new(kernel));
            let (got, want) =
                (e.run(&op, &[&q, &k, &v, &w, &grad]).unwrap(), cpu.run(&op, &[&q, &k, &v, &w, &grad]).unwrap());
            for (i, (got, want)) in got.iter().zip(&want).enumerate() {
                let err = relative_frobenius(got.data(), want.data());
                assert!(err < 1e-4, "{} {kernel:?} gradient {i}: {err:e}", e.describe());
            }
        }
    }
}

/// Bidirectional attention whose features pass one binding at a GEMM tile of rows (64 KiB bindings:
/// more than 256 features a row) takes them in blocks, forward and backward, with per-head
/// projections and (forward) in the segments of a long sequence; causal attention names the chunk
/// that fits.
#[test]
fn features_in_blocks_past_the_binding_limit() {
    use ortho::ops::*;
    use ortho::{FavorOptions, Kernel};
    let cpu = ortho::Engine::reference();
    let short = attention_inputs((1, 2, 100, 8, 4, 0), 0.5, 1);
    let long = attention_inputs((1, 1, 2100, 8, 4, 0), 0.5, 4);
    let (w, w_heads) = (gaussian(&[700, 8], 1.0, 7), gaussian(&[2, 300, 8], 1.0, 8));
    let grad = gaussian(&[1, 2, 100, 4], 1.0, 9);
    let wide = attention_inputs((1, 2, 100, 8, 4, 0), 2.0, 11);
    let w_skewed = Tensor::from_fn(&[700, 8], |e| w.data()[e] * if e < 256 * 8 { 10.0 } else { 1.0 });
    for e in engines_with_limits(|l| l.max_storage_buffer_binding_size = 64 << 10) {
        let run = |name: &str, op: &dyn Fn(&ortho::Engine) -> Vec<Tensor<f32>>| {
            for (i, (got, want)) in op(&e).iter().zip(op(&cpu)).enumerate() {
                let err = relative_frobenius(got.data(), want.data());
                assert!(err < 1e-4, "{} {name} output {i}: {err:e}", e.describe());
            }
        };
        for kernel in [Kernel::Softmax, Kernel::Trig, Kernel::Relu { eps: 1e-3 }] {
            let o = FavorOptions::new(kernel);
            for ([q, k, v], w) in [(&short, &w), (&short, &w_heads)] {
                let name = format!("{kernel:?} {:?} x {:?}", q.shape(), w.shape());
                run(&name, &|e| e.run(&Favor(o), &[q, k, v, w]).unwrap());
                run(&format!("{name} gradients"), &|e| e.run(&FavorBackward(o), &[q, k, v, w, &grad]).unwrap());
            }
        }
        let [q, k, v] = &long;
        run("segments of blocks", &|e| e.run(&Favor(FavorOptions::default()), &[q, k, v, &w]).unwrap());
        // The stabilisers are maxima over every block: here the first block's projections reach ~100
        // and the last block's ~10, so exp(a - max of one block) would overflow. (Keys are the
        // queries: with unrelated keys at this scale the true weights sit ~e^-100 below the
        // stabilisers, past f32's range, blocks or not.)
        let [q, _, v] = &wide;
        let k = q;
        let o = FavorOptions::default();
        run("a dominant first block", &|e| e.run(&Favor(o), &[q, k, v, &w_skewed]).unwrap());
        run("a dominant first block, gradients", &|e| e.run(&FavorBackward(o), &[q, k, v, &w_skewed, &grad]).unwrap());
        let [q, k, v] = &short;
        let err = e.run(&Favor(FavorOptions::causal(Kernel::Softmax)), &[q, k, v, &w]).unwrap_err().to_string();
        assert!(err.contains("chunks of 11 tokens or fewer fit"), "{err}");
    }
}
