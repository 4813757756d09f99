//! Random-feature attention (FAVOR+, FAVOR, generalized ReLU) and exact softmax attention, in f64
//! (docs/math.md §1).
//!
//! Tensors are `[B, H, L, d]` (or `[L, d]`, read as `B = H = 1`); the projection is `[m, d]` shared by
//! all heads or `[H, m, d]`. The linear-time forms here use the stabilisers of docs/math.md §1.5, which
//! change no output; [`favor_quadratic`] builds the `L x L` matrix from the raw formula of §1.4 and is
//! the independent oracle the linear forms are tested against.

use crate::error::{Error, Result};
use crate::tensor::{Element, Tensor};

/// The feature map of docs/math.md §1.3.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kernel {
    /// FAVOR+: `m^(-1/2) exp(w.x~ - |x~|^2/2)`, positive.
    Softmax,
    /// FAVOR: `m^(-1/2) exp(|x~|^2/2) [cos w.x~, sin w.x~]`, `2m` features, unbiased but signed.
    Trig,
    /// Generalized attention: `relu(w.x~) + eps`.
    Relu { eps: f64 },
}

impl Kernel {
    pub const DEFAULT_RELU_EPS: f64 = 1e-3;

    /// Features per row: `m`, or `2m` for `trig`.
    pub fn feature_count(self, m: usize) -> usize {
        match self {
            Kernel::Trig => 2 * m,
            _ => m,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Softmax => "softmax",
            Kernel::Trig => "trig",
            Kernel::Relu { .. } => "relu",
        }
    }
}

impl std::str::FromStr for Kernel {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "softmax" => Ok(Kernel::Softmax),
            "trig" => Ok(Kernel::Trig),
            "relu" => Ok(Kernel::Relu { eps: Kernel::DEFAULT_RELU_EPS }),
            _ => Err(Error::argument("kernel", format!("'{s}' is not one of softmax, trig, relu"))),
        }
    }
}

/// The sizes of one attention problem, checked for consistency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    pub batch: usize,
    pub heads: usize,
    pub len: usize,
    pub dim: usize,
    pub value_dim: usize,
    /// Random features `m` (0 for exact attention).
    pub features: usize,
    /// 1 when the projection is shared by all heads, `heads` when each head has its own.
    pub projection_heads: usize,
}

impl AttentionShape {
    /// Checks `q, k: [B, H, L, d]`, `v: [B, H, L, dv]` (or all 2-D `[L, ·]`) and, when given, the
    /// projection `[m, d]` or `[H, m, d]`.
    pub fn of(q: &[usize], k: &[usize], v: &[usize], w: Option<&[usize]>) -> Result<Self> {
        let four = |name: &str, s: &[usize]| -> Result<[usize; 4]> {
            match *s {
                [l, d] => Ok([1, 1, l, d]),
                [b, h, l, d] => Ok([b, h, l, d]),
                _ => Err(Error::shape(name, "[L, d] or [B, H, L, d]", s)),
            }
        };
        if q.len() != k.len() || q.len() != v.len() {
            return Err(Error::shape(
                "k, v",
                format!("the same rank as q {q:?}"),
                if k.len() != q.len() { k } else { v },
            ));
        }
        let [b, h, l, d] = four("q", q)?;
        let [kb, kh, kl, kd] = four("k", k)?;
        if [kb, kh, kl, kd] != [b, h, l, d] {
            return Err(Error::shape("k", format!("{q:?} (the shape of q)"), k));
        }
        let [vb, vh, vl, dv] = four("v", v)?;
        if [vb, vh, vl] != [b, h, l] {
            return Err(Error::shape("v", format!("[{b}, {h}, {l}, dv] to match q"), v));
        }
        for (name, n) in [("B", b), ("H", h), ("L", l), ("d", d), ("dv", dv)] {
            if n == 0 {
                return Err(Error::argument(name, "every dimension of q, k and v must be at least 1"));
            }
        }
        let (features, projection_heads) = match w {
            None => (0, 1),
            Some(&[m, wd]) if wd == d && m > 0 => (m, 1),
            Some(&[wh, m, wd]) if wh == h && wd == d && m > 0 => (m, h),
            Some(s) => {
                return Err(Error::shape("projection", format!("[m, {d}] or [{h}, m, {d}] with m >= 1"), s));
            }
        };
        Ok(AttentionShape { batch: b, heads: h, len: l, dim: d, value_dim: dv, features, projection_heads })
    }

    /// Independent attention problems `B * H`.
    pub fn problems(&self) -> usize {
        self.batch * self.heads
    }

    /// The output shape, with the rank of the inputs.
    pub fn output_shape(&self, rank: usize) -> Vec<usize> {
        if rank == 2 { vec![self.len, self.value_dim] } else { vec![self.batch, self.heads, self.len, self.value_dim] }
    }
}

/// Rejects non-finite entries in any input.
pub fn check_inputs<T: Element>(inputs: &[(&str, &Tensor<T>)]) -> Result<()> {
    inputs.iter().try_for_each(|(name, t)| t.check_finite(name))
}

/// Rows `a_i = w_i . x~` and `|x~|^2 / 2` for one problem's `[L, d]` block: `x~ = x d^(-1/4)`.
fn projections(x: &[f64], w: &[f64], l: usize, d: usize, m: usize) -> (Vec<f64>, Vec<f64>) {
    let scale = (d as f64).powf(-0.25);
    let mut a = vec![0.0; l * m];
    let mut half_sq = vec![0.0; l];
    for t in 0..l {
        let row = &x[t * d..(t + 1) * d];
        half_sq[t] = row.iter().map(|v| (v * scale).powi(2)).sum::<f64>() / 2.0;
        for i in 0..m {
            let wi = &w[i * d..(i + 1) * d];
            a[t * m + i] = scale * row.iter().zip(wi).map(|(x, w)| x * w).sum::<f64>();
        }
    }
    (a, half_sq)
}

/// Stabilised query and key features `[L, f]` of one problem's row-major `q, k: [L, d]` and
/// `w: [m, d]` (docs/math.md §1.5): each query row is scaled by its own positive constant, and all key
/// rows by one shared constant `exp(-max_j g_j)`, so `o` is unchanged.
pub fn stabilised_features(
    kernel: Kernel,
    q: &[f64],
    k: &[f64],
    w: &[f64],
    l: usize,
    d: usize,
    m: usize,
) -> (Vec<f64>, Vec<f64>) {
    let (pq, mut pk, g) = causal_features(kernel, q, k, w, l, d, m);
    let top = g.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let f = kernel.feature_count(m);
    for (row, gj) in pk.chunks_mut(f).zip(&g) {
        let scale = (gj - top).exp();
        row.iter_mut().for_each(|x| *x *= scale);
    }
    (pq, pk)
}

/// Query features, key features each with its own offset, and the key offsets `g_j`, for causal
/// attention (docs/math.md §1.5): `phi(q_t) . phi(k_j) ∝ phi^(q_t) . phi^(k_j) exp(g_j)`, with the row
/// factors of `q_t` dropped. `softmax`: `g_j = max_i a_ji - |k~_j|^2/2`, so every key feature is
/// `<= 1`; `trig`: `g_j = |k~_j|^2/2` and the key features are `[cos, sin]`; `relu`: `g_j = 0`.
pub fn causal_features(
    kernel: Kernel,
    q: &[f64],
    k: &[f64],
    w: &[f64],
    l: usize,
    d: usize,
    m: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (aq, _) = projections(q, w, l, d, m);
    let (ak, kk) = projections(k, w, l, d, m);
    let f = kernel.feature_count(m);
    let mut pq = vec![0.0; l * f];
    let mut pk = vec![0.0; l * f];
    let mut g = vec![0.0; l];
    for t in 0..l {
        let (qa, ka) = (&aq[t * m..(t + 1) * m], &ak[t * m..(t + 1) * m]);
        match kernel {
            Kernel::Softmax => {
                let beta = qa.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                g[t] = ka.iter().copied().fold(f64::NEG_INFINITY, f64::max) - kk[t];
                for i in 0..m {
                    pq[t * f + i] = (qa[i] - beta).exp();
                    pk[t * f + i] = (ka[i] - kk[t] - g[t]).exp();
                }
            }
            Kernel::Trig => {
                g[t] = kk[t];
                for i in 0..m {
                    (pq[t * f + m + i], pq[t * f + i]) = qa[i].sin_cos();
                    (pk[t * f + m + i], pk[t * f + i]) = ka[i].sin_cos();
                }
            }
            Kernel::Relu { eps } => {
                for i in 0..m {
                    pq[t * f + i] = qa[i].max(0.0) + eps;
                    pk[t * f + i] = ka[i].max(0.0) + eps;
                }
            }
        }
    }
    (pq, pk, g)
}

/// The causal prefix state after some tokens, per problem (docs/math.md §1.4–1.6):
/// `S = sum_{j seen} phi^(k_j) exp(g_j - gamma) [v_j | 1]^T` (`[f, dv + 1]`, the last column is `z`)
/// and `gamma = max_{j seen} g_j`. Feeding it back continues the sequence where it stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct CausalState {
    pub problems: usize,
    pub features: usize,
    pub value_dim: usize,
    /// `[problems, features, value_dim + 1]`.
    pub s: Vec<f64>,
    /// `[problems]`; `-inf` before any token.
    pub gamma: Vec<f64>,
}

impl CausalState {
    /// The state before any token.
    pub fn new(problems: usize, features: usize, value_dim: usize) -> Self {
        CausalState {
            problems,
            features,
            value_dim,
            s: vec![0.0; problems * features * (value_dim + 1)],
            gamma: vec![f64::NEG_INFINITY; problems],
        }
    }

    /// Checks that this state continues problems of shape `s` under `kernel`.
    pub fn check(&self, s: &AttentionShape, kernel: Kernel) -> Result<()> {
        check_state_sizes((self.problems, self.features, self.value_dim), s, kernel)
    }
}

/// Checks that a causal state of `(problems, features, value_dim)` continues problems of shape `s`
/// under `kernel`.
pub fn check_state_sizes(sizes: (usize, usize, usize), s: &AttentionShape, kernel: Kernel) -> Result<()> {
    let want = (s.problems(), kernel.feature_count(s.features), s.value_dim);
    if sizes != want {
        return Err(Error::argument(
            "state",
            format!(
                "a causal state for {} problems, {} features and dv = {} cannot continue one with {}, {} and {}",
                sizes.0, sizes.1, sizes.2, want.0, want.1, want.2
            ),
        ));
    }
    Ok(())
}

/// Causal random-feature attention computed chunk by chunk (docs/math.md §1.6): inside a chunk of `chunk`
/// tokens the masked `C x C` block with the decay `exp(g_j - gamma_t)`, across chunks the carried
/// state rescaled whenever the prefix max grows. `chunk = 1` is the pure recurrence, `chunk >= L`
/// the masked quadratic form. With `state`, the call continues from it and leaves the state after
/// its last token there.
pub fn favor_causal(
    q: &Tensor<f64>,
    k: &Tensor<f64>,
    v: &Tensor<f64>,
    w: &Tensor<f64>,
    kernel: Kernel,
    chunk: usize,
    state: Option<&mut CausalState>,
) -> Result<Tensor<f64>> {
    let s = AttentionShape::of(q.shape(), k.shape(), v.shape(), Some(w.shape()))?;
    check_inputs(&[("q", q), ("k", k), ("v", v), ("projection", w)])?;
    if chunk == 0 {
        return Err(Error::argument("chunk", "the chunk size must be at least 1"));
    }
    let (l, d, dv, m) = (s.len, s.dim, s.value_dim, s.features);
    let f = kernel.feature_count(m);
    let mut fresh = CausalState::new(s.problems(), f, dv);
    let state = match state {
        Some(st) => {
            st.check(&s, kernel)?;
            st
        }
        None => &mut fresh,
    };
    let width = dv + 1;
    let mut z = 0;
    let out = for_each_problem(&s, q, k, v, Some(w), |p, o| {
        let (pq, pk, g) = causal_features(kernel, p.q, p.k, p.w, l, d, m);
        let st = &mut state.s[z * f * width..(z + 1) * f * width];
        let mut gamma = state.gamma[z];
        let vrow = |j: usize, c: usize| if c == dv { 1.0 } else { p.v[j * dv + c] };
        for c0 in (0..l).step_by(chunk) {
            let c1 = (c0 + chunk).min(l);
            // gamma_t: the prefix max of the key offsets, carried across chunks.
            let mut prefix = vec![0.0; c1 - c0];
            let mut run = gamma;
            for t in c0..c1 {
                run = run.max(g[t]);
                prefix[t - c0] = run;
            }
            for t in c0..c1 {
                let gt = prefix[t - c0];
                let mut acc = vec![0.0; width];
                let inter = (gamma - gt).exp();
                for i in 0..f {
                    let x = pq[t * f + i] * inter;
                    for c in 0..width {
                        acc[c] += x * st[i * width + c];
                    }
                }
                for j in c0..=t {
                    let a: f64 = (0..f).map(|i| pq[t * f + i] * pk[j * f + i]).sum::<f64>() * (g[j] - gt).exp();
                    for c in 0..width {
                        acc[c] += a * vrow(j, c);
                    }
                }
                for c in 0..dv {
                    o[t * dv + c] = normalise(acc[c], acc[dv]);
                }
            }
            let new_gamma = prefix[c1 - c0 - 1];
            let decay = (gamma - new_gamma).exp();
            st.iter_mut().for_each(|x| *x *= decay);
            for j in c0..c1 {
                let scale = (g[j] - new_gamma).exp();
                for i in 0..f {
                    let x = pk[j * f + i] * scale;
                    for c in 0..width {
                        st[i * width + c] += x * vrow(j, c);
                    }
                }
            }
            gamma = new_gamma;
        }
        state.gamma[z] = gamma;
        z += 1;
    });
    Tensor::new(&s.output_shape(q.shape().len()), out)
}

/// `num / den`, or 0 where the denominator vanished (every term underflowed, or a `trig` estimate
/// cancelled exactly): a finite input never gives a NaN.
fn normalise(num: f64, den: f64) -> f64 {
    if den == 0.0 || !den.is_finite() { 0.0 } else { num / den }
}

struct Problem<'a> {
    q: &'a [f64],
    k: &'a [f64],
    v: &'a [f64],
    w: &'a [f64],
}

fn for_each_problem(
    s: &AttentionShape,
    q: &Tensor<f64>,
    k: &Tensor<f64>,
    v: &Tensor<f64>,
    w: Option<&Tensor<f64>>,
    mut f: impl FnMut(Problem, &mut [f64]),
) -> Vec<f64> {
    let (l, d, dv, m) = (s.len, s.dim, s.value_dim, s.features);
    let mut out = vec![0.0; s.problems() * l * dv];
    for z in 0..s.problems() {
        let wh = (z % s.heads) % s.projection_heads;
        let p = Problem {
            q: &q.data()[z * l * d..(z + 1) * l * d],
            k: &k.data()[z * l * d..(z + 1) * l * d],
            v: &v.data()[z * l * dv..(z + 1) * l * dv],
            w: w.map_or(&[][..], |w| &w.data()[wh * m * d..(wh + 1) * m * d]),
        };
        f(p, &mut out[z * l * dv..(z + 1) * l * dv]);
    }
    out
}

/// Bidirectional random-feature attention in linear time:
/// `o = phi(Q) (phi(K)^T V) / phi(Q) (phi(K)^T 1)`.
pub fn favor(
    q: &Tensor<f64>,
    k: &Tensor<f64>,
    v: &Tensor<f64>,
    w: &Tensor<f64>,
    kernel: Kernel,
) -> Result<Tensor<f64>> {
    let s = AttentionShape::of(q.shape(), k.shape(), v.shape(), Some(w.shape()))?;
    check_inputs(&[("q", q), ("k", k), ("v", v), ("projection", w)])?;
    let (l, d, dv, m) = (s.len, s.dim, s.value_dim, s.features);
    let f = kernel.feature_count(m);
    let out = for_each_problem(&s, q, k, v, Some(w), |p, o| {
        let (pq, pk) = stabilised_features(kernel, p.q, p.k, p.w, l, d, m);
        // kv = phi(K)^T [V | 1]: [f, dv + 1].
        let mut kv = vec![0.0; f * (dv + 1)];
        for j in 0..l {
            for i in 0..f {
                let phi = pk[j * f + i];
                for c in 0..dv {
                    kv[i * (dv + 1) + c] += phi * p.v[j * dv + c];
                }
                kv[i * (dv + 1) + dv] += phi;
            }
        }
        for t in 0..l {
            let mut acc = vec![0.0; dv + 1];
            for i in 0..f {
                let phi = pq[t * f + i];
                for c in 0..=dv {
                    acc[c] += phi * kv[i * (dv + 1) + c];
                }
            }
            for c in 0..dv {
                o[t * dv + c] = normalise(acc[c], acc[dv]);
            }
        }
    });
    Tensor::new(&s.output_shape(q.shape().len()), out)
}

/// The raw formula of docs/math.md §1.4 through the explicit `L x L` matrix
/// `A[t, j] = phi(q_t) . phi(k_j)`, bidirectional or causal (`j <= t`). For `softmax` and `trig` each
/// row of `A` is evaluated in the log domain relative to that row's own largest exponent, which is
/// exact and shares nothing with the stabilisers of the linear forms.
pub fn favor_quadratic(
    q: &Tensor<f64>,
    k: &Tensor<f64>,
    v: &Tensor<f64>,
    w: &Tensor<f64>,
    kernel: Kernel,
    causal: bool,
) -> Result<Tensor<f64>> {
    let s = AttentionShape::of(q.shape(), k.shape(), v.shape(), Some(w.shape()))?;
    check_inputs(&[("q", q), ("k", k), ("v", v), ("projection", w)])?;
    let (l, d, dv, m) = (s.len, s.dim, s.value_dim, s.features);
    let out = for_each_problem(&s, q, k, v, Some(w), |p, o| {
        let (aq, qq) = projections(p.q, p.w, l, d, m);
        let (ak, kk) = projections(p.k, p.w, l, d, m);
        for t in 0..l {
            let keys = if causal { t + 1 } else { l };
            // Exponents of every term of row t: softmax exp(aq + ak - |q~|^2/2 - |k~|^2/2);
            // trig exp(|q~|^2/2 + |k~|^2/2) cos(aq - ak) (the sin-cos sum of the feature product).
            let exponent = |j: usize, i: usize| match kernel {
                Kernel::Softmax => aq[t * m + i] + ak[j * m + i] - qq[t] - kk[j],
                _ => qq[t] + kk[j],
            };
            let top = (0..keys)
                .flat_map(|j| (0..m).map(move |i| (j, i)))
                .map(|(j, i)| exponent(j, i))
                .fold(f64::NEG_INFINITY, f64::max);
            let mut num = vec![0.0; dv];
            let mut den = 0.0;
            for j in 0..keys {
                let a: f64 = (0..m)
                    .map(|i| match kernel {
                        Kernel::Softmax => (exponent(j, i) - top).exp(),
                        Kernel::Trig => (exponent(j, i) - top).exp() * (aq[t * m + i] - ak[j * m + i]).cos(),
                        Kernel::Relu { eps } => (aq[t * m + i].max(0.0) + eps) * (ak[j * m + i].max(0.0) + eps),
                    })
                    .sum();
                den += a;
                for c in 0..dv {
                    num[c] += a * p.v[j * dv + c];
                }
            }
            for c in 0..dv {
                o[t * dv + c] = normalise(num[c], den);
            }
        }
    });
    Tensor::new(&s.output_shape(q.shape().len()), out)
}

/// Exact softmax attention (docs/math.md §1.7): `o_t = sum_j exp(q_t.k_j/sqrt(d)) v_j / sum_j exp(...)`,
/// over all `j` or `j <= t`, with the max trick per row.
pub fn exact(q: &Tensor<f64>, k: &Tensor<f64>, v: &Tensor<f64>, causal: bool) -> Result<Tensor<f64>> {
    let s = AttentionShape::of(q.shape(), k.shape(), v.shape(), None)?;
    check_inputs(&[("q", q), ("k", k), ("v", v)])?;
    let (l, d, dv) = (s.len, s.dim, s.value_dim);
    let scale = 1.0 / (d as f64).sqrt();
    let out = for_each_problem(&s, q, k, v, None, |p, o| {
        let mut scores = vec![0.0; l];
        for t in 0..l {
            let keys = if causal { t + 1 } else { l };
            let qt = &p.q[t * d..(t + 1) * d];
            for j in 0..keys {
                scores[j] = scale * qt.iter().zip(&p.k[j * d..(j + 1) * d]).map(|(a, b)| a * b).sum::<f64>();
            }
            let top = scores[..keys].iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mut den = 0.0;
            let row = &mut o[t * dv..(t + 1) * dv];
            for j in 0..keys {
                let e = (scores[j] - top).exp();
                den += e;
                for c in 0..dv {
                    row[c] += e * p.v[j * dv + c];
                }
            }
            row.iter_mut().for_each(|x| *x /= den);
        }
    });
    Tensor::new(&s.output_shape(q.shape().len()), out)
}

/// Gradients `(dq, dk, dv, dw)` of random-feature attention (bidirectional, or causal with `causal`)
/// for the upstream gradient `grad` of the output, through the explicit `A[t, j] = phi(q_t) . phi(k_j)`
/// with unstabilised features (exact in f64 while the feature exponents stay below ~700):
/// `dA[t, j] = grad_t . (v_j - o_t) / D_t`, `dv_j = sum_t A[t, j] grad_t / D_t`, then through
/// `phi(x)` back to `x~ = x d^(-1/4)` and to the projection. `dw` has the projection's shape.
pub fn favor_backward(
    q: &Tensor<f64>,
    k: &Tensor<f64>,
    v: &Tensor<f64>,
    w: &Tensor<f64>,
    kernel: Kernel,
    causal: bool,
    grad: &Tensor<f64>,
) -> Result<[Tensor<f64>; 4]> {
    let s = AttentionShape::of(q.shape(), k.shape(), v.shape(), Some(w.shape()))?;
    check_inputs(&[("q", q), ("k", k), ("v", v), ("projection", w), ("grad", grad)])?;
    let (l, d, dv, m) = (s.len, s.dim, s.value_dim, s.features);
    if grad.len() != s.problems() * l * dv {
        return Err(Error::shape("grad", format!("{:?}", s.output_shape(q.shape().len())), grad.shape()));
    }
    let f = kernel.feature_count(m);
    let scale = (d as f64).powf(-0.25);
    let norm = (m as f64).powf(-0.5);
    let (mut dq, mut dk, mut dvv) = (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
    let mut dw = vec![0.0; w.len()];
    // Features phi(x) [L, f] and, for the chain rule, the projections a [L, m] and x~ [L, d]. The
    // exponentials are shifted so that none overflows: per row for queries (a factor that cancels
    // in o_t), by one constant over all keys. The gradients below only use products phi * dphi,
    // which such factors leave unchanged.
    let features = |x: &[f64], wz: &[f64], is_key: bool| -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let xt: Vec<f64> = x.iter().map(|v| v * scale).collect();
        let mut a = vec![0.0; l * m];
        let mut exponent = vec![0.0; l * m];
        for t in 0..l {
            let row = &xt[t * d..(t + 1) * d];
            let half_sq = row.iter().map(|v| v * v).sum::<f64>() / 2.0;
            for i in 0..m {
                let ai: f64 = row.iter().zip(&wz[i * d..(i + 1) * d]).map(|(x, w)| x * w).sum();
                a[t * m + i] = ai;
                exponent[t * m + i] = match kernel {
                    Kernel::Softmax => ai - half_sq,
                    Kernel::Trig => half_sq,
                    Kernel::Relu { .. } => 0.0,
                };
            }
        }
        let row_max = |t: usize| exponent[t * m..(t + 1) * m].iter().fold(f64::MIN, |x, &y| x.max(y));
        let all_max = (0..l).map(row_max).fold(f64::MIN, f64::max);
        let mut phi = vec![0.0; l * f];
        for t in 0..l {
            let shift = if is_key { all_max } else { row_max(t) };
            for i in 0..m {
                let (ai, e) = (a[t * m + i], norm * (exponent[t * m + i] - shift).exp());
                match kernel {
                    Kernel::Softmax => phi[t * f + i] = e,
                    Kernel::Trig => {
                        phi[t * f + i] = e * ai.cos();
                        phi[t * f + m + i] = e * ai.sin();
                    }
                    Kernel::Relu { eps } => phi[t * f + i] = ai.max(0.0) + eps,
                }
            }
        }
        (phi, a, xt)
    };
    // Back from dphi [L, f] to dx [L, d] (added into `dx`) and dw [m, d] (added into `dwz`).
    let back = |dphi: &[f64], phi: &[f64], a: &[f64], xt: &[f64], wz: &[f64], dx: &mut [f64], dwz: &mut [f64]| {
        for t in 0..l {
            let row = &xt[t * d..(t + 1) * d];
            let mut dxt = vec![0.0; d];
            for i in 0..m {
                // d phi / d a_i and d phi / d x~ through |x~|^2 / 2.
                let (da, dnorm) = match kernel {
                    Kernel::Softmax => {
                        let g = dphi[t * f + i] * phi[t * f + i];
                        (g, -g)
                    }
                    Kernel::Trig => {
                        let (c, sn) = (phi[t * f + i], phi[t * f + m + i]);
                        let (gc, gs) = (dphi[t * f + i], dphi[t * f + m + i]);
                        (-gc * sn + gs * c, gc * c + gs * sn)
                    }
                    Kernel::Relu { .. } => (if a[t * m + i] > 0.0 { dphi[t * f + i] } else { 0.0 }, 0.0),
                };
                for c in 0..d {
                    dxt[c] += da * wz[i * d + c] + dnorm * row[c];
                    dwz[i * d + c] += da * row[c];
                }
            }
            for c in 0..d {
                dx[t * d + c] += scale * dxt[c];
            }
        }
    };
    for z in 0..s.problems() {
        let wh = (z % s.heads) % s.projection_heads;
        let wz = &w.data()[wh * m * d..(wh + 1) * m * d];
        let (qz, kz) = (&q.data()[z * l * d..(z + 1) * l * d], &k.data()[z * l * d..(z + 1) * l * d]);
        let (vz, gz) = (&v.data()[z * l * dv..(z + 1) * l * dv], &grad.data()[z * l * dv..(z + 1) * l * dv]);
        let (pq, aq, xq) = features(qz, wz, false);
        let (pk, ak, xk) = features(kz, wz, true);
        let (mut dpq, mut dpk) = (vec![0.0; l * f], vec![0.0; l * f]);
        for t in 0..l {
            let keys = if causal { t + 1 } else { l };
            let a: Vec<f64> = (0..keys).map(|j| (0..f).map(|i| pq[t * f + i] * pk[j * f + i]).sum()).collect();
            let den: f64 = a.iter().sum();
            let o: Vec<f64> = (0..dv).map(|c| (0..keys).map(|j| a[j] * vz[j * dv + c]).sum::<f64>() / den).collect();
            let g = &gz[t * dv..(t + 1) * dv];
            for j in 0..keys {
                let da = (0..dv).map(|c| g[c] * (vz[j * dv + c] - o[c])).sum::<f64>() / den;
                for c in 0..dv {
                    dvv[(z * l + j) * dv + c] += a[j] * g[c] / den;
                }
                for i in 0..f {
                    dpq[t * f + i] += da * pk[j * f + i];
                    dpk[j * f + i] += da * pq[t * f + i];
                }
            }
        }
        let dwz = &mut dw[wh * m * d..(wh + 1) * m * d];
        back(&dpq, &pq, &aq, &xq, wz, &mut dq[z * l * d..(z + 1) * l * d], dwz);
        back(&dpk, &pk, &ak, &xk, wz, &mut dk[z * l * d..(z + 1) * l * d], dwz);
    }
    Ok([
        Tensor::new(q.shape(), dq)?,
        Tensor::new(k.shape(), dk)?,
        Tensor::new(v.shape(), dvv)?,
        Tensor::new(w.shape(), dw)?,
    ])
}

/// Flops of bidirectional random-feature attention: the two projections, `phi(K)^T [V|1]` and
/// `phi(Q) kv`.
pub fn favor_flops(s: &AttentionShape, kernel: Kernel) -> f64 {
    let (z, l, d, dv) = (s.problems() as f64, s.len as f64, s.dim as f64, s.value_dim as f64);
    let m = s.features as f64;
    let f = kernel.feature_count(s.features) as f64;
    z * (2.0 * 2.0 * l * d * m + 2.0 * 2.0 * l * f * (dv + 1.0))
}

/// Flops of chunked causal random-feature attention with chunks of `chunk`: the two projections,
/// the `C x C` blocks `phi(Q_c) phi(K_c)^T` and their product with `[V | 1]` (full blocks, as
/// computed), the chunk state deltas and the inter-chunk products.
pub fn favor_causal_flops(s: &AttentionShape, kernel: Kernel, chunk: usize) -> f64 {
    let (z, l, d, dv) = (s.problems() as f64, s.len as f64, s.dim as f64, s.value_dim as f64);
    let (m, f, c) = (s.features as f64, kernel.feature_count(s.features) as f64, chunk.min(s.len) as f64);
    z * (2.0 * 2.0 * l * d * m + 2.0 * l * c * f + 2.0 * l * c * (dv + 1.0) + 2.0 * 2.0 * l * f * (dv + 1.0))
}

/// Flops of exact attention: `Q K^T` and `P V`, halved when causal.
pub fn exact_flops(s: &AttentionShape, causal: bool) -> f64 {
    let (z, l, d, dv) = (s.problems() as f64, s.len as f64, s.dim as f64, s.value_dim as f64);
    let pairs = if causal { l * (l + 1.0) / 2.0 } else { l * l };
    z * pairs * 2.0 * (d + dv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::{Gaussian, Scaling, projection};
    use crate::tensor::relative_frobenius;

    fn gaussian(shape: &[usize], scale: f64, seed: u64) -> Tensor<f64> {
        let mut g = Gaussian::new(seed);
        Tensor::from_fn(shape, |_| scale * g.sample())
    }

    #[test]
    fn linear_form_equals_quadratic_oracle() {
        let (b, h, l, d, dv, m) = (2, 3, 9, 5, 4, 7);
        let q = gaussian(&[b, h, l, d], 0.7, 1);
        let k = gaussian(&[b, h, l, d], 0.7, 2);
        let v = gaussian(&[b, h, l, dv], 1.0, 3);
        for per_head in [false, true] {
            let w = if per_head {
                crate::random::projection_per_head(h, m, d, Scaling::Chi, 4).unwrap()
            } else {
                projection(m, d, Scaling::Chi, 4).unwrap()
            };
            for kernel in [Kernel::Softmax, Kernel::Trig, Kernel::Relu { eps: 1e-3 }] {
                let lin = favor(&q, &k, &v, &w, kernel).unwrap();
                let quad = favor_quadratic(&q, &k, &v, &w, kernel, false).unwrap();
                let err = relative_frobenius(lin.data(), quad.data());
                assert!(err < 1e-12, "{kernel:?} per_head={per_head}: {err}");
            }
        }
    }

    #[test]
    fn chunked_causal_equals_quadratic_and_recurrence() {
        let (b, h, l, d, dv, m) = (1, 2, 23, 4, 3, 6);
        let q = gaussian(&[b, h, l, d], 0.8, 11);
        let k = gaussian(&[b, h, l, d], 0.8, 12);
        let v = gaussian(&[b, h, l, dv], 1.0, 13);
        let w = crate::random::projection_per_head(h, m, d, Scaling::Chi, 14).unwrap();
        for kernel in [Kernel::Softmax, Kernel::Trig, Kernel::Relu { eps: 1e-3 }] {
            let quad = favor_quadratic(&q, &k, &v, &w, kernel, true).unwrap();
            for chunk in [1, 2, 5, 8, 23, 64] {
                let got = favor_causal(&q, &k, &v, &w, kernel, chunk, None).unwrap();
                let err = relative_frobenius(got.data(), quad.data());
                assert!(err < 1e-12, "{kernel:?} chunk {chunk}: {err}");
            }
        }
    }

    #[test]
    fn streaming_in_pieces_equals_one_shot() {
        let (l, d, dv, m) = (19, 3, 2, 5);
        let q = gaussian(&[1, 1, l, d], 1.0, 21);
        let k = gaussian(&[1, 1, l, d], 1.0, 22);
        let v = gaussian(&[1, 1, l, dv], 1.0, 23);
        let w = projection(m, d, Scaling::Chi, 24).unwrap();
        let one_shot = favor_causal(&q, &k, &v, &w, Kernel::Softmax, 4, None).unwrap();
        let slice = |t: &Tensor<f64>, a: usize, b: usize| {
            let c = t.shape()[3];
            Tensor::new(&[1, 1, b - a, c], t.data()[a * c..b * c].to_vec()).unwrap()
        };
        let mut state = CausalState::new(1, m, dv);
        let mut out = Vec::new();
        for (a, b) in [(0, 1), (1, 7), (7, 8), (8, 19)] {
            let o = favor_causal(
                &slice(&q, a, b),
                &slice(&k, a, b),
                &slice(&v, a, b),
                &w,
                Kernel::Softmax,
                3,
                Some(&mut state),
            )
            .unwrap();
            out.extend_from_slice(o.data());
        }
        assert!(relative_frobenius(&out, one_shot.data()) < 1e-13);
        let wrong = CausalState::new(1, m + 1, dv);
        assert!(favor_causal(&q, &k, &v, &w, Kernel::Softmax, 4, Some(&mut wrong.clone())).is_err());
    }

    /// Central finite differences of `<grad, o>` in every input against `favor_backward`.
    #[test]
    fn gradients_match_finite_differences() {
        let (b, h, l, d, dv, m) = (1, 2, 5, 3, 2, 4);
        let q = gaussian(&[b, h, l, d], 0.6, 31);
        let k = gaussian(&[b, h, l, d], 0.6, 32);
        let v = gaussian(&[b, h, l, dv], 1.0, 33);
        let w = crate::random::projection_per_head(h, m, d, Scaling::Chi, 34).unwrap();
        let grad = gaussian(&[b, h, l, dv], 1.0, 35);
        let eps = 1e-6;
        for kernel in [Kernel::Softmax, Kernel::Trig, Kernel::Relu { eps: 1e-3 }] {
            for causal in [false, true] {
                let loss = |q: &Tensor<f64>, k: &Tensor<f64>, v: &Tensor<f64>, w: &Tensor<f64>| -> f64 {
                    let o = favor_quadratic(q, k, v, w, kernel, causal).unwrap();
                    o.data().iter().zip(grad.data()).map(|(a, b)| a * b).sum()
                };
                let [dq, dk, dvv, dw] = favor_backward(&q, &k, &v, &w, kernel, causal, &grad).unwrap();
                for (which, analytic) in [(0, &dq), (1, &dk), (2, &dvv), (3, &dw)] {
                    let base = [&q, &k, &v, &w][which];
                    let numeric: Vec<f64> = (0..base.len())
                        .map(|e| {
                            let mut ins = [q.clone(), k.clone(), v.clone(), w.clone()];
                            ins[which].data_mut()[e] += eps;
                            let up = loss(&ins[0], &ins[1], &ins[2], &ins[3]);
                            ins[which].data_mut()[e] -= 2.0 * eps;
                            let down = loss(&ins[0], &ins[1], &ins[2], &ins[3]);
                            (up - down) / (2.0 * eps)
                        })
                        .collect();
                    let err = relative_frobenius(analytic.data(), &numeric);
                    assert!(err < 1e-6, "{kernel:?} causal {causal} input {which}: {err:e}");
                }
            }
        }
    }

    #[test]
    fn softmax_features_with_huge_exponents_stay_finite() {
        let (l, d, dv, m) = (6, 4, 3, 8);
        let q = gaussian(&[l, d], 30.0, 5);
        let k = gaussian(&[l, d], 30.0, 6);
        let v = gaussian(&[l, dv], 1.0, 7);
        let w = projection(m, d, Scaling::Chi, 8).unwrap();
        let o = favor(&q, &k, &v, &w, Kernel::Softmax).unwrap();
        assert!(o.data().iter().all(|x| x.is_finite()));
    }

    #[test]
    fn exact_attention_of_identical_keys_averages_values() {
        let (l, d, dv) = (5, 3, 2);
        let q = gaussian(&[l, d], 1.0, 9);
        let k = Tensor::from_fn(&[l, d], |i| (i % d) as f64);
        let v = gaussian(&[l, dv], 1.0, 10);
        let o = exact(&q, &k, &v, true).unwrap();
        for t in 0..l {
            for c in 0..dv {
                let mean = (0..=t).map(|j| v.data()[j * dv + c]).sum::<f64>() / (t + 1) as f64;
                assert!((o.data()[t * dv + c] - mean).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn shape_errors_name_the_tensor() {
        let q = Tensor::<f64>::zeros(&[1, 2, 3, 4]);
        let k = Tensor::<f64>::zeros(&[1, 2, 3, 5]);
        let v = Tensor::<f64>::zeros(&[1, 2, 3, 4]);
        let err = exact(&q, &k, &v, false).unwrap_err().to_string();
        assert!(err.starts_with("k:"), "{err}");
        let w = Tensor::<f64>::zeros(&[3, 3]);
        let err = favor(&q, &q, &v, &w, Kernel::Softmax).unwrap_err().to_string();
        assert!(err.starts_with("projection:"), "{err}");
    }

    #[test]
    fn non_finite_input_is_named() {
        let mut q = Tensor::<f64>::zeros(&[2, 3]);
        q.data_mut()[4] = f64::NAN;
        let k = Tensor::<f64>::zeros(&[2, 3]);
        let err = exact(&q, &k, &k, false).unwrap_err();
        assert!(matches!(err, Error::NonFinite { ref tensor, ref index, .. } if tensor == "q" && index == &vec![1, 1]));
    }
}
