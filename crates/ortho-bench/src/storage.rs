//! f16 storage's accuracy cases, shared by `ortho validate --dtype f16` and `tests/f16.rs`: an
//! operation of every family that takes f16 storage, run through [`Engine::run_f16`] on inputs
//! rounded to f16, against its f64 twin on those same inputs (the bound applies) and on the f32
//! inputs before rounding (what a caller who rounds f32 data sees; reported, not bounded).

use crate::inputs::{F16_ROUNDING, FORWARD_BOUND, GRADIENT_BOUND, gaussian, identities, skew};
use ortho::half::f16;
use ortho::ops::{Cwy, CwyApply, CwyApplyBackward, CwyBackward, ExactAttention, Favor, FavorBackward, MatrixMap};
use ortho::random::{Scaling, projection};
use ortho::{Engine, FavorOptions, GroupMap, Kernel, Operation, Result, Tensor};
use ortho_ref::flow::{Flow, Generator, Method};

type Run = Box<dyn Fn(&Engine, &[&Tensor<f16>]) -> Result<Vec<Tensor<f16>>> + Send + Sync>;
type Reference = Box<dyn Fn(&[Tensor<f64>]) -> Result<Vec<Tensor<f64>>> + Send + Sync>;

/// One operation in f16 storage.
pub struct StorageCase {
    pub name: String,
    /// The names of its outputs.
    pub outputs: &'static [&'static str],
    /// Relative Frobenius error allowed against the twin on the f16 inputs: the f32 bound and the
    /// output rounding ([`F16_ROUNDING`]).
    pub bound: f64,
    inputs: Vec<Tensor<f32>>,
    run: Run,
    reference: Reference,
}

/// What one output of a [`StorageCase`] came to.
pub struct StorageResult {
    pub output: Tensor<f16>,
    /// The twin on the f16 inputs, and on the f32 inputs before rounding.
    pub want: Tensor<f64>,
    pub want_unrounded: Tensor<f64>,
}

impl StorageCase {
    fn new<O: Operation + Clone + Send + Sync + 'static>(
        name: &str,
        outputs: &'static [&'static str],
        op: O,
        inputs: Vec<Tensor<f32>>,
        bound: f64,
    ) -> StorageCase {
        let reference = op.clone();
        StorageCase {
            name: name.to_string(),
            outputs,
            bound: bound + F16_ROUNDING,
            inputs,
            run: Box::new(move |e, i| e.run_f16(&op, i)),
            reference: Box::new(move |i| reference.reference(i)),
        }
    }

    /// Runs the case on `engine`: one result per output.
    pub fn run(&self, engine: &Engine) -> Result<Vec<StorageResult>> {
        let halves: Vec<Tensor<f16>> = self.inputs.iter().map(Tensor::to_f16).collect();
        let got = (self.run)(engine, &halves.iter().collect::<Vec<_>>())?;
        let want = (self.reference)(&halves.iter().map(Tensor::to_f64).collect::<Vec<_>>())?;
        let unrounded = (self.reference)(&self.inputs.iter().map(Tensor::to_f64).collect::<Vec<_>>())?;
        Ok(got
            .into_iter()
            .zip(want)
            .zip(unrounded)
            .map(|((output, want), want_unrounded)| StorageResult { output, want, want_unrounded })
            .collect())
    }
}

/// The cases: FAVOR+ and FAVOR (ReLU) bidirectional and causal, their gradients, exact attention,
/// CWY, T-CWY, the apply and their gradients, both group maps, and an RKMK4 flow.
pub fn storage_cases() -> Vec<StorageCase> {
    let (b, h, l, d, dv, m) = (1, 2, 65, 16, 9, 32);
    let q = gaussian(&[b, h, l, d], 0.5, 1);
    let k = gaussian(&[b, h, l, d], 0.5, 2);
    let v = gaussian(&[b, h, l, dv], 1.0, 3);
    let g = gaussian(&[b, h, l, dv], 1.0, 4);
    let w = projection(m, d, Scaling::Chi, 5).expect("valid projection sizes").to_f32();
    let causal = FavorOptions { chunk: Some(16), ..FavorOptions::causal(Kernel::Softmax) };
    let u = gaussian(&[2, 33, 20], 1.0, 6);
    let x = gaussian(&[2, 33, 7], 1.0, 7);
    let omega = skew(9, 8, 0.3, 8).reshape(&[3, 3, 8, 8]).expect("9 matrices").to_f64();
    let flow = Flow {
        method: Method::Rkmk4,
        dt: 0.1,
        steps: 3,
        newton_schulz_every: None,
        generator: Generator::Given(omega),
        state: None,
    };
    let attention = vec![q.clone(), k.clone(), v.clone(), w];
    let gradients = [attention.clone(), vec![g]].concat();
    let grads: &[&str] = &["dq", "dk", "dv", "dw"];
    let relu = FavorOptions::new(Kernel::Relu { eps: Kernel::DEFAULT_RELU_EPS });
    let shape = format!("B{b} H{h} L{l} d{d} dv{dv} m{m}");
    vec![
        StorageCase::new(
            &format!("favor+ {shape}"),
            &["out"],
            Favor(FavorOptions::default()),
            attention.clone(),
            FORWARD_BOUND,
        ),
        StorageCase::new(
            &format!("favor+ causal {shape} C16"),
            &["out"],
            Favor(causal),
            attention.clone(),
            FORWARD_BOUND,
        ),
        StorageCase::new(&format!("favor relu {shape}"), &["out"], Favor(relu), attention.clone(), FORWARD_BOUND),
        StorageCase::new(
            &format!("favor+ grad {shape}"),
            grads,
            FavorBackward(FavorOptions::default()),
            gradients.clone(),
            GRADIENT_BOUND,
        ),
        StorageCase::new(
            &format!("favor+ causal grad {shape} C16"),
            grads,
            FavorBackward(causal),
            gradients,
            GRADIENT_BOUND,
        ),
        StorageCase::new(
            &format!("exact causal B{b} H{h} L{l} d{d}"),
            &["out"],
            ExactAttention { causal: true },
            vec![q, k, v],
            FORWARD_BOUND,
        ),
        StorageCase::new("cwy [2, 33, 20]", &["q"], Cwy { stiefel: false }, vec![u.clone()], FORWARD_BOUND),
        StorageCase::new("tcwy [2, 33, 20]", &["omega"], Cwy { stiefel: true }, vec![u.clone()], FORWARD_BOUND),
        StorageCase::new(
            "cwy apply^T [2, 33, 20] K7",
            &["out"],
            CwyApply { transpose: true },
            vec![u.clone(), x.clone()],
            FORWARD_BOUND,
        ),
        StorageCase::new(
            "cwy grad [2, 33, 20]",
            &["du"],
            CwyBackward { stiefel: false },
            vec![u.clone(), gaussian(&[2, 33, 33], 1.0, 9)],
            GRADIENT_BOUND,
        ),
        StorageCase::new(
            "cwy apply grad [2, 33, 20] K7",
            &["du", "dx"],
            CwyApplyBackward::default(),
            vec![u, x.clone(), x],
            GRADIENT_BOUND,
        ),
        StorageCase::new(
            "expm n=3 batch 100",
            &["out"],
            MatrixMap(GroupMap::Exp),
            vec![skew(100, 3, 0.5, 10)],
            FORWARD_BOUND,
        ),
        StorageCase::new(
            "cayley n=12 batch 5",
            &["out"],
            MatrixMap(GroupMap::Cayley),
            vec![skew(5, 12, 0.5, 11)],
            FORWARD_BOUND,
        ),
        StorageCase::new("rkmk4 n=8 batch 3, 3 steps", &["w"], flow, vec![identities(3, 8)], FORWARD_BOUND),
    ]
}
