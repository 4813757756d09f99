//! Times the CPU fallback's fast paths (`Engine::cpu`) against the f64 twins (`Engine::reference()`)
//! on the shapes `scripts/peers.py` times with PyTorch: FAVOR+ at L = 16384 (d = 64, m = 256),
//! bidirectional and causal; CWY at N = L = 1024; expm and the Cayley map of 65536 3 x 3 matrices;
//! the gradients of FAVOR+ at L = 2048 (the f64 twin's are quadratic in L) and, the fast path alone,
//! at L = 16384; CWY's apply and gradients at N = L = 512.
//! Median of 5 calls after one untimed call, the call as a user makes it (input and output checks
//! included).
//!
//! `cargo run --release --example cpu_fallback`

use ortho::random::{Gaussian, Scaling, projection};
use ortho::{Engine, FavorOptions, Kernel, Tensor};
use std::time::Instant;

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
    println!("{:<42} {:>12} {:>12} {:>8}", "case", "fast path", "f64 twin", "ratio");
    for (name, engine_call) in [
        ("favor+ L=16384 d=64 m=256", &(|e: &Engine| e.favor(&q, &k, &v, &w, &bidirectional)) as &dyn Fn(&Engine) -> _),
        ("favor+ causal C=64 L=16384 d=64 m=256", &|e: &Engine| e.favor(&q, &k, &v, &w, &causal)),
        ("cwy N=L=1024", &|e: &Engine| e.cwy(&u)),
        ("expm batch=65536 n=3", &|e: &Engine| e.expm(&a)),
        ("cayley batch=65536 n=3", &|e: &Engine| e.cayley(&a)),
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
