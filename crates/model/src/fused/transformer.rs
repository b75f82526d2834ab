//! The two-way transformer on the CPU kernels, with the attention products between the few
//! prompt tokens and the 4096 image tokens reassociated so that no 4096-row projection is
//! ever formed.
//!
//! With `n` tokens and 8 heads of width `d`, the reference projects all image tokens
//! (`4096 x 256 -> 4096 x 128`, three times per attention) before the small products.
//! Folding the projections into the token side instead gives products of width `8 n`
//! (56 for one point), e.g. for tokens attending to the image:
//! `q_h K_h^T = (q_h W_k,h^T) X^T + const` (the key bias is the same for every image token,
//! so softmax drops it) and `P_h V_h = (P_h X) W_v,h + b_v,h` (softmax rows sum to 1); for
//! the image attending to the tokens: `Q_h K_h^T = X (W_q,h K_h^T) + b_q,h K_h^T` and
//! `sum_h P_h V_h W_o,h = P [V_h W_o,h]_h`. The arithmetic is the same up to rounding order;
//! it is about `8 n / 128` of the reference's when `n` is small. Softmax over the image
//! tokens runs blockwise with running maxima (as in flash attention), so each block of
//! image rows is read once, in cache.

use rayon::prelude::*;

use super::{layer_norm, linear};
use crate::architecture::{
    CROSS_ATTENTION_DOWNSAMPLE, TRANSFORMER_DEPTH, TRANSFORMER_HEADS, TRANSFORMER_MLP_DIM,
};
use crate::error::Result;
use crate::weights::Weights;
use mobilesam_kernels::buffers::with_scratch;
use mobilesam_kernels::linear::{block_rows, Fused, Linear};
use mobilesam_kernels::math::{exp, exp_columns, grouped_softmax, scaled_softmax};
use mobilesam_kernels::matmul::{matmul, MatRef};
use mobilesam_kernels::norm::LayerNormParams;
use mobilesam_kernels::profile::step;

/// One attention layer's projections.
struct AttentionCpu {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: usize,
}

impl AttentionCpu {
    /// `q_proj`, `k_proj`, `v_proj`, `out_proj`, narrowed by `downsample` inside.
    fn load(w: &Weights, dim: usize, downsample: usize) -> Result<Self> {
        let internal = dim / downsample;
        Ok(Self {
            q: linear(&w.pp("q_proj"), dim, internal)?,
            k: linear(&w.pp("k_proj"), dim, internal)?,
            v: linear(&w.pp("v_proj"), dim, internal)?,
            out: linear(&w.pp("out_proj"), internal, dim)?,
            heads: TRANSFORMER_HEADS,
        })
    }

    fn internal(&self) -> usize {
        self.q.out_dim
    }

    fn head_dim(&self) -> usize {
        self.internal() / self.heads
    }

    fn scale(&self) -> f32 {
        1.0 / (self.head_dim() as f32).sqrt()
    }

    /// Plain attention among a few rows (the tokens' self-attention).
    fn small(&self, q_in: &[f32], k_in: &[f32], v_in: &[f32], out: &mut [f32]) {
        let (c, d, heads) = (self.internal(), self.head_dim(), self.heads);
        let (nq, nk) = (q_in.len() / self.q.in_dim, k_in.len() / self.k.in_dim);
        let mut q = vec![0.0; nq * c];
        let mut k = vec![0.0; nk * c];
        let mut v = vec![0.0; nk * c];
        self.q.forward(q_in, &mut q, Fused::default());
        self.k.forward(k_in, &mut k, Fused::default());
        self.v.forward(v_in, &mut v, Fused::default());
        let mut o = vec![0.0; nq * c];
        let mut s = vec![0.0; nq * nk];
        for h in 0..heads {
            let qh = MatRef::rows(&q[h * d..], nq, d, c);
            let kt = MatRef::transposed(&k[h * d..], d, nk, c);
            matmul(qh, kt, &mut s, nk, false);
            for row in s.chunks_exact_mut(nk) {
                scaled_softmax(row, self.scale(), None);
            }
            let vh = MatRef::rows(&v[h * d..], nk, d, c);
            matmul(MatRef::rows(&s, nq, nk, nk), vh, &mut o[h * d..], c, false);
        }
        self.out.forward(&o, out, Fused::default());
    }

    /// Tokens (`q_in`, n x 256) attend to image rows: keys `x + pe`, values `x` (L x 256).
    /// Returns n x 256.
    fn tokens_to_image(&self, q_in: &[f32], x: &[f32], pe: &[f32], out: &mut [f32]) {
        let (c, d, heads, width) = (self.internal(), self.head_dim(), self.heads, self.k.in_dim);
        let n = q_in.len() / self.q.in_dim;
        let hn = heads * n;
        let mut q = vec![0.0; n * c];
        self.q.forward(q_in, &mut q, Fused::default());
        // a[h n + i] = q_h[i] W_k,h^T (the key bias only shifts each score row).
        let mut a = vec![0.0; hn * width];
        for h in 0..heads {
            let qh = MatRef::rows(&q[h * d..], n, d, c);
            let wkt = MatRef::transposed(&self.k.weight[h * d..], d, width, c);
            matmul(qh, wkt, &mut a[h * n * width..], width, false);
        }
        let scale = self.scale();
        let rows = x.len() / width;
        let block = block_rows(rows).max(64);
        // Per block of image rows: running maxima, sums and (exp scores)^T x.
        let partials: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = (0..rows.div_ceil(block))
            .into_par_iter()
            .map(|b| {
                let r0 = b * block;
                let m = block.min(rows - r0);
                let xb = &x[r0 * width..(r0 + m) * width];
                let pb = &pe[r0 * width..(r0 + m) * width];
                with_scratch(m * width + m * hn, |scratch| {
                    let (keys, scores) = scratch.split_at_mut(m * width);
                    for ((k, xv), pv) in keys.iter_mut().zip(xb).zip(pb) {
                        *k = xv + pv;
                    }
                    // scores (m x hn) = keys a^T
                    matmul(
                        MatRef::rows(keys, m, width, width),
                        MatRef::transposed(&a, width, hn, width),
                        scores,
                        hn,
                        false,
                    );
                    let mut max = vec![0.0; hn];
                    let mut sum = vec![0.0; hn];
                    exp_columns(scores, hn, scale, &mut max, &mut sum);
                    let mut px = vec![0.0f32; hn * width];
                    matmul(
                        MatRef::transposed(scores, hn, m, hn),
                        MatRef::rows(xb, m, width, width),
                        &mut px,
                        width,
                        false,
                    );
                    (max, sum, px)
                })
            })
            .collect();
        // Combine the blocks: px = sum_b e^(m_b - m) px_b / sum_b e^(m_b - m) s_b.
        let mut max = vec![f32::NEG_INFINITY; hn];
        for (m, _, _) in &partials {
            for (g, v) in max.iter_mut().zip(m) {
                *g = g.max(*v);
            }
        }
        let mut px = vec![0.0f32; hn * width];
        let mut total = vec![0.0f32; hn];
        for (m, s, p) in &partials {
            for j in 0..hn {
                let f = exp(m[j] - max[j]);
                total[j] += f * s[j];
                for (dst, src) in px[j * width..(j + 1) * width]
                    .iter_mut()
                    .zip(&p[j * width..(j + 1) * width])
                {
                    *dst += f * src;
                }
            }
        }
        for (row, t) in px.chunks_exact_mut(width).zip(&total) {
            let inv = 1.0 / t;
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
        // o_h = px_h W_v,h + b_v,h, heads side by side; then the output projection.
        let mut o = vec![0.0; n * c];
        for h in 0..heads {
            let wv = MatRef::rows(&self.v.weight[h * d..], width, d, c);
            matmul(
                MatRef::rows(&px[h * n * width..], n, width, width),
                wv,
                &mut o[h * d..],
                c,
                false,
            );
        }
        if let Some(bv) = &self.v.bias {
            for row in o.chunks_exact_mut(c) {
                for (v, b) in row.iter_mut().zip(bv) {
                    *v += b;
                }
            }
        }
        self.out.forward(&o, out, Fused::default());
    }

    /// Image rows (queries `x + pe`, L x 256) attend to the tokens (keys `k_in`, values
    /// `v_in`, n x 256); returns `norm(x + attention)` into `out` (L x 256).
    fn image_to_tokens(
        &self,
        x: &[f32],
        pe: &[f32],
        k_in: &[f32],
        v_in: &[f32],
        norm: &LayerNormParams,
        out: &mut [f32],
    ) {
        let (c, d, heads, width) = (self.internal(), self.head_dim(), self.heads, self.q.in_dim);
        let n = k_in.len() / self.k.in_dim;
        let hn = heads * n;
        let mut k = vec![0.0; n * c];
        let mut v = vec![0.0; n * c];
        self.k.forward(k_in, &mut k, Fused::default());
        self.v.forward(v_in, &mut v, Fused::default());
        // bmat (width x hn): columns h n + j = W_q,h k_h[j]; bias b_q,h . k_h[j].
        let mut bmat = vec![0.0; width * hn];
        let mut bias = vec![0.0; hn];
        // u (hn x width): rows h n + j = v_h[j] W_o,h.
        let mut u = vec![0.0; hn * width];
        for h in 0..heads {
            let wq = MatRef::rows(&self.q.weight[h * d..], width, d, c);
            let kt = MatRef::transposed(&k[h * d..], d, n, c);
            matmul(wq, kt, &mut bmat[h * n..], hn, false);
            if let Some(bq) = &self.q.bias {
                for j in 0..n {
                    // Scaled here: the softmax adds it after scaling the products.
                    let dot: f32 = (0..d).map(|t| bq[h * d + t] * k[j * c + h * d + t]).sum();
                    bias[h * n + j] = dot * self.scale();
                }
            }
            let vh = MatRef::rows(&v[h * d..], n, d, c);
            let wo = MatRef::rows(&self.out.weight[h * d * width..], d, width, width);
            matmul(vh, wo, &mut u[h * n * width..], width, false);
        }
        let scale = self.scale();
        let out_bias = self.out.bias.as_deref();
        let rows = x.len() / width;
        let block = block_rows(rows);
        out.par_chunks_mut(block * width)
            .enumerate()
            .for_each(|(b, ob)| {
                let r0 = b * block;
                let m = ob.len() / width;
                let xb = &x[r0 * width..(r0 + m) * width];
                let pb = &pe[r0 * width..(r0 + m) * width];
                with_scratch(m * width + m * hn, |scratch| {
                    let (queries, scores) = scratch.split_at_mut(m * width);
                    for ((q, xv), pv) in queries.iter_mut().zip(xb).zip(pb) {
                        *q = xv + pv;
                    }
                    matmul(
                        MatRef::rows(queries, m, width, width),
                        MatRef::rows(&bmat, width, hn, hn),
                        scores,
                        hn,
                        false,
                    );
                    grouped_softmax(scores, n, scale, &bias);
                    matmul(
                        MatRef::rows(scores, m, hn, hn),
                        MatRef::rows(&u, hn, width, width),
                        ob,
                        width,
                        false,
                    );
                });
                for (row, xr) in ob.chunks_exact_mut(width).zip(xb.chunks_exact(width)) {
                    match out_bias {
                        Some(bo) => {
                            for ((o, xv), b) in row.iter_mut().zip(xr).zip(bo) {
                                *o = xv + (*o + b);
                            }
                        }
                        None => {
                            for (o, xv) in row.iter_mut().zip(xr) {
                                *o += xv;
                            }
                        }
                    }
                }
                norm.rows_inplace(ob);
            });
    }
}

/// Self-attention, cross-attention both ways and the MLP, as the reference's `TwoWayAttentionBlock`.
struct BlockCpu {
    self_attn: AttentionCpu,
    norm1: LayerNormParams,
    token_to_image: AttentionCpu,
    norm2: LayerNormParams,
    lin1: Linear,
    lin2: Linear,
    norm3: LayerNormParams,
    norm4: LayerNormParams,
    image_to_token: AttentionCpu,
    skip_first_pe: bool,
}

/// The two-way transformer on the CPU.
pub(crate) struct TwoWayTransformerCpu {
    layers: Vec<BlockCpu>,
    final_attn: AttentionCpu,
    norm_final: LayerNormParams,
}

fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

fn add_assign(a: &mut [f32], b: &[f32]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

impl BlockCpu {
    fn load(w: &Weights, dim: usize, skip_first_pe: bool) -> Result<Self> {
        let down = CROSS_ATTENTION_DOWNSAMPLE;
        let norm = |name: &str| layer_norm(&w.pp(name), dim, 1e-5);
        // segment-anything names the MLP's layers `lin1`/`lin2`, sam2 `layers.0`/`.1`.
        let (first, second) = if w.shape("mlp.lin1.weight").is_ok() {
            ("mlp.lin1", "mlp.lin2")
        } else {
            ("mlp.layers.0", "mlp.layers.1")
        };
        Ok(Self {
            self_attn: AttentionCpu::load(&w.pp("self_attn"), dim, 1)?,
            norm1: norm("norm1")?,
            token_to_image: AttentionCpu::load(&w.pp("cross_attn_token_to_image"), dim, down)?,
            norm2: norm("norm2")?,
            lin1: linear(&w.pp(first), dim, TRANSFORMER_MLP_DIM)?,
            lin2: linear(&w.pp(second), TRANSFORMER_MLP_DIM, dim)?,
            norm3: norm("norm3")?,
            norm4: norm("norm4")?,
            image_to_token: AttentionCpu::load(&w.pp("cross_attn_image_to_token"), dim, down)?,
            skip_first_pe,
        })
    }

    /// One block: `queries` (n x 256) updated in place, `keys` (L x 256) into `keys_out`.
    fn forward(
        &self,
        queries: &mut Vec<f32>,
        keys: &[f32],
        query_pe: &[f32],
        key_pe: &[f32],
        keys_out: &mut [f32],
    ) {
        let width = self.norm1.dim();
        let mut attn = vec![0.0; queries.len()];
        if self.skip_first_pe {
            self.self_attn.small(queries, queries, queries, &mut attn);
            *queries = attn.clone();
        } else {
            let q = add(queries, query_pe);
            self.self_attn.small(&q, &q, queries, &mut attn);
            add_assign(queries, &attn);
        }
        self.norm1.rows_inplace(queries);

        let q = add(queries, query_pe);
        step("transformer tokens->image", || {
            self.token_to_image
                .tokens_to_image(&q, keys, key_pe, &mut attn)
        });
        add_assign(queries, &attn);
        self.norm2.rows_inplace(queries);

        let n = queries.len() / width;
        let mut hidden = vec![0.0; n * self.lin1.out_dim];
        self.lin1.forward(queries, &mut hidden, Fused::default());
        for h in hidden.iter_mut() {
            *h = h.max(0.0);
        }
        self.lin2.forward(&hidden, &mut attn, Fused::default());
        add_assign(queries, &attn);
        self.norm3.rows_inplace(queries);

        let q = add(queries, query_pe);
        step("transformer image->tokens", || {
            self.image_to_token
                .image_to_tokens(keys, key_pe, &q, queries, &self.norm4, keys_out)
        });
    }
}

impl TwoWayTransformerCpu {
    /// Loads `mask_decoder.transformer.*`.
    pub(crate) fn load(w: &Weights, dim: usize) -> Result<Self> {
        Ok(Self {
            layers: (0..TRANSFORMER_DEPTH)
                .map(|i| BlockCpu::load(&w.pp("layers").pp(i), dim, i == 0))
                .collect::<Result<_>>()?,
            final_attn: AttentionCpu::load(
                &w.pp("final_attn_token_to_image"),
                dim,
                CROSS_ATTENTION_DOWNSAMPLE,
            )?,
            norm_final: layer_norm(&w.pp("norm_final_attn"), dim, 1e-5)?,
        })
    }

    /// `image` (L x 256, token-major, dense embedding added), `image_pe` (L x 256), `tokens`
    /// (n x 256) -> (tokens, image tokens, `spare`), both token-major; `spare` is work space
    /// of the image's length (contents unspecified), handed back for reuse.
    pub(crate) fn forward(
        &self,
        image: Vec<f32>,
        spare: Vec<f32>,
        image_pe: &[f32],
        tokens: &[f32],
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let mut queries = tokens.to_vec();
        let mut keys = image;
        let mut next = spare;
        assert_eq!(next.len(), keys.len(), "transformer: work space");
        for layer in &self.layers {
            layer.forward(&mut queries, &keys, tokens, image_pe, &mut next);
            std::mem::swap(&mut keys, &mut next);
        }
        let q = add(&queries, tokens);
        let mut attn = vec![0.0; queries.len()];
        step("transformer tokens->image", || {
            self.final_attn
                .tokens_to_image(&q, &keys, image_pe, &mut attn)
        });
        add_assign(&mut queries, &attn);
        self.norm_final.rows_inplace(&mut queries);
        (queries, keys, next)
    }
}
