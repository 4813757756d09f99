//! Token-by-token decoding with the carried causal state: each step feeds one new token's query,
//! key and value, gets that token's output, and keeps the state (S, z, gamma) on the device for the
//! next step. The decoded sequence equals the one-shot causal output.
//!
//!     cargo run --example stream_decode

use ortho::random::{Gaussian, Scaling, projection};
use ortho::{AttentionShape, Engine, FavorOptions, Kernel, Tensor};

fn main() -> Result<(), ortho::Error> {
    let engine = Engine::new()?;
    println!("engine: {}", engine.describe());
    if let Some(reason) = engine.fallback_reason() {
        println!("(CPU reference: {reason})");
    }
    let (heads, len, dim, features) = (2, 48, 16, 64);
    let mut g = Gaussian::new(1);
    let mut tokens = |shape: &[usize]| Tensor::from_fn(shape, |_| 0.5 * g.sample() as f32);
    let (q, k, v) = (tokens(&[1, heads, len, dim]), tokens(&[1, heads, len, dim]), tokens(&[1, heads, len, dim]));
    let w = projection(features, dim, Scaling::Chi, 7)?.to_f32();
    let options = FavorOptions::causal(Kernel::Softmax);

    let one_shot = engine.favor(&q, &k, &v, &w, &options)?;

    let shape = AttentionShape::of(q.shape(), k.shape(), v.shape(), Some(w.shape()))?;
    let mut state = engine.causal_state(&shape, options.kernel)?;
    let token = |x: &Tensor<f32>, t: usize| -> Result<Tensor<f32>, ortho::Error> {
        let data = (0..heads).flat_map(|h| x.data()[(h * len + t) * dim..(h * len + t + 1) * dim].to_vec()).collect();
        Ok(Tensor::new(&[1, heads, 1, dim], data)?)
    };
    let mut worst: f64 = 0.0;
    for t in 0..len {
        let out = engine.favor_stream(&token(&q, t)?, &token(&k, t)?, &token(&v, t)?, &w, &options, &mut state)?;
        for h in 0..heads {
            let want = &one_shot.data()[(h * len + t) * dim..(h * len + t + 1) * dim];
            let got = &out.data()[h * dim..(h + 1) * dim];
            worst = worst.max(ortho_ref::tensor::max_abs_diff(got, want));
        }
        if t % 12 == 11 {
            println!("decoded {:>3} tokens; largest difference from the one-shot output so far {worst:.2e}", t + 1);
        }
    }
    println!("token-by-token == one-shot: max |difference| = {worst:.2e}");
    assert!(worst < 1e-5, "streaming diverged from the one-shot output");
    Ok(())
}
