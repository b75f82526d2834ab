//! The mask decoder on the CPU kernels: the fused two-way transformer, then the 4x upscaling (two 2x2 transposed convolutions with
//! LayerNorm and GELU) fused with the hypernetwork products, one embedding row per task, so
//! that the 256x256x32 upscaled features never exist as a whole; only the masks that will be
//! returned are formed. SAM 2's decoder ([`Sam2Head`]) adds the object-score token and head,
//! the high-resolution features inside the upscaling, a sigmoid on the IoU and the
//! stability-based single mask.

use rayon::prelude::*;

use super::transformer::TwoWayTransformerCpu;
use super::{layer_norm, linear};
use crate::architecture::{DECODER_DIM as DIM, EMBED_SIDE, IOU_HIDDEN, NUM_MASK_TOKENS};
use crate::error::{ModelError, Result};
use crate::single_mask::dynamic_single_mask;
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

/// What the decoder returns for one object.
#[derive(Debug, Clone)]
pub struct DecodedMasks {
    /// One `256 x 256` low-resolution logit map per returned mask.
    pub masks: Vec<Vec<f32>>,
    /// Predicted IoU per returned mask.
    pub scores: Vec<f32>,
    /// SAM 2: the object-score logit.
    pub object_score: Option<f32>,
}

/// SAM 2's high-resolution features on the host, channels-last: `s0` 256 x 256 x 32 and
/// `s1` 128 x 128 x 64 (after `conv_s0` / `conv_s1`).
pub struct HighRes<'a> {
    /// The 256x256 level.
    pub s0: &'a [f32],
    /// The 128x128 level.
    pub s1: &'a [f32],
}

/// SAM 2's object-score head (its token is the first output token).
struct Sam2Head {
    obj_score_head: Vec<Linear>,
}

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
    sam2: Option<Sam2Head>,
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
    /// Loads `mask_decoder.*` (SAM 2: `sam_mask_decoder.*`, `sam2` true) host weights;
    /// `dense_pe` is the prompt encoder's positional encoding of the embedding grid,
    /// channel-planar (256 x 64 x 64).
    pub fn load(w: &Weights, dense_pe: &[f32], sam2: bool) -> Result<Self> {
        let mut output_tokens = if sam2 {
            w.values("obj_score_token.weight", &[1, DIM])?
        } else {
            Vec::new()
        };
        output_tokens.extend(w.values("iou_token.weight", &[1, DIM])?);
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
            sam2: sam2
                .then(|| -> Result<Sam2Head> {
                    Ok(Sam2Head {
                        obj_score_head: mlp(&w.pp("pred_obj_score_head"), &[DIM, DIM, DIM, 1])?,
                    })
                })
                .transpose()?,
            pe_tokens,
            pools: PoolCache::default(),
        })
    }

    /// Decodes one object: `image` the embedding channels-last (`64 * 64` rows of 256),
    /// `sparse` prompt tokens (n x 256 values), `dense`, and for SAM 2 the image's
    /// `high_res` features. Returns the three multimask outputs or the single-mask output.
    /// With `extent` = (rows, columns), only that top-left part of each 256 x 256 logit
    /// map is computed (whole embedding pixels of it; the rest is 0).
    pub fn forward(
        &self,
        image: &[f32],
        sparse: &[f32],
        dense: Dense,
        high_res: Option<&HighRes>,
        multimask: bool,
        extent: Option<(usize, usize)>,
    ) -> Result<DecodedMasks> {
        let (c1, c0) = (self.up_norm.dim(), self.up1.out_dim / 4);
        let high_res = match (&self.sam2, high_res) {
            (Some(_), Some(h)) => {
                let [side0, side1] = crate::embedding::HIGH_RES_SIDES;
                if h.s0.len() != side0 * side0 * c0 || h.s1.len() != side1 * side1 * c1 {
                    return Err(ModelError::Shape(format!(
                        "mask decoder: high-resolution features of {} and {} values",
                        h.s0.len(),
                        h.s1.len()
                    )));
                }
                Some(h)
            }
            (None, None) => None,
            _ => {
                return Err(ModelError::Shape(
                    "mask decoder: SAM 2 needs the high-resolution features, SAM none".into(),
                ))
            }
        };
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
        // SAM 2's object-score token comes first and shifts the others by one.
        let first = usize::from(self.sam2.is_some());
        let mut iou = run_mlp(&self.iou_head, row(first));
        let object_score = self
            .sam2
            .as_ref()
            .map(|head| run_mlp(&head.obj_score_head, row(0))[0]);
        if self.sam2.is_some() {
            for v in &mut iou {
                *v = 1.0 / (1.0 + (-*v).exp());
            }
        }
        // SAM 2's single mask is chosen by stability: every mask is formed first.
        let dynamic = self.sam2.is_some() && !multimask;
        let chosen: Vec<usize> = if multimask {
            (1..NUM_MASK_TOKENS).collect()
        } else if dynamic {
            (0..NUM_MASK_TOKENS).collect()
        } else {
            vec![0]
        };
        let hyper: Vec<f32> = chosen
            .iter()
            .flat_map(|&i| run_mlp(&self.hypernetworks[i], row(first + 1 + i)))
            .collect();
        // Embedding pixels whose 4 x 4 low-resolution cells are needed.
        let (rows, cols) = extent.map_or((h, w), |(r, c)| {
            (r.div_ceil(4).clamp(1, h), c.div_ceil(4).clamp(1, w))
        });
        let masks = step("decoder upscale", || {
            self.upscale_masks(&keys, w, (rows, cols), &hyper, chosen.len(), high_res)
        });
        pool.give(keys);
        pool.give(spare);
        self.pools.checkin(pool);
        let mut scores: Vec<f32> = chosen.iter().map(|&i| iou[i]).collect();
        let mut masks = masks;
        if dynamic {
            let pick = dynamic_single_mask(&masks[0], &scores);
            masks = vec![masks.swap_remove(pick)];
            scores = vec![scores[pick]];
        }
        Ok(DecodedMasks {
            masks,
            scores,
            object_score,
        })
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
        high_res: Option<&HighRes>,
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
                let extra = if high_res.is_some() { n0 + n1 } else { 0 };
                with_scratch(n0 + n1 + n2 + extra, |scratch| {
                    let (y0, rest) = scratch.split_at_mut(n0);
                    let (y1, rest) = rest.split_at_mut(n1);
                    let (logits, rest) = rest.split_at_mut(n2);
                    // SAM 2: the high-resolution features at each output pixel, laid out as
                    // the two products' outputs, added before the LayerNorm and the GELU.
                    let (add0, add1) = match high_res {
                        Some(h) => {
                            let (a0, a1) = rest.split_at_mut(n0);
                            gather_s1(h.s1, y, cols, mid, a0);
                            gather_s0(h.s0, y, cols, c_out, a1);
                            (Some(&*a0), Some(&*a1))
                        }
                        None => (None, None),
                    };
                    self.up0.forward_serial(
                        src,
                        y0,
                        Fused {
                            residual: add0,
                            ..Fused::default()
                        },
                    );
                    self.up_norm.rows_inplace(y0);
                    gelu_slice(y0);
                    self.up1.forward_serial(
                        y0,
                        y1,
                        Fused {
                            residual: add1,
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

/// SAM 2's 128x128 level (channels-last, `mid` channels) for embedding row `y`, pixels
/// `0..cols`, in the first product's output layout: pixel x, sub-pixel `dy * 2 + dx`,
/// channel; the sub-pixel sits at (2y + dy, 2x + dx).
fn gather_s1(s1: &[f32], y: usize, cols: usize, mid: usize, out: &mut [f32]) {
    let side = crate::embedding::HIGH_RES_SIDES[1];
    for x in 0..cols {
        for d in 0..4 {
            let (r, c) = (2 * y + d / 2, 2 * x + d % 2);
            out[(x * 4 + d) * mid..][..mid].copy_from_slice(&s1[(r * side + c) * mid..][..mid]);
        }
    }
}

/// SAM 2's 256x256 level (channels-last, `c_out` channels) for embedding row `y` in the
/// second product's output layout: row `x * 4 + d` (the first sub-pixel), sub-pixel
/// `e = ey * 2 + ex`, channel; the pixel sits at (4y + 2dy + ey, 4x + 2dx + ex).
fn gather_s0(s0: &[f32], y: usize, cols: usize, c_out: usize, out: &mut [f32]) {
    let side = crate::embedding::HIGH_RES_SIDES[0];
    for x in 0..cols {
        for d in 0..4 {
            for e in 0..4 {
                let r = 4 * y + 2 * (d / 2) + e / 2;
                let c = 4 * x + 2 * (d % 2) + e % 2;
                out[((x * 4 + d) * 4 + e) * c_out..][..c_out]
                    .copy_from_slice(&s0[(r * side + c) * c_out..][..c_out]);
            }
        }
    }
}
