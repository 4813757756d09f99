//! Flows on the CPU fallback (docs/math.md §3.2): the methods of `ortho_ref::flow` in f32, each
//! matrix a [`Dense`] (products through `matrixmultiply`), the exponential with the GPU's f32
//! switch points, the batch split over the threads.

use super::matrices::{Dense, Square};
use super::threads;
use ortho_ref::Tensor;
use ortho_ref::expm::Ring;
use ortho_ref::flow::{Activation, Flow, Generator, Method};

/// `[W]`, or `[W, x]` with a nested state, after every step from `w0` (`[n, n]` or `[batch, n, n]`,
/// checked). A Cayley step whose `I - B/2` is singular leaves NaN, which the caller reports.
pub(crate) fn flow(flow: &Flow, w0: &Tensor<f32>) -> ortho_ref::Result<Vec<Tensor<f32>>> {
    let n = w0.shape()[w0.shape().len() - 1];
    let b = w0.len() / (n * n);
    let (mut ws, mut xs) = (vec![0.0; b * n * n], vec![0.0; b * n]);
    let per_thread = b.div_ceil(threads()).max(1);
    std::thread::scope(|scope| {
        let chunks = ws.chunks_mut(per_thread * n * n).zip(xs.chunks_mut(per_thread * n));
        for (t, (w_out, x_out)) in chunks.enumerate() {
            scope.spawn(move || {
                for (i, (w_out, x_out)) in w_out.chunks_mut(n * n).zip(x_out.chunks_mut(n)).enumerate() {
                    let z = t * per_thread + i;
                    integrate(flow, z, Dense::from_slice(n, &w0.data()[z * n * n..(z + 1) * n * n]), w_out, x_out);
                }
            });
        }
    });
    let mut out = vec![Tensor::new(w0.shape(), ws)?];
    if let Some((x0, _)) = &flow.state {
        out.push(Tensor::new(x0.shape(), xs)?);
    }
    Ok(out)
}

/// A flow's generators for one batch entry: `Omega: [steps, batch, n, n]`, or its `Qs` and `Ns`.
enum Field<'a> {
    Given(&'a Tensor<f64>),
    Isospectral(Dense, Dense),
}

/// The f32 matrix of `values` at `at`.
fn matrix_at(values: &[f64], at: usize, n: usize) -> Dense {
    Dense::from_slice(n, &values[at..at + n * n].iter().map(|&v| v as f32).collect::<Vec<_>>())
}

/// Flow `z` from `w`, its final W into `w_out` and nested state (if any) into `x_out`.
fn integrate(flow: &Flow, z: usize, mut w: Dense, w_out: &mut [f32], x_out: &mut [f32]) {
    let n = w.n();
    let mut x: Option<Vec<f32>> =
        flow.state.as_ref().map(|(x0, _)| x0.data()[z * n..(z + 1) * n].iter().map(|&v| v as f32).collect());
    let shared_or_own = |t: &Tensor<f64>| matrix_at(t.data(), if t.shape().len() == 2 { 0 } else { z * n * n }, n);
    let generator = match &flow.generator {
        Generator::Given(omega) => Field::Given(omega),
        Generator::Isospectral { qs, ns } => Field::Isospectral(shared_or_own(qs), shared_or_own(ns)),
    };
    for k in 0..flow.steps {
        // The field `h b(t_k, W)`.
        let field = |w: &Dense| -> Dense {
            let b = match &generator {
                Field::Given(omega) => matrix_at(omega.data(), (k * omega.shape()[1] + z) * n * n, n),
                Field::Isospectral(qs, ns) => w.transpose().mul(qs).mul(w).commutator(ns),
            };
            b.scale(flow.dt)
        };
        // `W exp(B)` (or `W cay(B)`) in increment form.
        let advance = |w: &Dense, b: &Dense| -> Dense {
            let increment = match flow.method {
                Method::CayleyEuler => b.cayley_increment().unwrap_or_else(|| Dense::eye(n, f32::NAN)),
                _ => b.exp_increment(),
            };
            w.add(&w.mul(&increment))
        };
        let b1 = field(&w);
        let (next, stages) = match flow.method {
            Method::LieEuler | Method::CayleyEuler => (advance(&w, &b1), vec![w.clone()]),
            Method::Rkmk4 => {
                let w2 = advance(&w, &b1.scale(0.5));
                let b2 = field(&w2);
                let w3 = advance(&w, &b2.scale(0.5).add(&b1.commutator(&b2).scale(1.0 / 8.0)));
                let b3 = field(&w3);
                let w4 = advance(&w, &b3);
                let b4 = field(&w4);
                let mix = b1.add(&b2.scale(2.0)).add(&b3.scale(2.0)).add(&b4).scale(1.0 / 6.0);
                let next = advance(&w, &mix.add(&b1.commutator(&b4).scale(1.0 / 12.0)));
                (next, vec![w.clone(), w2, w3, w4])
            }
        };
        if let (Some(xv), Some((_, act))) = (x.as_mut(), &flow.state) {
            *xv = state_step(flow.dt as f32, xv, &stages, *act);
        }
        w = next;
        if flow.newton_schulz_every.is_some_and(|e| (k + 1) % e == 0) {
            // One Newton–Schulz step: `W (3I - W^T W) / 2`.
            w = w.mul(&Dense::eye(n, 3.0).add(&w.transpose().mul(&w).scale(-1.0))).scale(0.5);
        }
    }
    w_out.copy_from_slice(w.data());
    if let Some(x) = x {
        x_out.copy_from_slice(&x);
    }
}

/// `x' = sigma(W x)` over one step: forward Euler with the step's W for the first-order methods,
/// classical RK4 with the RKMK stage matrices for RKMK4.
fn state_step(h: f32, x: &[f32], stages: &[Dense], act: Activation) -> Vec<f32> {
    let slope = |w: &Dense, x: &[f32]| -> Vec<f32> {
        let n = w.n();
        (0..n).map(|i| act.apply((0..n).map(|j| (w.data()[i * n + j] * x[j]) as f64).sum()) as f32).collect()
    };
    let axpy = |a: f32, d: &[f32]| -> Vec<f32> { x.iter().zip(d).map(|(x, d)| x + a * d).collect() };
    if stages.len() == 1 {
        return axpy(h, &slope(&stages[0], x));
    }
    let k1 = slope(&stages[0], x);
    let k2 = slope(&stages[1], &axpy(h / 2.0, &k1));
    let k3 = slope(&stages[2], &axpy(h / 2.0, &k2));
    let k4 = slope(&stages[3], &axpy(h, &k3));
    (0..x.len()).map(|i| x[i] + h / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i])).collect()
}
