//! TinyViT, MobileSAM's image encoder: 1024x1024x3 -> 256x64x64 embedding.
//!
//! Configuration as MobileSAM builds it: embed dims [64, 128, 160, 320], depths
//! [2, 2, 6, 2], heads [2, 4, 5, 10], window sizes [7, 7, 14, 7], MLP ratio 4, MBConv
//! expansion 4, local conv 3. Stage 0 is convolutional (MBConv), stages 1-3 are windowed
//! attention blocks; each stage but the last ends with a patch-merging downsample. The
//! neck maps 320 channels to SAM's 256-channel embedding. BatchNorms are folded into the
//! convolutions at load time; the classification head in the checkpoint is not used.

use candle_core::{Module, Tensor};

use super::layers::{gelu, linear, softmax_last, Conv2d, LayerNorm, LayerNorm2d, Linear};
use crate::architecture::{
    attention_bias_indices, merge_stride, stage_resolution, DEPTHS, EMBED_CHANNELS, EMBED_DIMS,
    EMBED_SIDE, LOCAL_CONV, MBCONV_EXPAND, MLP_RATIO, NUM_HEADS, WINDOW_SIZES,
};
use crate::error::Result;
use crate::weights::Weights;

/// Two stride-2 3x3 convolutions: 1024x1024x3 -> 256x256x64.
struct PatchEmbed {
    conv0: Conv2d,
    conv1: Conv2d,
}

impl PatchEmbed {
    fn load(w: &Weights, out: usize) -> Result<Self> {
        let seq = w.pp("seq");
        Ok(Self {
            conv0: Conv2d::load_bn(&seq.pp(0), (3, out / 2, 3), 2, 1, 1)?,
            conv1: Conv2d::load_bn(&seq.pp(2), (out / 2, out, 3), 2, 1, 1)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = gelu(&self.conv0.forward(x)?)?;
        Ok(self.conv1.forward(&x)?)
    }
}

/// Inverted residual block: 1x1 expand, 3x3 depthwise, 1x1 project, residual.
struct MbConv {
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
}

impl MbConv {
    fn load(w: &Weights, dim: usize) -> Result<Self> {
        let hidden = dim * MBCONV_EXPAND;
        Ok(Self {
            conv1: Conv2d::load_bn(&w.pp("conv1"), (dim, hidden, 1), 1, 0, 1)?,
            conv2: Conv2d::load_bn(&w.pp("conv2"), (hidden, hidden, 3), 1, 1, hidden)?,
            conv3: Conv2d::load_bn(&w.pp("conv3"), (hidden, dim, 1), 1, 0, 1)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = gelu(&self.conv1.forward(x)?)?;
        let y = gelu(&self.conv2.forward(&y)?)?;
        let y = self.conv3.forward(&y)?;
        Ok(gelu(&(y + x)?)?)
    }
}

/// Downsample between stages: 1x1, depthwise 3x3 (stride 2, or 1 into the 320-wide
/// stage), 1x1. Takes NCHW, returns tokens (B, L, C).
struct PatchMerging {
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
}

impl PatchMerging {
    fn load(w: &Weights, dim: usize, out: usize) -> Result<Self> {
        let stride = merge_stride(out);
        Ok(Self {
            conv1: Conv2d::load_bn(&w.pp("conv1"), (dim, out, 1), 1, 0, 1)?,
            conv2: Conv2d::load_bn(&w.pp("conv2"), (out, out, 3), stride, 1, out)?,
            conv3: Conv2d::load_bn(&w.pp("conv3"), (out, out, 1), 1, 0, 1)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = gelu(&self.conv1.forward(x)?)?;
        let y = gelu(&self.conv2.forward(&y)?)?;
        let y = self.conv3.forward(&y)?;
        Ok(y.flatten_from(2)?.transpose(1, 2)?.contiguous()?)
    }
}

/// Multi-head attention inside one window, with a learned bias per head and relative
/// offset (|dy|, |dx|), gathered once at load time.
struct WindowAttention {
    norm: LayerNorm,
    qkv: Linear,
    proj: Linear,
    /// (1, heads, N, N), N = window * window.
    bias: Tensor,
    heads: usize,
    key_dim: usize,
    scale: f64,
}

impl WindowAttention {
    fn load(w: &Weights, dim: usize, heads: usize, window: usize) -> Result<Self> {
        let key_dim = dim / heads;
        let n = window * window;
        let (indices, offsets) = attention_bias_indices(window);
        let biases = w.get_host("attn.attention_biases", &[heads, offsets])?;
        let indices: Vec<u32> = indices.into_iter().map(|i| i as u32).collect();
        let indices = Tensor::from_vec(indices, n * n, biases.device())?;
        let bias = biases
            .index_select(&indices, 1)?
            .reshape((1, heads, n, n))?
            .to_device(w.device())?;
        Ok(Self {
            norm: LayerNorm::load(&w.pp("attn.norm"), dim, 1e-5)?,
            qkv: linear(&w.pp("attn.qkv"), dim, 3 * dim)?,
            proj: linear(&w.pp("attn.proj"), dim, dim)?,
            bias,
            heads,
            key_dim,
            scale: (key_dim as f64).powf(-0.5),
        })
    }

    /// `x`: (windows, N, C) -> (windows, N, C).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        let qkv = self.qkv.forward(&self.norm.forward(x)?)?;
        // Per head the channels are [q (key_dim), k (key_dim), v (key_dim)].
        let qkv = qkv.reshape((b, n, self.heads, 3 * self.key_dim))?;
        let part = |i: usize| -> candle_core::Result<Tensor> {
            qkv.narrow(3, i * self.key_dim, self.key_dim)?
                .transpose(1, 2)?
                .contiguous()
        };
        let (q, k, v) = (part(0)?, part(1)?, part(2)?);
        let attn = (q.matmul(&k.t()?)? * self.scale)?.broadcast_add(&self.bias)?;
        let attn = softmax_last(&attn)?;
        let out = attn.matmul(&v)?.transpose(1, 2)?.reshape((b, n, c))?;
        Ok(self.proj.forward(&out)?)
    }
}

/// Pre-norm MLP: LayerNorm, fc1, GELU, fc2.
struct Mlp {
    norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    fn load(w: &Weights, dim: usize, hidden: usize) -> Result<Self> {
        Ok(Self {
            norm: LayerNorm::load(&w.pp("norm"), dim, 1e-5)?,
            fc1: linear(&w.pp("fc1"), dim, hidden)?,
            fc2: linear(&w.pp("fc2"), hidden, dim)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = gelu(&self.fc1.forward(&self.norm.forward(x)?)?)?;
        Ok(self.fc2.forward(&y)?)
    }
}

/// Windowed attention, depthwise local convolution, MLP.
struct TinyVitBlock {
    attn: WindowAttention,
    local_conv: Conv2d,
    mlp: Mlp,
    window: usize,
    resolution: usize,
}

impl TinyVitBlock {
    fn load(
        w: &Weights,
        dim: usize,
        heads: usize,
        window: usize,
        resolution: usize,
    ) -> Result<Self> {
        Ok(Self {
            attn: WindowAttention::load(w, dim, heads, window)?,
            local_conv: Conv2d::load_bn(
                &w.pp("local_conv"),
                (dim, dim, LOCAL_CONV),
                1,
                LOCAL_CONV / 2,
                dim,
            )?,
            mlp: Mlp::load(&w.pp("mlp"), dim, dim * MLP_RATIO)?,
            window,
            resolution,
        })
    }

    /// `x`: tokens (B, H*W, C).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, l, c) = x.dims3()?;
        let (h, w, ws) = (self.resolution, self.resolution, self.window);
        let attended = if h == ws && w == ws {
            self.attn.forward(x)?
        } else {
            let pad_b = (ws - h % ws) % ws;
            let pad_r = (ws - w % ws) % ws;
            let grid = x.reshape((b, h, w, c))?;
            let grid = if pad_b > 0 || pad_r > 0 {
                grid.pad_with_zeros(1, 0, pad_b)?
                    .pad_with_zeros(2, 0, pad_r)?
            } else {
                grid
            };
            let (ph, pw) = (h + pad_b, w + pad_r);
            let (nh, nw) = (ph / ws, pw / ws);
            let windows = grid
                .reshape((b, nh, ws, nw, ws, c))?
                .transpose(2, 3)?
                .reshape((b * nh * nw, ws * ws, c))?;
            let out = self.attn.forward(&windows)?;
            let out = out
                .reshape((b, nh, nw, ws, ws, c))?
                .transpose(2, 3)?
                .reshape((b, ph, pw, c))?;
            let out = if pad_b > 0 || pad_r > 0 {
                out.narrow(1, 0, h)?.narrow(2, 0, w)?
            } else {
                out
            };
            out.reshape((b, l, c))?
        };
        let x = (x + attended)?;
        let spatial = x.transpose(1, 2)?.reshape((b, c, h, w))?;
        let local = self.local_conv.forward(&spatial)?;
        let x = local.reshape((b, c, l))?.transpose(1, 2)?.contiguous()?;
        let mlp = self.mlp.forward(&x)?;
        Ok((x + mlp)?)
    }
}

/// One stage: its blocks, then an optional downsample.
enum Stage {
    Conv {
        blocks: Vec<MbConv>,
        downsample: PatchMerging,
    },
    Attention {
        blocks: Vec<TinyVitBlock>,
        downsample: Option<PatchMerging>,
        resolution: usize,
    },
}

impl Stage {
    /// Stage 0 takes NCHW; later stages take tokens (B, L, C). All return tokens.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Stage::Conv { blocks, downsample } => {
                let mut x = x.clone();
                for block in blocks {
                    x = block.forward(&x)?;
                }
                downsample.forward(&x)
            }
            Stage::Attention {
                blocks,
                downsample,
                resolution,
            } => {
                let mut x = x.clone();
                for block in blocks {
                    x = block.forward(&x)?;
                }
                match downsample {
                    Some(down) => {
                        let (b, _, c) = x.dims3()?;
                        let spatial =
                            x.transpose(1, 2)?
                                .reshape((b, c, *resolution, *resolution))?;
                        down.forward(&spatial)
                    }
                    None => Ok(x),
                }
            }
        }
    }
}

/// Neck: 1x1 conv, LayerNorm2d, 3x3 conv, LayerNorm2d (no biases on the convs).
struct Neck {
    conv0: Conv2d,
    norm0: LayerNorm2d,
    conv1: Conv2d,
    norm1: LayerNorm2d,
}

/// The TinyViT image encoder as candle tensor operations (any device).
pub struct TinyVit {
    patch_embed: PatchEmbed,
    stages: Vec<Stage>,
    neck: Neck,
}

impl TinyVit {
    /// Loads the encoder from `image_encoder.*` weights.
    pub fn load(w: &Weights) -> Result<Self> {
        let patch_embed = PatchEmbed::load(&w.pp("patch_embed"), EMBED_DIMS[0])?;
        let mut stages = Vec::with_capacity(4);
        for i in 0..4 {
            let lw = w.pp("layers").pp(i);
            let dim = EMBED_DIMS[i];
            let out_dim = EMBED_DIMS[(i + 1).min(3)];
            let resolution = stage_resolution(i);
            let downsample = if i < 3 {
                Some(PatchMerging::load(&lw.pp("downsample"), dim, out_dim)?)
            } else {
                None
            };
            let stage = match downsample {
                Some(downsample) if i == 0 => Stage::Conv {
                    blocks: (0..DEPTHS[i])
                        .map(|j| MbConv::load(&lw.pp("blocks").pp(j), dim))
                        .collect::<Result<Vec<_>>>()?,
                    downsample,
                },
                downsample => Stage::Attention {
                    blocks: (0..DEPTHS[i])
                        .map(|j| {
                            TinyVitBlock::load(
                                &lw.pp("blocks").pp(j),
                                dim,
                                NUM_HEADS[i],
                                WINDOW_SIZES[i],
                                resolution,
                            )
                        })
                        .collect::<Result<Vec<_>>>()?,
                    downsample,
                    resolution,
                },
            };
            stages.push(stage);
        }
        let nw = w.pp("neck");
        let neck = Neck {
            conv0: Conv2d::load(&nw.pp(0), (EMBED_DIMS[3], EMBED_CHANNELS, 1), 1, 0, false)?,
            norm0: LayerNorm2d::load(&nw.pp(1), EMBED_CHANNELS)?,
            conv1: Conv2d::load(&nw.pp(2), (EMBED_CHANNELS, EMBED_CHANNELS, 3), 1, 1, false)?,
            norm1: LayerNorm2d::load(&nw.pp(3), EMBED_CHANNELS)?,
        };
        Ok(Self {
            patch_embed,
            stages,
            neck,
        })
    }

    /// `x`: normalized, padded images (B, 3, 1024, 1024) -> embeddings (B, 256, 64, 64).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_stages(x, &mut |_, _| {})
    }

    /// Like [`TinyVit::forward`], handing each intermediate result to `observe`
    /// ("patch_embed" as (B, 64, 256, 256), "layers.0" ... "layers.3" as tokens (B, L, C)).
    pub fn forward_stages(
        &self,
        x: &Tensor,
        observe: &mut dyn FnMut(&str, &Tensor),
    ) -> Result<Tensor> {
        let b = x.dim(0)?;
        let mut x = self.patch_embed.forward(x)?;
        observe("patch_embed", &x);
        for (i, stage) in self.stages.iter().enumerate() {
            x = stage.forward(&x)?;
            observe(&format!("layers.{i}"), &x);
        }
        let c = x.dim(2)?;
        let x = x
            .reshape((b, EMBED_SIDE, EMBED_SIDE, c))?
            .permute((0, 3, 1, 2))?
            .contiguous()?;
        let x = self.neck.norm0.forward(&self.neck.conv0.forward(&x)?)?;
        let x = self.neck.norm1.forward(&self.neck.conv1.forward(&x)?)?;
        Ok(x)
    }
}
