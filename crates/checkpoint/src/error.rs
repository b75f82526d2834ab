//! The checkpoint crate's one error type.

use thiserror::Error;

/// Everything that can go wrong between a checkpoint file and its tensors. The model
/// crate's `ModelError::Checkpoint` wraps it and prints it unchanged.
#[derive(Debug, Error)]
pub enum CheckpointError {
    /// Reading a file failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file that could not be read.
        path: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The checkpoint file is not a readable `.pt` or `.safetensors` file (or not the file
    /// the user expected, or a weights manifest is malformed).
    #[error("invalid checkpoint {path}: {reason}")]
    Invalid {
        /// The checkpoint's path.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A tensor the model needs is not in the checkpoint.
    #[error("checkpoint has no tensor `{name}` (expected shape {expected:?})")]
    MissingTensor {
        /// The state_dict name of the tensor.
        name: String,
        /// The shape the model expects.
        expected: Vec<usize>,
    },
    /// A tensor has a shape other than the model's.
    #[error(
        "tensor `{name}` has shape {found:?} in the checkpoint, the model expects {expected:?}"
    )]
    ShapeMismatch {
        /// The state_dict name of the tensor.
        name: String,
        /// The shape the model expects.
        expected: Vec<usize>,
        /// The shape found in the checkpoint.
        found: Vec<usize>,
    },
    /// A tensor operation failed (a dtype conversion, building a generated tensor).
    #[error("tensor operation failed: {0}")]
    Tensor(#[from] candle_core::Error),
}

/// Result with [`CheckpointError`].
pub type Result<T> = std::result::Result<T, CheckpointError>;
