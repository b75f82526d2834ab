//! MobileSAM inference: preprocessing, encoder, prompt encoder, mask decoder,
//! postprocessing.
//!
//! The data path, top to bottom: [`image`] (decode, resize, normalize, pad) -> image
//! encoder -> [`prompt_encoder`] -> mask decoder -> [`masks`] (upscale, threshold, RLE,
//! outlines). [`sam::Sam`] ties the steps together: `embed(image) -> Embedding`,
//! `decode(&Embedding, prompts) -> masks`. The encoder and decoder exist twice, side by
//! side: [`candle`] (tensor operations, any device) and [`fused`] (hand-written CPU
//! kernels from [`mobilesam_kernels`]); [`Backend`] picks one when the model is built.
//! Weights come from the official `mobile_sam.pt` or a `.safetensors` file with the same
//! names ([`mobilesam_checkpoint`], viewed through [`weights`]). `ARCHITECTURE.md` has the
//! map, the neighbouring crates (kernels, checkpoint, detector) included.

pub mod amg;
pub mod architecture;
pub mod backend;
pub mod candle;
pub mod device;
pub mod embedding;
pub mod error;
pub mod family;
pub mod fused;
pub mod hiera_config;
pub mod image;
pub mod masks;
pub mod prompt;
pub mod prompt_encoder;
pub mod prompt_json;
pub mod sam;
pub mod single_mask;
pub mod threads;
pub mod video;
pub mod weights;

pub use backend::Backend;
pub use embedding::{Embedding, HostEmbedding};
pub use error::{ModelError, Result};
pub use family::Family;
pub use prompt::{BoxPrompt, ObjectPrompt, Point};
pub use sam::{DecodeOptions, MaskOutput, ObjectMasks, Sam};
