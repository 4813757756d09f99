//! The engine's GEMM, in every variant the adapter runs, against the f64 reference, over shapes that
//! are not multiples of the tiles, transposed operands and broadcast batches.
mod common;
use common::*;
use ortho::{MatmulOptions, Tensor};

fn reference(a: &Tensor<f32>, b: &Tensor<f32>, o: MatmulOptions) -> Tensor<f32> {
    ortho::Engine::reference().matmul(a, b, o).unwrap()
}

/// Every GEMM variant the engine's device runs (`all`), or one of each tiling (the subgroup forms
/// where it has them), forced in turn.
fn variant_engines(engines: Vec<ortho::Engine>, all: bool) -> impl Iterator<Item = (ortho::Engine, String)> {
    use ortho::GemmVariant::{Lanes, Rows, Tiled};
    engines.into_iter().flat_map(move |engine| {
        let variants = engine.gemm_variants();
        let subgroups = variants.iter().any(|v| matches!(v, Rows { subgroup: true, .. }));
        let tiling = move |v: &ortho::GemmVariant| match *v {
            Tiled { depth } => depth == 16,
            Rows { subgroup, .. } => subgroup == subgroups,
            Lanes { rows } => rows == 8,
        };
        variants.into_iter().filter(move |v| all || tiling(v)).map(move |v| {
            engine.force_gemm_variant(Some(v)).unwrap();
            let e = engine.clone();
            (e, v.name())
        })
    })
}

#[test]
fn gemm_matches_reference() {
    let shapes = [
        (1, 1, 1, 1),
        (1, 3, 5, 7),
        (2, 64, 64, 64),
        (3, 65, 17, 63),
        (1, 130, 129, 70),
        (4, 5, 200, 9),
        (1, 70, 9, 600),
    ];
    // Every variant of every adapter, and the CPU fallback's blocked product.
    let cpu = (ortho::Engine::cpu("fast path"), "matrixmultiply".to_string());
    for (engine, variant) in variant_engines(gpu_engines(), true).chain([cpu]) {
        for (i, &(z, m, k, n)) in shapes.iter().enumerate() {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let o = MatmulOptions { transpose_a: ta, transpose_b: tb };
                let a = gaussian(&if ta { [z, k, m] } else { [z, m, k] }, 1.0, i as u64);
                // The second operand is shared by every batch in odd cases.
                let b_shape = if tb { vec![n, k] } else { vec![k, n] };
                let b_shape = if i % 2 == 0 { [vec![z], b_shape].concat() } else { b_shape };
                let b = gaussian(&b_shape, 1.0, 100 + i as u64);
                let got = engine.matmul(&a, &b, o).unwrap();
                let want = reference(&a, &b, o);
                assert_eq!(got.shape(), want.shape());
                let err = relative_frobenius(got.data(), want.data());
                assert!(err < 1e-6, "{} {variant} {:?} {:?}: {err}", engine.describe(), (z, m, k, n), o);
            }
        }
    }
}

#[test]
fn gemm_shape_errors() {
    let e = ortho::Engine::cpu("shape checks");
    let a = Tensor::<f32>::zeros(&[3, 4]);
    let err = e.matmul(&a, &Tensor::zeros(&[5, 2]), MatmulOptions::default()).unwrap_err().to_string();
    assert!(err.contains("inner dimension 4"), "{err}");
    let err = e.matmul(&Tensor::zeros(&[2]), &a, MatmulOptions::default()).unwrap_err().to_string();
    assert!(err.starts_with("a:"), "{err}");
}

/// Products past what one dispatch may take: K past the 29,952 that llvmpipe's loop limit allows one
/// invocation (few tiles: the slices split across workgroups and summed, with broadcast operands),
/// and, on devices opened with 8 workgroups per dimension, M, N and the batch past 8 tiles of 64, and
/// split products whose slices and batches share those 8.
#[test]
fn gemm_splits_past_the_dispatch_limits() {
    let check = |engine: &ortho::Engine, a: &Tensor<f32>, b: &Tensor<f32>, o: MatmulOptions, bound: f64| {
        let err = relative_frobenius(engine.matmul(a, b, o).unwrap().data(), reference(a, b, o).data());
        let variant = engine.gemm_variant(ortho::GemmClass::new(1, 1, 1, 1, false, false)).unwrap().name();
        assert!(err < bound, "{} {variant} {:?} x {:?} {o:?}: {err}", engine.describe(), a.shape(), b.shape());
    };
    for (engine, _) in variant_engines(gpu_engines(), true) {
        for (ta, tb) in [(false, false), (true, true)] {
            let o = MatmulOptions { transpose_a: ta, transpose_b: tb };
            let (m, k, n) = (3, 40_000, 5);
            let a = gaussian(&if ta { [2, k, m] } else { [2, m, k] }, 1.0, 1);
            let b = gaussian(&if tb { [n, k] } else { [k, n] }, 1.0, 2);
            check(&engine, &a, &b, o, 1e-5);
        }
    }
    for (engine, _) in variant_engines(engines_with_limits(|l| l.max_compute_workgroups_per_dimension = 8), false) {
        for (z, m, k, n) in
            [(1, 1100, 3, 2), (1, 2, 5, 1030), (20, 3, 4, 5), (2, 600, 70, 520), (1, 3, 5000, 4), (6, 2, 3000, 3)]
        {
            for (ta, tb) in [(false, false), (true, false), (false, true)] {
                let o = MatmulOptions { transpose_a: ta, transpose_b: tb };
                let a = gaussian(&if ta { [z, k, m] } else { [z, m, k] }, 1.0, 3);
                let b = gaussian(&if tb { [n, k] } else { [k, n] }, 1.0, 4);
                check(&engine, &a, &b, o, 1e-6);
            }
        }
    }
}
