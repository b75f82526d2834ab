//! SAM's mask decoder: output tokens plus prompt tokens run through the two-way
//! transformer with the image embedding; the image side is upscaled 4x and each mask token's
//! hypernetwork MLP turns it into a mask; the IoU token predicts each mask's quality.

use candle_core::{Module, Tensor};

use super::layers::{gelu, linear, ConvTranspose2d, LayerNorm2d, Linear};
use super::transformer::TwoWayTransformer;
use crate::architecture::NUM_MASK_TOKENS;
use crate::error::Result;
use crate::family::DecoderWidths;
use crate::weights::Weights;

/// A stack of linear layers with ReLU between them.
struct Mlp {
    layers: Vec<Linear>,
}

impl Mlp {
    fn load(w: &Weights, dims: &[usize]) -> Result<Self> {
        let layers = dims
            .windows(2)
            .enumerate()
            .map(|(i, d)| linear(&w.pp("layers").pp(i), d[0], d[1]))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(&x)?;
            if i + 1 < self.layers.len() {
                x = x.relu()?;
            }
        }
        Ok(x)
    }
}

/// The mask decoder's raw outputs for a batch of objects.
pub struct DecoderOutput {
    /// (B, masks, 256, 256) logits.
    pub low_res_masks: Tensor,
    /// (B, masks) predicted IoU.
    pub iou_predictions: Tensor,
}

/// The mask decoder.
pub struct MaskDecoder {
    iou_token: Tensor,
    mask_tokens: Tensor,
    transformer: TwoWayTransformer,
    upscale_conv0: ConvTranspose2d,
    upscale_norm: LayerNorm2d,
    upscale_conv1: ConvTranspose2d,
    hypernetworks: Vec<Mlp>,
    iou_head: Mlp,
}

impl MaskDecoder {
    /// Loads `mask_decoder.*` with `widths` ([`DecoderWidths::of`]).
    pub fn load(w: &Weights, widths: &DecoderWidths) -> Result<Self> {
        let up = w.pp("output_upscaling");
        let (dim, iou_hidden) = (widths.dim, widths.iou_hidden);
        Ok(Self {
            iou_token: w.get("iou_token.weight", &[1, dim])?,
            mask_tokens: w.get("mask_tokens.weight", &[NUM_MASK_TOKENS, dim])?,
            transformer: TwoWayTransformer::load(&w.pp("transformer"), dim, widths.mlp_dim)?,
            upscale_conv0: ConvTranspose2d::load(&up.pp(0), dim, dim / 4, 2)?,
            upscale_norm: LayerNorm2d::load(&up.pp(1), dim / 4)?,
            upscale_conv1: ConvTranspose2d::load(&up.pp(3), dim / 4, dim / 8, 2)?,
            hypernetworks: (0..NUM_MASK_TOKENS)
                .map(|i| {
                    Mlp::load(
                        &w.pp("output_hypernetworks_mlps").pp(i),
                        &[dim, dim, dim, dim / 8],
                    )
                })
                .collect::<Result<Vec<_>>>()?,
            iou_head: Mlp::load(
                &w.pp("iou_prediction_head"),
                &[dim, iou_hidden, iou_hidden, NUM_MASK_TOKENS],
            )?,
        })
    }

    /// Decodes a batch: `image` (1, 256, 64, 64) shared by all objects, `image_pe`
    /// (1, 256, 64, 64), `sparse` (B, N, 256), `dense` (B, 256, 64, 64). With
    /// `multimask` the three multimask outputs, else the single-mask output.
    pub fn forward(
        &self,
        image: &Tensor,
        image_pe: &Tensor,
        sparse: &Tensor,
        dense: &Tensor,
        multimask: bool,
    ) -> Result<DecoderOutput> {
        let b = sparse.dim(0)?;
        let output_tokens = Tensor::cat(&[&self.iou_token, &self.mask_tokens], 0)?
            .unsqueeze(0)?
            .repeat((b, 1, 1))?;
        let tokens = Tensor::cat(&[&output_tokens, sparse], 1)?;
        let src = image.repeat((b, 1, 1, 1))?.add(dense)?;
        let pos = image_pe.repeat((b, 1, 1, 1))?;
        let (_, c, h, w) = src.dims4()?;
        let (hs, src) = self.transformer.forward(&src, &pos, &tokens)?;
        let iou_token_out = hs.narrow(1, 0, 1)?.squeeze(1)?;
        let src = src.transpose(1, 2)?.reshape((b, c, h, w))?;
        let up = self.upscale_conv0.forward(&src)?;
        let up = gelu(&self.upscale_norm.forward(&up)?)?;
        let up = gelu(&self.upscale_conv1.forward(&up)?)?;
        let (_, uc, uh, uw) = up.dims4()?;
        let hyper = self
            .hypernetworks
            .iter()
            .enumerate()
            .map(|(i, mlp)| mlp.forward(&hs.narrow(1, 1 + i, 1)?.squeeze(1)?))
            .collect::<Result<Vec<_>>>()?;
        let hyper = Tensor::stack(&hyper, 1)?;
        let masks =
            hyper
                .matmul(&up.reshape((b, uc, uh * uw))?)?
                .reshape((b, NUM_MASK_TOKENS, uh, uw))?;
        let iou = self.iou_head.forward(&iou_token_out)?;
        let (start, len) = if multimask { (1, 3) } else { (0, 1) };
        Ok(DecoderOutput {
            low_res_masks: masks.narrow(1, start, len)?,
            iou_predictions: iou.narrow(1, start, len)?,
        })
    }
}
