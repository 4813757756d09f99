//! The CPU fast path of random-feature attention's gradients (docs/math.md §1.4, §1.6), linear in L.
//! With `gt_t = [g_t / den_t, -(g_t . o_t) / den_t]` for the upstream gradient `g_t` of output row t:
//! - the query features' gradient is `S_t gt_t`, `S_t` the key state row t reads;
//! - the key features' gradient is `R_j [v_j | 1]` and `dv_j = R_j[:, :dv]^T phi(k_j)`, with
//!   `R_j = sum_{t >= j} phi(q_t) gt_t^T` over every t when bidirectional, and causal a suffix sum
//!   carried backwards over the chunks;
//! - dx and dW follow through the feature maps from the products `dphi * phi`, in which the
//!   stabilisers' offsets cancel (as in `ortho_ref::favor::favor_backward`).
//!
//! Every sum is taken relative to an offset no smaller than the exponents it holds, as in the forward
//! pass: causal row t's against its prefix maximum `gamma_t`, the carried `R` against the prefix
//! maximum at the end of the chunk it was folded to.

use super::{Features, View, bidirectional_sums, decay_mask, features, gemm, walk_chunks, with_ones};
use ortho_ref::Tensor;
use ortho_ref::favor::{AttentionShape, Kernel};

/// `[dq, dk, dv, dw]` for the upstream gradient `grad` of random-feature attention, bidirectional or
/// causal in chunks of `causal` tokens.
pub(crate) fn favor_backward(
    [q, k, v, w, grad]: [&Tensor<f32>; 5],
    kernel: Kernel,
    causal: Option<usize>,
) -> ortho_ref::Result<[Tensor<f32>; 4]> {
    let s = AttentionShape::of(q.shape(), k.shape(), v.shape(), Some(w.shape()))?;
    if grad.len() != s.problems() * s.len * s.value_dim {
        return Err(ortho_ref::Error::shape("grad", format!("{:?}", s.output_shape(q.shape().len())), grad.shape()));
    }
    if causal == Some(0) {
        return Err(ortho_ref::Error::argument("chunk", "the chunk size must be at least 1"));
    }
    let (l, d, dv, m) = (s.len, s.dim, s.value_dim, s.features);
    let sizes = (l, kernel.feature_count(m), dv);
    let (mut dq, mut dk, mut dvv, mut dw) =
        (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()], vec![0.0; w.len()]);
    for z in 0..s.problems() {
        let wh = (z % s.heads) % s.projection_heads;
        let wz = &w.data()[wh * m * d..(wh + 1) * m * d];
        let (qz, kz) = (&q.data()[z * l * d..(z + 1) * l * d], &k.data()[z * l * d..(z + 1) * l * d]);
        let feats = features(kernel, qz, kz, wz, (l, d, m));
        let vz = with_ones(&v.data()[z * l * dv..(z + 1) * l * dv], l, dv);
        let gz = &grad.data()[z * l * dv..(z + 1) * l * dv];
        let grads = match causal {
            None => bidirectional(&feats, &vz, gz, sizes),
            Some(chunk) => chunked(&feats, &vz, gz, sizes, chunk),
        };
        dvv[z * l * dv..(z + 1) * l * dv].copy_from_slice(&grads.dv);
        let dwz = &mut dw[wh * m * d..(wh + 1) * m * d];
        let chain = |phi: &[f32], dphi: &[f32], a: &[f32], x: &[f32], dx: &mut [f32], dw: &mut [f32]| {
            through_features(kernel, [phi, dphi, a], x, wz, (l, d, m), dx, dw)
        };
        chain(&feats.pq, &grads.dpq, &feats.aq, qz, &mut dq[z * l * d..(z + 1) * l * d], dwz);
        chain(&feats.pk, &grads.dpk, &feats.ak, kz, &mut dk[z * l * d..(z + 1) * l * d], dwz);
    }
    Ok([
        Tensor::new(q.shape(), dq)?,
        Tensor::new(k.shape(), dk)?,
        Tensor::new(v.shape(), dvv)?,
        Tensor::new(w.shape(), dw)?,
    ])
}

/// The gradients of one problem's features (each the factor of `phi` in `dphi * phi`) and values.
struct FeatureGrads {
    dpq: Vec<f32>,
    dpk: Vec<f32>,
    dv: Vec<f32>,
}

/// `gt` rows `[g / den, -(g . o) / den]` from the rows `[num | den]`; zero where the denominator
/// vanished (the output is 0 there, whatever the inputs).
fn upstream(acc: &[f32], grad: &[f32], dv: usize) -> Vec<f32> {
    let mut gt = vec![0.0; acc.len()];
    for ((row, g), out) in acc.chunks(dv + 1).zip(grad.chunks(dv)).zip(gt.chunks_mut(dv + 1)) {
        let den = row[dv];
        if den == 0.0 || !den.is_finite() {
            continue;
        }
        let mut dot = 0.0;
        for c in 0..dv {
            out[c] = g[c] / den;
            dot += out[c] * row[c];
        }
        out[dv] = -dot / den;
    }
    gt
}

fn bidirectional(feats: &Features, v: &[f32], grad: &[f32], (l, f, dv): (usize, usize, usize)) -> FeatureGrads {
    let width = dv + 1;
    let sums = bidirectional_sums(&feats.pq, feats.pk.clone(), &feats.g, v, (l, f, dv));
    let gt = upstream(&sums.acc, grad, dv);
    let mut dpq = vec![0.0; l * f];
    gemm((l, width, f), 1.0, View::new(&gt, width), View::new(&sums.state, width).t(), 0.0, &mut dpq);
    let mut r = vec![0.0; f * width];
    gemm((f, l, width), 1.0, View::new(&feats.pq, f).t(), View::new(&gt, width), 0.0, &mut r);
    let mut dpk = vec![0.0; l * f];
    gemm((l, width, f), 1.0, View::new(v, width), View::new(&r, width).t(), 0.0, &mut dpk);
    let top = super::max(&feats.g);
    for (row, gj) in dpk.chunks_mut(f).zip(&feats.g) {
        let scale = (gj - top).exp();
        row.iter_mut().for_each(|x| *x *= scale);
    }
    let mut dvz = vec![0.0; l * dv];
    gemm((l, f, dv), 1.0, View::new(&sums.keys, f), View::new(&r, width), 0.0, &mut dvz);
    FeatureGrads { dpq, dpk, dv: dvz }
}

fn chunked(feats: &Features, v: &[f32], grad: &[f32], (l, f, dv): (usize, usize, usize), chunk: usize) -> FeatureGrads {
    let (pq, pk, g) = (&feats.pq, &feats.pk, &feats.g);
    let width = dv + 1;
    let (mut dpq, mut gt, mut gammas) = (vec![0.0; l * f], vec![0.0; l * width], vec![0.0; l]);
    let mut block = vec![0.0; chunk * chunk];
    // In order: each row's gt, and the query features' gradient from the state entering its chunk
    // and the chunk's own keys.
    walk_chunks(pq, pk, g, v, (l, f, dv), chunk, |step| {
        let (c0, c) = (step.c0, step.c);
        let gtc = upstream(step.acc, &grad[c0 * dv..(c0 + c) * dv], dv);
        let dq = &mut dpq[c0 * f..(c0 + c) * f];
        gemm((c, width, f), 1.0, View::new(&gtc, width), View::new(step.state, width).t(), 0.0, dq);
        for (row, gamma_t) in dq.chunks_mut(f).zip(step.prefix) {
            let decay = (step.gamma - gamma_t).exp();
            row.iter_mut().for_each(|x| *x *= decay);
        }
        let (vc, kc) = (&v[c0 * width..(c0 + c) * width], &pk[c0 * f..(c0 + c) * f]);
        let m = &mut block[..c * c];
        gemm((c, width, c), 1.0, View::new(&gtc, width), View::new(vc, width).t(), 0.0, m);
        decay_mask(m, c, &g[c0..c0 + c], step.prefix);
        gemm((c, c, f), 1.0, View::new(m, c), View::new(kc, f), 1.0, dq);
        gt[c0 * width..(c0 + c) * width].copy_from_slice(&gtc);
        gammas[c0..c0 + c].copy_from_slice(step.prefix);
    });
    // Backwards: the keys' and values' gradients from the chunk's own rows and from `R`, the later
    // rows' `sum exp(delta - gamma_t) phi(q_t) gt_t^T` relative to `delta`, the prefix maximum at
    // the chunk's end; then the chunk's rows join `R`, relative to the offset before the chunk.
    let (mut dpk, mut dvz) = (vec![0.0; l * f], vec![0.0; l * dv]);
    let mut r = vec![0.0; f * width];
    let (mut scores, mut later_k, mut later_v) =
        (vec![0.0; chunk * chunk], vec![0.0; chunk * f], vec![0.0; chunk * dv]);
    let mut scaled = vec![0.0; chunk * f];
    let starts: Vec<usize> = (0..l).step_by(chunk).collect();
    for &c0 in starts.iter().rev() {
        let c = chunk.min(l - c0);
        let (qc, kc) = (&pq[c0 * f..(c0 + c) * f], &pk[c0 * f..(c0 + c) * f]);
        let (vc, gtc, gc) = (&v[c0 * width..(c0 + c) * width], &gt[c0 * width..(c0 + c) * width], &g[c0..c0 + c]);
        let (prefix, delta) = (&gammas[c0..c0 + c], gammas[c0 + c - 1]);
        let (m, sc) = (&mut block[..c * c], &mut scores[..c * c]);
        gemm((c, width, c), 1.0, View::new(gtc, width), View::new(vc, width).t(), 0.0, m);
        decay_mask(m, c, gc, prefix);
        gemm((c, f, c), 1.0, View::new(qc, f), View::new(kc, f).t(), 0.0, sc);
        decay_mask(sc, c, gc, prefix);
        let (dk, dvc) = (&mut dpk[c0 * f..(c0 + c) * f], &mut dvz[c0 * dv..(c0 + c) * dv]);
        gemm((c, c, f), 1.0, View::new(m, c).t(), View::new(qc, f), 0.0, dk);
        gemm((c, c, dv), 1.0, View::new(sc, c).t(), View::new(gtc, width), 0.0, dvc);
        let (lk, lv) = (&mut later_k[..c * f], &mut later_v[..c * dv]);
        gemm((c, width, f), 1.0, View::new(vc, width), View::new(&r, width).t(), 0.0, lk);
        gemm((c, f, dv), 1.0, View::new(kc, f), View::new(&r, width), 0.0, lv);
        for (j, gj) in gc.iter().enumerate() {
            let scale = (gj - delta).exp();
            dk[j * f..(j + 1) * f].iter_mut().zip(&lk[j * f..(j + 1) * f]).for_each(|(x, y)| *x += scale * y);
            dvc[j * dv..(j + 1) * dv].iter_mut().zip(&lv[j * dv..(j + 1) * dv]).for_each(|(x, y)| *x += scale * y);
        }
        if c0 == 0 {
            break;
        }
        let before = gammas[c0 - 1];
        for (t, row) in scaled.chunks_mut(f).take(c).enumerate() {
            let scale = (before - prefix[t]).exp();
            row.iter_mut().zip(&qc[t * f..(t + 1) * f]).for_each(|(x, q)| *x = scale * q);
        }
        let decay = (before - delta).exp();
        gemm((f, c, width), 1.0, View::new(&scaled[..c * f], f).t(), View::new(gtc, width), decay, &mut r);
    }
    FeatureGrads { dpq, dpk, dv: dvz }
}

/// `dx` (written) and `dW` (added to) from `dphi`, `phi` and the projections `a` of one problem's
/// rows `x`: per feature the gradient `da` through `a = x~ W^T` and `dn` through `|x~|^2 / 2`, then
/// `dx = d^(-1/4) (da W + (sum_i dn_i) x~)` and `dW += da^T x~`.
fn through_features(
    kernel: Kernel,
    [phi, dphi, a]: [&[f32]; 3],
    x: &[f32],
    w: &[f32],
    (l, d, m): (usize, usize, usize),
    dx: &mut [f32],
    dw: &mut [f32],
) {
    let f = kernel.feature_count(m);
    let scale = (d as f32).powf(-0.25);
    let (mut da, mut dn) = (vec![0.0; l * m], vec![0.0; l]);
    for (t, (row, dn)) in da.chunks_mut(m).zip(&mut dn).enumerate() {
        let (p, dp, at) = (&phi[t * f..(t + 1) * f], &dphi[t * f..(t + 1) * f], &a[t * m..(t + 1) * m]);
        for i in 0..m {
            let (ga, gn) = match kernel {
                Kernel::Softmax => (dp[i] * p[i], -dp[i] * p[i]),
                Kernel::Trig => (p[i] * dp[m + i] - p[m + i] * dp[i], p[i] * dp[i] + p[m + i] * dp[m + i]),
                Kernel::Relu { .. } => (if at[i] > 0.0 { dp[i] } else { 0.0 }, 0.0),
            };
            row[i] = ga;
            *dn += gn;
        }
    }
    gemm((l, m, d), scale, View::new(&da, m), View::new(w, d), 0.0, dx);
    for ((row, xt), dn) in dx.chunks_mut(d).zip(x.chunks(d)).zip(&dn) {
        row.iter_mut().zip(xt).for_each(|(y, x)| *y += scale * scale * dn * x);
    }
    gemm((m, l, d), scale, View::new(&da, m).t(), View::new(x, d), 1.0, dw);
}
