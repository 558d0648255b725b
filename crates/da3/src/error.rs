//! Error types of the crate: every failure a user can cause is a value, never a panic.

use std::fmt;

/// Any error the library returns.
#[derive(Debug, thiserror::Error)]
pub enum Da3Error {
    /// The weights file does not match the model it is loaded into.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// The configuration is invalid or unknown.
    #[error("config: {0}")]
    Config(String),
    /// An input (image, size, view count) cannot be processed.
    #[error("input: {0}")]
    Input(String),
    /// The job does not fit the memory budget, even split into the smallest chunks the
    /// scheduler allows (see [`crate::schedule`]).
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    /// An I/O error with the path it concerns.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// One problem found while matching a weights file against the model.
#[derive(Debug, Clone, PartialEq)]
pub enum WeightProblem {
    /// The model needs this key and the file lacks it.
    Missing { key: String, expected: Vec<usize> },
    /// The file holds this key and the model has no place for it.
    Unexpected { key: String, found: Vec<usize> },
    /// Both have the key but the shapes differ.
    ShapeMismatch { key: String, expected: Vec<usize>, found: Vec<usize> },
    /// The key's dtype cannot be converted to float32.
    UnsupportedDtype { key: String, dtype: String },
}

impl fmt::Display for WeightProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { key, expected } => write!(f, "missing key `{key}` (expected shape {expected:?})"),
            Self::Unexpected { key, found } => write!(f, "unexpected key `{key}` (shape {found:?})"),
            Self::ShapeMismatch { key, expected, found } => {
                write!(f, "shape mismatch for `{key}`: expected {expected:?}, found {found:?}")
            }
            Self::UnsupportedDtype { key, dtype } => write!(f, "unsupported dtype {dtype} for `{key}`"),
        }
    }
}

/// A weights file that cannot be loaded, with every problem found in one pass.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// The bytes are not a valid safetensors file (truncated, corrupt header, ...).
    #[error("{source_name}: not a valid safetensors file ({reason}); re-download it or check the path")]
    Corrupt { source_name: String, reason: String },
    /// The file is valid but does not fit the model.
    #[error("{}", format_mismatch(.source_name, .model, .problems))]
    Mismatch { source_name: String, model: String, problems: Vec<WeightProblem> },
}

fn format_mismatch(source_name: &str, model: &str, problems: &[WeightProblem]) -> String {
    let missing = problems.iter().filter(|p| matches!(p, WeightProblem::Missing { .. })).count();
    let unexpected = problems.iter().filter(|p| matches!(p, WeightProblem::Unexpected { .. })).count();
    let shapes = problems.iter().filter(|p| matches!(p, WeightProblem::ShapeMismatch { .. })).count();
    let mut s = format!(
        "{source_name} does not fit model {model}: {missing} missing, {unexpected} unexpected, \
         {shapes} shape mismatches. Is this the checkpoint of another model (see `--model`)?"
    );
    for p in problems {
        s.push_str("\n  ");
        s.push_str(&p.to_string());
    }
    s
}
