//! MobileSAM inference on candle.
//!
//! The data path, top to bottom: [`image`] (decode, resize, normalize, pad) ->
//! [`tiny_vit`] (image encoder) -> [`prompt_encoder`] -> [`mask_decoder`] (with the
//! two-way [`transformer`]) -> [`masks`] (upscale, threshold, RLE). [`sam::Sam`] ties the
//! steps together: `embed(image) -> Embedding`, `decode(&Embedding, prompts) -> masks`.
//! Weights come from the official `mobile_sam.pt` or a `.safetensors` file with the same
//! names ([`checkpoint`]).

pub mod amg;
pub mod checkpoint;
pub mod checkpoint_digest;
mod checkpoint_pickle;
mod checkpoint_torch;
pub mod contours;
pub mod cpu;
pub mod detector;
pub mod device;
pub mod digest;
pub mod error;
pub mod image;
pub mod image_truncation;
pub mod layers;
pub mod mask_decoder;
pub mod mask_runs;
pub mod masks;
pub mod polygon;
pub mod polygon_regions;
pub mod prompt;
pub mod prompt_encoder;
pub mod prompt_json;
pub mod sam;
pub mod seeded;
pub mod threads;
pub mod tiny_vit;
pub mod transformer;
pub mod yield_point;

pub use error::{ModelError, Result};
pub use prompt::{BoxPrompt, ObjectPrompt, Point};
pub use sam::{DecodeOptions, Embedding, MaskOutput, ObjectMasks, Sam};
