//! A small ODEtoODE network: the state `x' = tanh(W x)` driven by weights that flow on the orthogonal
//! group, `W' = W [W^T Qs W, Ns]` (isospectral), both integrated with RKMK4 on the GPU. Prints, over
//! time, the orthogonality error of W, the invariant spectrum of `W^T Qs W` (its power traces) and the
//! norm of the state.
//!
//!     cargo run --example ode_to_ode

use ortho::random::Gaussian;
use ortho::{Engine, Tensor};
use ortho_ref::flow::{Activation, Flow, Generator, Method, orthogonality_error};
use ortho_ref::linalg::matmul;

fn main() -> Result<(), ortho::Error> {
    let engine = Engine::new()?;
    println!("engine: {}", engine.describe());
    let (batch, n) = (4, 8);
    let mut g = Gaussian::new(11);
    let mut symmetric = || {
        let a: Vec<f64> = (0..n * n).map(|_| g.sample()).collect();
        Tensor::from_fn(&[n, n], |e| (a[e] + a[(e % n) * n + e / n]) / 4.0)
    };
    let (qs, ns) = (symmetric(), symmetric());
    let x0 = Tensor::from_fn(&[batch, n], |e| ((e * 37 % 17) as f64 - 8.0) / 8.0);
    let w0 = Tensor::from_fn(&[batch, n, n], |e| if (e % (n * n)) / n == e % n { 1.0f32 } else { 0.0 });
    let trace2 = |a: &[f64]| (0..n).map(|i| (0..n).map(|k| a[i * n + k] * a[k * n + i]).sum::<f64>()).sum::<f64>();
    println!("{:>6} {:>14} {:>18} {:>10}", "t", "|W^T W - I|_F", "tr((W^T Qs W)^2)", "|x|");
    for steps in [0usize, 25, 50, 100, 200] {
        let flow = Flow {
            method: Method::Rkmk4,
            dt: 0.02,
            steps,
            newton_schulz_every: None,
            generator: Generator::Isospectral { qs: qs.clone(), ns: ns.clone() },
            state: Some((x0.clone(), Activation::Tanh)),
        };
        let (w, x) = engine.flow(&flow, &w0)?;
        let w = w.to_f64();
        let first = Tensor::new(&[n, n], w.data()[..n * n].to_vec())?;
        let wt = ortho_ref::cwy::transpose_of(first.data(), n, n);
        let moved = matmul(&matmul(&wt, qs.data(), n, n, n), first.data(), n, n, n);
        let x = x.expect("the nested state is integrated");
        let norm = x.data()[..n].iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
        println!(
            "{:>6.2} {:>14.2e} {:>18.6} {:>10.4}",
            steps as f64 * 0.02,
            orthogonality_error(&w)?,
            trace2(&moved),
            norm
        );
    }
    println!("tr((Qs)^2) = {:.6} (the invariant)", trace2(qs.data()));
    Ok(())
}
