//! An orthogonal recurrent cell `h <- tanh(Q h + x_t)` whose transition `Q = H(u_1) ... H(u_L)` is a
//! CWY matrix: a few steps of gradient descent on the Householder vectors U with the CWY gradient
//! (`Engine::cwy_backward`), printing the loss and the orthogonality of Q at each step. However U
//! moves, Q stays orthogonal to float rounding: no re-orthonormalisation is ever needed.
//!
//!     cargo run --example orthogonal_rnn

use ortho::random::Gaussian;
use ortho::{Engine, Tensor};

const N: usize = 16;
const STEPS: usize = 20;

fn matvec(q: &[f32], h: &[f32], transpose: bool) -> Vec<f32> {
    (0..N).map(|i| (0..N).map(|j| if transpose { q[j * N + i] } else { q[i * N + j] } * h[j]).sum()).collect()
}

/// Runs the cell over `xs` from h = 0; returns every hidden state.
fn forward(q: &[f32], xs: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let mut hs = vec![vec![0.0; N]];
    for x in xs {
        let a = matvec(q, hs.last().unwrap(), false);
        hs.push(a.iter().zip(x).map(|(a, x)| (a + x).tanh()).collect());
    }
    hs
}

/// `0.5 |h_T - target|^2` and its gradient with respect to Q, by backpropagation through time.
fn loss_and_grad(q: &[f32], xs: &[Vec<f32>], target: &[f32]) -> (f32, Vec<f32>) {
    let hs = forward(q, xs);
    let last = hs.last().unwrap();
    let loss = 0.5 * last.iter().zip(target).map(|(h, t)| (h - t) * (h - t)).sum::<f32>();
    let mut dh: Vec<f32> = last.iter().zip(target).map(|(h, t)| h - t).collect();
    let mut dq = vec![0.0; N * N];
    for t in (0..xs.len()).rev() {
        let da: Vec<f32> = dh.iter().zip(&hs[t + 1]).map(|(d, h)| d * (1.0 - h * h)).collect();
        for i in 0..N {
            for j in 0..N {
                dq[i * N + j] += da[i] * hs[t][j];
            }
        }
        dh = matvec(q, &da, true);
    }
    (loss, dq)
}

fn orthogonality_error(q: &[f32]) -> f64 {
    let mut sum = 0.0f64;
    for i in 0..N {
        for j in 0..N {
            let dot: f64 = (0..N).map(|r| q[r * N + i] as f64 * q[r * N + j] as f64).sum();
            sum += (dot - if i == j { 1.0 } else { 0.0 }).powi(2);
        }
    }
    sum.sqrt()
}

fn main() -> Result<(), ortho::Error> {
    let engine = Engine::new()?;
    println!("engine: {}", engine.describe());
    let mut g = Gaussian::new(3);
    let mut u = Tensor::from_fn(&[N, N], |_| g.sample() as f32);
    let xs: Vec<Vec<f32>> = (0..8).map(|_| (0..N).map(|_| 0.5 * g.sample() as f32).collect()).collect();
    let target: Vec<f32> = (0..N).map(|i| if i % 2 == 0 { 0.5 } else { -0.5 }).collect();
    let lr = 0.1;
    for step in 0..STEPS {
        let q = engine.cwy(&u)?;
        let (loss, dq) = loss_and_grad(q.data(), &xs, &target);
        let du = engine.cwy_backward(&u, &Tensor::new(&[N, N], dq)?)?;
        println!("step {step:>2}: loss {loss:.5}  |Q^T Q - I|_F = {:.2e}", orthogonality_error(q.data()));
        u.data_mut().iter_mut().zip(du.data()).for_each(|(w, d)| *w -= lr * d);
    }
    Ok(())
}
