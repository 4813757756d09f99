//! The `*_async` functions never block the calling thread: their futures wait for GPU callbacks that
//! whoever drives the device (a poller thread here) lets run, so one thread can keep many in flight.
mod common;
use common::*;
use futures::executor::{LocalPool, block_on};
use futures::future::join_all;
use ortho::random::{Scaling, projection};
use ortho::{Engine, FavorOptions, Kernel};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

#[test]
fn the_engine_is_send_and_sync() {
    fn shared<T: Send + Sync>() {}
    shared::<Engine>();
    shared::<ortho::GpuTensor>();
    shared::<ortho::Recorded>();
}

#[test]
fn a_download_waits_for_the_device_without_blocking() {
    for e in gpu_engines() {
        let t = gaussian(&[1000], 1.0, 1);
        let g = e.upload("t", &t).unwrap();
        let mut download = pin!(e.download_async(&g));
        let mut cx = Context::from_waker(Waker::noop());
        // Nobody has driven the device: the copy's callback cannot have run, and the poll returns.
        assert!(download.as_mut().poll(&mut cx).is_pending(), "{}", e.describe());
        e.poll_device(true).unwrap();
        match download.as_mut().poll(&mut cx) {
            Poll::Ready(got) => assert_eq!(got.unwrap().data(), t.data()),
            Poll::Pending => panic!("{}: the download did not complete after the device ran", e.describe()),
        }
    }
}

#[test]
fn many_calls_in_flight_on_one_thread() {
    for e in gpu_engines() {
        let cpu = Engine::reference();
        let w = projection(16, 8, Scaling::Chi, 3).unwrap().to_f32();
        let inputs: Vec<_> = (0..6).map(|i| gaussian(&[1, 2, 30 + 7 * i, 8], 0.5, 10 + i as u64)).collect();
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            // The application's device loop; it keeps going past a failed poll, which it reports.
            s.spawn(|| {
                while !done.load(Ordering::Acquire) {
                    if let Err(err) = e.poll_device(true) {
                        eprintln!("{}: polling the device failed: {err}", e.describe());
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            });
            let mut pool = LocalPool::new();
            let results: Vec<_> = inputs
                .iter()
                .enumerate()
                .map(|(i, q)| {
                    let o = if i % 2 == 0 {
                        FavorOptions::new(Kernel::Softmax)
                    } else {
                        FavorOptions::causal(Kernel::Softmax)
                    };
                    let (e, w) = (&e, &w);
                    async move {
                        if i % 3 == 2 {
                            e.exact_attention_async(q, q, q, true).await
                        } else {
                            e.favor_async(q, q, q, w, &o).await
                        }
                    }
                })
                .collect();
            let got = pool.run_until(join_all(results));
            done.store(true, Ordering::Release);
            for (i, (q, got)) in inputs.iter().zip(got).enumerate() {
                let want = if i % 3 == 2 {
                    cpu.exact_attention(q, q, q, true).unwrap()
                } else {
                    let o = if i % 2 == 0 {
                        FavorOptions::new(Kernel::Softmax)
                    } else {
                        FavorOptions::causal(Kernel::Softmax)
                    };
                    cpu.favor(q, q, q, &w, &o).unwrap()
                };
                assert!(relative_frobenius(got.unwrap().data(), want.data()) < 1e-5, "{} call {i}", e.describe());
            }
        });
    }
}

#[test]
fn the_blocking_functions_drive_the_device_themselves() {
    for e in gpu_engines() {
        let t = gaussian(&[64], 1.0, 2);
        let g = e.upload("t", &t).unwrap();
        assert_eq!(e.download(&g).unwrap().data(), t.data());
        // A plain executor with nobody driving the device still completes through poll_device.
        let got = block_on(async {
            let mut download = pin!(e.download_async(&g));
            std::future::poll_fn(|cx| {
                let poll = download.as_mut().poll(cx);
                if poll.is_pending() {
                    e.poll_device(true).unwrap();
                    cx.waker().wake_by_ref();
                }
                poll
            })
            .await
        });
        assert_eq!(got.unwrap().data(), t.data());
    }
}
