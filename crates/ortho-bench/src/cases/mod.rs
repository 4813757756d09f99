//! The cases of the sweep, one per kernel, setting and size: [`attention`] (FAVOR+, FAVOR and relu
//! features in both directions, exact attention, gradients), [`orthogonal`] (compact WY and its
//! baseline, the group maps, the flows), [`bilevel`] (few-shot regression's outer gradients) and the
//! GEMM.

mod attention;
mod bilevel;
mod orthogonal;

use crate::inputs::{GEMM_BOUND, gaussian};
use ortho::ops::Matmul;
use ortho::{DType, DeviceTimes, Engine, MeasureOptions, Measurement, Operation, Result, Tensor};
use std::sync::OnceLock;

/// An operation as a case holds it: its f64 twin, and its measurement against the twin's outputs.
trait Measured: Send + Sync {
    fn reference(&self, inputs: &[Tensor<f64>]) -> Result<Vec<Tensor<f64>>>;
    fn measure(
        &self,
        e: &Engine,
        inputs: &[&Tensor<f32>],
        want: &[Tensor<f64>],
        o: MeasureOptions,
    ) -> Result<Measurement>;
    fn time_device(&self, e: &Engine, inputs: &[&Tensor<f32>], o: MeasureOptions) -> Result<DeviceTimes>;
}

impl<O: Operation + Send + Sync> Measured for O {
    fn reference(&self, inputs: &[Tensor<f64>]) -> Result<Vec<Tensor<f64>>> {
        Operation::reference(self, inputs)
    }

    fn measure(
        &self,
        e: &Engine,
        inputs: &[&Tensor<f32>],
        want: &[Tensor<f64>],
        o: MeasureOptions,
    ) -> Result<Measurement> {
        e.measure_against(self, inputs, want, o)
    }

    fn time_device(&self, e: &Engine, inputs: &[&Tensor<f32>], o: MeasureOptions) -> Result<DeviceTimes> {
        e.time_device(self, inputs, o)
    }
}

/// One benchmark case: an operation, the inputs it runs on, and what one run costs.
pub struct Case {
    /// The kernel family (`gemm`, `favor`, `favor-causal`, `exact`, ...).
    pub family: &'static str,
    /// The case within its family, sizes included (`favor+ L=1024`).
    pub name: String,
    /// The size the family's plots put on their x axis (L, N, the batch).
    pub size: usize,
    /// Floating-point operations of one run, as the kernel computes them.
    pub flops: f64,
    /// Bytes of the inputs and outputs one run reads and writes at least.
    pub bytes: f64,
    /// Relative Frobenius error allowed against the f64 twin (the bounds of `ortho validate`).
    pub bound: f64,
    inputs: Vec<Tensor<f32>>,
    op: Box<dyn Measured>,
    /// The twin's outputs, computed once for every engine the case runs on: on the inputs, and on
    /// the inputs rounded to f16 (what a run in f16 storage computes from).
    reference: [OnceLock<Vec<Tensor<f64>>>; 2],
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
        Case {
            family,
            name,
            size,
            flops,
            bytes,
            bound,
            inputs,
            op: Box::new(op),
            reference: [OnceLock::new(), OnceLock::new()],
        }
    }

    /// `family/name`, what `--filter` matches.
    pub fn path(&self) -> String {
        format!("{}/{}", self.family, self.name)
    }

    /// Measures the case on `engine` against its f64 twin.
    pub fn run(&self, engine: &Engine, o: MeasureOptions) -> Result<Measurement> {
        let reference = &self.reference[(o.dtype == DType::F16) as usize];
        let want = match reference.get() {
            Some(want) => want,
            None => {
                let inputs: Vec<Tensor<f64>> = match o.dtype {
                    DType::F32 => self.inputs.iter().map(|t| t.to_f64()).collect(),
                    DType::F16 => self.inputs.iter().map(|t| t.to_f16().to_f64()).collect(),
                };
                let _ = reference.set(self.op.reference(&inputs)?);
                reference.get().expect("set just now")
            }
        };
        self.op.measure(engine, &self.inputs(), want, o)
    }

    /// Times the case's device work alone (no whole calls, no error): what the criterion benches
    /// sample.
    pub fn time_device(&self, engine: &Engine, o: MeasureOptions) -> Result<DeviceTimes> {
        self.op.time_device(engine, &self.inputs(), o)
    }

    fn inputs(&self) -> Vec<&Tensor<f32>> {
        self.inputs.iter().collect()
    }
}

/// How much of the sweep to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sweep {
    /// One small size per family: every family touched in a couple of minutes on a software adapter.
    Quick,
    /// The sizes BENCHMARKS.md records.
    Full,
}

impl Sweep {
    /// `quick` or `full` as the sweep asks.
    fn pick<T: Clone>(self, quick: &[T], full: &[T]) -> Vec<T> {
        match self {
            Sweep::Quick => quick.to_vec(),
            Sweep::Full => full.to_vec(),
        }
    }
}

/// The cases of `sweep`, family by family.
pub fn sweep(sweep: Sweep) -> Vec<Case> {
    let mut cases = Vec::new();
    for n in sweep.pick(&[128], &[256, 512, 1024]) {
        let (a, b) = (gaussian(&[n, n], 1.0, 1), gaussian(&[n, n], 1.0, 2));
        let flops = 2.0 * (n * n * n) as f64;
        let name = format!("gemm n={n}");
        cases.push(Case::new("gemm", name, n, Matmul(Default::default()), vec![a, b], flops, GEMM_BOUND));
    }
    attention::cases(sweep, &mut cases);
    orthogonal::cases(sweep, &mut cases);
    bilevel::cases(sweep, &mut cases);
    cases
}

#[cfg(test)]
mod tests {
    use super::{Sweep, sweep};

    /// Both sweeps touch every family, name each case once and count positive work for it.
    #[test]
    fn sweeps_touch_every_family_once_per_case() {
        let families = [
            "gemm",
            "favor",
            "exact",
            "favor-causal",
            "exact-causal",
            "favor-grad",
            "cwy",
            "householder",
            "expm",
            "cayley",
            "flow",
            "bilevel",
        ];
        for s in [Sweep::Quick, Sweep::Full] {
            let cases = sweep(s);
            for family in families {
                assert!(cases.iter().any(|c| c.family == family), "{s:?} lacks {family}");
            }
            let mut paths: Vec<String> = cases.iter().map(|c| c.path()).collect();
            paths.sort();
            paths.dedup();
            assert_eq!(paths.len(), cases.len(), "{s:?} names a case twice");
            assert!(cases.iter().all(|c| c.flops > 0.0 && c.bytes > 0.0 && c.bound > 0.0 && c.size > 0));
        }
    }
}
