//! Exact softmax attention on the CPU fallback (docs/math.md §1.7): a block of query rows at a time,
//! `Q_b K^T / sqrt(d)` and `P V` through `matrixmultiply`, each row's softmax shifted by its maximum.
//! Causal blocks read only the keys up to their last row.

use super::{View, gemm};
use ortho_ref::Tensor;
use ortho_ref::favor::AttentionShape;

/// Query rows a block takes.
const ROWS: usize = 64;

pub(crate) fn exact_attention([q, k, v]: [&Tensor<f32>; 3], causal: bool) -> ortho_ref::Result<Tensor<f32>> {
    let s = AttentionShape::of(q.shape(), k.shape(), v.shape(), None)?;
    let (l, d, dv) = (s.len, s.dim, s.value_dim);
    let scale = 1.0 / (d as f32).sqrt();
    let mut out = vec![0.0; s.problems() * l * dv];
    let mut scores = vec![0.0; ROWS * l];
    for (z, o) in out.chunks_mut(l * dv).enumerate() {
        let (qz, kz, vz) = (&q.data()[z * l * d..], &k.data()[z * l * d..(z + 1) * l * d], &v.data()[z * l * dv..]);
        for r0 in (0..l).step_by(ROWS) {
            let rows = ROWS.min(l - r0);
            let keys = if causal { r0 + rows } else { l };
            let p = &mut scores[..rows * keys];
            gemm((rows, d, keys), scale, View::new(&qz[r0 * d..], d), View::new(kz, d).t(), 0.0, p);
            for (t, row) in p.chunks_mut(keys).enumerate() {
                let visible = if causal { r0 + t + 1 } else { keys };
                let top = row[..visible].iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut den = 0.0;
                for (j, x) in row.iter_mut().enumerate() {
                    *x = if j < visible { (*x - top).exp() } else { 0.0 };
                    den += *x;
                }
                row.iter_mut().for_each(|x| *x /= den);
            }
            gemm((rows, keys, dv), 1.0, View::new(p, keys), View::new(vz, dv), 0.0, &mut o[r0 * dv..(r0 + rows) * dv]);
        }
    }
    Tensor::new(&s.output_shape(q.shape().len()), out)
}
