//! SAM's prompt encoder: points and box corners become sparse tokens through a random
//! Fourier positional encoding plus learned type embeddings; a previous mask becomes a dense
//! embedding through a small convolutional downscaler (or the learned "no mask" embedding).
//! SAM 2 orders the tokens differently ([`TokenOrder`]).

use candle_core::{Device, Module, Tensor};

use crate::architecture::EMBED_SIDE;
use crate::candle::layers::{gelu, Conv2d, LayerNorm2d};
use crate::error::Result;
use crate::weights::Weights;

/// Side of the model input in pixels.
/// The encoder's input side, as the coordinate scale of the positional encoding.
const INPUT_SIDE: f32 = crate::image::IMAGE_SIZE as f32;

/// One object's prompt in model-input pixel coordinates (after resizing).
#[derive(Debug, Clone, Default)]
pub struct ScaledPrompt {
    /// (x, y, label) with label 1 foreground, 0 background.
    pub points: Vec<(f32, f32, i32)>,
    /// (x1, y1, x2, y2).
    pub bbox: Option<[f32; 4]>,
    /// 256x256 logits, row-major.
    pub mask_input: Option<Vec<f32>>,
}

/// How an object's sparse tokens are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenOrder {
    /// segment-anything's `SamPredictor`: points, then the box corners; the padding
    /// "not a point" token only when there is no box.
    Sam,
    /// `SAM2ImagePredictor`: the box as two points labelled 2 and 3 **before** the clicks,
    /// and the padding token always (the prompt encoder never sees a box).
    Sam2,
}

/// The prompt encoder's weights and its precomputed dense positional encoding.
pub struct PromptEncoder {
    order: TokenOrder,
    /// Width of the prompt tokens and the dense embeddings (256 in the official models).
    dim: usize,
    /// (2, dim / 2) random Fourier features.
    gaussian: [Vec<f32>; 2],
    /// Learned embeddings: negative point, positive point, top-left corner, bottom-right corner.
    point_embeddings: [Vec<f32>; 4],
    not_a_point: Vec<f32>,
    no_mask: Tensor,
    mask_down: MaskDownscaling,
    dense_pe: Tensor,
    device: Device,
}

struct MaskDownscaling {
    conv0: Conv2d,
    norm0: LayerNorm2d,
    conv1: Conv2d,
    norm1: LayerNorm2d,
    conv2: Conv2d,
}

impl MaskDownscaling {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = gelu(&self.norm0.forward(&self.conv0.forward(x)?)?)?;
        let x = gelu(&self.norm1.forward(&self.conv1.forward(&x)?)?)?;
        Ok(self.conv2.forward(&x)?)
    }
}

impl PromptEncoder {
    /// Loads `prompt_encoder.*` (SAM 2: `sam_prompt_encoder.*`) of width `dim` (256
    /// officially), laying tokens out in `order`.
    pub fn load(w: &Weights, dim: usize, order: TokenOrder) -> Result<Self> {
        let g = w
            .get_host(
                "pe_layer.positional_encoding_gaussian_matrix",
                &[2, dim / 2],
            )?
            .to_vec2::<f32>()?;
        let mut rows = g.into_iter();
        let gaussian = [
            rows.next().unwrap_or_default(),
            rows.next().unwrap_or_default(),
        ];
        let embedding = |name: String| -> Result<Vec<f32>> {
            Ok(w.get_host(&name, &[1, dim])?
                .flatten_all()?
                .to_vec1::<f32>()?)
        };
        let point_embeddings = [
            embedding("point_embeddings.0.weight".into())?,
            embedding("point_embeddings.1.weight".into())?,
            embedding("point_embeddings.2.weight".into())?,
            embedding("point_embeddings.3.weight".into())?,
        ];
        let md = w.pp("mask_downscaling");
        let mask_down = MaskDownscaling {
            conv0: Conv2d::load(&md.pp(0), (1, 4, 2), 2, 0, true)?,
            norm0: LayerNorm2d::load(&md.pp(1), 4)?,
            conv1: Conv2d::load(&md.pp(3), (4, 16, 2), 2, 0, true)?,
            norm1: LayerNorm2d::load(&md.pp(4), 16)?,
            conv2: Conv2d::load(&md.pp(6), (16, dim, 1), 1, 0, true)?,
        };
        let mut encoder = Self {
            order,
            dim,
            gaussian,
            point_embeddings,
            not_a_point: embedding("not_a_point_embed.weight".into())?,
            no_mask: w
                .get("no_mask_embed.weight", &[1, dim])?
                .reshape((1, dim, 1, 1))?,
            mask_down,
            dense_pe: Tensor::zeros(1, candle_core::DType::F32, &Device::Cpu)?,
            device: w.device().clone(),
        };
        encoder.dense_pe = encoder.compute_dense_pe()?;
        Ok(encoder)
    }

    /// (1, count, dim): `count` padding points (label -1: `not_a_point_embed`), SAM 2's
    /// sparse prompt for a frame tracked without prompts (one empty point, then the pad).
    pub(crate) fn padding_tokens(&self, count: usize) -> Result<Tensor> {
        let data: Vec<f32> = (0..count)
            .flat_map(|_| self.not_a_point.iter().copied())
            .collect();
        Ok(Tensor::from_vec(data, (1, count, self.dim), &self.device)?)
    }

    /// The learned "no mask" dense embedding, one value per channel, on the host.
    pub(crate) fn no_mask_host(&self) -> Result<Vec<f32>> {
        crate::weights::host_values(&self.no_mask)
    }

    /// The positional encoding of every embedding cell, (1, 256, 64, 64).
    pub fn dense_pe(&self) -> &Tensor {
        &self.dense_pe
    }

    /// Width of the prompt tokens and dense embeddings.
    pub fn dim(&self) -> usize {
        self.dim
    }

    fn compute_dense_pe(&self) -> Result<Tensor> {
        let side = EMBED_SIDE;
        let dim = self.dim;
        let mut data = vec![0f32; side * side * dim];
        for y in 0..side {
            for x in 0..side {
                let fx = (x as f32 + 0.5) / side as f32;
                let fy = (y as f32 + 0.5) / side as f32;
                let enc = self.encode_normalized(fx, fy);
                let base = (y * side + x) * dim;
                data[base..base + dim].copy_from_slice(&enc);
            }
        }
        let pe = Tensor::from_vec(data, (side, side, dim), &Device::Cpu)?
            .permute((2, 0, 1))?
            .unsqueeze(0)?
            .contiguous()?;
        Ok(pe.to_device(&self.device)?)
    }

    /// Random Fourier features of a point with coordinates normalized to [0, 1].
    fn encode_normalized(&self, x: f32, y: f32) -> Vec<f32> {
        let (x, y) = (2.0 * x - 1.0, 2.0 * y - 1.0);
        let freqs = self.dim / 2;
        let mut out = vec![0f32; self.dim];
        for (f, (gx, gy)) in self.gaussian[0].iter().zip(&self.gaussian[1]).enumerate() {
            let v = (x * gx + y * gy) * std::f32::consts::TAU;
            out[f] = v.sin();
            out[f + freqs] = v.cos();
        }
        out
    }

    /// Encoding of a point in input pixels (the pixel centre is `+0.5`).
    fn encode_pixel(&self, x: f32, y: f32) -> Vec<f32> {
        self.encode_normalized((x + 0.5) / INPUT_SIDE, (y + 0.5) / INPUT_SIDE)
    }

    /// Sparse tokens for a batch of objects that share one shape (same number of points,
    /// all with or all without a box): (B, tokens, 256). Without a box a padding
    /// "not a point" token is appended, as the reference does.
    pub fn sparse_embeddings(&self, objects: &[&ScaledPrompt]) -> Result<Tensor> {
        let mut data = Vec::new();
        let mut tokens = 0;
        for object in objects {
            let start = data.len();
            if self.order == TokenOrder::Sam2 {
                self.push_box(&mut data, object.bbox);
            }
            for &(x, y, label) in &object.points {
                self.push_token(&mut data, (x, y), usize::from(label == 1));
            }
            match (self.order, object.bbox) {
                (TokenOrder::Sam, Some(_)) => self.push_box(&mut data, object.bbox),
                _ => data.extend_from_slice(&self.not_a_point),
            }
            tokens = (data.len() - start) / self.dim;
        }
        let tensor = Tensor::from_vec(data, (objects.len(), tokens, self.dim), &Device::Cpu)?;
        Ok(tensor.to_device(&self.device)?)
    }

    /// The encoding of `(x, y)` plus learned embedding `kind` (0 negative, 1 positive,
    /// 2 top-left corner, 3 bottom-right corner), appended to `data`.
    fn push_token(&self, data: &mut Vec<f32>, (x, y): (f32, f32), kind: usize) {
        let mut e = self.encode_pixel(x, y);
        for (v, l) in e.iter_mut().zip(&self.point_embeddings[kind]) {
            *v += l;
        }
        data.extend_from_slice(&e);
    }

    /// The two corner tokens of `bbox`, if any.
    fn push_box(&self, data: &mut Vec<f32>, bbox: Option<[f32; 4]>) {
        if let Some([x1, y1, x2, y2]) = bbox {
            self.push_token(data, (x1, y1), 2);
            self.push_token(data, (x2, y2), 3);
        }
    }

    /// Dense embeddings (B, 256, 64, 64): the downscaled mask input, or "no mask".
    pub fn dense_embeddings(&self, objects: &[&ScaledPrompt]) -> Result<Tensor> {
        let masks: Option<Vec<&Vec<f32>>> = objects.iter().map(|o| o.mask_input.as_ref()).collect();
        match masks {
            Some(masks) if !masks.is_empty() => {
                let side = crate::prompt::LOW_RES_MASK_SIZE;
                let flat: Vec<f32> = masks.iter().flat_map(|m| m.iter().copied()).collect();
                let x = Tensor::from_vec(flat, (masks.len(), 1, side, side), &self.device)?;
                self.mask_down.forward(&x)
            }
            _ => Ok(self
                .no_mask
                .repeat((objects.len(), 1, EMBED_SIDE, EMBED_SIDE))?),
        }
    }
}
