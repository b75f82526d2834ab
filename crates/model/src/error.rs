//! The model crate's one error type.

use mobilesam_checkpoint::CheckpointError;
use thiserror::Error;

/// Everything that can go wrong between image bytes and masks.
#[derive(Debug, Error)]
pub enum ModelError {
    /// Reading a file failed (an image, a detector's checkpoint).
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file that could not be read.
        path: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The checkpoint cannot be read, or lacks a tensor the model needs, or has it (or an
    /// embedding has its values) in another shape; printed as the checkpoint crate prints
    /// it.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The image bytes could not be decoded, or the format is not supported.
    #[error("cannot decode image: {0}")]
    ImageDecode(String),
    /// The image is larger than the configured pixel limit.
    #[error("image is {width}x{height} = {pixels} pixels, over the limit of {limit} pixels")]
    ImageTooLarge {
        /// Width in pixels.
        width: u64,
        /// Height in pixels.
        height: u64,
        /// width * height.
        pixels: u64,
        /// The configured limit.
        limit: u64,
    },
    /// A prompt is malformed (label, coordinates, box, mask input).
    #[error("invalid prompt: {0}")]
    InvalidPrompt(String),
    /// Parameters of a whole run (mask generation, detection) are out of range.
    #[error("invalid parameters: {0}")]
    InvalidParams(String),
    /// A mask is malformed: an RLE that does not decode to its size, or logits of the wrong
    /// shape.
    #[error("invalid mask: {0}")]
    InvalidMask(String),
    /// The checkpoint holds a model family this build does not serve (SAM 2.x), or none
    /// it recognises; the message says what was found.
    #[error("unsupported checkpoint: {0}")]
    UnsupportedCheckpoint(String),
    /// The device cannot be opened, or this build does not support it.
    #[error("{0}")]
    Device(String),
    /// Shapes inside the model disagree (layer weights, an input's size): a bug or a
    /// checkpoint the loaders did not catch, not the caller's input.
    #[error("inconsistent shapes inside the model: {0}")]
    Shape(String),
    /// A tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Tensor(#[from] candle_core::Error),
}

/// Result with [`ModelError`].
pub type Result<T> = std::result::Result<T, ModelError>;
