//! The engine itself: adapter choice and fallback, the buffer pool's accounting, device-resident
//! tensors, embedding in an application's device, and errors for bad use.
mod common;
use common::*;
use ortho::random::{Scaling, projection};
use ortho::{BackendChoice, Engine, EngineOptions, FavorOptions, GpuTensor, Tensor};

#[test]
fn cpu_backend_is_a_fallback_with_a_reason() {
    let e = Engine::with_options(&EngineOptions { backend: BackendChoice::Cpu, ..Default::default() }).unwrap();
    assert!(!e.is_gpu());
    assert_eq!(e.describe(), "cpu");
    assert!(e.fallback_reason().unwrap().contains("CPU backend was chosen"));
    let err = e.empty(&[4]).unwrap_err().to_string();
    assert!(err.contains("needs a GPU"), "{err}");
    // Requiring a GPU forbids falling back, not choosing the CPU explicitly.
    let chosen =
        Engine::with_options(&EngineOptions { backend: BackendChoice::Cpu, require_gpu: true, ..Default::default() });
    assert!(!chosen.unwrap().is_gpu());
}

#[test]
fn unknown_adapter_name_falls_back_or_fails_when_required() {
    let mut o = EngineOptions { adapter_name: Some("no such adapter anywhere".into()), ..Default::default() };
    let e = Engine::with_options(&o).unwrap();
    assert!(!e.is_gpu());
    assert!(e.fallback_reason().unwrap().contains("named like 'no such adapter anywhere'"));
    o.require_gpu = true;
    let err = Engine::with_options(&o).err().expect("required GPU must fail").to_string();
    assert!(err.starts_with("no GPU adapter"), "{err}");
}

#[test]
fn backend_names_parse() {
    for (s, b) in [
        ("auto", BackendChoice::Auto),
        ("Vulkan", BackendChoice::Vulkan),
        ("gl", BackendChoice::Gl),
        ("cpu", BackendChoice::Cpu),
    ] {
        assert_eq!(s.parse::<BackendChoice>().unwrap(), b);
    }
    assert!("cuda".parse::<BackendChoice>().unwrap_err().to_string().contains("not one of"));
}

#[test]
fn pool_reuses_buffers_and_tracks_peak() {
    for e in gpu_engines() {
        e.trim_pool();
        e.reset_peak();
        let base = e.pool_stats().live_bytes;
        let a = e.empty(&[1000]).unwrap();
        let b = e.empty(&[3000]).unwrap();
        let s = e.pool_stats();
        assert_eq!(s.live_bytes - base, 4096 + 12288);
        drop(a);
        drop(b);
        assert_eq!(e.pool_stats().live_bytes, base);
        assert_eq!(e.pool_stats().peak_bytes - base, 4096 + 12288);
        // Released buffers wait for the work submitted before their release, then return.
        e.poll_device(true).unwrap();
        assert_eq!(e.pool_stats().waiting_bytes, 0);
        let held = e.pool_stats().held_bytes;
        let c = e.empty(&[1000]).unwrap();
        assert_eq!(e.pool_stats().held_bytes, held, "a freed buffer of the same class is reused");
        drop(c);
        e.trim_pool();
        assert_eq!(e.pool_stats().held_bytes, e.pool_stats().live_bytes);
    }
}

#[test]
fn device_resident_calls_chain_without_readback() {
    for e in gpu_engines() {
        let (l, d, m) = (33, 8, 16);
        let q = gaussian(&[1, 2, l, d], 0.5, 1);
        let k = gaussian(&[1, 2, l, d], 0.5, 2);
        let v = gaussian(&[1, 2, l, d], 1.0, 3);
        let w = projection(m, d, Scaling::Chi, 4).unwrap().to_f32();
        let (gq, gk, gv, gw) = (
            e.upload("q", &q).unwrap(),
            e.upload("k", &k).unwrap(),
            e.upload("v", &v).unwrap(),
            e.upload("w", &w).unwrap(),
        );
        // Attention of attention, all on the GPU.
        let o1 = e.favor_gpu(&gq, &gk, &gv, &gw, &FavorOptions::default()).unwrap();
        let o2 = e.favor_gpu(&gq, &gk, &o1, &gw, &FavorOptions::default()).unwrap();
        let host1 = e.favor(&q, &k, &v, &w, &FavorOptions::default()).unwrap();
        let host2 = e.favor(&q, &k, &host1, &w, &FavorOptions::default()).unwrap();
        assert!(relative_frobenius(e.download(&o2).unwrap().data(), host2.data()) < 1e-6);
    }
}

#[test]
fn scratch_returns_to_the_pool() {
    for e in gpu_engines() {
        let q = gaussian(&[64, 16], 0.5, 1);
        let w = projection(32, 16, Scaling::Chi, 2).unwrap().to_f32();
        let gq = e.upload("q", &q).unwrap();
        let gw = e.upload("w", &w).unwrap();
        let before = e.pool_stats().live_bytes;
        let out = e.favor_gpu(&gq, &gq, &gq, &gw, &FavorOptions::default()).unwrap();
        assert_eq!(e.pool_stats().live_bytes - before, 64 * 16 * 4, "only the output stays live");
        drop(out);
    }
}

/// An engine dropped while the work of its `run_gpu` calls is still running (nothing read back),
/// right before the process exits: the engine waits for that work first. Freeing the device under
/// the driver's threads corrupted the process's memory at exit about one run in ten on lavapipe, so
/// the test runs itself as a child process 40 times, each of which must exit cleanly.
#[test]
fn an_engine_dropped_with_work_in_flight_waits_for_it() {
    const CHILD: &str = "ORTHO_TEST_DROP_CHILD";
    if std::env::var_os(CHILD).is_some() {
        let q = gaussian(&[64, 16], 0.5, 1);
        let w = projection(32, 16, Scaling::Chi, 2).unwrap().to_f32();
        for e in gpu_engines() {
            let (gq, gw) = (e.upload("q", &q).unwrap(), e.upload("w", &w).unwrap());
            let out = e.favor_gpu(&gq, &gq, &gq, &gw, &FavorOptions::default()).unwrap();
            drop((out, gq, gw, e));
        }
        return;
    }
    let this = std::env::current_exe().unwrap();
    for run in 0..40 {
        let child = std::process::Command::new(&this)
            .args(["an_engine_dropped_with_work_in_flight_waits_for_it", "--exact", "--test-threads", "1"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&child.stderr);
        assert!(child.status.success(), "run {run}: {}\n{stderr}", child.status);
    }
}

#[test]
fn embeds_in_an_application_device() {
    for owner in gpu_engines() {
        let (device, queue) = (owner.device().unwrap().clone(), owner.queue().unwrap().clone());
        let e = Engine::from_device(device.clone(), queue.clone());
        e.set_tuning(ortho::TuneOptions { mode: ortho::TuneMode::Off, cache: None });
        assert!(e.is_gpu());
        let q = gaussian(&[20, 4], 0.5, 1);
        let buffer = |t: &Tensor<f32>| {
            use ortho::wgpu::util::DeviceExt;
            device.create_buffer_init(&ortho::wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytemuck::cast_slice(t.data()),
                usage: ortho::wgpu::BufferUsages::STORAGE | ortho::wgpu::BufferUsages::COPY_SRC,
            })
        };
        let w = projection(8, 4, Scaling::Chi, 2).unwrap().to_f32();
        let gq = GpuTensor::from_buffer(buffer(&q), &[20, 4]).unwrap();
        let gw = GpuTensor::from_buffer(buffer(&w), &[8, 4]).unwrap();
        let out = GpuTensor::from_buffer(buffer(&Tensor::from_fn(&[20, 4], |_| f32::NAN)), &[20, 4]).unwrap();
        let mut encoder = device.create_command_encoder(&Default::default());
        let recorded = e.record_favor(&mut encoder, &gq, &gq, &gq, &gw, &FavorOptions::default(), &out).unwrap();
        queue.submit([encoder.finish()]);
        recorded.submitted();
        let got = e.download(&out).unwrap();
        let want = Engine::reference().favor(&q, &q, &q, &w, &FavorOptions::default()).unwrap();
        assert!(relative_frobenius(got.data(), want.data()) < 1e-6);

        let uniform = device.create_buffer(&ortho::wgpu::BufferDescriptor {
            label: None,
            size: 64,
            usage: ortho::wgpu::BufferUsages::UNIFORM,
            mapped_at_creation: false,
        });
        assert!(GpuTensor::from_buffer(uniform, &[4]).unwrap_err().to_string().contains("STORAGE"));
        let small = buffer(&Tensor::zeros(&[4]));
        assert!(GpuTensor::from_buffer(small, &[5]).is_err());
        let mut encoder = device.create_command_encoder(&Default::default());
        let short_out = GpuTensor::from_buffer(buffer(&Tensor::zeros(&[5])), &[5]).unwrap();
        let err = e.record_favor(&mut encoder, &gq, &gq, &gq, &gw, &FavorOptions::default(), &short_out).unwrap_err();
        assert!(err.to_string().starts_with("out: expected shape [20, 4]"), "{err}");
    }
}

#[test]
fn timestamps_measure_recorded_work() {
    for e in gpu_engines() {
        let a = e.upload("a", &gaussian(&[128, 128], 1.0, 1)).unwrap();
        let c = e.empty(&[128, 128]).unwrap();
        let t = e.time(|enc| e.record_matmul(enc, &a, &a, &c, Default::default())).unwrap();
        assert!(t.seconds > 0.0 && t.seconds < 60.0, "{t:?}");
    }
}

/// `Engine::measure` times repeats of the recorded work (timestamps where the adapter has them) and of
/// the whole call, counts the pool's scratch (none for a product, some for attention) and checks the
/// outputs against the f64 twin; on the CPU fallback the device time is the call's.
#[test]
fn measurements_of_an_operation() {
    use ortho::ops::{Favor, Matmul};
    use ortho::{MeasureOptions, Measurement};
    let (a, b) = (gaussian(&[2, 65, 17], 1.0, 1), gaussian(&[2, 17, 63], 1.0, 2));
    let [q, k, v] = attention_inputs((1, 2, 100, 16, 8, 0), 0.5, 3);
    let w = gaussian(&[32, 16], 1.0, 4);
    let o = MeasureOptions { warmup: 1, repeats: 3, ..Default::default() };
    let positive = |m: &Measurement| m.device_seconds.iter().chain(&m.call_seconds).all(|&s| s > 0.0 && s < 60.0);
    for e in gpu_engines() {
        let timestamps = e.device().unwrap().features().contains(ortho::wgpu::Features::TIMESTAMP_QUERY);
        let m = e.measure(&Matmul(Default::default()), &[&a, &b], o).unwrap();
        assert!(m.device_seconds.len() == 3 && m.call_seconds.len() == 3 && positive(&m), "{m:?}");
        assert_eq!(m.timestamps, timestamps, "{}", e.describe());
        assert!(m.error < 1e-6 && m.peak_bytes > 0 && m.scratch_bytes == 0, "{} {m:?}", e.describe());
        let (fastest, slowest) = m.device_spread();
        assert!(fastest <= 1.0 && slowest >= 1.0, "{m:?}");
        let m = e.measure(&Favor(FavorOptions::default()), &[&q, &k, &v, &w], o).unwrap();
        assert!(m.error < 1e-5 && m.scratch_bytes > 0 && positive(&m), "{} {m:?}", e.describe());
    }
    let m = Engine::reference().measure(&Matmul(Default::default()), &[&a, &b], o).unwrap();
    assert!(!m.timestamps && m.peak_bytes == 0 && m.error < 1e-7 && positive(&m), "{m:?}");
    assert_eq!(m.device_seconds, m.call_seconds);
}

/// `run` (host), `run_async`, `run_gpu` and `record` of one operation agree with its CPU twin.
fn four_entry_points<O: ortho::Operation>(e: &Engine, op: &O, inputs: &[&Tensor<f32>], bound: f64) {
    let want = Engine::reference().run(op, inputs).unwrap();
    let host = e.run(op, inputs).unwrap();
    let host_async = e.block_on(e.run_async(op, inputs)).unwrap();
    let gpu_in: Vec<GpuTensor> = inputs.iter().map(|t| e.upload("x", t).unwrap()).collect();
    let gpu_in: Vec<&GpuTensor> = gpu_in.iter().collect();
    let device = e.run_gpu(op, &gpu_in).unwrap();
    let outs: Vec<GpuTensor> = want.iter().map(|t| e.empty(t.shape()).unwrap()).collect();
    let mut encoder = e.device().unwrap().create_command_encoder(&Default::default());
    let recorded = e.record(&mut encoder, op, &gpu_in, &outs.iter().collect::<Vec<_>>()).unwrap();
    e.queue().unwrap().submit([encoder.finish()]);
    recorded.submitted();
    for (i, want) in want.iter().enumerate() {
        let got =
            [host[i].clone(), host_async[i].clone(), e.download(&device[i]).unwrap(), e.download(&outs[i]).unwrap()];
        for (way, got) in ["run", "run_async", "run_gpu", "record"].iter().zip(got) {
            assert_eq!(got.shape(), want.shape(), "{} {}: {way} output {i}", e.describe(), O::NAME);
            let err = relative_frobenius(got.data(), want.data());
            assert!(err < bound, "{} {}: {way} output {i}: {err:e}", e.describe(), O::NAME);
        }
    }
}

#[test]
fn every_operation_has_four_entry_points() {
    use ortho::ops::*;
    use ortho::{Checkpoints, GroupMap, MatmulOptions};
    for e in gpu_engines() {
        let (a, b) = (gaussian(&[3, 5, 7], 1.0, 1), gaussian(&[7, 4], 1.0, 2));
        four_entry_points(&e, &Matmul(MatmulOptions::default()), &[&a, &b], 1e-5);
        let err = e.run(&Matmul(MatmulOptions::default()), &[&a]).unwrap_err().to_string();
        assert!(err.contains("matmul") && err.contains("takes 2 inputs (a, b), not 1"), "{err}");
        let (ga, gb, wrong) = (e.upload("a", &a).unwrap(), e.upload("b", &b).unwrap(), e.empty(&[3, 5, 5]).unwrap());
        let mut encoder = e.device().unwrap().create_command_encoder(&Default::default());
        let err = e.record(&mut encoder, &Matmul(MatmulOptions::default()), &[&ga, &gb], &[&wrong]).unwrap_err();
        assert!(err.to_string().starts_with("output 0: expected shape [3, 5, 4]"), "{err}");
        let [q, k, v] = attention_inputs((1, 2, 37, 8, 5, 16), 0.5, 3);
        let w = projection(16, 8, Scaling::Chi, 4).unwrap().to_f32();
        four_entry_points(&e, &ExactAttention { causal: true }, &[&q, &k, &v], 1e-5);
        for o in
            [FavorOptions::default(), FavorOptions { chunk: Some(8), ..FavorOptions::causal(ortho::Kernel::Softmax) }]
        {
            four_entry_points(&e, &Favor(o), &[&q, &k, &v, &w], 1e-5);
            let g = gaussian(&[1, 2, 37, 5], 1.0, 5);
            let o = FavorOptions { checkpoints: Checkpoints::Every(2), ..o };
            four_entry_points(&e, &FavorBackward(o), &[&q, &k, &v, &w, &g], 1e-4);
        }
        let u = gaussian(&[2, 9, 4], 1.0, 6);
        let x = gaussian(&[2, 9, 3], 1.0, 7);
        four_entry_points(&e, &Cwy { stiefel: false }, &[&u], 1e-5);
        four_entry_points(&e, &Cwy { stiefel: true }, &[&u], 1e-5);
        four_entry_points(&e, &HouseholderProduct, &[&u], 1e-5);
        four_entry_points(&e, &CwyApply { transpose: true }, &[&u, &x], 1e-5);
        four_entry_points(&e, &CwyBackward { stiefel: true }, &[&u, &gaussian(&[2, 9, 4], 1.0, 8)], 1e-4);
        four_entry_points(&e, &CwyApplyBackward { transpose: false }, &[&u, &x, &gaussian(&[2, 9, 3], 1.0, 9)], 1e-4);
        let m = gaussian(&[4, 5, 5], 0.3, 10);
        four_entry_points(&e, &MatrixMap(GroupMap::Exp), &[&m], 1e-5);
        four_entry_points(&e, &MatrixMap(GroupMap::Cayley), &[&m], 1e-5);
        // RKMK4 on the isospectral field with a nested state and Newton–Schulz every 3 of 5 steps
        // (the last W comes from the spare buffer).
        let flow = ortho_ref::flow::Flow {
            method: ortho_ref::flow::Method::Rkmk4,
            dt: 0.05,
            steps: 5,
            newton_schulz_every: Some(3),
            generator: ortho_ref::flow::Generator::Isospectral { qs: symmetric(4, 1.0, 11), ns: symmetric(4, 1.0, 12) },
            state: Some((gaussian(&[2, 4], 1.0, 13).to_f64(), ortho_ref::flow::Activation::Tanh)),
        };
        let w0 = Engine::reference().expm(&skew(&gaussian(&[2, 4, 4], 0.5, 14))).unwrap();
        four_entry_points(&e, &flow, &[&w0], 1e-5);
        let lu_input = gaussian(&[3, 6, 6], 1.0, 15);
        four_entry_points(&e, &Lu, &[&lu_input], 1e-5);
        let (factors, pivots, _) = Engine::reference().lu(&lu_input).unwrap();
        four_entry_points(&e, &LuSolve, &[&factors, &pivots, &gaussian(&[3, 6, 2], 1.0, 16)], 1e-5);
        let ids: Vec<(i64, i64)> = [(0, 1), (1, 2), (2, 0), (2, 3), (3, 4), (4, 1)].into();
        let graph = ortho_ref::ising::Graph::new(Some(6), &ids).unwrap();
        four_entry_points(&e, &IsingBatch::new(&graph, true).unwrap(), &[&gaussian(&[3, 6], 1.0, 17)], 1e-5);
        let frontal = IsingBatch::with_factorisation(&graph, true, Factorisation::Frontal).unwrap();
        four_entry_points(&e, &frontal, &[&gaussian(&[3, 6], 1.0, 21)], 1e-5);
        // K5 with a triangle shared with a planar wheel: an enumerated and a planar piece.
        let mut k5_wheel: Vec<(i64, i64)> = (0..5).flat_map(|u| (u + 1..5).map(move |v| (u, v))).collect();
        k5_wheel.extend([(0, 5), (1, 5), (2, 5), (5, 6), (0, 6)]);
        let glued = ortho_ref::ising::Graph::new(Some(7), &k5_wheel).unwrap();
        four_entry_points(&e, &IsingBatch::new(&glued, true).unwrap(), &[&gaussian(&[3, 15], 0.7, 25)], 1e-5);
        let a = ortho_ref::express::random_pattern(20, 2, 18);
        let pattern = std::sync::Arc::new(ortho::express::Pattern::from_dense(&a).unwrap());
        let (wq, wk) = ortho::express::weights(4, 19).unwrap();
        let inputs = [gaussian(&[20, 8], 1.0, 20), wq.to_f32(), wk.to_f32()];
        let inputs: Vec<&Tensor<f32>> = inputs.iter().collect();
        four_entry_points(&e, &ExpressFit::check(pattern.clone()), &inputs, 1e-5);
        four_entry_points(&e, &ExpressFit::gradient(pattern, 0.05).unwrap(), &inputs, 1e-4);
        let (phi, v) = (gaussian(&[4, 13], 0.5, 21), gaussian(&[4, 13], 0.5, 22));
        let (support, query) = (gaussian(&[4, 6, 2], 1.0, 23), gaussian(&[4, 5, 2], 1.0, 24));
        four_entry_points(&e, &RegressionDerivatives { hidden: 4 }, &[&phi, &support, &v], 1e-5);
        let inner = ortho::bilevel::InnerLoop { steps: 3, lr: 0.05 };
        let op = MetaGradient { hidden: 4, inner, method: ortho::bilevel::OuterGradient::Exact };
        four_entry_points(&e, &op, &[&gaussian(&[13], 0.5, 25), &support, &query], 1e-5);
    }
}

/// `(a - a^T) / 2` of every matrix.
fn skew(a: &Tensor<f32>) -> Tensor<f32> {
    let n = a.shape()[1];
    Tensor::from_fn(a.shape(), |e| {
        let (z, i, j) = (e / (n * n), (e / n) % n, e % n);
        (a.data()[e] - a.data()[z * n * n + j * n + i]) / 2.0
    })
}
