//! Compact WY (forming Q, T-CWY, applying Q, their gradients) against the sequential Householder
//! product, the matrix exponential and the Cayley map on batches of small matrices, and the three
//! Lie-group integrators on the isospectral flow.

use super::{Case, Sweep};
use crate::inputs::{FORWARD_BOUND, GRADIENT_BOUND, expm_bound, gaussian, identities, skew, symmetric};
use ortho::GroupMap;
use ortho::ops::{Cwy, CwyApply, CwyApplyBackward, CwyBackward, Flow, HouseholderProduct, MatrixMap};
use ortho_ref::cwy::{apply_backward_flops, apply_flops, cwy_backward_flops, cwy_flops, householder_flops, tcwy_flops};
use ortho_ref::expm::{cayley_flops, expm_flops, one_norm};
use ortho_ref::flow::{Generator, Method};

pub(super) fn cases(sweep: Sweep, cases: &mut Vec<Case>) {
    compact_wy(sweep, cases);
    group_maps(sweep, cases);
    flows(sweep, cases);
}

/// N = L reflections (T-CWY: L = N/4 columns), applied to K = 64 columns.
fn compact_wy(sweep: Sweep, cases: &mut Vec<Case>) {
    let k = 64;
    for n in sweep.pick(&[128], &[128, 256, 512]) {
        let u = gaussian(&[n, n], 1.0, 8);
        let thin = gaussian(&[n, n / 4], 1.0, 9);
        let (x, g, gx) = (gaussian(&[n, k], 1.0, 10), gaussian(&[n, n], 1.0, 11), gaussian(&[n, k], 1.0, 12));
        let (ux, uxg) = (vec![u.clone(), x.clone()], vec![u.clone(), x, gx]);
        let name = |case: &str| format!("{case} N={n}");
        let (forward, gradient) = (FORWARD_BOUND, GRADIENT_BOUND);
        cases.extend([
            Case::new("cwy", name("cwy L=N"), n, Cwy::default(), vec![u.clone()], cwy_flops(1, n, n), forward),
            Case::new(
                "cwy",
                name("tcwy L=N/4"),
                n,
                Cwy { stiefel: true },
                vec![thin],
                tcwy_flops(1, n, n / 4),
                forward,
            ),
            Case::new("cwy", name("cwy apply L=N K=64"), n, CwyApply::default(), ux, apply_flops(1, n, n, k), forward),
            Case::new(
                "cwy",
                name("cwy gradients L=N"),
                n,
                CwyBackward::default(),
                vec![u.clone(), g],
                cwy_backward_flops(1, n, n),
                gradient,
            ),
            Case::new(
                "cwy",
                name("cwy apply gradients L=N K=64"),
                n,
                CwyApplyBackward::default(),
                uxg,
                apply_backward_flops(1, n, n, k),
                gradient,
            ),
            Case::new(
                "householder",
                name("sequential householder L=N"),
                n,
                HouseholderProduct,
                vec![u],
                householder_flops(1, n, n),
                forward,
            ),
        ]);
    }
}

/// Skew-symmetric matrices of 1-norm about 1 (the exponential's largest degree, no squaring).
fn group_maps(sweep: Sweep, cases: &mut Vec<Case>) {
    let sizes = sweep.pick(
        &[(256, 3), (16, 64)],
        &[(1024, 3), (16384, 3), (65536, 3), (65536, 8), (256, 16), (2048, 16), (16, 64), (128, 64), (1024, 64)],
    );
    for (batch, n) in sizes {
        let a = skew(batch, n, 0.3 / n as f64, 13);
        let norm = a.to_f64().data().chunks(n * n).map(|m| one_norm(m, n)).fold(0.0, f64::max);
        let flops = expm_flops(&a.to_f64()).expect("square matrices");
        let name = |map: &str| format!("{map} n={n} batch={batch}");
        cases.push(Case::new(
            "expm",
            name("expm"),
            batch,
            MatrixMap(GroupMap::Exp),
            vec![a.clone()],
            flops,
            expm_bound(norm),
        ));
        let flops = cayley_flops(batch, n);
        cases.push(Case::new(
            "cayley",
            name("cayley"),
            batch,
            MatrixMap(GroupMap::Cayley),
            vec![a],
            flops,
            FORWARD_BOUND,
        ));
    }
}

/// Five steps of the isospectral flow `W' = W [W^T Qs W, Ns]` from the identity, n = 16 (and RKMK4
/// at n = 32 for a batch of 1024, the size `scripts/peers.py` times with torch).
fn flows(sweep: Sweep, cases: &mut Vec<Case>) {
    let steps = 5;
    let sizes = sweep.pick(&[(16, 16)], &[(16, 16), (16, 64), (32, 1024)]);
    for (n, batch) in sizes {
        let methods = if n == 32 { &[Method::Rkmk4][..] } else { &Method::ALL[..] };
        for &method in methods {
            let generator = Generator::Isospectral { qs: symmetric(n, 14), ns: symmetric(n, 15) };
            let flow = Flow { method, dt: 0.01, steps, newton_schulz_every: None, generator, state: None };
            let w0 = identities(batch, n);
            let flops = flow.flops(&w0.to_f64()).expect("a valid flow");
            let name = format!("{} n={n} steps={steps} batch={batch}", method.name());
            cases.push(Case::new("flow", name, batch, flow, vec![w0], flops, FORWARD_BOUND));
        }
    }
}
