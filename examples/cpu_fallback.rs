//! Times the CPU fallback's fast paths (`Engine::cpu`) against the f64 twins (`Engine::reference()`)
//! on the shapes `scripts/peers.py` times with PyTorch: FAVOR+ at L = 16384 (d = 64, m = 256),
//! bidirectional and causal; CWY at N = L = 1024; expm and the Cayley map of 65536 3 x 3 matrices;
//! the gradients of FAVOR+ at L = 2048 (the f64 twin's are quadratic in L) and, the fast path alone,
//! at L = 16384; CWY's apply and gradients at N = L = 512; expm and Cayley of 1024 64 x 64
//! matrices; RKMK4 at n = 32, batch 1024, 5 steps of the isospectral flow; exact attention at
//! L = 4096, d = 64.
//! Median of 5 calls after one untimed call, the call as a user makes it (input and output checks
//! included).
//!
//! `cargo run --release --example cpu_fallback`

use ortho::random::{Gaussian, Scaling, projection};
use ortho::{Engine, FavorOptions, Kernel, Tensor};
use ortho_ref::flow::{Flow, Generator, Method};
use std::time::Instant;

/// `G - G^T` of every matrix of `g: [batch, n, n]`.
fn skew(g: &Tensor<f32>) -> Tensor<f32> {
    let n = g.shape()[2];
    Tensor::from_fn(g.shape(), |e| {
        let (z, r) = (e / (n * n), e % (n * n));
        g.data()[e] - g.data()[z * n * n + (r % n) * n + r / n]
    })
}

fn gaussian(shape: &[usize], scale: f64, seed: u64) -> Tensor<f32> {
    let mut g = Gaussian::new(seed);
    Tensor::from_fn(shape, |_| (scale * g.sample()) as f32)
}

/// Median seconds of 5 calls after a warm-up.
fn median(mut call: impl FnMut() -> ortho::Result<Tensor<f32>>) -> ortho::Result<f64> {
    call()?;
    let mut times = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        call()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[2])
}

fn main() -> ortho::Result<()> {
    let (q, k, v) = (gaussian(&[16384, 64], 0.5, 1), gaussian(&[16384, 64], 0.5, 2), gaussian(&[16384, 64], 1.0, 3));
    let w = projection(256, 64, Scaling::Chi, 4)?.to_f32();
    let u = gaussian(&[1024, 1024], 1.0, 5);
    let a = gaussian(&[65536, 3, 3], 0.3, 6);
    let (bidirectional, causal) = (FavorOptions::new(Kernel::Softmax), FavorOptions::causal(Kernel::Softmax));
    let (u512, x512) = (gaussian(&[512, 512], 1.0, 8), gaussian(&[512, 64], 1.0, 9));
    let g512 = gaussian(&[512, 512], 1.0, 10);
    let rows = |t: &Tensor<f32>| t.slice_axis(0, 0, 4096);
    let (q4096, k4096, v4096) = (rows(&q), rows(&k), rows(&v));
    let a64 = skew(&gaussian(&[1024, 64, 64], 0.3 / 64.0, 11));
    let symmetric = |seed| {
        let g = gaussian(&[32, 32], 1.0, seed).to_f64();
        Tensor::from_fn(&[32, 32], |e| (g.data()[e] + g.data()[(e % 32) * 32 + e / 32]) / 2.0)
    };
    let rkmk4 = Flow {
        method: Method::Rkmk4,
        dt: 0.01,
        steps: 5,
        newton_schulz_every: None,
        generator: Generator::Isospectral { qs: symmetric(12), ns: symmetric(13) },
        state: None,
    };
    let w0 = Tensor::from_fn(&[1024, 32, 32], |e| if (e % 1024) / 32 == e % 32 { 1.0 } else { 0.0 });
    println!("{:<42} {:>12} {:>12} {:>8}", "case", "fast path", "f64 twin", "ratio");
    for (name, engine_call) in [
        ("favor+ L=16384 d=64 m=256", &(|e: &Engine| e.favor(&q, &k, &v, &w, &bidirectional)) as &dyn Fn(&Engine) -> _),
        ("favor+ causal C=64 L=16384 d=64 m=256", &|e: &Engine| e.favor(&q, &k, &v, &w, &causal)),
        ("cwy N=L=1024", &|e: &Engine| e.cwy(&u)),
        ("expm batch=65536 n=3", &|e: &Engine| e.expm(&a)),
        ("cayley batch=65536 n=3", &|e: &Engine| e.cayley(&a)),
        ("exact L=4096 d=64", &|e: &Engine| e.exact_attention(&q4096, &k4096, &v4096, false)),
        ("exact causal L=4096 d=64", &|e: &Engine| e.exact_attention(&q4096, &k4096, &v4096, true)),
        ("expm batch=1024 n=64", &|e: &Engine| e.expm(&a64)),
        ("cayley batch=1024 n=64", &|e: &Engine| e.cayley(&a64)),
        ("rkmk4 n=32 batch=1024 steps=5", &|e: &Engine| e.flow(&rkmk4, &w0).map(|(w, _)| w)),
        ("cwy apply N=L=512 K=64", &|e: &Engine| e.cwy_apply(&u512, &x512, false)),
        ("cwy gradients N=L=512", &|e: &Engine| e.cwy_backward(&u512, &g512)),
        ("cwy apply gradients N=L=512 K=64", &|e: &Engine| {
            e.cwy_apply_backward(&u512, &x512, &x512, false).map(|(du, _)| du)
        }),
    ] {
        let fast = median(|| engine_call(&Engine::cpu("timed")))?;
        let twin = median(|| engine_call(&Engine::reference()))?;
        println!("{name:<42} {:>9.1} ms {:>9.1} ms {:>7.1}x", fast * 1e3, twin * 1e3, twin / fast);
    }
    let g = gaussian(&[16384, 64], 1.0, 7);
    for (l, twin) in [(2048, true), (16384, false)] {
        let rows = |t: &Tensor<f32>| t.slice_axis(0, 0, l);
        let (q, k, v, g) = (rows(&q), rows(&k), rows(&v), rows(&g));
        for (setting, options) in [("", bidirectional), (" causal C=64", causal)] {
            let grads = |e: &Engine| e.favor_backward(&q, &k, &v, &w, &options, &g).map(|[dq, ..]| dq);
            let fast = median(|| grads(&Engine::cpu("timed")))?;
            let name = format!("favor+{setting} gradients L={l}");
            if twin {
                let twin = median(|| grads(&Engine::reference()))?;
                println!("{name:<42} {:>9.1} ms {:>9.1} ms {:>7.1}x", fast * 1e3, twin * 1e3, twin / fast);
            } else {
                println!("{name:<42} {:>9.1} ms {:>12} {:>8}", fast * 1e3, "-", "-");
            }
        }
    }
    Ok(())
}
