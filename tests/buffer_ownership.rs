//! A buffer belongs to the GPU work that uses it: what an application does around ortho's recorded
//! work (other calls before its encoder is submitted, trimming the pool mid-frame, dropping tensors
//! and guards early, several threads on one engine) never hands a buffer in use to anyone else.
mod common;
use common::*;
use ortho::random::{Scaling, projection};
use ortho::{Engine, FavorOptions, GpuTensor, Kernel, MatmulOptions, Recorded, Tensor};

/// Inputs of the recorded call and its reference output.
struct Recorded1 {
    q: Tensor<f32>,
    w: Tensor<f32>,
    want: Tensor<f32>,
}

fn first_call(seed: u64) -> Recorded1 {
    let q = gaussian(&[2, 2, 40, 8], 0.5, seed);
    let w = projection(16, 8, Scaling::Chi, seed + 1).unwrap().to_f32();
    let want = Engine::reference().favor(&q, &q, &q, &w, &FavorOptions::causal(Kernel::Softmax)).unwrap();
    Recorded1 { q, w, want }
}

/// Records causal FAVOR+ into a fresh application encoder: the encoder, the guard and the output.
fn record_first(e: &Engine, c: &Recorded1) -> (ortho::wgpu::CommandEncoder, Recorded, GpuTensor) {
    let device = e.device().unwrap();
    let (gq, gw) = (e.upload("q", &c.q).unwrap(), e.upload("w", &c.w).unwrap());
    let out = e.empty(c.q.shape()).unwrap();
    let mut encoder = device.create_command_encoder(&Default::default());
    let recorded =
        e.record_favor(&mut encoder, &gq, &gq, &gq, &gw, &FavorOptions::causal(Kernel::Softmax), &out).unwrap();
    // The application's own handles go away before it submits: the guard keeps what the work uses.
    drop((gq, gw));
    (encoder, recorded, out)
}

fn submit_checked(e: &Engine, encoder: ortho::wgpu::CommandEncoder) {
    let device = e.device().unwrap();
    let scope = device.push_error_scope(ortho::wgpu::ErrorFilter::Validation);
    e.queue().unwrap().submit([encoder.finish()]);
    assert!(pollster::block_on(scope.pop()).is_none(), "the submission must be valid");
}

/// Every size class from 256 bytes to 64 KiB (what the first call's scratch spans).
fn class_sweep() -> Vec<usize> {
    let mut floats = vec![64, 128, 192, 256];
    let mut bytes = 1024usize;
    while bytes < 64 << 10 {
        let step = bytes / 4;
        floats.extend((1..=4).map(|i| (bytes + i * step) / 4));
        bytes *= 2;
    }
    floats
}

#[test]
fn calls_before_the_application_submits_never_take_recorded_buffers() {
    for e in gpu_engines() {
        let c = first_call(1);
        let (encoder, recorded, out) = record_first(&e, &c);
        // Uploads (empty + write_buffer) of every size class, matrix products and attention, all
        // submitted by the engine before the application's encoder.
        let uploads: Vec<(Tensor<f32>, GpuTensor)> = class_sweep()
            .into_iter()
            .enumerate()
            .map(|(i, n)| {
                let t = gaussian(&[n], 1.0, 100 + i as u64);
                let g = e.upload("sweep", &t).unwrap();
                (t, g)
            })
            .collect();
        let products: Vec<(Tensor<f32>, Tensor<f32>, GpuTensor)> = [(3, 5, 7), (16, 16, 16), (40, 33, 20), (64, 8, 90)]
            .into_iter()
            .enumerate()
            .map(|(i, (m, k, n))| {
                let (a, b) = (gaussian(&[m, k], 1.0, 200 + i as u64), gaussian(&[k, n], 1.0, 300 + i as u64));
                let (ga, gb) = (e.upload("a", &a).unwrap(), e.upload("b", &b).unwrap());
                let g = e.matmul_gpu(&ga, &gb, MatmulOptions::default()).unwrap();
                (a, b, g)
            })
            .collect();
        let second = first_call(7);
        let (gq, gw) = (e.upload("q", &second.q).unwrap(), e.upload("w", &second.w).unwrap());
        let second_out = e.favor_gpu(&gq, &gq, &gq, &gw, &FavorOptions::causal(Kernel::Softmax)).unwrap();

        submit_checked(&e, encoder);
        recorded.submitted();

        let got = e.download(&out).unwrap();
        assert!(relative_frobenius(got.data(), c.want.data()) < 1e-5, "{}: the recorded call", e.describe());
        let got = e.download(&second_out).unwrap();
        assert!(relative_frobenius(got.data(), second.want.data()) < 1e-5, "{}: the second call", e.describe());
        for (t, g) in &uploads {
            assert_eq!(e.download(g).unwrap().data(), t.data(), "{}: an upload of {} floats", e.describe(), t.len());
        }
        let cpu = Engine::reference();
        for (a, b, g) in &products {
            let want = cpu.matmul(a, b, MatmulOptions::default()).unwrap();
            assert!(relative_frobenius(e.download(g).unwrap().data(), want.data()) < 1e-5, "{}", e.describe());
        }
    }
}

#[test]
fn trimming_the_pool_mid_frame_keeps_recorded_buffers() {
    for e in gpu_engines() {
        let c = first_call(11);
        let (encoder, recorded, out) = record_first(&e, &c);
        e.trim_pool();
        submit_checked(&e, encoder);
        recorded.submitted();
        e.trim_pool();
        let got = e.download(&out).unwrap();
        assert!(relative_frobenius(got.data(), c.want.data()) < 1e-5, "{}", e.describe());
    }
}

#[test]
fn a_guard_dropped_before_submission_gives_its_buffers_up_instead_of_reusing_them() {
    for e in gpu_engines() {
        let c = first_call(21);
        let (encoder, recorded, out) = record_first(&e, &c);
        drop(recorded);
        let uploads: Vec<(Tensor<f32>, GpuTensor)> = class_sweep()
            .into_iter()
            .map(|n| {
                let t = gaussian(&[n], 1.0, n as u64);
                let g = e.upload("sweep", &t).unwrap();
                (t, g)
            })
            .collect();
        e.trim_pool();
        submit_checked(&e, encoder);
        let got = e.download(&out).unwrap();
        assert!(relative_frobenius(got.data(), c.want.data()) < 1e-5, "{}", e.describe());
        for (t, g) in &uploads {
            assert_eq!(e.download(g).unwrap().data(), t.data(), "{}", e.describe());
        }
    }
}

#[test]
fn released_buffers_wait_for_submitted_work_then_return() {
    for e in gpu_engines() {
        e.poll_device(true).unwrap();
        e.trim_pool();
        let c = first_call(31);
        let (encoder, recorded, out) = record_first(&e, &c);
        let live = e.pool_stats().live_bytes;
        submit_checked(&e, encoder);
        recorded.submitted();
        drop(out);
        let after = e.pool_stats();
        assert!(after.live_bytes < live, "scratch and tensors are no longer live");
        e.poll_device(true).unwrap();
        let done = e.pool_stats();
        assert_eq!(done.waiting_bytes, 0, "{}: completed work releases every waiting buffer", e.describe());
        e.trim_pool();
        assert_eq!(e.pool_stats().held_bytes, e.pool_stats().live_bytes, "{}", e.describe());
    }
}

/// One thread's share of mixed work, every result kept on the device until the end.
fn hammer(e: &Engine, thread: u64) {
    let cpu = Engine::reference();
    let mut kept: Vec<(GpuTensor, Tensor<f32>)> = Vec::new();
    for round in 0..4u64 {
        let seed = 1000 * thread + 10 * round;
        let l = 17 + (thread as usize * 5 + round as usize * 3) % 40;
        let q = gaussian(&[1, 2, l, 8], 0.5, seed);
        let w = projection(16, 8, Scaling::Chi, seed + 1).unwrap().to_f32();
        let o = if round % 2 == 0 {
            FavorOptions::new(Kernel::Softmax)
        } else {
            FavorOptions::causal(Kernel::Relu { eps: 1e-3 })
        };
        let (gq, gw) = (e.upload("q", &q).unwrap(), e.upload("w", &w).unwrap());
        kept.push((e.favor_gpu(&gq, &gq, &gq, &gw, &o).unwrap(), cpu.favor(&q, &q, &q, &w, &o).unwrap()));

        let (m, k) = (5 + l % 11, 3 + l % 7);
        let (a, b) = (gaussian(&[2, m, k], 1.0, seed + 2), gaussian(&[k, m], 1.0, seed + 3));
        let (ga, gb) = (e.upload("a", &a).unwrap(), e.upload("b", &b).unwrap());
        let want = cpu.matmul(&a, &b, MatmulOptions::default()).unwrap();
        kept.push((e.matmul_gpu(&ga, &gb, MatmulOptions::default()).unwrap(), want));

        let u = gaussian(&[2, 12, 5], 1.0, seed + 4);
        let gu = e.upload("u", &u).unwrap();
        kept.push((e.cwy_gpu(&gu).unwrap(), cpu.cwy(&u).unwrap()));

        let a = gaussian(&[3, 4, 4], 0.3, seed + 5);
        let ga = e.upload("a", &a).unwrap();
        kept.push((e.expm_gpu(&ga).unwrap(), cpu.expm(&a).unwrap()));
    }
    for (i, (got, want)) in kept.iter().enumerate() {
        let err = relative_frobenius(e.download(got).unwrap().data(), want.data());
        assert!(err < 1e-5, "{} thread {thread} result {i}: relative error {err:e}", e.describe());
    }
}

#[test]
fn eight_threads_share_one_engine() {
    for e in gpu_engines() {
        // Every pipeline compiled first, on one thread: wgpu's GL backend serialises all calls on one
        // context and panics in a call that waits over 6 s for it, which eight threads queued behind
        // llvmpipe's cold shader compiles can (README, "Threads"). This test is about buffers.
        hammer(&e, 8);
        std::thread::scope(|s| {
            for thread in 0..8 {
                let e = e.clone();
                s.spawn(move || hammer(&e, thread));
            }
        });
    }
}
