//! Meta's SAM ViT image encoder (`ImageEncoderViT`, segment-anything 1.0): 16x16 patch
//! embedding plus an absolute position embedding, blocks of windowed (14x14) or global
//! attention with decomposed relative positions added to the attention logits, a GELU MLP,
//! and the neck (1x1 conv, LayerNorm2d, 3x3 conv, LayerNorm2d) to the prompt width. Every
//! size comes from the checkpoint ([`VitConfig`]).

use candle_core::{Module, Tensor};

use super::layers::{gelu, linear, softmax_last, Conv2d, LayerNorm, LayerNorm2d, Linear};
use crate::error::Result;
use crate::family::{VitConfig, VIT_GRID};
use crate::weights::Weights;

/// Side of a patch in pixels.
const PATCH: usize = 16;
/// LayerNorm epsilon of the blocks.
const LN_EPS: f32 = 1e-6;

/// `rel_pos` (2S-1, head_dim) gathered for every (query, key) pair of an S-long axis:
/// (S, S, head_dim), entry (i, j) = `rel_pos[i - j + S - 1]` (`get_rel_pos` with equal
/// query and key sizes, no interpolation).
fn gathered_rel_pos(rel_pos: &Tensor, side: usize) -> Result<Tensor> {
    let indices: Vec<u32> = (0..side)
        .flat_map(|i| (0..side).map(move |j| (i + side - 1 - j) as u32))
        .collect();
    let indices = Tensor::from_vec(indices, side * side, rel_pos.device())?;
    let head_dim = rel_pos.dim(1)?;
    Ok(rel_pos
        .index_select(&indices, 0)?
        .reshape((side, side, head_dim))?)
}

/// Multi-head self-attention over an (B, H, W, C) grid with decomposed relative
/// positions.
struct Attention {
    qkv: Linear,
    proj: Linear,
    heads: usize,
    /// (S, S, head_dim) per axis, S the grid side the block attends over.
    rel_h: Tensor,
    rel_w: Tensor,
}

impl Attention {
    fn load(w: &Weights, dim: usize, heads: usize, side: usize) -> Result<Self> {
        let head_dim = dim / heads;
        let span = 2 * side - 1;
        Ok(Self {
            qkv: linear(&w.pp("qkv"), dim, 3 * dim)?,
            proj: linear(&w.pp("proj"), dim, dim)?,
            heads,
            rel_h: gathered_rel_pos(&w.get("rel_pos_h", &[span, head_dim])?, side)?,
            rel_w: gathered_rel_pos(&w.get("rel_pos_w", &[span, head_dim])?, side)?,
        })
    }

    /// `x` (B, H, W, C) -> (B, H, W, C).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, h, w, c) = x.dims4()?;
        let heads = self.heads;
        let hd = c / heads;
        // (B, HW, 3, heads, hd) -> (3, B * heads, HW, hd)
        let qkv = self
            .qkv
            .forward(x)?
            .reshape((b, h * w, 3, heads, hd))?
            .permute((2, 0, 3, 1, 4))?
            .reshape((3, b * heads, h * w, hd))?;
        let q = qkv.get(0)?.contiguous()?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let scale = 1.0 / (hd as f64).sqrt();
        let attn = (&q * scale)?.matmul(&k.t()?)?;
        let attn = self.add_rel_pos(&attn, &q, (b * heads, h, w, hd))?;
        let attn = softmax_last(&attn)?;
        let out = attn
            .matmul(&v)?
            .reshape((b, heads, h, w, hd))?
            .permute((0, 2, 3, 1, 4))?
            .reshape((b, h, w, c))?;
        Ok(self.proj.forward(&out)?)
    }

    /// `add_decomposed_rel_pos`: `attn` (N, HW, HW) plus, for query (y, x) and key
    /// (y', x'), `q(y, x) . Rh[y, y']` + `q(y, x) . Rw[x, x']`; `q` unscaled.
    fn add_rel_pos(
        &self,
        attn: &Tensor,
        q: &Tensor,
        (n, h, w, hd): (usize, usize, usize, usize),
    ) -> Result<Tensor> {
        let r_q = q.reshape((n, h, w, hd))?;
        // rel_h[n, y, x, k] = sum_c r_q[n, y, x, c] * Rh[y, k, c]: a matmul per row y.
        let rel_h = r_q
            .permute((1, 0, 2, 3))?
            .reshape((h, n * w, hd))?
            .matmul(&self.rel_h.transpose(1, 2)?)?
            .reshape((h, n, w, h))?
            .permute((1, 0, 2, 3))?;
        // rel_w[n, y, x, k] = sum_c r_q[n, y, x, c] * Rw[x, k, c]: a matmul per column x.
        let rel_w = r_q
            .permute((2, 0, 1, 3))?
            .reshape((w, n * h, hd))?
            .matmul(&self.rel_w.transpose(1, 2)?)?
            .reshape((w, n, h, w))?
            .permute((1, 2, 0, 3))?;
        let attn = attn
            .reshape((n, h, w, h, w))?
            .broadcast_add(&rel_h.unsqueeze(4)?)?
            .broadcast_add(&rel_w.unsqueeze(3)?)?;
        Ok(attn.reshape((n, h * w, h * w))?)
    }
}

/// Pre-norm transformer block, windowed or global.
struct Block {
    norm1: LayerNorm,
    attn: Attention,
    norm2: LayerNorm,
    lin1: Linear,
    lin2: Linear,
    /// Window side, `None` for global attention.
    window: Option<usize>,
}

impl Block {
    fn load(w: &Weights, dim: usize, heads: usize, window: Option<usize>) -> Result<Self> {
        let mlp = w.dim("mlp.lin1.weight", 2, 0)?;
        Ok(Self {
            norm1: LayerNorm::load(&w.pp("norm1"), dim, LN_EPS)?,
            attn: Attention::load(&w.pp("attn"), dim, heads, window.unwrap_or(VIT_GRID))?,
            norm2: LayerNorm::load(&w.pp("norm2"), dim, LN_EPS)?,
            lin1: linear(&w.pp("mlp.lin1"), dim, mlp)?,
            lin2: linear(&w.pp("mlp.lin2"), mlp, dim)?,
            window,
        })
    }

    /// `x` (B, H, W, C) -> (B, H, W, C).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let shortcut = x;
        let y = self.norm1.forward(x)?;
        let y = match self.window {
            None => self.attn.forward(&y)?,
            Some(window) => {
                let (b, h, w, c) = y.dims4()?;
                let (windows, padded) = window_partition(&y, window)?;
                let out = self.attn.forward(&windows)?;
                window_unpartition(&out, window, padded, (b, h, w, c))?
            }
        };
        let x = (shortcut + y)?;
        let mlp = self
            .lin2
            .forward(&gelu(&self.lin1.forward(&self.norm2.forward(&x)?)?)?)?;
        Ok((x + mlp)?)
    }
}

/// (B, H, W, C) zero-padded to multiples of `window` and cut into windows:
/// (B * nH * nW, window, window, C), and the padded (H, W).
pub(super) fn window_partition(x: &Tensor, window: usize) -> Result<(Tensor, (usize, usize))> {
    let (b, h, w, c) = x.dims4()?;
    let (ph, pw) = (
        (window - h % window) % window,
        (window - w % window) % window,
    );
    let x = x.pad_with_zeros(1, 0, ph)?.pad_with_zeros(2, 0, pw)?;
    let (hp, wp) = (h + ph, w + pw);
    let windows = x
        .reshape((b, hp / window, window, wp / window, window, c))?
        .permute((0, 1, 3, 2, 4, 5))?
        .contiguous()?
        .reshape((b * (hp / window) * (wp / window), window, window, c))?;
    Ok((windows, (hp, wp)))
}

/// The inverse of [`window_partition`], padding removed: (B, H, W, C).
pub(super) fn window_unpartition(
    windows: &Tensor,
    window: usize,
    (hp, wp): (usize, usize),
    (b, h, w, c): (usize, usize, usize, usize),
) -> Result<Tensor> {
    let x = windows
        .reshape((b, hp / window, wp / window, window, window, c))?
        .permute((0, 1, 3, 2, 4, 5))?
        .contiguous()?
        .reshape((b, hp, wp, c))?;
    Ok(x.narrow(1, 0, h)?.narrow(2, 0, w)?.contiguous()?)
}

/// SAM ViT's image encoder.
pub struct Vit {
    patch_embed: Conv2d,
    /// (1, 64, 64, C).
    pos_embed: Tensor,
    blocks: Vec<Block>,
    neck_conv0: Conv2d,
    neck_norm0: LayerNorm2d,
    neck_conv1: Conv2d,
    neck_norm1: LayerNorm2d,
    out_channels: usize,
}

impl Vit {
    /// Loads `image_encoder.*` as `config` describes it; the neck's output width (the
    /// prompt width) comes from `neck.0.weight`.
    pub fn load(w: &Weights, config: &VitConfig) -> Result<Self> {
        let c = config.width;
        let out = w.dim("neck.0.weight", 4, 0)?;
        let neck = w.pp("neck");
        Ok(Self {
            patch_embed: Conv2d::load(&w.pp("patch_embed.proj"), (3, c, PATCH), PATCH, 0, true)?,
            pos_embed: w.get("pos_embed", &[1, VIT_GRID, VIT_GRID, c])?,
            blocks: (0..config.depth)
                .map(|i| Block::load(&w.pp("blocks").pp(i), c, config.heads, config.window(i)))
                .collect::<Result<Vec<_>>>()?,
            neck_conv0: Conv2d::load(&neck.pp(0), (c, out, 1), 1, 0, false)?,
            neck_norm0: LayerNorm2d::load(&neck.pp(1), out)?,
            neck_conv1: Conv2d::load(&neck.pp(2), (out, out, 3), 1, 1, false)?,
            neck_norm1: LayerNorm2d::load(&neck.pp(3), out)?,
            out_channels: out,
        })
    }

    /// Channels of the embedding (the prompt width).
    pub fn out_channels(&self) -> usize {
        self.out_channels
    }

    /// `x`: normalized, padded images (B, 3, 1024, 1024) -> embeddings (B, D, 64, 64).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_stages(x, &mut |_, _| {})
    }

    /// Like [`Vit::forward`], handing each intermediate result to `observe`: "patch_embed"
    /// (position embedding added) and "blocks.i" as tokens (B, L, C).
    pub fn forward_stages(
        &self,
        x: &Tensor,
        observe: &mut dyn FnMut(&str, &Tensor),
    ) -> Result<Tensor> {
        let x = self.patch_embed.forward(x)?.permute((0, 2, 3, 1))?;
        let mut x = x.broadcast_add(&self.pos_embed)?.contiguous()?;
        let tokens = |t: &Tensor| -> Result<Tensor> {
            let (b, h, w, c) = t.dims4()?;
            Ok(t.reshape((b, h * w, c))?)
        };
        observe("patch_embed", &tokens(&x)?);
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(&x)?;
            observe(&format!("blocks.{i}"), &tokens(&x)?);
        }
        let x = x.permute((0, 3, 1, 2))?.contiguous()?;
        let x = self.neck_norm0.forward(&self.neck_conv0.forward(&x)?)?;
        let x = self.neck_norm1.forward(&self.neck_conv1.forward(&x)?)?;
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn windows_round_trip_with_padding() -> Result<()> {
        let x =
            Tensor::arange(0f32, (2 * 5 * 6 * 3) as f32, &Device::Cpu)?.reshape((2, 5, 6, 3))?;
        let (windows, padded) = window_partition(&x, 4)?;
        assert_eq!(padded, (8, 8));
        assert_eq!(windows.dims(), &[2 * 2 * 2, 4, 4, 3]);
        let back = window_unpartition(&windows, 4, padded, (2, 5, 6, 3))?;
        let diff = (back - &x)?.abs()?.sum_all()?.to_scalar::<f32>()?;
        assert_eq!(diff, 0.0);
        Ok(())
    }

    #[test]
    fn relative_positions_index_by_offset() -> Result<()> {
        // rel_pos row r holds the value r: entry (i, j) is i - j + S - 1.
        let side = 3;
        let rel = Tensor::arange(0f32, 5.0, &Device::Cpu)?.reshape((5, 1))?;
        let g = gathered_rel_pos(&rel, side)?.squeeze(2)?.to_vec2::<f32>()?;
        assert_eq!(
            g,
            vec![vec![2., 1., 0.], vec![3., 2., 1.], vec![4., 3., 2.]]
        );
        Ok(())
    }
}
