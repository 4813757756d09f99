//! f16 storage: the device's conversions round as `half` does, bit for bit, on every adapter; every
//! operation family in f16 storage against the f64 reference on the same f16 inputs; FAVOR+ finite
//! where a naive f16 key sum overflows; device tensors of mixed dtypes, in an application's encoder;
//! clear errors for an output past f16's range and for f16 tensors where f32 ones are recorded.

mod common;

use common::{gaussian, gpu_engines};
use ortho::half::f16;
use ortho::ops::{Favor, Matmul};
use ortho::random::{Scaling, projection};
use ortho::{DType, Engine, Error, FavorOptions, Kernel, Operation, Tensor};
use ortho_bench::inputs::F16_ROUNDING;
use ortho_bench::storage::storage_cases;
use ortho_ref::tensor::relative_frobenius;

/// The engines of f16 storage: every GPU adapter and the CPU fallback.
fn engines() -> Vec<Engine> {
    let mut engines = gpu_engines();
    engines.push(Engine::cpu("f16 storage on the CPU"));
    engines
}

/// Seeded f32 values of every magnitude f32 holds (and the edge cases of f16 rounding), finite.
fn f32_values(count: usize) -> Vec<f32> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut bits = std::iter::from_fn(move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        Some(state as u32)
    });
    let edges = [
        0.0,
        -0.0,
        65504.0,
        65519.99,
        65520.0,
        -65520.0,
        1e9,
        6.1035156e-5,
        6.097555e-5,
        5.9604645e-8,
        2.9802322e-8,
        2.9802326e-8,
        8.940697e-8,
        1.0e-40,
        1.0 + 1.0 / 2048.0,
        1.0 + 3.0 / 2048.0,
        0.1,
        -7.3e-6,
    ];
    let mut values: Vec<f32> = edges.to_vec();
    while values.len() < count {
        let x = f32::from_bits(bits.next().unwrap_or(0));
        // Bias towards f16's range: most random bits are far outside it.
        let x = if values.len().is_multiple_of(2) {
            x
        } else {
            f32::from_bits((bits.next().unwrap_or(0) % 0x0f00_0000) + 0x3100_0000)
        };
        if x.is_finite() {
            values.push(x);
        }
    }
    values
}

#[test]
fn conversions_round_as_half_does_on_every_adapter() {
    for engine in gpu_engines() {
        let name = engine.describe();
        // f16 -> f32: every finite f16, and one more for an odd count (the last word half used).
        let mut every: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).filter(|h| h.is_finite()).collect();
        assert_eq!(every.len(), 63488);
        every.push(f16::ONE);
        let t = Tensor::new(&[every.len()], every.clone()).unwrap();
        let wide = engine.convert_gpu(&engine.upload_f16("x", &t).unwrap(), DType::F32).unwrap();
        assert_eq!(wide.dtype(), DType::F32);
        let got = engine.download(&wide).unwrap();
        for (h, x) in every.iter().zip(got.data()) {
            assert_eq!(x.to_bits(), f32::from(*h).to_bits(), "{name}: f16 {:#06x} to f32", h.to_bits());
        }
        // f32 -> f16: to nearest, ties to even, past 65504 infinite.
        let values = f32_values(200_001);
        let t = Tensor::new(&[values.len()], values.clone()).unwrap();
        let narrow = engine.convert_gpu(&engine.upload("x", &t).unwrap(), DType::F16).unwrap();
        assert_eq!(narrow.dtype(), DType::F16);
        let got = engine.download_f16(&narrow).unwrap();
        for (x, h) in values.iter().zip(got.data()) {
            assert_eq!(h.to_bits(), f16::from_f32(*x).to_bits(), "{name}: f32 {x:e} ({:#010x}) to f16", x.to_bits());
        }
        // Reading a tensor as the other dtype is an error, not a reinterpretation.
        assert!(engine.download(&narrow).unwrap_err().to_string().contains("download_f16"));
        assert!(engine.download_f16(&wide).unwrap_err().to_string().contains("Engine::download"));
    }
}

#[test]
fn every_family_in_f16_storage_matches_the_reference_on_its_f16_inputs() {
    for engine in engines() {
        for case in storage_cases() {
            let results = case.run(&engine).unwrap();
            assert_eq!(results.len(), case.outputs.len(), "{}", case.name);
            for (r, output) in results.iter().zip(case.outputs) {
                assert_eq!(r.output.shape(), r.want.shape());
                let err = relative_frobenius(r.output.data(), r.want.data());
                assert!(err <= case.bound, "{} {} {output}: {err:e} > {:e}", engine.describe(), case.name, case.bound);
            }
        }
    }
}

/// Keys along the projection's longest row make the feature `exp(w.k - |k|^2 / 2)` as large as it
/// gets; summed over the keys in f16 it overflows. The stabilised kernels keep every exponent
/// non-positive and their state sums in f32, so the attention in f16 storage is finite and right.
#[test]
fn favor_in_f16_stays_finite_where_a_naive_f16_key_sum_overflows() {
    let (l, d, m) = (512, 16, 64);
    let w = projection(m, d, Scaling::Chi, 21).unwrap().to_f32();
    let row = (0..m)
        .max_by(|&a, &b| {
            let norm = |r: usize| w.data()[r * d..(r + 1) * d].iter().map(|x| x * x).sum::<f32>();
            norm(a).total_cmp(&norm(b))
        })
        .unwrap();
    let noise = gaussian(&[l, d], 0.05, 22);
    let k = Tensor::from_fn(&[l, d], |e| w.data()[row * d + e % d] + noise.data()[e]).to_f16();
    let q = gaussian(&[l, d], 0.5, 23).to_f16();
    let v = gaussian(&[l, 8], 1.0, 24).to_f16();
    let scale = 1.0 / (m as f64).sqrt();
    let mut naive = f16::ZERO;
    for j in 0..l {
        let key = &k.data()[j * d..(j + 1) * d];
        let dot: f64 = (0..d).map(|i| w.data()[row * d + i] as f64 * f64::from(key[i])).sum();
        let sq: f64 = key.iter().map(|x| f64::from(*x).powi(2)).sum();
        naive += f16::from_f64(scale * (dot - sq / 2.0).exp());
    }
    assert!(naive.is_infinite(), "the naive f16 key sum of feature {row} is {naive}: the test needs it to overflow");
    let w16 = w.to_f16();
    let inputs = [&q, &k, &v, &w16];
    let want = Favor(FavorOptions::new(Kernel::Softmax)).reference(&inputs.map(Tensor::to_f64)).unwrap();
    for engine in engines() {
        for options in [FavorOptions::new(Kernel::Softmax), FavorOptions::causal(Kernel::Softmax)] {
            let got = engine.run_f16(&Favor(options), &inputs).unwrap();
            assert!(got[0].data().iter().all(|x| x.is_finite()), "{}", engine.describe());
            if !options.causal {
                let err = relative_frobenius(got[0].data(), want[0].data());
                assert!(err <= 1e-5 + F16_ROUNDING, "{}: {err:e}", engine.describe());
            }
        }
    }
}

#[test]
fn an_output_past_f16_range_is_an_error() {
    // Every entry of the product is 300 * 16 * 16 = 76800 > 65504.
    let a = Tensor::from_fn(&[4, 300], |_| f16::from_f32(16.0));
    let b = Tensor::from_fn(&[300, 5], |_| f16::from_f32(16.0));
    for engine in engines() {
        let err = engine.run_f16(&Matmul::default(), &[&a, &b]).unwrap_err();
        assert!(matches!(err, Error::NonFinite { count: 20, .. }), "{}: {err}", engine.describe());
        assert!(err.to_string().contains("65504"), "{err}");
    }
}

/// Device tensors: mixed dtypes through `run_gpu` (f16 out), and `record` into an application's
/// encoder between its own copies, with f16 inputs and an f32 output; the same values as `run_f16`.
#[test]
fn device_tensors_of_mixed_dtypes_in_an_application_encoder() {
    let (l, d, dv, m) = (70, 16, 8, 32);
    let q = gaussian(&[l, d], 0.5, 31).to_f16();
    let k = gaussian(&[l, d], 0.5, 32).to_f16();
    let v = gaussian(&[l, dv], 1.0, 33).to_f16();
    // f32, but of f16 values: the same inputs as `run_f16` takes.
    let w = projection(m, d, Scaling::Chi, 34).unwrap().to_f32().to_f16().to_f32();
    let op = Favor(FavorOptions::new(Kernel::Softmax));
    for engine in gpu_engines() {
        let name = engine.describe();
        let want = engine.run_f16(&op, &[&q, &k, &v, &w.to_f16()]).unwrap().remove(0);
        let (gq, gk, gv) = (
            engine.upload_f16("q", &q).unwrap(),
            engine.upload_f16("k", &k).unwrap(),
            engine.upload_f16("v", &v).unwrap(),
        );
        let gw = engine.upload("w", &w).unwrap();
        let out = engine.run_gpu(&op, &[&gq, &gk, &gv, &gw]).unwrap().remove(0);
        assert_eq!(out.dtype(), DType::F16, "{name}");
        assert_eq!(engine.download_f16(&out).unwrap(), want, "{name}: run_gpu");

        let device = engine.device().unwrap();
        let queue = engine.queue().unwrap();
        let out32 = engine.empty(&[l, dv]).unwrap();
        let before = engine.upload("before", &Tensor::from_fn(&[l, dv], |i| i as f32)).unwrap();
        let mut encoder = device.create_command_encoder(&Default::default());
        // The application's own work around ortho's: its copy into the output is overwritten.
        encoder.copy_buffer_to_buffer(before.buffer(), 0, out32.buffer(), 0, out32.byte_len());
        let recorded = engine.record(&mut encoder, &op, &[&gq, &gk, &gv, &gw], &[&out32]).unwrap();
        let after = engine.empty(&[l, dv]).unwrap();
        encoder.copy_buffer_to_buffer(out32.buffer(), 0, after.buffer(), 0, out32.byte_len());
        queue.submit([encoder.finish()]);
        recorded.submitted();
        let got = engine.download(&after).unwrap().to_f16();
        assert_eq!(got.data(), want.data(), "{name}: record");

        let typed = engine.record_favor(
            &mut device.create_command_encoder(&Default::default()),
            &gq,
            &gk,
            &gv,
            &gw,
            &op.0,
            &out32,
        );
        let message = typed.unwrap_err().to_string();
        assert!(message.contains("f16") && message.contains("Engine::record"), "{name}: {message}");
    }
}

/// A batch past one storage binding runs in pieces in f16 storage too (the f32 path between, its
/// outputs rounded alike), matching an engine with room for it.
#[test]
fn a_batch_past_one_binding_runs_in_pieces() {
    let a = ortho_bench::inputs::skew(600, 8, 0.5, 41).to_f16();
    let op = ortho::ops::MatrixMap(ortho::GroupMap::Exp);
    let lowered = common::engines_with_limits(|l| l.max_storage_buffer_binding_size = 32 << 10);
    for (whole, pieces) in gpu_engines().iter().zip(&lowered) {
        let want = whole.run_f16(&op, &[&a]).unwrap().remove(0);
        let got = pieces.run_f16(&op, &[&a]).unwrap().remove(0);
        let err = relative_frobenius(got.data(), want.data());
        assert!(err <= 2.0 * F16_ROUNDING, "{}: {err:e}", whole.describe());
        let upload = pieces.upload_f16("a", &a).unwrap_err().to_string();
        assert!(upload.contains("max_storage_buffer_binding_size"), "{upload}");
    }
}

/// Four threads share one engine in f16 storage, each with its own inputs, host and device calls
/// interleaved: every result is the one a lone call gives, bit for bit.
#[test]
fn threads_share_one_engine_in_f16_storage() {
    let op = Favor(FavorOptions::causal(Kernel::Softmax));
    let w = projection(32, 16, Scaling::Chi, 51).unwrap().to_f32().to_f16();
    let inputs: Vec<[Tensor<f16>; 3]> = (0..4u64)
        .map(|i| [gaussian(&[90, 16], 0.5, 60 + i), gaussian(&[90, 16], 0.5, 70 + i), gaussian(&[90, 8], 1.0, 80 + i)])
        .map(|t| t.map(|x| x.to_f16()))
        .collect();
    for engine in gpu_engines() {
        let alone: Vec<Tensor<f16>> =
            inputs.iter().map(|[q, k, v]| engine.run_f16(&op, &[q, k, v, &w]).unwrap().remove(0)).collect();
        std::thread::scope(|scope| {
            for ([q, k, v], want) in inputs.iter().zip(&alone) {
                let (engine, w, op) = (&engine, &w, &op);
                scope.spawn(move || {
                    for _ in 0..3 {
                        assert_eq!(&engine.run_f16(op, &[q, k, v, w]).unwrap().remove(0), want);
                        let device = [q, k, v, w].map(|t| engine.upload_f16("x", t).unwrap());
                        let out = engine.run_gpu(op, &device.iter().collect::<Vec<_>>()).unwrap().remove(0);
                        assert_eq!(&engine.download_f16(&out).unwrap(), want);
                    }
                });
            }
        });
    }
}
