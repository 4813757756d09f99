//! Fits a causal FAVOR+ layer to a teacher: gradient descent on q, k and v towards the outputs of
//! the same layer at other inputs, with the forward pass keeping what the backward pass needs
//! (`Engine::favor_forward_gpu`) and the backward pass walking the chunks without checkpoints
//! (`Checkpoints::None`: scratch independent of L). The inputs and gradients stay on the device
//! between the two passes; only the loss and the update happen on the host.
//!
//!     cargo run --example train_causal_attention

use ortho::random::{Gaussian, Scaling, projection};
use ortho::{Checkpoints, Engine, FavorOptions, Kernel, Schedule, Tensor};

const L: usize = 512;
const D: usize = 16;
const DV: usize = 8;
const M: usize = 64;
const STEPS: usize = 30;
const RATE: f32 = 20.0;

fn gaussian(shape: &[usize], scale: f32, seed: u64) -> Tensor<f32> {
    let mut g = Gaussian::new(seed);
    Tensor::from_fn(shape, |_| scale * g.sample() as f32)
}

fn main() -> Result<(), ortho::Error> {
    let engine = Engine::new()?;
    println!("engine: {}", engine.describe());
    let o = FavorOptions {
        chunk: Some(64),
        schedule: Schedule::Sequential,
        checkpoints: Checkpoints::None,
        ..FavorOptions::causal(Kernel::Softmax)
    };
    let w = projection(M, D, Scaling::Chi, 1)?.to_f32();
    let teacher = [gaussian(&[L, D], 0.5, 2), gaussian(&[L, D], 0.5, 3), gaussian(&[L, DV], 1.0, 4)];
    let target = engine.favor(&teacher[0], &teacher[1], &teacher[2], &w, &o)?;
    let mut params = [gaussian(&[L, D], 0.5, 5), gaussian(&[L, D], 0.5, 6), gaussian(&[L, DV], 1.0, 7)];
    let gw = engine.upload("projection", &w)?;
    for step in 0..=STEPS {
        let [q, k, v] = [0, 1, 2].map(|i| engine.upload("parameter", &params[i]));
        let (q, k, v) = (q?, k?, v?);
        let (out, saved) = engine.favor_forward_gpu(&q, &k, &v, &gw, &o)?;
        // Loss 0.5 |out - target|^2 / L and its gradient with respect to the output.
        let residual: Vec<f32> =
            engine.download(&out)?.data().iter().zip(target.data()).map(|(a, b)| (a - b) / L as f32).collect();
        let loss = 0.5 * L as f32 * residual.iter().map(|r| r * r).sum::<f32>();
        if step % 5 == 0 {
            println!("step {step:>2}: loss {loss:.5}");
        }
        let grad = engine.upload("grad", &Tensor::new(&[L, DV], residual)?)?;
        let g = engine.favor_backward_gpu(&q, &k, &v, &gw, &out, &saved, &grad)?;
        for (p, g) in params.iter_mut().zip([&g.dq, &g.dk, &g.dv]) {
            let g = engine.download(g)?;
            p.data_mut().iter_mut().zip(g.data()).for_each(|(x, d)| *x -= RATE * d);
        }
    }
    Ok(())
}
