//! The engine's GEMM, in every variant the adapter runs, against the f64 reference, over shapes that
//! are not multiples of the tiles, transposed operands and broadcast batches.
mod common;
use common::*;
use ortho::{MatmulOptions, Operation, Tensor};

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
/// split products whose slices and batches share those 8 (f16 operands too, where the adapter reads
/// them).
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
                // f16 operands through the same blocks and slices, their offsets counted in f16.
                if engine.has_shader_f16() {
                    let (a, b) = (a.to_f16(), b.to_f16());
                    let got = record_f16_product(&engine, &a, &b, o).unwrap();
                    let err = relative_frobenius(got.data(), reference(&a.to_f32(), &b.to_f32(), o).data());
                    assert!(err < 1e-6, "{} f16 {:?} {o:?}: {err}", engine.describe(), (z, m, k, n));
                }
            }
        }
    }
}

/// `a x b` of f16 device tensors recorded with `record_matmul` into an f32 output.
fn record_f16_product(
    engine: &ortho::Engine,
    a: &Tensor<ortho::half::f16>,
    b: &Tensor<ortho::half::f16>,
    o: MatmulOptions,
) -> ortho::Result<Tensor<f32>> {
    let (ga, gb) = (engine.upload_f16("a", a)?, engine.upload_f16("b", b)?);
    let shape = ortho::ops::Matmul(o).output_shapes(&[a.shape(), b.shape()])?.remove(0);
    let c = engine.empty(&shape)?;
    let mut encoder = engine.device().unwrap().create_command_encoder(&Default::default());
    let recorded = engine.record_matmul(&mut encoder, &ga, &gb, &c, o)?;
    engine.queue().unwrap().submit([encoder.finish()]);
    recorded.submitted();
    engine.download(&c)
}

/// Where the adapter has `SHADER_F16`, every variant reads f16 operands itself (f32 sums and
/// output): the product of the f32 values they hold, as the f32 variant and the reference give it.
/// Elsewhere recording f16 operands is refused by name, and `run_f16` converts them.
#[test]
fn gemm_reads_f16_operands_in_every_variant() {
    use ortho::half::f16;
    let shapes = [(3, 65, 17, 63), (1, 130, 129, 70), (4, 5, 200, 9), (1, 3, 5000, 4)];
    for (engine, variant) in variant_engines(gpu_engines(), true) {
        let name = format!("{} {variant}", engine.describe());
        // Without SHADER_F16 one refused product per variant (the first) says enough.
        let shapes = if engine.has_shader_f16() { &shapes[..] } else { &shapes[..1] };
        for (i, &(z, m, k, n)) in shapes.iter().enumerate() {
            for (ta, tb) in [(false, false), (true, false), (false, true)] {
                let o = MatmulOptions { transpose_a: ta, transpose_b: tb };
                let a = gaussian(&if ta { [z, k, m] } else { [z, m, k] }, 1.0, i as u64).to_f16();
                let b = gaussian(&if tb { [n, k] } else { [k, n] }, 1.0, 50 + i as u64).to_f16();
                let (wide_a, wide_b) = (a.to_f32(), b.to_f32());
                let got = record_f16_product(&engine, &a, &b, o);
                if !engine.has_shader_f16() {
                    let err = got.unwrap_err().to_string();
                    assert!(err.contains("SHADER_F16") && err.contains("convert_gpu"), "{name}: {err}");
                    let converted = engine.run_f16(&ortho::ops::Matmul(o), &[&a, &b]).unwrap().remove(0);
                    let want = reference(&wide_a, &wide_b, o).to_f16().to_f32();
                    let err = relative_frobenius(converted.to_f32().data(), want.data());
                    assert!(err < 1e-6 + 1.0 / 2048.0, "{name}: {err}");
                    break;
                }
                let got = got.unwrap();
                let want = reference(&wide_a, &wide_b, o);
                let err = relative_frobenius(got.data(), want.data());
                assert!(err < 1e-6, "{name} {:?} {o:?}: {err}", (z, m, k, n));
                let f32_variant = engine.matmul(&wide_a, &wide_b, o).unwrap();
                let err = relative_frobenius(got.data(), f32_variant.data());
                assert!(err < 1e-6, "{name} {:?} {o:?} against f32 operands: {err}", (z, m, k, n));
            }
        }
        let (a, b) = (Tensor::<f16>::zeros(&[2, 3]), Tensor::<f32>::zeros(&[3, 2]));
        let (ga, gb, c) =
            (engine.upload_f16("a", &a).unwrap(), engine.upload("b", &b).unwrap(), engine.empty(&[2, 2]).unwrap());
        let mut encoder = engine.device().unwrap().create_command_encoder(&Default::default());
        let err = engine.record_matmul(&mut encoder, &ga, &gb, &c, MatmulOptions::default()).unwrap_err().to_string();
        assert!(err.contains("f16 and f32 operands"), "{name}: {err}");
    }
}

/// `run_gpu` of a product of f16 tensors takes no f32 copies of its operands where the adapter reads
/// f16: its peak is the output (f16, and the f32 it is rounded from), far below one operand in f32.
#[test]
fn an_f16_product_takes_no_working_copies_of_its_operands() {
    let a = gaussian(&[256, 512], 1.0, 61).to_f16();
    let b = gaussian(&[512, 8], 1.0, 62).to_f16();
    for engine in gpu_engines() {
        let (ga, gb) = (engine.upload_f16("a", &a).unwrap(), engine.upload_f16("b", &b).unwrap());
        engine.poll_device(true).unwrap();
        let live = engine.pool_stats().live_bytes;
        engine.reset_peak();
        let out = engine.run_gpu(&ortho::ops::Matmul::default(), &[&ga, &gb]).unwrap().remove(0);
        let taken = engine.pool_stats().peak_bytes - live;
        let copy_of_a = 4 * a.len() as u64;
        if engine.has_shader_f16() {
            assert!(taken < copy_of_a / 8, "{}: {taken} bytes", engine.describe());
        } else {
            assert!(taken >= copy_of_a, "{}: {taken} bytes", engine.describe());
        }
        let want = reference(&a.to_f32(), &b.to_f32(), MatmulOptions::default()).to_f16();
        let err = relative_frobenius(engine.download_f16(&out).unwrap().to_f32().data(), want.to_f32().data());
        assert!(err < 1e-6 + 1.0 / 2048.0, "{}: {err}", engine.describe());
    }
}

/// Products of f16 operands as applications record them: into their own encoder between their own
/// copies (the copy before is overwritten, the one after sees the product) next to an f32 product,
/// one submission; and from four threads on one engine, each result bit for bit a lone call's.
#[test]
fn f16_products_in_an_applications_encoder_and_from_threads() {
    let o = MatmulOptions::default();
    let pairs: Vec<[Tensor<ortho::half::f16>; 2]> = (0..4u64)
        .map(|i| [gaussian(&[70, 40], 1.0, 80 + i).to_f16(), gaussian(&[40, 30], 1.0, 90 + i).to_f16()])
        .collect();
    for engine in gpu_engines().into_iter().filter(|e| e.has_shader_f16()) {
        let name = engine.describe();
        let [a, b] = &pairs[0];
        let want = reference(&a.to_f32(), &b.to_f32(), o);
        let (ga, gb) = (engine.upload_f16("a", a).unwrap(), engine.upload_f16("b", b).unwrap());
        let (wa, wb) = (engine.upload("a", &a.to_f32()).unwrap(), engine.upload("b", &b.to_f32()).unwrap());
        let (c, c32, after) =
            (engine.empty(&[70, 30]).unwrap(), engine.empty(&[70, 30]).unwrap(), engine.empty(&[70, 30]).unwrap());
        let before = engine.upload("before", &Tensor::from_fn(&[70, 30], |i| i as f32)).unwrap();
        let mut encoder = engine.device().unwrap().create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(before.buffer(), 0, c.buffer(), 0, c.byte_len());
        let f16_product = engine.record_matmul(&mut encoder, &ga, &gb, &c, o).unwrap();
        let f32_product = engine.record_matmul(&mut encoder, &wa, &wb, &c32, o).unwrap();
        encoder.copy_buffer_to_buffer(c.buffer(), 0, after.buffer(), 0, c.byte_len());
        engine.queue().unwrap().submit([encoder.finish()]);
        f16_product.submitted();
        f32_product.submitted();
        let got = engine.download(&after).unwrap();
        assert!(relative_frobenius(got.data(), want.data()) < 1e-6, "{name}");
        assert!(relative_frobenius(got.data(), engine.download(&c32).unwrap().data()) < 1e-6, "{name}");

        let alone: Vec<Tensor<ortho::half::f16>> =
            pairs.iter().map(|[a, b]| engine.run_f16(&ortho::ops::Matmul(o), &[a, b]).unwrap().remove(0)).collect();
        std::thread::scope(|scope| {
            for ([a, b], want) in pairs.iter().zip(&alone) {
                let engine = &engine;
                scope.spawn(move || {
                    for _ in 0..3 {
                        let (ga, gb) = (engine.upload_f16("a", a).unwrap(), engine.upload_f16("b", b).unwrap());
                        let out = engine.run_gpu(&ortho::ops::Matmul(o), &[&ga, &gb]).unwrap().remove(0);
                        assert_eq!(&engine.download_f16(&out).unwrap(), want);
                    }
                });
            }
        });
    }
}
