//! The CPU fallback's fast paths: the algorithms of the GPU kernels in f32, their dense products
//! through `matrixmultiply` (blocked, vectorised, threaded). Operations without one here run their
//! f64 twin (`ortho_ref`), which stays the simple, independent oracle the tests compare against.

use ortho_ref::Tensor;
use ortho_ref::favor::{AttentionShape, Kernel};

mod cwy;
mod exact;
mod favor_backward;
mod flow;
mod matrices;
pub(crate) use cwy::{cwy, cwy_apply, cwy_apply_backward, cwy_backward};
pub(crate) use exact::exact_attention;
pub(crate) use favor_backward::favor_backward;
pub(crate) use flow::flow;
pub(crate) use matrices::group_map;

/// A row-major or strided operand: `data[i * rows + j * cols]` is element `(i, j)`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
}

impl<'a> View<'a> {
    /// `[r, c]` row-major.
    pub fn new(data: &'a [f32], c: usize) -> Self {
        View { data, rows: c, cols: 1 }
    }

    pub fn t(self) -> Self {
        View { data: self.data, rows: self.cols, cols: self.rows }
    }
}

/// `c = alpha a b + beta c` for `a: [m, k]`, `b: [k, n]`, row-major `c: [m, n]`.
pub(crate) fn gemm((m, k, n): (usize, usize, usize), alpha: f32, a: View, b: View, beta: f32, c: &mut [f32]) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |v: View, r: usize, col: usize| (r.max(1) - 1) * v.rows + (col.max(1) - 1) * v.cols;
    assert!(
        c.len() >= m * n && (k == 0 || (last(a, m, k) < a.data.len() && last(b, k, n) < b.data.len())),
        "gemm operands shorter than their shapes"
    );
    // SAFETY: every element the product reads or writes lies inside the slices (checked above).
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr(),
            a.rows as isize,
            a.cols as isize,
            b.data.as_ptr(),
            b.rows as isize,
            b.cols as isize,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// One problem's features (docs/math.md §1.5) as `ortho_ref::favor::causal_features` computes them.
pub(crate) struct Features {
    /// Query features `[L, f]`, each row shifted by its own offset (which cancels in the output).
    pub pq: Vec<f32>,
    /// Key features `[L, f]`, row `j` scaled by `exp(-g_j)`.
    pub pk: Vec<f32>,
    /// The key offsets `g`: `[L]`.
    pub g: Vec<f32>,
    /// The projections `a = x~ W^T` of the queries and keys: `[L, m]`.
    pub aq: Vec<f32>,
    pub ak: Vec<f32>,
}

pub(crate) fn features(kernel: Kernel, q: &[f32], k: &[f32], w: &[f32], (l, d, m): (usize, usize, usize)) -> Features {
    let scale = (d as f32).powf(-0.25);
    let project = |x: &[f32]| {
        let mut a = vec![0.0; l * m];
        gemm((l, d, m), scale, View::new(x, d), View::new(w, d).t(), 0.0, &mut a);
        a
    };
    let half_sq = |row: &[f32]| row.iter().map(|v| (v * scale).powi(2)).sum::<f32>() / 2.0;
    let (aq, ak) = (project(q), project(k));
    let f = kernel.feature_count(m);
    let (mut pq, mut pk, mut g) = (vec![0.0; l * f], vec![0.0; l * f], vec![0.0; l]);
    // The rows in one block per thread.
    let rows = l.div_ceil(threads()).max(1);
    std::thread::scope(|scope| {
        let blocks = pq.chunks_mut(rows * f).zip(pk.chunks_mut(rows * f)).zip(g.chunks_mut(rows));
        for (b, ((pq, pk), g)) in blocks.enumerate() {
            let (aq, ak, k) = (&aq[b * rows * m..], &ak[b * rows * m..], &k[b * rows * d..]);
            scope.spawn(move || {
                for (t, gt) in g.iter_mut().enumerate() {
                    let (qa, ka) = (&aq[t * m..(t + 1) * m], &ak[t * m..(t + 1) * m]);
                    let (pq, pk) = (&mut pq[t * f..(t + 1) * f], &mut pk[t * f..(t + 1) * f]);
                    match kernel {
                        Kernel::Softmax => {
                            // g_t = max_i a_ti - |k~_t|^2 / 2, so the key features exp(a_ti - max_i a_ti)
                            // are <= 1.
                            let (beta, top) = (max(qa), max(ka));
                            *gt = top - half_sq(&k[t * d..(t + 1) * d]);
                            pq.iter_mut().zip(qa).for_each(|(p, a)| *p = (a - beta).exp());
                            pk.iter_mut().zip(ka).for_each(|(p, a)| *p = (a - top).exp());
                        }
                        Kernel::Trig => {
                            *gt = half_sq(&k[t * d..(t + 1) * d]);
                            for i in 0..m {
                                (pq[m + i], pq[i]) = qa[i].sin_cos();
                                (pk[m + i], pk[i]) = ka[i].sin_cos();
                            }
                        }
                        Kernel::Relu { eps } => {
                            pq.iter_mut().zip(qa).for_each(|(p, a)| *p = a.max(0.0) + eps as f32);
                            pk.iter_mut().zip(ka).for_each(|(p, a)| *p = a.max(0.0) + eps as f32);
                        }
                    }
                }
            });
        }
    });
    Features { pq, pk, g, aq, ak }
}

pub(crate) fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub(crate) fn max(x: &[f32]) -> f32 {
    x.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// `num / den`, or 0 where the denominator vanished (as the reference and the GPU do).
fn normalise(num: f32, den: f32) -> f32 {
    if den == 0.0 || !den.is_finite() { 0.0 } else { num / den }
}

/// `[v | 1]`: `[L, dv + 1]`.
pub(crate) fn with_ones(v: &[f32], l: usize, dv: usize) -> Vec<f32> {
    let mut out = vec![1.0; l * (dv + 1)];
    for t in 0..l {
        out[t * (dv + 1)..t * (dv + 1) + dv].copy_from_slice(&v[t * dv..(t + 1) * dv]);
    }
    out
}

/// Random-feature attention without a carried state: bidirectional, or causal in chunks of `chunk`
/// tokens, the algorithm of `ortho_ref::favor::{favor, favor_causal}` with its products blocked.
pub(crate) fn favor(
    [q, k, v, w]: [&Tensor<f32>; 4],
    kernel: Kernel,
    causal: Option<usize>,
) -> ortho_ref::Result<Tensor<f32>> {
    let s = AttentionShape::of(q.shape(), k.shape(), v.shape(), Some(w.shape()))?;
    if causal == Some(0) {
        return Err(ortho_ref::Error::argument("chunk", "the chunk size must be at least 1"));
    }
    let (l, d, dv, m) = (s.len, s.dim, s.value_dim, s.features);
    let mut out = vec![0.0; s.problems() * l * dv];
    for (z, o) in out.chunks_mut(l * dv).enumerate() {
        let wh = (z % s.heads) % s.projection_heads;
        let Features { pq, pk, g, .. } = features(
            kernel,
            &q.data()[z * l * d..(z + 1) * l * d],
            &k.data()[z * l * d..(z + 1) * l * d],
            &w.data()[wh * m * d..(wh + 1) * m * d],
            (l, d, m),
        );
        let vz = with_ones(&v.data()[z * l * dv..(z + 1) * l * dv], l, dv);
        let f = kernel.feature_count(m);
        match causal {
            None => bidirectional(&pq, pk, &g, &vz, (l, f, dv), o),
            Some(chunk) => causal_chunks(&pq, &pk, &g, &vz, (l, f, dv), chunk, o),
        }
    }
    Tensor::new(&s.output_shape(q.shape().len()), out)
}

/// `o = phi(Q) (phi(K)^T [V | 1])`, normalised.
fn bidirectional(pq: &[f32], pk: Vec<f32>, g: &[f32], v: &[f32], sizes: (usize, usize, usize), o: &mut [f32]) {
    let sums = bidirectional_sums(pq, pk, g, v, sizes);
    write_rows(&sums.acc, sizes.2, o);
}

/// What bidirectional attention sums (relative to the largest key offset).
pub(crate) struct Sums {
    /// The key features, row `j` scaled by `exp(g_j - max g)`: `[L, f]`.
    pub keys: Vec<f32>,
    /// `S = keys^T [V | 1]`: `[f, dv + 1]`.
    pub state: Vec<f32>,
    /// Each row's `[numerator | denominator]`: `[L, dv + 1]`.
    pub acc: Vec<f32>,
}

/// The key rows share one scale `exp(g_j - max g)`.
pub(crate) fn bidirectional_sums(
    pq: &[f32],
    mut pk: Vec<f32>,
    g: &[f32],
    v: &[f32],
    (l, f, dv): (usize, usize, usize),
) -> Sums {
    let top = max(g);
    for (row, gj) in pk.chunks_mut(f).zip(g) {
        let scale = (gj - top).exp();
        row.iter_mut().for_each(|x| *x *= scale);
    }
    let width = dv + 1;
    let mut state = vec![0.0; f * width];
    gemm((f, l, width), 1.0, View::new(&pk, f).t(), View::new(v, width), 0.0, &mut state);
    let mut acc = vec![0.0; l * width];
    gemm((l, f, width), 1.0, View::new(pq, f), View::new(&state, width), 0.0, &mut acc);
    Sums { keys: pk, state, acc }
}

fn write_rows(acc: &[f32], dv: usize, o: &mut [f32]) {
    for (row, out) in acc.chunks(dv + 1).zip(o.chunks_mut(dv)) {
        out.iter_mut().zip(row).for_each(|(x, num)| *x = normalise(*num, row[dv]));
    }
}

/// Causal attention chunk by chunk: each chunk's rows normalised from [`walk_chunks`]'s sums.
fn causal_chunks(
    pq: &[f32],
    pk: &[f32],
    g: &[f32],
    v: &[f32],
    sizes: (usize, usize, usize),
    chunk: usize,
    o: &mut [f32],
) {
    let dv = sizes.2;
    walk_chunks(pq, pk, g, v, sizes, chunk, |step| {
        write_rows(step.acc, dv, &mut o[step.c0 * dv..(step.c0 + step.c) * dv]);
    });
}

/// A chunk's `[c, c]` block times `exp(g_j - gamma_t)` where `j <= t`, zero above the diagonal.
pub(crate) fn decay_mask(block: &mut [f32], c: usize, g: &[f32], prefix: &[f32]) {
    for (t, row) in block.chunks_mut(c).enumerate() {
        for (j, x) in row.iter_mut().enumerate() {
            *x *= if j <= t { (g[j] - prefix[t]).exp() } else { 0.0 };
        }
    }
}

/// One chunk of [`walk_chunks`]: rows `c0..c0 + c`.
pub(crate) struct ChunkStep<'a> {
    pub c0: usize,
    pub c: usize,
    /// The prefix maxima `gamma_t` of the key offsets at the chunk's rows, and `gamma` before it.
    pub prefix: &'a [f32],
    pub gamma: f32,
    /// The state entering the chunk, `sum_j exp(g_j - gamma) phi(k_j) [v_j | 1]^T`: `[f, dv + 1]`.
    pub state: &'a [f32],
    /// Each row's `[numerator | denominator]` relative to its `gamma_t`: `[c, dv + 1]`.
    pub acc: &'a [f32],
}

/// Causal attention's sums chunk by chunk (docs/math.md §1.6): the carried state times each row's
/// decay `exp(gamma - gamma_t)`, plus the masked chunk block with `exp(g_j - gamma_t)`; `step` sees
/// each chunk before the state decays to the chunk's new prefix max and takes the chunk's keys.
pub(crate) fn walk_chunks(
    pq: &[f32],
    pk: &[f32],
    g: &[f32],
    v: &[f32],
    (l, f, dv): (usize, usize, usize),
    chunk: usize,
    mut step: impl FnMut(ChunkStep),
) {
    let width = dv + 1;
    let mut state = vec![0.0; f * width];
    let mut gamma = f32::NEG_INFINITY;
    let mut scores = vec![0.0; chunk * chunk];
    let mut acc = vec![0.0; chunk * width];
    let mut keys = vec![0.0; chunk * f];
    for c0 in (0..l).step_by(chunk) {
        let c = chunk.min(l - c0);
        let prefix: Vec<f32> = g[c0..c0 + c]
            .iter()
            .scan(gamma, |run, &gj| {
                *run = run.max(gj);
                Some(*run)
            })
            .collect();
        let (q, vc) = (&pq[c0 * f..(c0 + c) * f], &v[c0 * width..(c0 + c) * width]);
        gemm((c, f, width), 1.0, View::new(q, f), View::new(&state, width), 0.0, &mut acc[..c * width]);
        for (t, row) in acc.chunks_mut(width).take(c).enumerate() {
            let decay = (gamma - prefix[t]).exp();
            row.iter_mut().for_each(|x| *x *= decay);
        }
        let kc = &pk[c0 * f..(c0 + c) * f];
        gemm((c, f, c), 1.0, View::new(q, f), View::new(kc, f).t(), 0.0, &mut scores[..c * c]);
        decay_mask(&mut scores[..c * c], c, &g[c0..c0 + c], &prefix);
        gemm((c, c, width), 1.0, View::new(&scores[..c * c], c), View::new(vc, width), 1.0, &mut acc[..c * width]);
        step(ChunkStep { c0, c, prefix: &prefix, gamma, state: &state, acc: &acc[..c * width] });
        let new_gamma = prefix[c - 1];
        for (j, row) in keys.chunks_mut(f).take(c).enumerate() {
            let scale = (g[c0 + j] - new_gamma).exp();
            row.iter_mut().zip(&kc[j * f..(j + 1) * f]).for_each(|(x, k)| *x = k * scale);
        }
        let decay = (gamma - new_gamma).exp();
        gemm((f, c, width), 1.0, View::new(&keys[..c * f], f).t(), View::new(vc, width), decay, &mut state);
        gamma = new_gamma;
    }
}

/// The largest n of the group maps' fast path.
/// `A B` for every batch `z` of `a` (`[.., m, k]`, or `[.., k, m]` with `transpose_a`) and of `b`
/// (`[.., k, n]` or `[.., n, k]`; a 2-D `b` is shared by every batch), row-major `[z, m, n]`.
pub(crate) fn matmul(
    a: &Tensor<f32>,
    b: &Tensor<f32>,
    (z, m, k, n): (usize, usize, usize, usize),
    (transpose_a, transpose_b): (bool, bool),
) -> Vec<f32> {
    let zb = if b.shape().len() == 3 { b.shape()[0] } else { 1 };
    let mut out = vec![0.0; z * m * n];
    for (i, c) in out.chunks_mut(m * n).enumerate() {
        let (ai, bi) = (&a.data()[i * m * k..(i + 1) * m * k], &b.data()[(i % zb) * k * n..(i % zb + 1) * k * n]);
        let av = if transpose_a { View::new(ai, m).t() } else { View::new(ai, k) };
        let bv = if transpose_b { View::new(bi, k).t() } else { View::new(bi, n) };
        gemm((m, k, n), 1.0, av, bv, 0.0, c);
    }
    out
}
