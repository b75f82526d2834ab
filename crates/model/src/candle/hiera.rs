//! SAM 2.1's image encoder (sam2 1.1.0 `ImageEncoder`): the Hiera trunk (7x7 stride-4 patch
//! embedding, a bicubic-resized background position embedding plus a tiled window
//! embedding, four stages of mask-unit windowed or global attention, 2x2 max-pooling of the
//! queries where a stage begins) and the FPN neck (1x1 lateral convolutions, a top-down
//! path into the 64x64 level only, the 32x32 level dropped). [`Sam2Encoder`] adds what
//! `SAM2Base.forward_image` and `SAM2ImagePredictor.set_image` do next: the decoder's
//! `conv_s0`/`conv_s1` on the two high-resolution levels and `no_mem_embed` on the image
//! embedding.

use candle_core::{Device, Module, Tensor, D};

use super::layers::{gelu, linear, Conv2d, LayerNorm, Linear};
use super::vit::{window_partition, window_unpartition};
use crate::error::Result;
use crate::hiera_config::HieraConfig;
use crate::weights::Weights;

/// LayerNorm epsilon of the blocks.
const LN_EPS: f32 = 1e-6;
/// Side of the patch grid of a 1024x1024 input (stride 4).
const GRID: usize = 256;
/// Most attention logits computed at once (4 M values, 16 MB).
const QUERY_BLOCK_VALUES: usize = 1 << 22;

/// 2x2 max pooling, stride 2, of a (B, H, W, C) grid (H and W even).
fn max_pool2(x: &Tensor) -> Result<Tensor> {
    let (b, h, w, c) = x.dims4()?;
    Ok(x.reshape((b, h / 2, 2, w / 2, 2, c))?
        .max(4)?
        .max(2)?
        .contiguous()?)
}

/// Multi-head attention over a (B, H, W, C) grid, its queries optionally max-pooled 2x2.
struct Attention {
    qkv: Linear,
    proj: Linear,
    heads: usize,
    q_pool: bool,
}

impl Attention {
    /// `x` (B, H, W, C_in) -> (B, H', W', C_out), H' = H / 2 with query pooling.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, h, w, _) = x.dims4()?;
        let qkv = self.qkv.forward(x)?;
        let c = qkv.dim(D::Minus1)? / 3;
        let hd = c / self.heads;
        let part = |i: usize| qkv.narrow(D::Minus1, i * c, c);
        let (mut q, mut qh, mut qw) = (part(0)?, h, w);
        if self.q_pool {
            q = max_pool2(&q)?;
            (qh, qw) = (h / 2, w / 2);
        }
        let heads = |t: &Tensor, n: usize| -> Result<Tensor> {
            Ok(t.reshape((b, n, self.heads, hd))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let q = heads(&q, qh * qw)?;
        let k = heads(&part(1)?, h * w)?;
        let v = heads(&part(2)?, h * w)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let q = (q * scale)?;
        let kt = k.t()?;
        // Global attention over a large grid runs in blocks of query rows, so that the
        // logits of one block (heads x rows x keys) stay small enough to be reused by the
        // allocator instead of mapped afresh for every block.
        let rows = qh * qw;
        let block = (QUERY_BLOCK_VALUES / (b * self.heads * (h * w)).max(1)).clamp(1, rows);
        let mut outs = Vec::with_capacity(rows.div_ceil(block));
        for start in (0..rows).step_by(block) {
            let len = block.min(rows - start);
            let logits = q.narrow(2, start, len)?.matmul(&kt)?;
            let attn = candle_nn::ops::softmax_last_dim(&logits)?;
            outs.push(attn.matmul(&v)?);
        }
        let out = Tensor::cat(&outs, 2)?
            .transpose(1, 2)?
            .reshape((b, qh, qw, c))?;
        Ok(self.proj.forward(&out)?)
    }
}

/// `MultiScaleBlock`: pre-norm attention (windowed or global) and a GELU MLP; the first
/// block of stages 2-4 doubles the width (`proj` on the shortcut) and pools the queries.
struct Block {
    norm1: LayerNorm,
    attn: Attention,
    norm2: LayerNorm,
    mlp0: Linear,
    mlp1: Linear,
    /// Shortcut projection where the width changes.
    proj: Option<Linear>,
    /// Window side; 0 for global attention.
    window: usize,
}

impl Block {
    /// `x` (B, H, W, C_in) -> (B, H', W', C_out).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, h, w, _) = x.dims4()?;
        let normed = self.norm1.forward(x)?;
        let mut shortcut = x.clone();
        if let Some(proj) = &self.proj {
            shortcut = proj.forward(&normed)?;
            if self.attn.q_pool {
                shortcut = max_pool2(&shortcut)?;
            }
        }
        let y = if self.window > 0 {
            let (windows, _) = window_partition(&normed, self.window)?;
            let out = self.attn.forward(&windows)?;
            let (b, sh, sw, c) = shortcut.dims4()?;
            // Pooled windows are half as wide and tile the pooled grid, padded to them.
            let window = if self.attn.q_pool {
                self.window / 2
            } else {
                self.window
            };
            let pad = |n: usize| n + (window - n % window) % window;
            debug_assert_eq!(
                (sh, sw),
                if self.attn.q_pool {
                    (h / 2, w / 2)
                } else {
                    (h, w)
                }
            );
            window_unpartition(&out, window, (pad(sh), pad(sw)), (b, sh, sw, c))?
        } else {
            self.attn.forward(&normed)?
        };
        let x = (shortcut + y)?;
        let mlp = self
            .mlp1
            .forward(&gelu(&self.mlp0.forward(&self.norm2.forward(&x)?)?)?)?;
        Ok((x + mlp)?)
    }
}

/// The Hiera trunk and the FPN neck.
pub struct Hiera {
    patch_embed: Conv2d,
    /// (1, 256, 256, C): the resized background embedding plus the tiled window embedding.
    pos_embed: Tensor,
    blocks: Vec<Block>,
    /// Index of the last block of each stage.
    stage_ends: Vec<usize>,
    /// Lateral 1x1 convolutions as (D, C_k) linear maps, `convs.0` on the last stage.
    lateral: Vec<Linear>,
}

impl Hiera {
    /// Loads `image_encoder.*` as `config` describes it.
    pub fn load(w: &Weights, config: &HieraConfig) -> Result<Self> {
        let trunk = w.pp("trunk");
        let c0 = config.width;
        let patch_embed = Conv2d::load(&trunk.pp("patch_embed.proj"), (3, c0, 7), 4, 3, true)?;
        let (ph, pw) = config.pos_embed_size;
        let background = trunk.values("pos_embed", &[1, c0, ph, pw])?;
        let w0 = config.window_spec[0];
        let window = trunk.values("pos_embed_window", &[1, c0, w0, w0])?;
        let pos_embed = position_embedding(&background, (ph, pw), &window, w0, c0, w.device())?;

        let mut blocks = Vec::with_capacity(config.depth());
        let mut stage_ends = Vec::new();
        let (mut dim, mut heads) = (c0, config.heads);
        for i in 0..config.depth() {
            let (stage, first) = config.stage_of(i);
            let b = trunk.pp("blocks").pp(i);
            // A stage's first block still uses the previous stage's window.
            let window_stage = if first && stage > 0 { stage - 1 } else { stage };
            let window = if config.global_blocks.contains(&i) {
                0
            } else {
                config.window_spec[window_stage]
            };
            let changes = first && stage > 0;
            let dim_out = if changes { dim * 2 } else { dim };
            if changes {
                heads *= 2;
            }
            let mlp = 4 * dim_out;
            blocks.push(Block {
                norm1: LayerNorm::load(&b.pp("norm1"), dim, LN_EPS)?,
                attn: Attention {
                    qkv: linear(&b.pp("attn.qkv"), dim, 3 * dim_out)?,
                    proj: linear(&b.pp("attn.proj"), dim_out, dim_out)?,
                    heads,
                    q_pool: changes,
                },
                norm2: LayerNorm::load(&b.pp("norm2"), dim_out, LN_EPS)?,
                mlp0: linear(&b.pp("mlp.layers.0"), dim_out, mlp)?,
                mlp1: linear(&b.pp("mlp.layers.1"), mlp, dim_out)?,
                proj: changes
                    .then(|| linear(&b.pp("proj"), dim, dim_out))
                    .transpose()?,
                window,
            });
            dim = dim_out;
            if config.stage_of(i + 1).1 || i + 1 == config.depth() {
                stage_ends.push(i);
            }
        }
        let d = config.neck_dim;
        let lateral = (0..4)
            .map(|k| {
                let cin = c0 << (3 - k);
                let conv = w.pp("neck.convs").pp(k).pp("conv");
                Ok(Linear::new(
                    conv.get("weight", &[d, cin, 1, 1])?.reshape((d, cin))?,
                    Some(conv.get("bias", &[d])?),
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            patch_embed,
            pos_embed,
            blocks,
            stage_ends,
            lateral,
        })
    }

    /// `x` (1, 3, 1024, 1024) -> the neck's three kept levels, channels-last:
    /// (1, 256, 256, D), (1, 128, 128, D), (1, 64, 64, D).
    pub fn forward_stages(
        &self,
        x: &Tensor,
        observe: &mut dyn FnMut(&str, &Tensor),
    ) -> Result<[Tensor; 3]> {
        let x = self.patch_embed.forward(x)?.permute((0, 2, 3, 1))?;
        let mut x = x.broadcast_add(&self.pos_embed)?.contiguous()?;
        observe("patch_embed", &x.permute((0, 3, 1, 2))?);
        let mut stages = Vec::with_capacity(4);
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(&x)?;
            if self.stage_ends.contains(&i) {
                observe(
                    &format!("stages.{}", stages.len()),
                    &x.permute((0, 3, 1, 2))?,
                );
                stages.push(x.clone());
            }
        }
        let [s0, s1, s2, s3] = <[Tensor; 4]>::try_from(stages).map_err(|s| {
            crate::error::ModelError::Shape(format!("Hiera gave {} stages, expected 4", s.len()))
        })?;
        let top = self.lateral[0].forward(&s3)?;
        let level2 = (self.lateral[1].forward(&s2)? + upsample_nearest2(&top)?)?;
        let level1 = self.lateral[2].forward(&s1)?;
        let level0 = self.lateral[3].forward(&s0)?;
        Ok([level0, level1, level2])
    }
}

/// Nearest-neighbour 2x upsampling of a (B, H, W, C) grid.
fn upsample_nearest2(x: &Tensor) -> Result<Tensor> {
    let (b, h, w, c) = x.dims4()?;
    Ok(x.reshape((b, h, 1, w, 1, c))?
        .broadcast_as((b, h, 2, w, 2, c))?
        .reshape((b, 2 * h, 2 * w, c))?)
}

/// `Hiera._get_pos_embed` for the 256x256 grid: the background embedding (C, h, w)
/// resized bicubically (`F.interpolate(mode="bicubic")`, align_corners False, A = -0.75,
/// edge samples clamped) plus the window embedding (C, s, s) tiled; (1, 256, 256, C).
fn position_embedding(
    background: &[f32],
    (bh, bw): (usize, usize),
    window: &[f32],
    side: usize,
    channels: usize,
    device: &Device,
) -> Result<Tensor> {
    let rows = cubic_taps(bh, GRID);
    let cols = cubic_taps(bw, GRID);
    let mut out = vec![0f32; GRID * GRID * channels];
    for c in 0..channels {
        let plane = &background[c * bh * bw..(c + 1) * bh * bw];
        let win = &window[c * side * side..(c + 1) * side * side];
        for (y, (ry, wy)) in rows.iter().enumerate() {
            for (x, (cx, wx)) in cols.iter().enumerate() {
                let mut value = 0f32;
                for (j, &row) in ry.iter().enumerate() {
                    let line = &plane[row * bw..(row + 1) * bw];
                    let mut across = 0f32;
                    for (i, &col) in cx.iter().enumerate() {
                        across += line[col] * wx[i];
                    }
                    value += across * wy[j];
                }
                out[(y * GRID + x) * channels + c] = value + win[(y % side) * side + x % side];
            }
        }
    }
    Ok(Tensor::from_vec(out, (1, GRID, GRID, channels), device)?)
}

/// For each of `output` samples resized from `input`: the four source indices (clamped)
/// and their cubic-convolution weights (A = -0.75), as PyTorch's bicubic computes them.
#[allow(clippy::type_complexity)]
fn cubic_taps(input: usize, output: usize) -> Vec<([usize; 4], [f32; 4])> {
    const A: f32 = -0.75;
    let near = |t: f32| ((A + 2.0) * t - (A + 3.0)) * t * t + 1.0;
    let far = |t: f32| ((A * t - 5.0 * A) * t + 8.0 * A) * t - 4.0 * A;
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|o| {
            let real = scale * (o as f32 + 0.5) - 0.5;
            let base = real.floor();
            let t = real - base;
            let weights = [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)];
            let clamp = |k: i64| k.clamp(0, input as i64 - 1) as usize;
            let b = base as i64;
            (
                [clamp(b - 1), clamp(b), clamp(b + 1), clamp(b + 2)],
                weights,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_pool_takes_each_quad_maximum() -> Result<()> {
        let x = Tensor::arange(0f32, 16.0, &Device::Cpu)?.reshape((1, 4, 4, 1))?;
        let pooled = max_pool2(&x)?.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(pooled, vec![5.0, 7.0, 13.0, 15.0]);
        Ok(())
    }

    #[test]
    fn cubic_weights_sum_to_one_and_resize_identity() {
        for (_, w) in cubic_taps(7, 256) {
            assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        // Same size: every sample lands on its source (t = 0: weights 0, 1, 0, 0).
        for (o, (idx, w)) in cubic_taps(5, 5).into_iter().enumerate() {
            assert_eq!(idx[1], o);
            assert_eq!(w, [0.0, 1.0, 0.0, 0.0]);
        }
    }

    #[test]
    fn nearest_upsampling_repeats_cells() -> Result<()> {
        let x = Tensor::arange(0f32, 4.0, &Device::Cpu)?.reshape((1, 2, 2, 1))?;
        let up = upsample_nearest2(&x)?.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(
            up,
            vec![0., 0., 1., 1., 0., 0., 1., 1., 2., 2., 3., 3., 2., 2., 3., 3.]
        );
        Ok(())
    }
}
