//! Few-shot regression's outer gradients through an r-step inner loop for a batch of tasks: exact
//! (stored iterates), exact in O(1) memory (recomputed) and first-order.

use super::{Case, Sweep};
use crate::inputs::GRADIENT_BOUND;
use ortho::Tensor;
use ortho::bilevel::{InnerLoop, MetaGradient, OuterGradient, SineTask, task_points};
use ortho_ref::random::Gaussian;

pub(super) fn cases(sweep: Sweep, cases: &mut Vec<Case>) {
    let (hidden, shots) = (40, 10);
    let theta: Vec<f32> = SineTask::initial(hidden, 1).iter().map(|&x| x as f32).collect();
    let theta = Tensor::new(&[theta.len()], theta).expect("a vector");
    for tasks in sweep.pick(&[32], &[32, 256]) {
        let mut rng = Gaussian::new(2);
        let batch: Vec<SineTask> = (0..tasks).map(|_| SineTask::random(hidden, shots, &mut rng)).collect();
        let (support, query) = task_points(&batch).expect("tasks of one shape");
        for steps in sweep.pick(&[5], &[5, 20, 50]) {
            for (method, name) in
                [(OuterGradient::Exact, "exact"), (OuterGradient::ExactO1, "exact-o1"), (OuterGradient::Fom, "fom")]
            {
                let op = MetaGradient { hidden, inner: InnerLoop { steps, lr: 0.02 }, method };
                let flops = op.flops(tasks, shots, shots);
                let inputs = vec![theta.clone(), support.clone(), query.clone()];
                let name = format!("{name} T={tasks} r={steps}");
                cases.push(Case::new("bilevel", name, steps, op, inputs, flops, GRADIENT_BOUND));
            }
        }
    }
}
