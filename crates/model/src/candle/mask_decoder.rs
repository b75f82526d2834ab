//! SAM's mask decoder: output tokens plus prompt tokens run through the two-way
//! transformer with the image embedding; the image side is upscaled 4x and each mask token's
//! hypernetwork MLP turns it into a mask; the IoU token predicts each mask's quality.
//! SAM 2's decoder ([`Sam2Heads`]) adds an object-score token and head, adds the
//! high-resolution features into the upscaling, passes the IoU through a sigmoid, and picks
//! a single mask by stability (`_dynamic_multimask_via_stability`).

use candle_core::{Module, Tensor};

use super::layers::{gelu, linear, ConvTranspose2d, LayerNorm2d, Linear};
use super::transformer::TwoWayTransformer;
use crate::architecture::NUM_MASK_TOKENS;
use crate::embedding::HighResFeatures;
use crate::error::Result;
use crate::family::DecoderWidths;
use crate::single_mask::dynamic_single_mask;
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
    /// SAM 2: (B, 1) object-score logits (> 0: the object is present).
    pub object_score_logits: Option<Tensor>,
}

/// SAM 2's additions to the decoder.
struct Sam2Heads {
    /// (1, D): the object-score token, first of the output tokens.
    obj_score_token: Tensor,
    /// MLP D -> D -> D -> 1 on the object-score token's output.
    obj_score_head: Mlp,
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
    sam2: Option<Sam2Heads>,
}

impl MaskDecoder {
    /// Loads `mask_decoder.*` (SAM 2: `sam_mask_decoder.*`, `sam2` true) with `widths`
    /// ([`DecoderWidths::of`]).
    pub fn load(w: &Weights, widths: &DecoderWidths, sam2: bool) -> Result<Self> {
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
            sam2: sam2
                .then(|| -> Result<Sam2Heads> {
                    Ok(Sam2Heads {
                        obj_score_token: w.get("obj_score_token.weight", &[1, dim])?,
                        obj_score_head: Mlp::load(
                            &w.pp("pred_obj_score_head"),
                            &[dim, dim, dim, 1],
                        )?,
                    })
                })
                .transpose()?,
        })
    }

    /// Decodes a batch: `image` (1, 256, 64, 64) shared by all objects, `image_pe`
    /// (1, 256, 64, 64), `sparse` (B, N, 256), `dense` (B, 256, 64, 64), and for SAM 2 the
    /// image's `high_res` features. With `multimask` the three multimask outputs, else the
    /// single-mask output (SAM 2: chosen by stability).
    pub fn forward(
        &self,
        image: &Tensor,
        image_pe: &Tensor,
        sparse: &Tensor,
        dense: &Tensor,
        high_res: Option<&HighResFeatures>,
        multimask: bool,
    ) -> Result<DecoderOutput> {
        Ok(self
            .forward_with_tokens(image, image_pe, sparse, dense, high_res, multimask)?
            .0)
    }

    /// [`MaskDecoder::forward`] plus SAM 2's `sam_tokens_out` (`use_multimask_token_for_obj_ptr`):
    /// (B, 3, D), the multimask outputs' mask tokens, with `multimask`; (B, 1, D), mask
    /// token 0, without (whichever mask the single-mask rule returned). The video tracker
    /// turns the chosen token into the object pointer.
    pub(crate) fn forward_with_tokens(
        &self,
        image: &Tensor,
        image_pe: &Tensor,
        sparse: &Tensor,
        dense: &Tensor,
        high_res: Option<&HighResFeatures>,
        multimask: bool,
    ) -> Result<(DecoderOutput, Tensor)> {
        let b = sparse.dim(0)?;
        let mut output_tokens = vec![&self.iou_token, &self.mask_tokens];
        if let Some(sam2) = &self.sam2 {
            output_tokens.insert(0, &sam2.obj_score_token);
        }
        // SAM 2's object-score token shifts the others by one.
        let first = output_tokens.len() - 2;
        let output_tokens = Tensor::cat(&output_tokens, 0)?
            .unsqueeze(0)?
            .repeat((b, 1, 1))?;
        let tokens = Tensor::cat(&[&output_tokens, sparse], 1)?;
        let src = image.repeat((b, 1, 1, 1))?.add(dense)?;
        let pos = image_pe.repeat((b, 1, 1, 1))?;
        let (_, c, h, w) = src.dims4()?;
        let (hs, src) = self.transformer.forward(&src, &pos, &tokens)?;
        let iou_token_out = hs.narrow(1, first, 1)?.squeeze(1)?;
        let src = src.transpose(1, 2)?.reshape((b, c, h, w))?;
        // SAM 2 adds its high-resolution features before the LayerNorm and the last GELU.
        let features = high_res.filter(|_| self.sam2.is_some());
        let mut up = self.upscale_conv0.forward(&src)?;
        if let Some(f) = features {
            up = up.broadcast_add(&f.s1)?;
        }
        let mut up = self
            .upscale_conv1
            .forward(&gelu(&self.upscale_norm.forward(&up)?)?)?;
        if let Some(f) = features {
            up = up.broadcast_add(&f.s0)?;
        }
        let up = gelu(&up)?;
        let (_, uc, uh, uw) = up.dims4()?;
        let hyper = self
            .hypernetworks
            .iter()
            .enumerate()
            .map(|(i, mlp)| mlp.forward(&hs.narrow(1, first + 1 + i, 1)?.squeeze(1)?))
            .collect::<Result<Vec<_>>>()?;
        let hyper = Tensor::stack(&hyper, 1)?;
        let masks =
            hyper
                .matmul(&up.reshape((b, uc, uh * uw))?)?
                .reshape((b, NUM_MASK_TOKENS, uh, uw))?;
        let mut iou = self.iou_head.forward(&iou_token_out)?;
        let sam_tokens = if multimask {
            hs.narrow(1, first + 2, NUM_MASK_TOKENS - 1)?
        } else {
            hs.narrow(1, first + 1, 1)?
        };
        let Some(sam2) = &self.sam2 else {
            let (start, len) = if multimask { (1, 3) } else { (0, 1) };
            return Ok((
                DecoderOutput {
                    low_res_masks: masks.narrow(1, start, len)?,
                    iou_predictions: iou.narrow(1, start, len)?,
                    object_score_logits: None,
                },
                sam_tokens,
            ));
        };
        iou = candle_nn::ops::sigmoid(&iou)?;
        let object_score_logits = Some(
            sam2.obj_score_head
                .forward(&hs.narrow(1, 0, 1)?.squeeze(1)?)?,
        );
        if multimask {
            return Ok((
                DecoderOutput {
                    low_res_masks: masks.narrow(1, 1, 3)?,
                    iou_predictions: iou.narrow(1, 1, 3)?,
                    object_score_logits,
                },
                sam_tokens,
            ));
        }
        let chosen = single_mask_indices(&masks, &iou)?;
        let pick = |t: &Tensor| -> Result<Tensor> {
            let rows = chosen
                .iter()
                .enumerate()
                .map(|(i, &m)| t.get(i)?.narrow(0, m, 1))
                .collect::<candle_core::Result<Vec<_>>>()?;
            Ok(Tensor::stack(&rows, 0)?)
        };
        Ok((
            DecoderOutput {
                low_res_masks: pick(&masks)?,
                iou_predictions: pick(&iou)?,
                object_score_logits,
            },
            sam_tokens,
        ))
    }
}

/// Per object, the index of the mask SAM 2 returns for a single-mask request
/// ([`dynamic_single_mask`]).
fn single_mask_indices(masks: &Tensor, iou: &Tensor) -> Result<Vec<usize>> {
    let scores = iou.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?;
    let first = masks
        .narrow(1, 0, 1)?
        .to_dtype(candle_core::DType::F32)?
        .flatten_from(1)?
        .to_vec2::<f32>()?;
    Ok(first
        .iter()
        .zip(&scores)
        .map(|(logits, scores)| dynamic_single_mask(logits, scores))
        .collect())
}
