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
    let cpu = ortho::Engine::cpu("reference");
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
