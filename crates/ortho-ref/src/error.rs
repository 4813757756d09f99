use thiserror::Error;

/// Every way an input can be rejected. Messages name the tensor, the index and what was expected.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum Error {
    #[error("{tensor}: expected shape {expected}, got {got:?}")]
    Shape { tensor: String, expected: String, got: Vec<usize> },
    #[error("{tensor}: non-finite value {value} at index {index:?}")]
    NonFinite { tensor: String, index: Vec<usize>, value: f64 },
    #[error("{tensor}: {shape:?} holds {expected} elements but {got} were given")]
    Length { tensor: String, shape: Vec<usize>, expected: usize, got: usize },
    #[error("invalid argument {name}: {reason}")]
    Argument { name: String, reason: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn shape(tensor: &str, expected: impl Into<String>, got: &[usize]) -> Self {
        Error::Shape { tensor: tensor.to_string(), expected: expected.into(), got: got.to_vec() }
    }

    pub fn argument(name: &str, reason: impl Into<String>) -> Self {
        Error::Argument { name: name.to_string(), reason: reason.into() }
    }
}
