//! SAM 2.1's image path before the decoder: the [`Hiera`] encoder, then what
//! `SAM2Base.forward_image` adds: the decoder's `conv_s0` / `conv_s1` on the 256x256 and
//! 128x128 levels. The 64x64 level is kept as the encoder gives it (the memory of the
//! video tracker attends to it); a single image adds `no_mem_embed` to it before the
//! decoder ([`Sam2Encoder::with_no_memory`], as `SAM2ImagePredictor.set_image`).

use candle_core::{Module, Tensor};

use super::hiera::Hiera;
use super::layers::Linear;
use crate::embedding::HighResFeatures;
use crate::error::Result;
use crate::hiera_config::HieraConfig;
use crate::weights::Weights;

/// The image embedding and the high-resolution features of one image, NCHW.
pub struct Sam2Features {
    /// (1, D, 64, 64), the neck's 64x64 level.
    pub image_embed: Tensor,
    /// `conv_s0` / `conv_s1` of the two high-resolution levels.
    pub high_res: HighResFeatures,
}

/// SAM 2.1's image encoder with the decoder's high-resolution projections.
pub struct Sam2Encoder {
    hiera: Hiera,
    conv_s0: Linear,
    conv_s1: Linear,
    /// (1, D, 1, 1): added to every cell of a single image's embedding.
    no_mem_embed: Tensor,
}

impl Sam2Encoder {
    /// Loads `image_encoder.*`, `sam_mask_decoder.conv_s{0,1}.*` and `no_mem_embed` from
    /// the checkpoint's root `w`.
    pub fn load(w: &Weights, config: &HieraConfig) -> Result<Self> {
        let d = config.neck_dim;
        let conv = |name: &str, out: usize| -> Result<Linear> {
            let c = w.pp("sam_mask_decoder").pp(name);
            Ok(Linear::new(
                c.get("weight", &[out, d, 1, 1])?.reshape((out, d))?,
                Some(c.get("bias", &[out])?),
            ))
        };
        Ok(Self {
            hiera: Hiera::load(&w.pp("image_encoder"), config)?,
            conv_s0: conv("conv_s0", d / 8)?,
            conv_s1: conv("conv_s1", d / 4)?,
            no_mem_embed: w.get("no_mem_embed", &[1, 1, d])?.reshape((1, d, 1, 1))?,
        })
    }

    /// `image_embed` (B, D, 64, 64) as the decoder reads it for a frame without memory:
    /// plus `no_mem_embed`.
    pub fn with_no_memory(&self, image_embed: &Tensor) -> Result<Tensor> {
        Ok(image_embed.broadcast_add(&self.no_mem_embed)?)
    }

    /// `x` (1, 3, 1024, 1024), SAM 2's preprocessing, -> the image's features.
    pub fn forward_stages(
        &self,
        x: &Tensor,
        observe: &mut dyn FnMut(&str, &Tensor),
    ) -> Result<Sam2Features> {
        let [level0, level1, level2] = self.hiera.forward_stages(x, observe)?;
        let nchw = |t: Tensor| -> Result<Tensor> { Ok(t.permute((0, 3, 1, 2))?.contiguous()?) };
        let image_embed = nchw(level2)?;
        Ok(Sam2Features {
            image_embed,
            high_res: HighResFeatures {
                s0: nchw(self.conv_s0.forward(&level0)?)?,
                s1: nchw(self.conv_s1.forward(&level1)?)?,
            },
        })
    }
}
