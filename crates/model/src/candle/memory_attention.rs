//! SAM 2's memory attention (`sam2.modeling.memory_attention.MemoryAttention`): the current
//! frame's 64x64 features attend to themselves and then to the memory (earlier frames'
//! memory features and object pointers), each attention with 2-D axial rotary position
//! encoding ([`RopeAttention`], `RoPEAttention`), in `layers` pre-norm layers with a ReLU
//! feed-forward, then a final LayerNorm. SAM 2.1's settings: position encoding added to the
//! input (x 0.1), none in self-attention, on the cross-attention keys only; object-pointer
//! tokens (the memory's last tokens) get no rotary encoding.

use candle_core::{Device, Module, Tensor};

use super::layers::{linear, softmax_last, LayerNorm, Linear};
use crate::error::Result;
use crate::weights::Weights;

/// Score values per attention block (16 MiB of f32): bounds the score matrix (query rows x
/// memory tokens, 28,672 columns for 7 memory frames) kept at once, so that a block is
/// reused from the allocator's heap instead of being mapped and faulted in afresh.
const QUERY_BLOCK_VALUES: usize = 1 << 22;

/// Axial rotary tables for a `side` x `side` grid: per token, `head_dim / 2` angles (the
/// first half from the column, the second from the row), as `compute_axial_cis`.
struct RopeTables {
    /// (side * side, head_dim / 2)
    cos: Tensor,
    sin: Tensor,
}

impl RopeTables {
    fn new(head_dim: usize, side: usize, theta: f32, device: &Device) -> Result<Self> {
        let quarter = head_dim / 4;
        let freqs: Vec<f32> = (0..quarter)
            .map(|i| 1.0 / theta.powf((4 * i) as f32 / head_dim as f32))
            .collect();
        let tokens = side * side;
        let mut cos = Vec::with_capacity(tokens * 2 * quarter);
        let mut sin = Vec::with_capacity(tokens * 2 * quarter);
        for t in 0..tokens {
            let (x, y) = ((t % side) as f32, (t / side) as f32);
            for pos in [x, y] {
                for f in &freqs {
                    let angle = pos * f;
                    cos.push(angle.cos());
                    sin.push(angle.sin());
                }
            }
        }
        let shape = (tokens, 2 * quarter);
        Ok(Self {
            cos: Tensor::from_vec(cos, shape, device)?,
            sin: Tensor::from_vec(sin, shape, device)?,
        })
    }

    /// Rotates consecutive pairs of `x` (B, heads, N, head_dim) where N is a multiple of the
    /// table's tokens (the table repeats, as `repeat_freqs_k`).
    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let (b, h, n, d) = x.dims4()?;
        let tokens = self.cos.dim(0)?;
        let repeat = n / tokens;
        let table = |t: &Tensor| -> Result<Tensor> {
            Ok(t.unsqueeze(0)?
                .repeat((repeat, 1, 1))?
                .reshape((1, 1, n, d / 2))?)
        };
        let (cos, sin) = (table(&self.cos)?, table(&self.sin)?);
        let pairs = x.reshape((b, h, n, d / 2, 2))?;
        let re = pairs.narrow(4, 0, 1)?.squeeze(4)?;
        let im = pairs.narrow(4, 1, 1)?.squeeze(4)?;
        let out_re = (re.broadcast_mul(&cos)? - im.broadcast_mul(&sin)?)?;
        let out_im = (re.broadcast_mul(&sin)? + im.broadcast_mul(&cos)?)?;
        Ok(Tensor::stack(&[out_re, out_im], 4)?.reshape((b, h, n, d))?)
    }
}

/// `RoPEAttention`: projections, rotary encoding of the queries and of all but the last
/// `num_k_exclude_rope` keys, scaled dot-product attention, output projection.
struct RopeAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    heads: usize,
    rope: RopeTables,
}

impl RopeAttention {
    fn load(w: &Weights, dim: usize, kv_dim: usize, heads: usize, side: usize) -> Result<Self> {
        Ok(Self {
            q_proj: linear(&w.pp("q_proj"), dim, dim)?,
            k_proj: linear(&w.pp("k_proj"), kv_dim, dim)?,
            v_proj: linear(&w.pp("v_proj"), kv_dim, dim)?,
            out_proj: linear(&w.pp("out_proj"), dim, dim)?,
            heads,
            rope: RopeTables::new(dim / heads, side, 10000.0, w.device())?,
        })
    }

    fn separate(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, c) = x.dims3()?;
        Ok(x.reshape((b, n, self.heads, c / self.heads))?
            .transpose(1, 2)?
            .contiguous()?)
    }

    fn forward(&self, q: &Tensor, k: &Tensor, v: &Tensor, exclude_rope: usize) -> Result<Tensor> {
        let q = self.rope.apply(&self.separate(&self.q_proj.forward(q)?)?)?;
        let k = self.separate(&self.k_proj.forward(k)?)?;
        let v = self.separate(&self.v_proj.forward(v)?)?;
        let nk = k.dim(2)?;
        let rotated = nk - exclude_rope;
        let k = if exclude_rope == 0 {
            self.rope.apply(&k)?
        } else {
            let head = self.rope.apply(&k.narrow(2, 0, rotated)?.contiguous()?)?;
            Tensor::cat(&[&head, &k.narrow(2, rotated, exclude_rope)?], 2)?
        };
        let (b, h, nq, d) = q.dims4()?;
        // Scaling the queries (nq x d) costs far less than scaling the scores (nq x nk).
        let q = (q * (1.0 / (d as f64).sqrt()))?;
        let kt = k.transpose(2, 3)?.contiguous()?;
        let rows = (QUERY_BLOCK_VALUES / (b * h * nk).max(1)).clamp(1, nq.max(1));
        let mut blocks = Vec::with_capacity(nq.div_ceil(rows));
        let mut start = 0;
        while start < nq {
            let len = rows.min(nq - start);
            let qb = q.narrow(2, start, len)?;
            blocks.push(softmax_last(&qb.matmul(&kt)?)?.matmul(&v)?);
            start += len;
        }
        let out = Tensor::cat(&blocks, 2)?
            .transpose(1, 2)?
            .reshape((b, nq, h * d))?;
        Ok(self.out_proj.forward(&out)?)
    }
}

/// One `MemoryAttentionLayer`.
struct MemoryAttentionLayer {
    self_attn: RopeAttention,
    cross_attn: RopeAttention,
    linear1: Linear,
    linear2: Linear,
    norm1: LayerNorm,
    norm2: LayerNorm,
    norm3: LayerNorm,
}

impl MemoryAttentionLayer {
    fn forward(
        &self,
        tgt: &Tensor,
        memory: &Tensor,
        memory_keys: &Tensor,
        num_obj_ptr_tokens: usize,
    ) -> Result<Tensor> {
        let t2 = self.norm1.forward(tgt)?;
        let tgt = (tgt + self.self_attn.forward(&t2, &t2, &t2, 0)?)?;
        let t2 = self.norm2.forward(&tgt)?;
        let tgt = (&tgt
            + self
                .cross_attn
                .forward(&t2, memory_keys, memory, num_obj_ptr_tokens)?)?;
        let t2 = self.norm3.forward(&tgt)?;
        let t2 = self.linear2.forward(&self.linear1.forward(&t2)?.relu()?)?;
        Ok((tgt + t2)?)
    }
}

/// The memory attention: `memory_attention.*`.
pub struct MemoryAttention {
    layers: Vec<MemoryAttentionLayer>,
    norm: LayerNorm,
}

impl MemoryAttention {
    /// Loads `memory_attention.*` (`w` there): width `dim`, memory width `mem_dim`,
    /// `heads` attention heads (1 in every SAM 2.1 model), features on a `side` x `side`
    /// grid. Layer count and feed-forward width come from the tensors.
    pub fn load(
        w: &Weights,
        dim: usize,
        mem_dim: usize,
        heads: usize,
        side: usize,
    ) -> Result<Self> {
        let mut layers = Vec::new();
        loop {
            let l = w.pp("layers").pp(layers.len());
            let Ok(ff) = l.pp("linear1").shape("weight") else {
                break;
            };
            let ff = ff[0];
            layers.push(MemoryAttentionLayer {
                self_attn: RopeAttention::load(&l.pp("self_attn"), dim, dim, heads, side)?,
                cross_attn: RopeAttention::load(
                    &l.pp("cross_attn_image"),
                    dim,
                    mem_dim,
                    heads,
                    side,
                )?,
                linear1: linear(&l.pp("linear1"), dim, ff)?,
                linear2: linear(&l.pp("linear2"), ff, dim)?,
                norm1: LayerNorm::load(&l.pp("norm1"), dim, 1e-5)?,
                norm2: LayerNorm::load(&l.pp("norm2"), dim, 1e-5)?,
                norm3: LayerNorm::load(&l.pp("norm3"), dim, 1e-5)?,
            });
        }
        Ok(Self {
            layers,
            norm: LayerNorm::load(&w.pp("norm"), dim, 1e-5)?,
        })
    }

    /// `curr` (B, HW, D) the frame's features, `curr_pos` (B, HW, D) their sine encoding,
    /// `memory` / `memory_pos` (B, M, mem_dim) with the `num_obj_ptr_tokens` object-pointer
    /// tokens last -> (B, HW, D) memory-conditioned features.
    pub fn forward(
        &self,
        curr: &Tensor,
        curr_pos: &Tensor,
        memory: &Tensor,
        memory_pos: &Tensor,
        num_obj_ptr_tokens: usize,
    ) -> Result<Tensor> {
        let mut output = (curr + (curr_pos * 0.1)?)?;
        let memory_keys = (memory + memory_pos)?;
        for layer in &self.layers {
            output = layer.forward(&output, memory, &memory_keys, num_obj_ptr_tokens)?;
        }
        Ok(self.norm.forward(&output)?)
    }
}
