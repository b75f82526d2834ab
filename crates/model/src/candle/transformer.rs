//! SAM's two-way transformer: prompt tokens and image tokens attend to each other in
//! both directions (depth 2, 8 heads, MLP 2048, cross-attention downsampled 2x).

use candle_core::{Module, Tensor};

use super::layers::{linear, softmax_last, LayerNorm, Linear};
use crate::architecture::{
    CROSS_ATTENTION_DOWNSAMPLE as DOWNSAMPLE, TRANSFORMER_DEPTH as DEPTH,
    TRANSFORMER_HEADS as HEADS,
};
use crate::error::Result;
use crate::weights::Weights;

/// Multi-head attention with its own projections; `internal` may be narrower than the
/// embedding (cross-attention downsampling).
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    heads: usize,
}

impl Attention {
    fn load(w: &Weights, dim: usize, downsample: usize) -> Result<Self> {
        let internal = dim / downsample;
        Ok(Self {
            q_proj: linear(&w.pp("q_proj"), dim, internal)?,
            k_proj: linear(&w.pp("k_proj"), dim, internal)?,
            v_proj: linear(&w.pp("v_proj"), dim, internal)?,
            out_proj: linear(&w.pp("out_proj"), internal, dim)?,
            heads: HEADS,
        })
    }

    fn separate_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        Ok(x.reshape((b, n, self.heads, c / self.heads))?
            .transpose(1, 2)?
            .contiguous()?)
    }

    fn forward(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        let q = self.separate_heads(&self.q_proj.forward(q)?)?;
        let k = self.separate_heads(&self.k_proj.forward(k)?)?;
        let v = self.separate_heads(&self.v_proj.forward(v)?)?;
        let (b, h, n, c) = q.dims4()?;
        let attn = (q.matmul(&k.t()?)? / (c as f64).sqrt())?;
        let attn = softmax_last(&attn)?;
        let out = attn.matmul(&v)?.transpose(1, 2)?.reshape((b, n, h * c))?;
        Ok(self.out_proj.forward(&out)?)
    }
}

/// Linear, ReLU, linear.
struct MlpBlock {
    lin1: Linear,
    lin2: Linear,
}

impl MlpBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.lin2.forward(&self.lin1.forward(x)?.relu()?)?)
    }
}

/// Self-attention of the tokens, tokens -> image, MLP, image -> tokens.
struct TwoWayBlock {
    self_attn: Attention,
    norm1: LayerNorm,
    cross_token_to_image: Attention,
    norm2: LayerNorm,
    mlp: MlpBlock,
    norm3: LayerNorm,
    norm4: LayerNorm,
    cross_image_to_token: Attention,
    skip_first_pe: bool,
}

impl TwoWayBlock {
    fn load(w: &Weights, dim: usize, mlp_dim: usize, skip_first_pe: bool) -> Result<Self> {
        Ok(Self {
            self_attn: Attention::load(&w.pp("self_attn"), dim, 1)?,
            norm1: LayerNorm::load(&w.pp("norm1"), dim, 1e-5)?,
            cross_token_to_image: Attention::load(
                &w.pp("cross_attn_token_to_image"),
                dim,
                DOWNSAMPLE,
            )?,
            norm2: LayerNorm::load(&w.pp("norm2"), dim, 1e-5)?,
            mlp: {
                // segment-anything names the MLP's layers `lin1`/`lin2`, sam2 `layers.0`/`.1`.
                let (first, second) = if w.shape("mlp.lin1.weight").is_ok() {
                    ("mlp.lin1", "mlp.lin2")
                } else {
                    ("mlp.layers.0", "mlp.layers.1")
                };
                MlpBlock {
                    lin1: linear(&w.pp(first), dim, mlp_dim)?,
                    lin2: linear(&w.pp(second), mlp_dim, dim)?,
                }
            },
            norm3: LayerNorm::load(&w.pp("norm3"), dim, 1e-5)?,
            norm4: LayerNorm::load(&w.pp("norm4"), dim, 1e-5)?,
            cross_image_to_token: Attention::load(
                &w.pp("cross_attn_image_to_token"),
                dim,
                DOWNSAMPLE,
            )?,
            skip_first_pe,
        })
    }

    fn forward(
        &self,
        queries: &Tensor,
        keys: &Tensor,
        query_pe: &Tensor,
        key_pe: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let queries = if self.skip_first_pe {
            self.self_attn.forward(queries, queries, queries)?
        } else {
            let q = (queries + query_pe)?;
            (queries + self.self_attn.forward(&q, &q, queries)?)?
        };
        let queries = self.norm1.forward(&queries)?;

        let q = (&queries + query_pe)?;
        let k = (keys + key_pe)?;
        let queries = (&queries + self.cross_token_to_image.forward(&q, &k, keys)?)?;
        let queries = self.norm2.forward(&queries)?;

        let queries = (&queries + self.mlp.forward(&queries)?)?;
        let queries = self.norm3.forward(&queries)?;

        let q = (&queries + query_pe)?;
        let keys = (keys + self.cross_image_to_token.forward(&k, &q, &queries)?)?;
        let keys = self.norm4.forward(&keys)?;
        Ok((queries, keys))
    }
}

/// The two-way transformer of the mask decoder.
pub struct TwoWayTransformer {
    layers: Vec<TwoWayBlock>,
    final_attn: Attention,
    norm_final: LayerNorm,
}

impl TwoWayTransformer {
    /// Loads `mask_decoder.transformer.*` of width `dim` and MLP width `mlp_dim`.
    pub fn load(w: &Weights, dim: usize, mlp_dim: usize) -> Result<Self> {
        let layers = (0..DEPTH)
            .map(|i| TwoWayBlock::load(&w.pp("layers").pp(i), dim, mlp_dim, i == 0))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            final_attn: Attention::load(&w.pp("final_attn_token_to_image"), dim, DOWNSAMPLE)?,
            norm_final: LayerNorm::load(&w.pp("norm_final_attn"), dim, 1e-5)?,
        })
    }

    /// `image` (B, C, H, W), `image_pe` (B, C, H, W), `tokens` (B, N, C) ->
    /// (tokens (B, N, C), image tokens (B, H*W, C)).
    pub fn forward(
        &self,
        image: &Tensor,
        image_pe: &Tensor,
        tokens: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let keys0 = image.flatten_from(2)?.transpose(1, 2)?.contiguous()?;
        let key_pe = image_pe.flatten_from(2)?.transpose(1, 2)?.contiguous()?;
        let mut queries = tokens.clone();
        let mut keys = keys0;
        for layer in &self.layers {
            let (q, k) = layer.forward(&queries, &keys, tokens, &key_pe)?;
            queries = q;
            keys = k;
        }
        let q = (&queries + tokens)?;
        let k = (&keys + &key_pe)?;
        let queries = (&queries + self.final_attn.forward(&q, &k, &keys)?)?;
        let queries = self.norm_final.forward(&queries)?;
        Ok((queries, keys))
    }
}
