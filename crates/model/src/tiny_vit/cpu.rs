//! TinyViT on the fused CPU kernels of [`crate::cpu`]: the same weights as the tensor
//! implementation (BatchNorms folded), activations kept channels-last from the first
//! convolution to the neck, activation buffers reused between layers and between calls.

use candle_core::Tensor;
use rayon::prelude::*;

use super::{
    MbConv, Neck, PatchEmbed, PatchMerging, Stage, TensorTinyVit, TinyVitBlock, EMBED_CHANNELS,
    EMBED_SIDE,
};
use crate::cpu::attention::WindowAttention;
use crate::cpu::buffers::{with_scratch, BufferPool, PoolCache};
use crate::cpu::conv::Conv3x3;
use crate::cpu::depthwise::DepthwiseConv3x3;
use crate::cpu::inverted_residual::{Finish, InvertedResidual};
use crate::cpu::linear::{par_row_blocks, Fused, Linear};
use crate::cpu::norm::LayerNormParams;
use crate::cpu::profile::step;
use crate::cpu::winograd::Winograd3x3;
use crate::error::{ModelError, Result};
use crate::image::IMAGE_SIZE as INPUT_SIDE;
use crate::layers::{host_values, Conv2d};

/// Receives intermediate results as tensors (see [`super::TinyVit::forward_stages`]).
pub type TensorObserver<'a> = &'a mut dyn FnMut(&str, &Tensor);

/// Receives intermediate results: name, channels-last values, (height, width, channels).
pub type Observer<'a> = &'a mut dyn FnMut(&str, &[f32], (usize, usize, usize));

/// An internal inconsistency (layer shapes, input size).
fn invalid(message: impl Into<String>) -> ModelError {
    ModelError::Shape(message.into())
}

/// A 1x1 convolution as a linear layer over channels.
fn pointwise(conv: &Conv2d) -> Result<Linear> {
    let (out_ch, in_ch, k, _) = conv.geometry()?.weight_shape;
    if k != 1 {
        return Err(invalid(format!("expected a 1x1 convolution, got {k}x{k}")));
    }
    Ok(Linear::from_torch(
        &conv.host_weight()?,
        conv.host_bias()?,
        in_ch,
        out_ch,
    ))
}

fn depthwise(conv: &Conv2d) -> Result<DepthwiseConv3x3> {
    let g = conv.geometry()?;
    let ((out_ch, one, k, _), stride, padding, groups) =
        (g.weight_shape, g.stride, g.padding, g.groups);
    if one != 1 || k != 3 || padding != 1 || groups != out_ch {
        return Err(invalid("expected a depthwise 3x3 convolution"));
    }
    let bias = conv.host_bias()?.unwrap_or_else(|| vec![0.0; out_ch]);
    Ok(DepthwiseConv3x3::from_torch(
        &conv.host_weight()?,
        bias,
        stride,
    ))
}

/// `(out_ch, in_ch, stride)` of a dense 3x3 convolution with padding 1; an error otherwise.
fn dense3x3_shape(conv: &Conv2d) -> Result<(usize, usize, usize)> {
    let g = conv.geometry()?;
    let ((out_ch, in_ch, k, _), padding, groups) = (g.weight_shape, g.padding, g.groups);
    if k != 3 || padding != 1 || groups != 1 {
        return Err(invalid("expected a dense 3x3 convolution"));
    }
    Ok((out_ch, in_ch, g.stride))
}

/// The neck's 256 -> 256 stride-1 convolution in Winograd form.
fn winograd3x3(conv: &Conv2d) -> Result<Winograd3x3> {
    let (out_ch, in_ch, stride) = dense3x3_shape(conv)?;
    if stride != 1 {
        return Err(invalid("expected a dense 3x3 stride-1 convolution"));
    }
    if !Winograd3x3::supports(in_ch, out_ch) {
        return Err(invalid(format!(
            "neck convolution {in_ch} -> {out_ch} channels: expected multiples of 16"
        )));
    }
    Ok(Winograd3x3::from_torch(
        &conv.host_weight()?,
        conv.host_bias()?,
        in_ch,
        out_ch,
    ))
}

fn dense3x3(conv: &Conv2d) -> Result<Conv3x3> {
    let (out_ch, in_ch, stride) = dense3x3_shape(conv)?;
    Ok(Conv3x3::from_torch(
        &conv.host_weight()?,
        conv.host_bias()?,
        in_ch,
        out_ch,
        stride,
    ))
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

/// The encoder on the CPU kernels.
pub(super) struct TinyVitCpu {
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
    fn new(b: &MbConv) -> Result<Self> {
        Ok(Self {
            layers: InvertedResidual {
                expand: pointwise(&b.conv1)?,
                depthwise: depthwise(&b.conv2)?,
                project: pointwise(&b.conv3)?,
            },
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
    fn new(m: &PatchMerging, name: &'static str) -> Result<Self> {
        Ok(Self {
            name,
            layers: InvertedResidual {
                expand: pointwise(&m.conv1)?,
                depthwise: depthwise(&m.conv2)?,
                project: pointwise(&m.conv3)?,
            },
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
    fn new(b: &TinyVitBlock, names: &'static [&'static str; 6]) -> Result<Self> {
        let a = &b.attn;
        let attn_norm = a.norm.to_cpu()?;
        let qkv = a.qkv.to_cpu()?;
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
        let attention = WindowAttention {
            heads: a.heads,
            head_dim: a.key_dim,
            window: b.window,
            scale: a.scale as f32,
            bias: host_values(&a.bias)?,
            pad_qkv,
        };
        Ok(Self {
            names,
            attn_norm,
            qkv,
            attention,
            proj: a.proj.to_cpu()?,
            local: depthwise(&b.local_conv)?,
            mlp_norm: b.mlp.norm.to_cpu()?,
            fc1: b.mlp.fc1.to_cpu()?,
            fc2: b.mlp.fc2.to_cpu()?,
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
        step(n[3], || self.local.forward(&x1, side, side, &mut x2, false));
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

impl TinyVitCpu {
    /// Host copies of the tensor implementation's (folded) weights.
    pub(super) fn from_tensors(t: &TensorTinyVit) -> Result<Self> {
        let PatchEmbed { conv0, conv1 } = &t.patch_embed;
        let mut mbconvs = Vec::new();
        let mut merge0 = None;
        let mut stages = Vec::new();
        for stage in &t.stages {
            match stage {
                Stage::Conv { blocks, downsample } => {
                    for b in blocks {
                        mbconvs.push(MbConvCpu::new(b)?);
                    }
                    merge0 = Some(MergeCpu::new(downsample, "layers.0 downsample")?);
                }
                Stage::Attention {
                    blocks, downsample, ..
                } => {
                    let names = STEP_NAMES
                        .get(stages.len())
                        .ok_or_else(|| invalid("TinyViT has more than 4 stages"))?;
                    stages.push(StageCpu {
                        blocks: blocks
                            .iter()
                            .map(|b| BlockCpu::new(b, names))
                            .collect::<Result<_>>()?,
                        downsample: downsample
                            .as_ref()
                            .map(|d| MergeCpu::new(d, names[5]))
                            .transpose()?,
                    })
                }
            }
        }
        let merge0 = merge0.ok_or_else(|| invalid("TinyViT has no convolutional stage"))?;
        let Neck {
            conv0: n0,
            norm0,
            conv1: n1,
            norm1,
        } = &t.neck;
        Ok(Self {
            patch0: dense3x3(conv0)?,
            patch1: dense3x3(conv1)?,
            mbconvs,
            merge0,
            stages,
            neck_conv0: pointwise(n0)?,
            neck_norm0: norm0.to_cpu()?,
            neck_conv1: winograd3x3(n1)?,
            neck_norm1: norm1.to_cpu()?,
            pools: PoolCache::default(),
        })
    }

    /// The activation buffers kept between calls.
    pub(super) fn buffers(&self) -> &PoolCache {
        &self.pools
    }

    /// Encodes `(B, 3, 1024, 1024)` images, returning `(B, 256, 64, 64)` on their device;
    /// `observe` gets the stage outputs as [`TinyVit::forward_stages`] documents.
    ///
    /// [`TinyVit::forward_stages`]: super::TinyVit::forward_stages
    pub(super) fn forward_tensor(
        &self,
        x: &Tensor,
        mut observe: Option<TensorObserver>,
    ) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        if (c, h, w) != (3, INPUT_SIDE, INPUT_SIDE) {
            return Err(invalid(format!(
                "encoder input must be (B, 3, {INPUT_SIDE}, {INPUT_SIDE}), got {:?}",
                x.dims()
            )));
        }
        let device = x.device().clone();
        let mut outputs = Vec::with_capacity(b);
        for i in 0..b {
            let pixels = host_values(&x.get(i)?)?;
            let mut error = None;
            let out = match observe.as_mut() {
                Some(f) => {
                    let mut forward = |name: &str, v: &[f32], (h, w, c): (usize, usize, usize)| {
                        let t = Tensor::from_slice(v, (1, h * w, c), &device).and_then(|t| {
                            if name == "patch_embed" {
                                t.reshape((1, h, w, c))?.permute((0, 3, 1, 2))?.contiguous()
                            } else {
                                Ok(t)
                            }
                        });
                        match t {
                            Ok(t) => f(name, &t),
                            Err(e) => error = Some(e),
                        }
                    };
                    self.forward(&pixels, Some(&mut forward))?
                }
                None => self.forward(&pixels, None)?,
            };
            if let Some(e) = error {
                return Err(e.into());
            }
            outputs.push(Tensor::from_vec(
                out,
                (1, EMBED_CHANNELS, EMBED_SIDE, EMBED_SIDE),
                &device,
            )?);
        }
        Ok(Tensor::cat(&outputs, 0)?)
    }

    /// One image, `3 * 1024 * 1024` channel-planar values -> the embedding, `256 * 64 *
    /// 64` values channel-planar.
    pub(super) fn forward(&self, pixels: &[f32], observe: Option<Observer>) -> Result<Vec<f32>> {
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
            self.patch0.forward(&input, side, side, &mut p0, true)
        });
        pool.give(input);
        side = s0;
        let (s1, _) = self.patch1.out_size(side, side);
        let mut x = pool.take(s1 * s1 * self.patch1.out_channels());
        step("patch_embed conv1", || {
            self.patch1.forward(&p0, side, side, &mut x, false)
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
            self.neck_conv1.forward(&n0, side, side, &mut n1, false)
        });
        pool.give(n0);
        step("neck norms", || self.neck_norm1.rows_inplace(&mut n1));
        let channels = self.neck_conv1.out_channels();
        let mut out = vec![0.0; n1.len()];
        step("layout", || interleaved_to_planar(&n1, &mut out, channels));
        pool.give(n1);
        out
    }
}

/// Pixels per task of [`planar_to_interleaved`].
const LAYOUT_BLOCK_PIXELS: usize = 1 << 15;

/// Channel planes -> channels-last pixels.
fn planar_to_interleaved(src: &[f32], dst: &mut [f32], channels: usize) {
    let plane = src.len() / channels;
    let block = LAYOUT_BLOCK_PIXELS;
    dst.par_chunks_mut(block * channels)
        .enumerate()
        .for_each(|(b, pixels)| {
            crate::yield_point::reached();
            for (i, px) in pixels.chunks_exact_mut(channels).enumerate() {
                let p = b * block + i;
                for (c, v) in px.iter_mut().enumerate() {
                    *v = src[c * plane + p];
                }
            }
        });
}

/// Channels-last pixels -> channel planes.
fn interleaved_to_planar(src: &[f32], dst: &mut [f32], channels: usize) {
    let plane = src.len() / channels;
    // A task per group of 16 planes reads one 64-byte run of each pixel's channels.
    let group = 16.min(channels.max(1));
    dst.par_chunks_mut(group * plane)
        .enumerate()
        .for_each(|(g, planes)| {
            crate::yield_point::reached();
            let c0 = g * group;
            for (p, px) in src.chunks_exact(channels).enumerate() {
                for (c, v) in px[c0..].iter().take(planes.len() / plane).enumerate() {
                    planes[c * plane + p] = *v;
                }
            }
        });
}
