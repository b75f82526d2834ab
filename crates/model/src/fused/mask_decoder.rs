//! The mask decoder on the CPU kernels: the fused two-way transformer, then the 4x upscaling (two 2x2 transposed convolutions with
//! LayerNorm and GELU) fused with the hypernetwork products, one embedding row per task, so
//! that the 256x256x32 upscaled features never exist as a whole; only the masks that will be
//! returned are formed.

use rayon::prelude::*;

use super::transformer::TwoWayTransformerCpu;
use super::{layer_norm, linear};
use crate::architecture::{DECODER_DIM as DIM, EMBED_SIDE, IOU_HIDDEN, NUM_MASK_TOKENS};
use crate::error::{ModelError, Result};
use crate::weights::Weights;
use mobilesam_kernels::buffers::{with_scratch, BufferPool, PoolCache};
use mobilesam_kernels::gelu::gelu_slice;
use mobilesam_kernels::layout::to_channels_last;
use mobilesam_kernels::linear::{Fused, Linear};
use mobilesam_kernels::matmul::{matmul, MatRef};
use mobilesam_kernels::norm::LayerNormParams;
use mobilesam_kernels::profile::step;

/// The dense prompt embedding added to the image embedding.
pub enum Dense<'a> {
    /// The learned "no mask" embedding, one value per channel.
    NoMask(&'a [f32]),
    /// A downscaled mask input, channel-planar like the image embedding.
    Planar(&'a [f32]),
}

/// Low-resolution logits (one `256 x 256` map per returned mask) and predicted IoUs.
pub type DecodedMasks = (Vec<Vec<f32>>, Vec<f32>);

/// SAM's mask decoder on the fused CPU kernels.
pub struct MaskDecoder {
    /// (1 + 4) x 256: the IoU token, then the mask tokens.
    output_tokens: Vec<f32>,
    transformer: TwoWayTransformerCpu,
    up0: Linear,
    up_norm: LayerNormParams,
    up1: Linear,
    hypernetworks: Vec<Vec<Linear>>,
    iou_head: Vec<Linear>,
    /// The prompt encoder's dense positional encoding, token-major.
    pe_tokens: Vec<f32>,
    /// The transformer's image-token buffers, kept between calls.
    pools: PoolCache,
}

/// `layers.0` ... : linear layers of widths `dims` (ReLU between them).
fn mlp(w: &Weights, dims: &[usize]) -> Result<Vec<Linear>> {
    dims.windows(2)
        .enumerate()
        .map(|(i, d)| linear(&w.pp("layers").pp(i), d[0], d[1]))
        .collect()
}

/// A kernel-equals-stride transposed convolution (`weight` (in, out, k, k), `bias`) as a
/// linear map from each input pixel's channels to its `k x k` output pixels, columns
/// ordered `(dy * k + dx) * out + co`, with the bias repeated per output pixel.
fn upsampling(w: &Weights, in_ch: usize, out_ch: usize, k: usize) -> Result<Linear> {
    let weights = w.values("weight", &[in_ch, out_ch, k, k])?;
    let b = w.values("bias", &[out_ch])?;
    let cols = k * k * out_ch;
    let mut weight = vec![0.0; in_ch * cols];
    for ci in 0..in_ch {
        for co in 0..out_ch {
            for pos in 0..k * k {
                weight[ci * cols + pos * out_ch + co] = weights[(ci * out_ch + co) * k * k + pos];
            }
        }
    }
    let bias = (0..k * k).flat_map(|_| b.iter().copied()).collect();
    Ok(Linear {
        weight,
        bias: Some(bias),
        in_dim: in_ch,
        out_dim: cols,
    })
}

/// Linear layers with ReLU between them, on one row.
fn run_mlp(layers: &[Linear], x: &[f32]) -> Vec<f32> {
    let mut x = x.to_vec();
    for (i, layer) in layers.iter().enumerate() {
        let mut y = vec![0.0; layer.out_dim];
        layer.forward(&x, &mut y, Fused::default());
        if i + 1 < layers.len() {
            for v in y.iter_mut() {
                *v = v.max(0.0);
            }
        }
        x = y;
    }
    x
}

impl MaskDecoder {
    /// Loads `mask_decoder.*` host weights; `dense_pe` is the prompt encoder's positional
    /// encoding of the embedding grid, channel-planar (256 x 64 x 64).
    pub fn load(w: &Weights, dense_pe: &[f32]) -> Result<Self> {
        let mut output_tokens = w.values("iou_token.weight", &[1, DIM])?;
        output_tokens.extend(w.values("mask_tokens.weight", &[NUM_MASK_TOKENS, DIM])?);
        if dense_pe.len() != DIM * EMBED_SIDE * EMBED_SIDE {
            return Err(ModelError::Shape(format!(
                "dense positional encoding of {} values",
                dense_pe.len()
            )));
        }
        let pe_tokens = to_channels_last(dense_pe, DIM);
        let up = w.pp("output_upscaling");
        Ok(Self {
            output_tokens,
            transformer: TwoWayTransformerCpu::load(&w.pp("transformer"), DIM)?,
            up0: upsampling(&up.pp(0), DIM, DIM / 4, 2)?,
            up_norm: layer_norm(&up.pp(1), DIM / 4, 1e-6)?,
            up1: upsampling(&up.pp(3), DIM / 4, DIM / 8, 2)?,
            hypernetworks: (0..NUM_MASK_TOKENS)
                .map(|i| {
                    let dims = [DIM, DIM, DIM, DIM / 8];
                    mlp(&w.pp("output_hypernetworks_mlps").pp(i), &dims)
                })
                .collect::<Result<_>>()?,
            iou_head: mlp(
                &w.pp("iou_prediction_head"),
                &[DIM, IOU_HIDDEN, IOU_HIDDEN, NUM_MASK_TOKENS],
            )?,
            pe_tokens,
            pools: PoolCache::default(),
        })
    }

    /// Decodes one object: `image` the embedding channels-last (`64 * 64` rows of 256),
    /// `sparse` prompt tokens (n x 256 values), `dense`. Returns the three multimask
    /// outputs or the single-mask output. With `extent` = (rows, columns), only that
    /// top-left part of each 256 x 256 logit map is computed (whole embedding pixels of it;
    /// the rest is 0).
    pub fn forward(
        &self,
        image: &[f32],
        sparse: &[f32],
        dense: Dense,
        multimask: bool,
        extent: Option<(usize, usize)>,
    ) -> Result<DecodedMasks> {
        let channels = DIM;
        let (h, w) = (EMBED_SIDE, EMBED_SIDE);
        if image.len() != h * w * channels || !sparse.len().is_multiple_of(channels) {
            return Err(ModelError::Shape(format!(
                "mask decoder: image embedding of {} values, {} sparse values",
                image.len(),
                sparse.len()
            )));
        }
        let dense_len = match dense {
            Dense::NoMask(values) => values.len() * h * w,
            Dense::Planar(values) => values.len(),
        };
        if dense_len != image.len() {
            return Err(ModelError::Shape(format!(
                "mask decoder: dense embedding of {dense_len} values"
            )));
        }
        let pe = &self.pe_tokens;
        let mut pool = self.pools.checkout();
        let keys = step("decoder prepare", || {
            self.image_tokens(image, &dense, &mut pool)
        });
        let mut tokens = self.output_tokens.clone();
        tokens.extend_from_slice(sparse);
        let spare = pool.take(keys.len());
        let (hs, keys, spare) = step("decoder transformer", || {
            self.transformer.forward(keys, spare, pe, &tokens)
        });
        let row = |i: usize| &hs[i * channels..(i + 1) * channels];
        let iou = run_mlp(&self.iou_head, row(0));
        let chosen: Vec<usize> = if multimask {
            (1..NUM_MASK_TOKENS).collect()
        } else {
            vec![0]
        };
        let hyper: Vec<f32> = chosen
            .iter()
            .flat_map(|&i| run_mlp(&self.hypernetworks[i], row(1 + i)))
            .collect();
        // Embedding pixels whose 4 x 4 low-resolution cells are needed.
        let (rows, cols) = extent.map_or((h, w), |(r, c)| {
            (r.div_ceil(4).clamp(1, h), c.div_ceil(4).clamp(1, w))
        });
        let masks = step("decoder upscale", || {
            self.upscale_masks(&keys, w, (rows, cols), &hyper, chosen.len())
        });
        pool.give(keys);
        pool.give(spare);
        self.pools.checkin(pool);
        Ok((masks, chosen.iter().map(|&i| iou[i]).collect()))
    }

    /// The image tokens with the dense embedding added, in a buffer from `pool`.
    fn image_tokens(&self, image: &[f32], dense: &Dense, pool: &mut BufferPool) -> Vec<f32> {
        const PIXELS: usize = 64;
        let channels = DIM;
        let pixels = image.len() / channels;
        let mut keys = pool.take(image.len());
        keys.par_chunks_mut(PIXELS * channels)
            .zip(image.par_chunks(PIXELS * channels))
            .enumerate()
            .for_each(|(b, (dst, src))| match dense {
                Dense::NoMask(no_mask) => {
                    for (d, s) in dst
                        .chunks_exact_mut(channels)
                        .zip(src.chunks_exact(channels))
                    {
                        for ((d, s), e) in d.iter_mut().zip(s).zip(no_mask.iter()) {
                            *d = s + e;
                        }
                    }
                }
                Dense::Planar(planes) => {
                    dst.copy_from_slice(src);
                    let (p0, count) = (b * PIXELS, dst.len() / channels);
                    // Contiguous reads along each plane, writes within this block.
                    for c in 0..channels {
                        for (i, v) in planes[c * pixels + p0..][..count].iter().enumerate() {
                            dst[i * channels + c] += v;
                        }
                    }
                }
            });
        keys
    }

    /// Upscales the image tokens (side x side x 256) 4x and takes each hypernetwork
    /// vector's product with every upscaled pixel: `count` maps of (4 side)^2 logits, of
    /// which only the embedding pixels in the top-left (rows, columns) `extent` are
    /// computed (the rest stays 0).
    fn upscale_masks(
        &self,
        keys: &[f32],
        side: usize,
        (rows, cols): (usize, usize),
        hyper: &[f32],
        count: usize,
    ) -> Vec<Vec<f32>> {
        let (c_in, mid) = (self.up0.in_dim, self.up_norm.dim());
        let c_out = self.up1.out_dim / 4;
        let out_side = side * 4;
        // Rows (4y..4y+4) of every mask, masks side by side: (out_side, count, out_side).
        let mut interleaved = vec![0.0; out_side * count * out_side];
        interleaved
            .par_chunks_mut(4 * count * out_side)
            .enumerate()
            .take(rows)
            .for_each(|(y, band)| {
                let src = &keys[y * side * c_in..][..cols * c_in];
                // y0: cols pixels x (2x2 x mid); y1: (cols * 4) x (2x2 x c_out);
                // logits: (cols * 16) x count.
                let (n0, n1, n2) = (cols * 4 * mid, cols * 16 * c_out, cols * 16 * count);
                with_scratch(n0 + n1 + n2, |scratch| {
                    let (y0, rest) = scratch.split_at_mut(n0);
                    let (y1, logits) = rest.split_at_mut(n1);
                    self.up0.forward_serial(src, y0, Fused::default());
                    self.up_norm.rows_inplace(y0);
                    gelu_slice(y0);
                    self.up1.forward_serial(
                        y0,
                        y1,
                        Fused {
                            gelu: true,
                            ..Fused::default()
                        },
                    );
                    matmul(
                        MatRef::rows(y1, cols * 16, c_out, c_out),
                        MatRef::transposed(hyper, c_out, count, c_out),
                        logits,
                        count,
                        false,
                    );
                    // logits row ((x * 4 + d) * 4 + e): d = 2 dy + dx, e = 2 ey + ex, at
                    // output row 2 dy + ey of the band, column 4 x + 2 dx + ex.
                    for x in 0..cols {
                        for d in 0..4 {
                            for e in 0..4 {
                                let r = 2 * (d / 2) + e / 2;
                                let col = 4 * x + 2 * (d % 2) + e % 2;
                                let src = &logits[((x * 4 + d) * 4 + e) * count..][..count];
                                for (m, v) in src.iter().enumerate() {
                                    band[(r * count + m) * out_side + col] = *v;
                                }
                            }
                        }
                    }
                });
            });
        (0..count)
            .map(|m| {
                interleaved
                    .chunks_exact(out_side)
                    .skip(m)
                    .step_by(count)
                    .flatten()
                    .copied()
                    .collect()
            })
            .collect()
    }
}
