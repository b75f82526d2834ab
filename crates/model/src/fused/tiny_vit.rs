//! TinyViT on the fused CPU kernels of [`mobilesam_kernels`]: the same weights as the tensor
//! implementation (BatchNorms folded), activations kept channels-last from the first
//! convolution to the neck, activation buffers reused between layers and between calls.

use crate::architecture::{
    attention_bias_indices, merge_stride, DEPTHS, EMBED_CHANNELS, EMBED_DIMS, MBCONV_EXPAND,
    MLP_RATIO, NUM_HEADS, WINDOW_SIZES,
};
use crate::error::{ModelError, Result};
use crate::image::IMAGE_SIZE as INPUT_SIDE;
use crate::weights::{HostConv, Weights};
use mobilesam_kernels::attention::WindowAttention;
use mobilesam_kernels::buffers::{with_scratch, BufferPool, PoolCache};
use mobilesam_kernels::conv::Conv3x3;
use mobilesam_kernels::depthwise::DepthwiseConv3x3;
use mobilesam_kernels::epilogue::Activation;
use mobilesam_kernels::inverted_residual::{Finish, InvertedResidual};
use mobilesam_kernels::layout::planar_to_interleaved;
use mobilesam_kernels::linear::{par_row_blocks, Fused, Linear};
use mobilesam_kernels::norm::LayerNormParams;
use mobilesam_kernels::profile::step;
use mobilesam_kernels::winograd::Winograd3x3;

use super::{layer_norm, linear};

/// Receives intermediate results: name, channels-last values, (height, width, channels).
pub type Observer<'a> = &'a mut dyn FnMut(&str, &[f32], (usize, usize, usize));

/// An internal inconsistency (layer shapes, input size).
fn invalid(message: impl Into<String>) -> ModelError {
    ModelError::Shape(message.into())
}

/// A 1x1 convolution as a linear layer over channels.
fn pointwise(conv: HostConv) -> Linear {
    let (out_ch, in_ch) = (conv.out_channels(), conv.in_per_group());
    Linear::from_torch(&conv.weight, conv.bias, in_ch, out_ch)
}

/// A dense 3x3 convolution with padding 1.
fn dense3x3(conv: HostConv, stride: usize) -> Conv3x3 {
    let (out_ch, in_ch) = (conv.out_channels(), conv.in_per_group());
    Conv3x3::from_torch(&conv.weight, conv.bias, in_ch, out_ch, stride)
}

/// A BatchNorm-folded depthwise 3x3 convolution of `channels`.
fn depthwise(w: &Weights, channels: usize, stride: usize) -> Result<DepthwiseConv3x3> {
    let conv = w.conv_bn(channels, channels, 3, channels)?;
    let bias = conv.bias.unwrap_or_else(|| vec![0.0; channels]);
    Ok(DepthwiseConv3x3::from_torch(&conv.weight, bias, stride))
}

/// 1x1 (GELU), depthwise 3x3 with `stride` (GELU), 1x1: `conv1`, `conv2`, `conv3`.
fn inverted_residual(
    w: &Weights,
    (in_ch, hidden, out_ch): (usize, usize, usize),
    stride: usize,
) -> Result<InvertedResidual> {
    Ok(InvertedResidual {
        expand: pointwise(w.pp("conv1").conv_bn(in_ch, hidden, 1, 1)?),
        depthwise: depthwise(&w.pp("conv2"), hidden, stride)?,
        project: pointwise(w.pp("conv3").conv_bn(hidden, out_ch, 1, 1)?),
    })
}

/// 1x1 expand (GELU), depthwise 3x3 (GELU), 1x1 project, residual, GELU.
struct MbConvCpu {
    layers: InvertedResidual,
}

/// 1x1 (GELU), depthwise 3x3 with stride (GELU), 1x1.
struct MergeCpu {
    /// Profile step name.
    name: &'static str,
    layers: InvertedResidual,
}

/// Profile step names of the attention stages' parts.
const STEP_NAMES: [[&str; 6]; 3] = [
    [
        "layers.1 qkv",
        "layers.1 attention",
        "layers.1 proj",
        "layers.1 local conv",
        "layers.1 mlp",
        "layers.1 downsample",
    ],
    [
        "layers.2 qkv",
        "layers.2 attention",
        "layers.2 proj",
        "layers.2 local conv",
        "layers.2 mlp",
        "layers.2 downsample",
    ],
    [
        "layers.3 qkv",
        "layers.3 attention",
        "layers.3 proj",
        "layers.3 local conv",
        "layers.3 mlp",
        "layers.3 downsample",
    ],
];

/// Windowed attention, depthwise local convolution, MLP.
struct BlockCpu {
    names: &'static [&'static str; 6],
    attn_norm: LayerNormParams,
    qkv: Linear,
    attention: WindowAttention,
    proj: Linear,
    local: DepthwiseConv3x3,
    mlp_norm: LayerNormParams,
    fc1: Linear,
    fc2: Linear,
}

struct StageCpu {
    blocks: Vec<BlockCpu>,
    downsample: Option<MergeCpu>,
}

/// The TinyViT image encoder on the fused CPU kernels.
pub struct TinyVit {
    patch0: Conv3x3,
    patch1: Conv3x3,
    mbconvs: Vec<MbConvCpu>,
    merge0: MergeCpu,
    stages: Vec<StageCpu>,
    neck_conv0: Linear,
    neck_norm0: LayerNormParams,
    neck_conv1: Winograd3x3,
    neck_norm1: LayerNormParams,
    pools: PoolCache,
}

impl MbConvCpu {
    fn load(w: &Weights, dim: usize) -> Result<Self> {
        let hidden = dim * MBCONV_EXPAND;
        Ok(Self {
            layers: inverted_residual(w, (dim, hidden, dim), 1)?,
        })
    }

    fn forward(&self, pool: &mut BufferPool, x: Vec<f32>, side: usize) -> Vec<f32> {
        let mut y = pool.take(x.len());
        step("layers.0 mbconv", || {
            self.layers.forward(&x, side, &mut y, Finish::ResidualGelu)
        });
        pool.give(x);
        y
    }
}

impl MergeCpu {
    fn load(w: &Weights, dim: usize, out: usize, name: &'static str) -> Result<Self> {
        Ok(Self {
            name,
            layers: inverted_residual(w, (dim, out, out), merge_stride(out))?,
        })
    }

    /// Output channels.
    fn out_channels(&self) -> usize {
        self.layers.project.out_dim
    }

    /// (side, side, in) -> ((side', side', out), side').
    fn forward(&self, pool: &mut BufferPool, x: Vec<f32>, side: usize) -> (Vec<f32>, usize) {
        let out_side = self.layers.out_side(side);
        let mut y = pool.take(out_side * out_side * self.out_channels());
        step(self.name, || {
            self.layers.forward(&x, side, &mut y, Finish::Plain)
        });
        pool.give(x);
        (y, out_side)
    }
}

impl BlockCpu {
    fn load(
        w: &Weights,
        (dim, heads, window): (usize, usize, usize),
        names: &'static [&'static str; 6],
    ) -> Result<Self> {
        let attn_norm = layer_norm(&w.pp("attn.norm"), dim, 1e-5)?;
        let qkv = linear(&w.pp("attn.qkv"), dim, 3 * dim)?;
        // A padding token is zero before the attention's LayerNorm.
        let mut pad_qkv = vec![0.0; qkv.out_dim];
        qkv.forward(
            &vec![0.0; qkv.in_dim],
            &mut pad_qkv,
            Fused {
                norm: Some(&attn_norm),
                ..Fused::default()
            },
        );
        let (indices, offsets) = attention_bias_indices(window);
        let biases = w.values("attn.attention_biases", &[heads, offsets])?;
        let bias = (0..heads)
            .flat_map(|h| indices.iter().map(move |&i| h * offsets + i))
            .map(|i| biases[i])
            .collect();
        let key_dim = dim / heads;
        let attention = WindowAttention {
            heads,
            head_dim: key_dim,
            window,
            scale: (key_dim as f64).powf(-0.5) as f32,
            bias,
            pad_qkv,
        };
        let mlp = w.pp("mlp");
        Ok(Self {
            names,
            attn_norm,
            qkv,
            attention,
            proj: linear(&w.pp("attn.proj"), dim, dim)?,
            local: depthwise(&w.pp("local_conv"), dim, 1)?,
            mlp_norm: layer_norm(&mlp.pp("norm"), dim, 1e-5)?,
            fc1: linear(&mlp.pp("fc1"), dim, dim * MLP_RATIO)?,
            fc2: linear(&mlp.pp("fc2"), dim * MLP_RATIO, dim)?,
        })
    }

    fn forward(&self, pool: &mut BufferPool, x: Vec<f32>, side: usize) -> Vec<f32> {
        let n = self.names;
        let mut qkv = pool.take(side * side * self.qkv.out_dim);
        step(n[0], || {
            self.qkv.forward(
                &x,
                &mut qkv,
                Fused {
                    norm: Some(&self.attn_norm),
                    ..Fused::default()
                },
            )
        });
        let mut windowed = pool.take(self.attention.windowed_len(side, side));
        let mut attended = pool.take(x.len());
        step(n[1], || {
            self.attention
                .forward(&qkv, side, side, &mut windowed, &mut attended)
        });
        pool.give(qkv);
        pool.give(windowed);
        let mut x1 = pool.take(x.len());
        step(n[2], || {
            self.proj.forward(
                &attended,
                &mut x1,
                Fused {
                    residual: Some(&x),
                    ..Fused::default()
                },
            )
        });
        pool.give(attended);
        pool.give(x);
        let mut x2 = pool.take(x1.len());
        step(n[3], || {
            self.local
                .forward(&x1, side, side, &mut x2, Activation::Identity)
        });
        pool.give(x1);
        let mut y = pool.take(x2.len());
        step(n[4], || self.mlp(&x2, &mut y));
        pool.give(x2);
        y
    }

    /// `y = x + fc2(GELU(fc1(LayerNorm(x))))`, fused per block of rows: the hidden
    /// activations (4x the channels) of a block stay in the task's scratch instead of making
    /// a round trip through memory between two passes.
    fn mlp(&self, x: &[f32], y: &mut [f32]) {
        let (c, hidden) = (self.fc1.in_dim, self.fc1.out_dim);
        par_row_blocks(y, c, |r0, out| {
            let rows = out.len() / c;
            let xb = &x[r0 * c..(r0 + rows) * c];
            with_scratch(rows * (c + hidden), |scratch| {
                let (normed, h) = scratch.split_at_mut(rows * c);
                self.mlp_norm.rows(xb, normed);
                let fc1 = Fused {
                    gelu: true,
                    ..Fused::default()
                };
                self.fc1.forward_serial(normed, h, fc1);
                let fc2 = Fused {
                    residual: Some(xb),
                    ..Fused::default()
                };
                self.fc2.forward_serial(h, out, fc2);
            });
        });
    }
}

impl TinyVit {
    /// Loads the encoder from `image_encoder.*` host weights, BatchNorms folded.
    pub fn load(w: &Weights) -> Result<Self> {
        let seq = w.pp("patch_embed").pp("seq");
        let half = EMBED_DIMS[0] / 2;
        let layer = |i: usize| w.pp("layers").pp(i);
        let mbconvs = (0..DEPTHS[0])
            .map(|j| MbConvCpu::load(&layer(0).pp("blocks").pp(j), EMBED_DIMS[0]))
            .collect::<Result<_>>()?;
        let merge0 = MergeCpu::load(
            &layer(0).pp("downsample"),
            EMBED_DIMS[0],
            EMBED_DIMS[1],
            "layers.0 downsample",
        )?;
        let mut stages = Vec::with_capacity(3);
        for (i, names) in (1..4).zip(&STEP_NAMES) {
            let dim = EMBED_DIMS[i];
            let shape = (dim, NUM_HEADS[i], WINDOW_SIZES[i]);
            stages.push(StageCpu {
                blocks: (0..DEPTHS[i])
                    .map(|j| BlockCpu::load(&layer(i).pp("blocks").pp(j), shape, names))
                    .collect::<Result<_>>()?,
                downsample: (i < 3)
                    .then(|| {
                        MergeCpu::load(&layer(i).pp("downsample"), dim, EMBED_DIMS[i + 1], names[5])
                    })
                    .transpose()?,
            });
        }
        let neck = w.pp("neck");
        let (last, out) = (EMBED_DIMS[3], EMBED_CHANNELS);
        let neck_conv1 = neck.pp(2).conv(out, out, 3, false)?;
        if !Winograd3x3::supports(out, out) {
            return Err(invalid(format!(
                "neck convolution {out} -> {out} channels: expected multiples of 16"
            )));
        }
        Ok(Self {
            patch0: dense3x3(seq.pp(0).conv_bn(3, half, 3, 1)?, 2),
            patch1: dense3x3(seq.pp(2).conv_bn(half, EMBED_DIMS[0], 3, 1)?, 2),
            mbconvs,
            merge0,
            stages,
            neck_conv0: pointwise(neck.pp(0).conv(last, out, 1, false)?),
            neck_norm0: layer_norm(&neck.pp(1), out, 1e-6)?,
            neck_conv1: Winograd3x3::from_torch(&neck_conv1.weight, None, out, out),
            neck_norm1: layer_norm(&neck.pp(3), out, 1e-6)?,
            pools: PoolCache::default(),
        })
    }

    /// The activation buffers kept between calls.
    pub fn buffers(&self) -> &PoolCache {
        &self.pools
    }

    /// One image, `3 * 1024 * 1024` channel-planar values -> the embedding channels-last:
    /// `64 * 64` rows of 256 values, the layout the fused decoder reads.
    pub fn forward(&self, pixels: &[f32], observe: Option<Observer>) -> Result<Vec<f32>> {
        if pixels.len() != 3 * INPUT_SIDE * INPUT_SIDE {
            return Err(invalid(format!(
                "encoder input has {} values, expected 3 x {INPUT_SIDE} x {INPUT_SIDE}",
                pixels.len()
            )));
        }
        let mut pool = self.pools.checkout();
        let out = self.run(&mut pool, pixels, observe);
        self.pools.checkin(pool);
        Ok(out)
    }

    fn run(
        &self,
        pool: &mut BufferPool,
        pixels: &[f32],
        mut observe: Option<Observer>,
    ) -> Vec<f32> {
        let mut see = |name: &str, v: &[f32], shape: (usize, usize, usize)| {
            if let Some(f) = observe.as_mut() {
                f(name, v, shape);
            }
        };
        let mut input = pool.take(pixels.len());
        step("layout", || planar_to_interleaved(pixels, &mut input, 3));
        let mut side = INPUT_SIDE;
        let (s0, _) = self.patch0.out_size(side, side);
        let mut p0 = pool.take(s0 * s0 * self.patch0.out_channels());
        step("patch_embed conv0", || {
            self.patch0
                .forward(&input, side, side, &mut p0, Activation::Gelu)
        });
        pool.give(input);
        side = s0;
        let (s1, _) = self.patch1.out_size(side, side);
        let mut x = pool.take(s1 * s1 * self.patch1.out_channels());
        step("patch_embed conv1", || {
            self.patch1
                .forward(&p0, side, side, &mut x, Activation::Identity)
        });
        pool.give(p0);
        side = s1;
        see("patch_embed", &x, (side, side, self.patch1.out_channels()));

        for mb in &self.mbconvs {
            x = mb.forward(pool, x, side);
        }
        (x, side) = self.merge0.forward(pool, x, side);
        see("layers.0", &x, (side, side, self.merge0.out_channels()));
        for (i, stage) in self.stages.iter().enumerate() {
            for block in &stage.blocks {
                x = block.forward(pool, x, side);
            }
            if let Some(down) = &stage.downsample {
                (x, side) = down.forward(pool, x, side);
            }
            let channels = x.len() / (side * side);
            see(&format!("layers.{}", i + 1), &x, (side, side, channels));
        }

        let mut n0 = pool.take(side * side * self.neck_conv0.out_dim);
        step("neck conv0", || {
            self.neck_conv0.forward(&x, &mut n0, Fused::default())
        });
        pool.give(x);
        step("neck norms", || self.neck_norm0.rows_inplace(&mut n0));
        let mut n1 = pool.take(side * side * self.neck_conv1.out_channels());
        step("neck conv1", || {
            self.neck_conv1
                .forward(&n0, side, side, &mut n1, Activation::Identity)
        });
        pool.give(n0);
        step("neck norms", || self.neck_norm1.rows_inplace(&mut n1));
        n1
    }
}
