//! ortho: WGSL compute kernels for random-feature attention and orthogonal matrices, dispatched
//! through wgpu on the adapters it reaches (Vulkan, Metal, DX12, GL), with the `ortho-ref` CPU reference
//! as the fallback when no adapter is present.
//!
//! Two API levels:
//! - host tensors in and out ([`Engine::favor`], [`Engine::exact_attention`], [`Engine::matmul`]):
//!   every input is validated, and the CPU fallback answers when the engine has no GPU;
//! - device-resident [`GpuTensor`]s ([`Engine::favor_gpu`], [`Engine::record_favor`], ...) that stay on
//!   the GPU between calls and can be recorded into the caller's own `wgpu::CommandEncoder`; each
//!   `record_*` call returns a [`Recorded`] guard to keep until that encoder is submitted.
//!
//! A pooled buffer returns to the pool only once the GPU work that used it has completed, so one
//! [`Engine`] can be shared by threads and by an application's own work. The `*_async` functions
//! never block: their futures complete when the device is driven ([`Engine::poll_device`]).
//!
//! ```no_run
//! use ortho::{Engine, FavorOptions, Kernel, Tensor};
//! use ortho::random::{projection, Scaling};
//!
//! let engine = Engine::new()?;
//! let (l, d) = (128, 16);
//! let q = Tensor::from_fn(&[l, d], |i| ((i % 7) as f32 - 3.0) / 10.0);
//! let w = projection(64, d, Scaling::Chi, 42)?.to_f32();
//! let o = engine.favor(&q, &q, &q, &w, &FavorOptions::new(Kernel::Softmax))?;
//! assert_eq!(o.shape(), &[l, d]);
//! # Ok::<(), ortho::Error>(())
//! ```

pub mod bilevel;
mod cpu;
mod cwy;
mod dtype;
mod engine;
mod error;
mod exact;
pub mod express;
mod favor;
mod flow;
mod gemm;
mod ising;
mod kernels;
mod lu;
mod measure;
mod operation;
mod pool;
mod recording;
mod scratch;
mod shaders;
mod tensor;
mod timing;
mod tune;

pub use engine::{AdapterReport, BackendChoice, Engine, EngineOptions};
pub use error::{Error, Result};
pub use favor::{
    AUTO_SCRATCH_BYTES, CausalState, Checkpoints, DEFAULT_CHUNK, FavorGrads, FavorOptions, FavorSaved, SEQUENTIAL_ROWS,
    Schedule,
};
pub use flow::{ExpmOutput, FLOW_MAX_N, GroupMap};
pub use gemm::{GemmVariant, MatmulOptions};
pub use kernels::{LIBRARIES, SHADERS, ShaderSource};
pub use measure::{DeviceTimes, MeasureOptions, Measurement};
pub use operation::Operation;
pub use ortho_ref::favor::{AttentionShape, Kernel};
pub use ortho_ref::{Tensor, random};

/// The operations of [`Engine::run`], [`Engine::run_async`], [`Engine::run_gpu`] and [`Engine::record`].
pub mod ops {
    pub use crate::bilevel::{MetaGradient, RegressionDerivatives};
    pub use crate::cwy::{Cwy, CwyApply, CwyApplyBackward, CwyBackward, HouseholderProduct};
    pub use crate::exact::ExactAttention;
    pub use crate::express::ExpressFit;
    pub use crate::favor::{Favor, FavorBackward};
    pub use crate::flow::MatrixMap;
    pub use crate::gemm::Matmul;
    pub use crate::ising::{DENSE_AUTO_MAX, Factorisation, IsingBatch};
    pub use crate::lu::{Lu, LuSolve};
    pub use ortho_ref::flow::Flow;
}
pub use pool::{PoolStats, Recorded};
pub use tensor::{DType, GpuTensor};
pub use timing::Timing;
pub use tune::{
    CHUNK_CANDIDATES, ChunkClass, ChunkResult, FeatureMap, GemmClass, TuneMode, TuneOptions, TuneResult,
    default_variant,
};

/// Re-exported for f16 storage ([`Engine::run_f16`], [`Engine::upload_f16`]).
pub use half;
/// Re-exported so that applications embedding ortho use the same wgpu.
pub use wgpu;
