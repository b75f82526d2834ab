//! The fused CPU backend: TinyViT, the two-way transformer and the mask decoder written
//! on the hand-written kernels of [`mobilesam_kernels`], channels-last, loaded straight from
//! the checkpoint's host `f32` weights (BatchNorms folded by [`crate::weights`]). It runs
//! on the CPU only; [`crate::candle`] is the same model as candle tensor operations.

use crate::error::Result;
use crate::weights::Weights;
use mobilesam_kernels::linear::Linear;
use mobilesam_kernels::norm::LayerNormParams;

pub mod mask_decoder;
pub mod tiny_vit;
mod transformer;

pub use mask_decoder::MaskDecoder;
pub use tiny_vit::TinyVit;

/// `weight` (out, in) and `bias` (out) as a kernel [`Linear`].
pub(crate) fn linear(w: &Weights, in_dim: usize, out_dim: usize) -> Result<Linear> {
    Ok(Linear::from_torch(
        &w.values("weight", &[out_dim, in_dim])?,
        Some(w.values("bias", &[out_dim])?),
        in_dim,
        out_dim,
    ))
}

/// `weight` and `bias` of a LayerNorm over `dim` channels.
pub(crate) fn layer_norm(w: &Weights, dim: usize, eps: f32) -> Result<LayerNormParams> {
    Ok(LayerNormParams {
        weight: w.values("weight", &[dim])?,
        bias: w.values("bias", &[dim])?,
        eps,
    })
}
