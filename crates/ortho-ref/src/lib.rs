//! CPU reference for the ortho kernels: the correctness oracle the GPU shaders are tested against,
//! and the fallback the engine runs when no GPU adapter is present.
//!
//! Everything here computes in `f64`, with plain loops whose order of operations is fixed, so results
//! are reproducible bit for bit on every machine. `docs/math.md` in the repository (cited by section in
//! each module) is the contract for what each function computes.

// The numerics are written as index loops that mirror the formulas of docs/math.md.
#![allow(clippy::needless_range_loop)]

pub mod bilevel;
pub mod cwy;
pub mod error;
pub mod expm;
pub mod express;
pub mod favor;
pub mod flow;
pub mod heap;
pub mod ising;
pub mod linalg;
pub mod random;
pub mod tensor;

pub use error::{Error, Result};
pub use tensor::Tensor;
