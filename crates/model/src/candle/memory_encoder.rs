//! SAM 2's memory encoder (`sam2.modeling.memory_encoder.MemoryEncoder`): a frame's
//! predicted mask, downsampled 16x by [`MaskDownSampler`], is added to the projected image
//! features; ConvNeXt blocks ([`CxBlock`]) fuse them and a 1x1 convolution compresses them
//! to the memory width. The memory's sine position encoding is image-independent and lives
//! in `crate::video::position`.

use candle_core::{Module, Tensor};

use super::layers::{gelu, linear, Conv2d, LayerNorm2d, Linear};
use crate::error::Result;
use crate::weights::Weights;

/// `MaskDownSampler`: `layers` x (3x3 stride-2 convolution, LayerNorm2d, GELU), channels
/// x4 each time (1 -> 4 -> 16 -> 64 -> 256 for a 1024x1024 mask), then a 1x1 convolution
/// to the fuser width.
struct MaskDownSampler {
    stages: Vec<(Conv2d, LayerNorm2d)>,
    project: Conv2d,
}

impl MaskDownSampler {
    /// `w` = `memory_encoder.mask_downsampler.encoder`; sequential indices as PyTorch's
    /// `nn.Sequential` numbers them (conv, norm, act per stage, then the projection).
    fn load(w: &Weights, layers: usize, out_dim: usize) -> Result<Self> {
        let mut stages = Vec::with_capacity(layers);
        let mut channels = 1;
        for i in 0..layers {
            let next = channels * 4;
            stages.push((
                Conv2d::load(&w.pp(3 * i), (channels, next, 3), 2, 1, true)?,
                LayerNorm2d::load(&w.pp(3 * i + 1), next)?,
            ));
            channels = next;
        }
        let project = Conv2d::load(&w.pp(3 * layers), (channels, out_dim, 1), 1, 0, true)?;
        Ok(Self { stages, project })
    }

    fn forward(&self, mask: &Tensor) -> Result<Tensor> {
        let mut x = mask.clone();
        for (conv, norm) in &self.stages {
            x = gelu(&norm.forward(&conv.forward(&x)?)?)?;
        }
        Ok(self.project.forward(&x)?)
    }
}

/// A ConvNeXt block: 7x7 depthwise convolution, LayerNorm2d, pointwise MLP (x4, GELU),
/// layer scale `gamma`, residual.
struct CxBlock {
    dwconv: Conv2d,
    norm: LayerNorm2d,
    pwconv1: Linear,
    pwconv2: Linear,
    gamma: Tensor,
}

impl CxBlock {
    fn load(w: &Weights, dim: usize) -> Result<Self> {
        let dw = w.pp("dwconv");
        Ok(Self {
            dwconv: Conv2d::new(&dw, dw.conv(1, dim, 7, true)?, 1, 3, dim)?,
            norm: LayerNorm2d::load(&w.pp("norm"), dim)?,
            pwconv1: linear(&w.pp("pwconv1"), dim, 4 * dim)?,
            pwconv2: linear(&w.pp("pwconv2"), 4 * dim, dim)?,
            gamma: w.get("gamma", &[dim])?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.norm.forward(&self.dwconv.forward(x)?)?;
        let y = y.permute((0, 2, 3, 1))?;
        let y = self.pwconv2.forward(&gelu(&self.pwconv1.forward(&y)?)?)?;
        let y = y.broadcast_mul(&self.gamma)?.permute((0, 3, 1, 2))?;
        Ok((x + y)?)
    }
}

/// The memory encoder: `memory_encoder.*`.
pub struct MemoryEncoder {
    mask_downsampler: MaskDownSampler,
    pix_feat_proj: Conv2d,
    fuser: Vec<CxBlock>,
    out_proj: Option<Conv2d>,
    mem_dim: usize,
}

impl MemoryEncoder {
    /// Loads `memory_encoder.*` (`w` there) for image features of width `dim`. The fuser's
    /// depth and the output width come from the tensor names and shapes.
    pub fn load(w: &Weights, dim: usize) -> Result<Self> {
        let down = w.pp("mask_downsampler").pp("encoder");
        let mut layers = 0;
        while down.pp(3 * layers).shape("weight").is_ok()
            && down.pp(3 * layers + 1).shape("weight").is_ok()
        {
            layers += 1;
        }
        let mut fuser = Vec::new();
        while w
            .pp("fuser")
            .pp("layers")
            .pp(fuser.len())
            .pp("dwconv")
            .shape("weight")
            .is_ok()
        {
            fuser.push(CxBlock::load(
                &w.pp("fuser").pp("layers").pp(fuser.len()),
                dim,
            )?);
        }
        let (out_proj, mem_dim) = match w.pp("out_proj").shape("weight") {
            Ok(shape) => {
                let out = shape[0];
                (
                    Some(Conv2d::load(&w.pp("out_proj"), (dim, out, 1), 1, 0, true)?),
                    out,
                )
            }
            Err(_) => (None, dim),
        };
        Ok(Self {
            mask_downsampler: MaskDownSampler::load(&down, layers, dim)?,
            pix_feat_proj: Conv2d::load(&w.pp("pix_feat_proj"), (dim, dim, 1), 1, 0, true)?,
            fuser,
            out_proj,
            mem_dim,
        })
    }

    /// Channels of the memory features.
    pub fn mem_dim(&self) -> usize {
        self.mem_dim
    }

    /// `pix_feat` (B, D, 64, 64), the frame's image features as the encoder gave them, and
    /// `mask` (B, 1, 1024, 1024), already through the sigmoid (or binarised) and scaled,
    /// -> (B, mem_dim, 64, 64) memory features (`skip_mask_sigmoid=True`).
    pub fn forward(&self, pix_feat: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let masks = self.mask_downsampler.forward(mask)?;
        let x = (self.pix_feat_proj.forward(pix_feat)? + masks)?;
        let mut x = x;
        for block in &self.fuser {
            x = block.forward(&x)?;
        }
        Ok(match &self.out_proj {
            Some(p) => p.forward(&x)?,
            None => x,
        })
    }
}
