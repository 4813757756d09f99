use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// A bad input: shape, non-finite value, argument.
    #[error(transparent)]
    Input(#[from] ortho_ref::Error),
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),
    #[error("could not open the GPU device: {0}")]
    Device(String),
    /// wgpu reported a validation or out-of-memory error while running `op`.
    #[error("GPU error in {op}: {message}")]
    Gpu { op: String, message: String },
    #[error("{what} needs {needed} bytes, over the device's {limit_name} of {limit} bytes")]
    Limit { what: String, needed: u64, limit_name: &'static str, limit: u64 },
    /// A host entry point's output holds NaN or infinity: the computation overflowed or divided by 0.
    #[error("{op}: {count} of {total} values of output {output} are not finite ({cause})")]
    NonFinite { op: String, output: usize, count: usize, total: usize, cause: String },
    #[error("not supported: {0}")]
    Unsupported(String),
}

pub type Result<T> = std::result::Result<T, Error>;
