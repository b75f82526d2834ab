//! The candle backend: MobileSAM (and SAM ViT's encoder, [`vit`]) as plain candle tensor operations, on any device
//! (CUDA, Metal, or the CPU as the reference the fused kernels are checked against). No
//! layer here has a CPU special case.

pub mod depthwise;
pub mod layers;
pub mod mask_decoder;
pub mod tiny_vit;
pub mod transformer;
pub mod vit;

pub use mask_decoder::MaskDecoder;
pub use tiny_vit::TinyVit;
pub use vit::Vit;
