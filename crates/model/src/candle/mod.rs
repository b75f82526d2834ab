//! The candle backend: MobileSAM, SAM ViT's encoder ([`vit`]) and SAM 2.1's ([`hiera`],
//! [`sam2_encoder`]) as plain candle tensor operations, on any device
//! (CUDA, Metal, or the CPU as the reference the fused kernels are checked against). No
//! layer here has a CPU special case.

pub mod depthwise;
pub mod hiera;
pub mod layers;
pub mod mask_decoder;
pub mod memory_attention;
pub mod memory_encoder;
pub mod sam2_encoder;
pub mod tiny_vit;
pub mod transformer;
pub mod vit;

pub use mask_decoder::MaskDecoder;
pub use sam2_encoder::Sam2Encoder;
pub use tiny_vit::TinyVit;
pub use vit::Vit;
