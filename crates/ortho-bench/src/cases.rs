//! The cases of the sweep, one per kernel family and size.

use ortho::ops::{Cwy, ExactAttention, Favor, FavorBackward, HouseholderProduct, Matmul, MatrixMap};
use ortho::random::{Gaussian, Scaling, projection};
use ortho::{AttentionShape, Engine, FavorOptions, GroupMap, Kernel, MeasureOptions, Measurement, Operation, Schedule};
use ortho::{Result, Tensor};
use ortho_ref::cwy::{cwy_flops, householder_flops};
use ortho_ref::favor::{exact_flops, favor_causal_flops, favor_flops};

type Measure = Box<dyn Fn(&Engine, &[&Tensor<f32>], MeasureOptions) -> Result<Measurement> + Send + Sync>;

/// One benchmark case: an operation, the inputs it runs on, and what one run costs.
pub struct Case {
    /// The kernel family (`gemm`, `favor`, `favor-causal`, `exact`, ...).
    pub family: &'static str,
    /// The case within its family, sizes included (`favor+ L=1024`).
    pub name: String,
    /// The size the family's plots put on their x axis (L, N, the batch, the side).
    pub size: usize,
    /// Floating-point operations of one run, as the kernel computes them.
    pub flops: f64,
    /// Bytes of the inputs and outputs one run reads and writes at least.
    pub bytes: f64,
    /// Relative Frobenius error allowed against the f64 twin (the bounds of `ortho validate`).
    pub bound: f64,
    inputs: Vec<Tensor<f32>>,
    measure: Measure,
}

impl Case {
    fn new<O: Operation + Send + Sync + 'static>(
        family: &'static str,
        name: String,
        size: usize,
        op: O,
        inputs: Vec<Tensor<f32>>,
        flops: f64,
        bound: f64,
    ) -> Case {
        let outputs: usize = {
            let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
            let outs = op.output_shapes(&shapes).expect("the sweep's shapes are valid");
            outs.iter().map(|s| s.iter().product::<usize>()).sum()
        };
        let bytes = 4.0 * (inputs.iter().map(|t| t.len()).sum::<usize>() + outputs) as f64;
        let measure: Measure = Box::new(move |e, inputs, o| e.measure(&op, inputs, o));
        Case { family, name, size, flops, bytes, bound, inputs, measure }
    }

    /// Measures the case on `engine`.
    pub fn run(&self, engine: &Engine, o: MeasureOptions) -> Result<Measurement> {
        let inputs: Vec<&Tensor<f32>> = self.inputs.iter().collect();
        (self.measure)(engine, &inputs, o)
    }
}

/// How much of the sweep to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sweep {
    /// One size per family, small: every family touched in a couple of minutes on a software adapter.
    Quick,
    /// The sizes BENCHMARKS.md records.
    Full,
}

fn gaussian(shape: &[usize], scale: f64, seed: u64) -> Tensor<f32> {
    let mut g = Gaussian::new(seed);
    Tensor::from_fn(shape, |_| (scale * g.sample()) as f32)
}

/// The cases of `sweep`, family by family.
pub fn sweep(sweep: Sweep) -> Vec<Case> {
    let quick = sweep == Sweep::Quick;
    let pick = |q: &[usize], f: &[usize]| if quick { q.to_vec() } else { f.to_vec() };
    let mut cases = Vec::new();
    for n in pick(&[128], &[256, 512, 1024]) {
        let (a, b) = (gaussian(&[n, n], 1.0, 1), gaussian(&[n, n], 1.0, 2));
        let flops = 2.0 * (n * n * n) as f64;
        cases.push(Case::new("gemm", format!("gemm n={n}"), n, Matmul(Default::default()), vec![a, b], flops, 1e-5));
    }
    let (d, m) = (64, 256);
    for l in pick(&[256], &[1024, 4096, 16384]) {
        let shape = [1, 1, l, d];
        let (q, k, v) = (gaussian(&shape, 0.5, 3), gaussian(&shape, 0.5, 4), gaussian(&shape, 1.0, 5));
        let w = projection(m, d, Scaling::Chi, 6).expect("valid projection sizes").to_f32();
        let s = AttentionShape::of(&shape, &shape, &shape, Some(&[m, d])).expect("valid attention shapes");
        let qkv = || vec![q.clone(), k.clone(), v.clone()];
        let qkvw = || vec![q.clone(), k.clone(), v.clone(), w.clone()];
        let softmax = FavorOptions::new(Kernel::Softmax);
        let flops = favor_flops(&s, Kernel::Softmax);
        cases.push(Case::new("favor", format!("favor+ L={l}"), l, Favor(softmax), qkvw(), flops, 1e-5));
        let exact = ExactAttention { causal: false };
        cases.push(Case::new("exact", format!("exact L={l}"), l, exact, qkv(), exact_flops(&s, false), 1e-5));
        for chunk in pick(&[64], &[16, 64, 256]) {
            for schedule in [Schedule::Parallel, Schedule::Sequential] {
                let o = FavorOptions { chunk: Some(chunk), schedule, ..FavorOptions::causal(Kernel::Softmax) };
                let name = format!("favor+ {} C={chunk} L={l}", format!("{schedule:?}").to_lowercase());
                let flops = favor_causal_flops(&s, Kernel::Softmax, chunk);
                cases.push(Case::new("favor-causal", name, l, Favor(o), qkvw(), flops, 1e-5));
            }
        }
        let exact = ExactAttention { causal: true };
        let flops = exact_flops(&s, true);
        cases.push(Case::new("exact-causal", format!("exact causal L={l}"), l, exact, qkv(), flops, 1e-5));
        // The gradients recompute the forward pass and take about twice its products again.
        let grad = gaussian(&shape, 1.0, 7);
        let causal = FavorOptions::causal(Kernel::Softmax);
        let flops = 3.0 * favor_causal_flops(&s, Kernel::Softmax, 64);
        let inputs = [qkvw(), vec![grad]].concat();
        let name = format!("favor+ causal gradients L={l}");
        cases.push(Case::new("favor-grad", name, l, FavorBackward(causal), inputs, flops, 1e-4));
    }
    for n in pick(&[128], &[256, 512, 1024]) {
        let u = gaussian(&[n, n], 1.0, 8);
        let (cwy, seq) = (cwy_flops(1, n, n), householder_flops(1, n, n));
        cases.push(Case::new("cwy", format!("cwy N=L={n}"), n, Cwy { stiefel: false }, vec![u.clone()], cwy, 1e-5));
        let name = format!("sequential householder N=L={n}");
        cases.push(Case::new("householder", name, n, HouseholderProduct, vec![u], seq, 1e-5));
    }
    for (batch, n) in pick(&[256], &[1024, 16384]).into_iter().flat_map(|b| [(b, 3), (b / 16, 64)]) {
        let a = gaussian(&[batch, n, n], 0.3, 9);
        // A product `2 n^3` as the unit: the exponential takes about 8 of them, the Cayley map 2.
        let unit = 2.0 * (batch * n * n * n) as f64;
        let name = |map: &str| format!("{map} batch={batch} n={n}");
        cases.push(Case::new("expm", name("expm"), batch, MatrixMap(GroupMap::Exp), vec![a.clone()], 8.0 * unit, 1e-5));
        cases.push(Case::new("cayley", name("cayley"), batch, MatrixMap(GroupMap::Cayley), vec![a], 2.0 * unit, 1e-5));
    }
    cases
}
