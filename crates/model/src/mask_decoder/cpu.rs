//! The mask decoder on the CPU kernels: the two-way transformer of
//! [`crate::transformer::cpu`], then the 4x upscaling (two 2x2 transposed convolutions with
//! LayerNorm and GELU) fused with the hypernetwork products, one embedding row per task, so
//! that the 256x256x32 upscaled features never exist as a whole; only the masks that will be
//! returned are formed.

use std::sync::{Arc, Mutex, OnceLock};

use candle_core::{Tensor, TensorId};
use rayon::prelude::*;

use super::{MaskDecoder, Mlp, NUM_MASK_TOKENS};
use crate::cpu::buffers::{with_scratch, BufferPool, PoolCache};
use crate::cpu::gelu::gelu_slice;
use crate::cpu::linear::{Fused, Linear};
use crate::cpu::matmul::{matmul, MatRef};
use crate::cpu::norm::LayerNormParams;
use crate::cpu::profile::step;
use crate::error::{ModelError, Result};
use crate::layers::host_values;
use crate::transformer::cpu::TwoWayTransformerCpu;

/// The dense prompt embedding added to the image embedding.
pub(crate) enum Dense<'a> {
    /// The learned "no mask" embedding, one value per channel.
    NoMask(&'a [f32]),
    /// A downscaled mask input, channel-planar like the image embedding.
    Planar(&'a [f32]),
}

/// Low-resolution logits (one `256 x 256` map per returned mask) and predicted IoUs.
pub(crate) type DecodedMasks = (Vec<Vec<f32>>, Vec<f32>);

/// The decoder's weights in the CPU kernels' layout.
pub(crate) struct MaskDecoderCpu {
    /// (1 + 4) x 256: the IoU token, then the mask tokens.
    output_tokens: Vec<f32>,
    transformer: TwoWayTransformerCpu,
    up0: Linear,
    up_norm: LayerNormParams,
    up1: Linear,
    hypernetworks: Vec<Vec<Linear>>,
    iou_head: Vec<Linear>,
    /// The dense positional encoding, token-major, made on first use.
    pe_tokens: OnceLock<Vec<f32>>,
    /// The token-major copy of the last image embedding decoded without a mask input,
    /// keyed by the tensor's id (ids are never reused, and embeddings are not modified in
    /// place), so that further prompts on the same image skip the transposition.
    last_tokens: Mutex<Option<(TensorId, Arc<Vec<f32>>)>>,
    /// The transformer's image-token buffers, kept between calls.
    pools: PoolCache,
}

fn mlp(m: &Mlp) -> Result<Vec<Linear>> {
    m.layers.iter().map(|l| l.to_cpu()).collect()
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

/// Channel planes (`channels x pixels`) -> pixel rows (`pixels x channels`), plus the
/// dense embedding when given.
fn to_tokens(planar: &[f32], channels: usize, dense: Option<&Dense>) -> Vec<f32> {
    const PIXELS: usize = 64;
    let pixels = planar.len() / channels;
    let mut out = vec![0.0; planar.len()];
    out.par_chunks_mut(PIXELS * channels)
        .enumerate()
        .for_each(|(b, rows)| {
            let p0 = b * PIXELS;
            let count = rows.len() / channels;
            // Contiguous reads along each plane, writes within this block.
            for c in 0..channels {
                let src = &planar[c * pixels + p0..][..count];
                for (i, v) in src.iter().enumerate() {
                    rows[i * channels + c] = *v;
                }
                if let Some(Dense::Planar(d)) = dense {
                    for (i, v) in d[c * pixels + p0..][..count].iter().enumerate() {
                        rows[i * channels + c] += v;
                    }
                }
            }
            if let Some(Dense::NoMask(e)) = dense {
                for row in rows.chunks_exact_mut(channels) {
                    for (v, x) in row.iter_mut().zip(e.iter()) {
                        *v += x;
                    }
                }
            }
        });
    out
}

impl MaskDecoderCpu {
    /// Host copies of `d`'s weights.
    pub(crate) fn new(d: &MaskDecoder) -> Result<Self> {
        let mut output_tokens = host_values(&d.iou_token)?;
        output_tokens.extend(host_values(&d.mask_tokens)?);
        Ok(Self {
            output_tokens,
            transformer: TwoWayTransformerCpu::new(&d.transformer)?,
            up0: d.upscale_conv0.to_cpu_linear()?,
            up_norm: d.upscale_norm.to_cpu()?,
            up1: d.upscale_conv1.to_cpu_linear()?,
            hypernetworks: d.hypernetworks.iter().map(mlp).collect::<Result<_>>()?,
            iou_head: mlp(&d.iou_head)?,
            pe_tokens: OnceLock::new(),
            last_tokens: Mutex::new(None),
            pools: PoolCache::default(),
        })
    }

    /// Decodes one object: `image` (1, 256, 64, 64), `image_pe` (1, 256, 64, 64), `sparse`
    /// prompt tokens (n x 256 values), `dense`. Returns the three multimask outputs or the
    /// single-mask output. With `extent` = (rows, columns), only that top-left part of
    /// each 256 x 256 logit map is computed (whole embedding pixels of it; the rest is 0).
    pub(crate) fn forward(
        &self,
        image: &Tensor,
        image_pe: &Tensor,
        sparse: &[f32],
        dense: Dense,
        multimask: bool,
        extent: Option<(usize, usize)>,
    ) -> Result<DecodedMasks> {
        let (_, channels, h, w) = image.dims4()?;
        if channels != self.up_norm.dim() * 4 || h * 4 != 256 || w * 4 != 256 {
            return Err(ModelError::Shape(format!(
                "mask decoder: image embedding {:?}",
                image.dims()
            )));
        }
        let pe = match self.pe_tokens.get() {
            Some(pe) => pe,
            None => {
                let pe = to_tokens(&host_values(image_pe)?, channels, None);
                self.pe_tokens.get_or_init(|| pe)
            }
        };
        let mut pool = self.pools.checkout();
        let keys = step("decoder prepare", || {
            self.image_tokens(image, &dense, &mut pool)
        })?;
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

    /// The image embedding token-major (`64 * 64` rows of 256), dense embedding added, in
    /// a buffer from `pool`.
    fn image_tokens(
        &self,
        image: &Tensor,
        dense: &Dense,
        pool: &mut BufferPool,
    ) -> Result<Vec<f32>> {
        let channels = self.up0.in_dim;
        let planar = |image: &Tensor, dense: Option<&Dense>| -> Result<Vec<f32>> {
            let (storage, layout) = image.storage_and_layout();
            match (&*storage, layout.contiguous_offsets()) {
                (candle_core::Storage::Cpu(cpu), Some((start, end))) => Ok(to_tokens(
                    &cpu.as_slice::<f32>()?[start..end],
                    channels,
                    dense,
                )),
                _ => Ok(to_tokens(&host_values(image)?, channels, dense)),
            }
        };
        let Dense::NoMask(no_mask) = dense else {
            return planar(image, Some(dense));
        };
        let cached = self.last_tokens.lock().ok().and_then(|last| {
            last.as_ref()
                .filter(|(id, _)| *id == image.id())
                .map(|(_, t)| t.clone())
        });
        let tokens = match cached {
            Some(t) => t,
            None => {
                let t = Arc::new(planar(image, None)?);
                if let Ok(mut last) = self.last_tokens.lock() {
                    *last = Some((image.id(), t.clone()));
                }
                t
            }
        };
        let mut keys = pool.take(tokens.len());
        keys.par_chunks_mut(64 * channels)
            .zip(tokens.par_chunks(64 * channels))
            .for_each(|(dst, src)| {
                for (d, s) in dst
                    .chunks_exact_mut(channels)
                    .zip(src.chunks_exact(channels))
                {
                    for ((d, s), e) in d.iter_mut().zip(s).zip(no_mask.iter()) {
                        *d = s + e;
                    }
                }
            });
        Ok(keys)
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
