//! `--dtype`: the storage a kernel verb reads, computes through and writes. `f32` (the default)
//! reads every float or integer array as f32 (f16 files exactly); `f16` reads arrays as f16 (f16
//! files exactly, others rounded to the nearest f16, a value past 65504 refused), runs the operation
//! in f16 storage ([`ortho::Engine::run_f16`]: f32 arithmetic between) and writes f16 arrays.

use crate::npy::{self, Outputs};
use clap::Args;
use ortho::half::f16;
use ortho::{DType, Engine, Operation, Tensor};
use std::path::Path;

#[derive(Args, Clone, Copy)]
pub(crate) struct Storage {
    /// Storage of the inputs and outputs: f32, or f16 (half the bytes; the kernels compute in f32).
    #[arg(long, default_value = "f32", value_parser = |s: &str| s.parse::<DType>().map_err(|e| e.to_string()))]
    pub(crate) dtype: DType,
}

/// An input of a run, in the storage it asked for.
pub(crate) enum Loaded {
    F32(Tensor<f32>),
    F16(Tensor<f16>),
}

impl Loaded {
    pub(crate) fn shape(&self) -> &[usize] {
        match self {
            Loaded::F32(t) => t.shape(),
            Loaded::F16(t) => t.shape(),
        }
    }

    /// Writes it as output `i` of `out`, in its own dtype.
    pub(crate) fn write(&self, out: &mut Outputs, i: usize) -> Result<(), String> {
        match self {
            Loaded::F32(t) => out.write(i, t),
            Loaded::F16(t) => out.write_values(i, t.shape(), t.data()),
        }
    }
}

impl Storage {
    /// Reads `path` for this storage.
    pub(crate) fn read(&self, path: &Path, name: &str) -> Result<Loaded, String> {
        match self.dtype {
            DType::F32 => npy::read(path, name).map(Loaded::F32),
            DType::F16 => npy::read_f16(path, name).map(Loaded::F16),
        }
    }

    /// An input made here in f32 (a generated projection), in this storage.
    pub(crate) fn made(&self, t: Tensor<f32>) -> Loaded {
        match self.dtype {
            DType::F32 => Loaded::F32(t),
            DType::F16 => Loaded::F16(t.to_f16()),
        }
    }

    /// Runs `op` on `inputs` and writes its first `wanted` outputs to `out` (output `i` to file `i`),
    /// in this storage.
    pub(crate) fn run<O: Operation>(
        &self,
        engine: &Engine,
        op: &O,
        inputs: &[Loaded],
        out: &mut Outputs,
        wanted: usize,
    ) -> Result<(), String> {
        let f32s: Vec<&Tensor<f32>> =
            inputs.iter().filter_map(|t| if let Loaded::F32(t) = t { Some(t) } else { None }).collect();
        let f16s: Vec<&Tensor<f16>> =
            inputs.iter().filter_map(|t| if let Loaded::F16(t) = t { Some(t) } else { None }).collect();
        match self.dtype {
            DType::F32 => {
                let outputs = engine.run(op, &f32s).map_err(|e| e.to_string())?;
                outputs.into_iter().take(wanted).enumerate().try_for_each(|(i, t)| Loaded::F32(t).write(out, i))
            }
            DType::F16 => {
                let outputs = engine.run_f16(op, &f16s).map_err(|e| e.to_string())?;
                outputs.into_iter().take(wanted).enumerate().try_for_each(|(i, t)| Loaded::F16(t).write(out, i))
            }
        }
    }
}
