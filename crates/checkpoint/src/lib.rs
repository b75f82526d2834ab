//! Model weights from files: the official `torch.save` zips (`.pt`, read by a bounded
//! pickle reader that executes nothing) and `.safetensors` files, recognised by content
//! ([`Checkpoint`]); the SHA-256 digests that name a checkpoint and an image ([`digest`]);
//! and seeded random weights in a checkpoint's layout for tests and benchmarks
//! ([`seeded`]).
//!
//! No model is known here: the models read tensors by name and shape
//! (`mobilesam-model`'s `weights` view, `mobilesam-detector`'s module walker, which runs
//! Ultralytics pickles through [`pickle`] and [`torch`]). Malformed input is an error,
//! never a panic or an allocation out of proportion to the file; the readers are fuzzed
//! on their own (`crates/fuzz`: `checkpoint_pt`, `checkpoint_safetensors`, `yolo_pickle`).

mod checkpoint;
pub mod digest;
pub mod error;
pub mod pickle;
pub mod seeded;
pub mod torch;

pub use checkpoint::{Checkpoint, ParameterCounts};
pub use error::{CheckpointError, Result};
