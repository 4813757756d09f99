//! FAVOR+ (softmax), FAVOR (trig) and relu features, bidirectional and causal in both schedules,
//! exact attention, and the gradients with each checkpoint setting: `d = dv = 64`, `m = 256`, one
//! head, L swept.

use super::{Case, Sweep};
use crate::inputs::{FORWARD_BOUND, GRADIENT_BOUND, gaussian};
use ortho::ops::{ExactAttention, Favor, FavorBackward};
use ortho::random::{Scaling, projection};
use ortho::{AttentionShape, Checkpoints, FavorOptions, Kernel, Schedule, Tensor};
use ortho_ref::favor::{exact_flops, favor_causal_flops, favor_flops};

const KERNELS: [(&str, Kernel); 3] =
    [("favor+", Kernel::Softmax), ("favor-trig", Kernel::Trig), ("favor-relu", Kernel::Relu { eps: 1e-3 })];

pub(super) fn cases(sweep: Sweep, cases: &mut Vec<Case>) {
    let (d, m) = (64, 256);
    for l in sweep.pick(&[256], &[1024, 2048, 4096]) {
        let shape = [1, 1, l, d];
        let (q, k, v) = (gaussian(&shape, 0.5, 3), gaussian(&shape, 0.5, 4), gaussian(&shape, 1.0, 5));
        let w = projection(m, d, Scaling::Chi, 6).expect("valid projection sizes").to_f32();
        let s = AttentionShape::of(&shape, &shape, &shape, Some(&[m, d])).expect("valid attention shapes");
        let qkv = || vec![q.clone(), k.clone(), v.clone()];
        let qkvw = || vec![q.clone(), k.clone(), v.clone(), w.clone()];
        for (name, kernel) in KERNELS {
            let flops = favor_flops(&s, kernel);
            cases.push(Case::new(
                "favor",
                format!("{name} L={l}"),
                l,
                Favor(FavorOptions::new(kernel)),
                qkvw(),
                flops,
                FORWARD_BOUND,
            ));
        }
        let exact = ExactAttention { causal: false };
        cases.push(Case::new("exact", format!("exact L={l}"), l, exact, qkv(), exact_flops(&s, false), FORWARD_BOUND));
        for (name, kernel) in KERNELS {
            // Every schedule and chunk for FAVOR+; one setting for the other feature maps.
            let chunks = if kernel == Kernel::Softmax { sweep.pick(&[64], &[16, 64, 256]) } else { vec![64] };
            let schedules: &[Schedule] = if kernel == Kernel::Softmax {
                &[Schedule::Parallel, Schedule::Sequential]
            } else {
                &[Schedule::Parallel]
            };
            for chunk in chunks {
                for &schedule in schedules {
                    let o = FavorOptions { chunk: Some(chunk), schedule, ..FavorOptions::causal(kernel) };
                    let case = format!("{name} {} C={chunk} L={l}", format!("{schedule:?}").to_lowercase());
                    let flops = favor_causal_flops(&s, kernel, chunk);
                    cases.push(Case::new("favor-causal", case, l, Favor(o), qkvw(), flops, FORWARD_BOUND));
                }
            }
        }
        let exact = ExactAttention { causal: true };
        let flops = exact_flops(&s, true);
        cases.push(Case::new("exact-causal", format!("exact causal L={l}"), l, exact, qkv(), flops, FORWARD_BOUND));
        gradients(sweep, &s, [qkvw(), vec![gaussian(&shape, 1.0, 7)]].concat(), cases);
    }
}

/// FAVOR+ gradients, bidirectional and causal with each checkpoint setting (docs/math.md §1.6). They
/// recompute the forward pass and take about two products for each of its products: 3x its flops.
fn gradients(sweep: Sweep, s: &AttentionShape, inputs: Vec<Tensor<f32>>, cases: &mut Vec<Case>) {
    let l = s.len;
    let bidirectional = FavorOptions::new(Kernel::Softmax);
    let flops = 3.0 * favor_flops(s, Kernel::Softmax);
    let name = format!("favor+ gradients L={l}");
    cases.push(Case::new("favor-grad", name, l, FavorBackward(bidirectional), inputs.clone(), flops, GRADIENT_BOUND));
    let settings = sweep.pick(
        &[("no checkpoints", Checkpoints::None)],
        &[
            ("no checkpoints", Checkpoints::None),
            ("checkpoints every 16", Checkpoints::Every(16)),
            ("checkpoints every chunk", Checkpoints::Every(1)),
        ],
    );
    for (setting, checkpoints) in settings {
        let o = FavorOptions { chunk: Some(64), checkpoints, ..FavorOptions::causal(Kernel::Softmax) };
        let flops = 3.0 * favor_causal_flops(s, Kernel::Softmax, 64);
        let name = format!("favor+ causal gradients C=64 {setting} L={l}");
        cases.push(Case::new("favor-grad", name, l, FavorBackward(o), inputs.clone(), flops, GRADIENT_BOUND));
    }
}
