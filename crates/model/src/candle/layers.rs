//! candle building blocks shared by the encoder, the prompt encoder and the decoder:
//! linear layers (`candle_nn::Linear`), LayerNorm with two-pass statistics, convolutions
//! with TinyViT's BatchNorm folded in, and SAM's transposed convolution. Plain candle
//! tensor operations on every device.

use candle_core::{Module, Tensor, D};

use crate::error::Result;
use crate::weights::{HostConv, Weights};

/// `y = x W^T + b` over the last dimension.
pub type Linear = candle_nn::Linear;

/// Loads `weight` (out, in) and `bias` (out) as a [`Linear`].
pub fn linear(w: &Weights, in_dim: usize, out_dim: usize) -> Result<Linear> {
    Ok(Linear::new(
        w.get("weight", &[out_dim, in_dim])?,
        Some(w.get("bias", &[out_dim])?),
    ))
}

/// LayerNorm over the last dimension.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    /// Loads `weight` and `bias` of size `dim`.
    pub fn load(w: &Weights, dim: usize, eps: f32) -> Result<Self> {
        Ok(Self {
            weight: w.get("weight", &[dim])?,
            bias: w.get("bias", &[dim])?,
            eps,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        // Two-pass statistics as PyTorch computes them: candle's fused kernel takes
        // E[x^2] - E[x]^2, which loses precision when the mean is large against the spread.
        let mean = x.mean_keepdim(D::Minus1)?;
        let centered = x.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centered.broadcast_div(&(var + f64::from(self.eps))?.sqrt()?)?;
        normed
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

/// SAM's LayerNorm2d: LayerNorm over the channels of an NCHW tensor (eps 1e-6).
#[derive(Debug, Clone)]
pub struct LayerNorm2d {
    inner: LayerNorm,
}

impl LayerNorm2d {
    /// Loads `weight` and `bias` of size `channels`.
    pub fn load(w: &Weights, channels: usize) -> Result<Self> {
        Ok(Self {
            inner: LayerNorm::load(w, channels, 1e-6)?,
        })
    }
}

impl Module for LayerNorm2d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.inner.forward(&x.permute((0, 2, 3, 1))?)?;
        y.permute((0, 3, 1, 2))?.contiguous()
    }
}

/// A 2-D convolution with an optional bias; depthwise convolutions (groups == channels)
/// run as shifted multiply-adds instead of candle's one convolution per group.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: usize,
    padding: usize,
    groups: usize,
}

impl Conv2d {
    /// A convolution from host weights (see [`Weights::conv`] and [`Weights::conv_bn`]),
    /// put on `w`'s device.
    pub fn new(
        w: &Weights,
        conv: HostConv,
        stride: usize,
        padding: usize,
        groups: usize,
    ) -> Result<Self> {
        let out_ch = conv.out_channels();
        let device = w.device();
        Ok(Self {
            weight: Tensor::from_vec(conv.weight, conv.shape.as_slice(), device)?,
            bias: conv
                .bias
                .map(|b| Tensor::from_vec(b, out_ch, device))
                .transpose()?,
            stride,
            padding,
            groups,
        })
    }

    /// A plain `nn.Conv2d` with `groups` 1.
    pub fn load(
        w: &Weights,
        (in_ch, out_ch, kernel): (usize, usize, usize),
        stride: usize,
        padding: usize,
        with_bias: bool,
    ) -> Result<Self> {
        Self::new(
            w,
            w.conv(in_ch, out_ch, kernel, with_bias)?,
            stride,
            padding,
            1,
        )
    }

    /// TinyViT's `Conv2d_BN`, BatchNorm folded.
    pub fn load_bn(
        w: &Weights,
        (in_ch, out_ch, kernel): (usize, usize, usize),
        stride: usize,
        padding: usize,
        groups: usize,
    ) -> Result<Self> {
        Self::new(
            w,
            w.conv_bn(in_ch, out_ch, kernel, groups)?,
            stride,
            padding,
            groups,
        )
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let out_ch = self.weight.dim(0)?;
        let y = if self.groups > 1 && self.groups == out_ch {
            super::depthwise::conv2d_depthwise_shifted(x, &self.weight, self.stride, self.padding)?
        } else {
            x.conv2d(&self.weight, self.padding, self.stride, 1, self.groups)?
        };
        match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, out_ch, 1, 1))?),
            None => Ok(y),
        }
    }
}

/// `nn.ConvTranspose2d` with kernel == stride (non-overlapping 2x upsampling in SAM).
#[derive(Debug, Clone)]
pub struct ConvTranspose2d {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
}

impl ConvTranspose2d {
    /// Loads `weight` (in, out, k, k) and `bias` (out).
    pub fn load(w: &Weights, in_ch: usize, out_ch: usize, kernel: usize) -> Result<Self> {
        Ok(Self {
            weight: w.get("weight", &[in_ch, out_ch, kernel, kernel])?,
            bias: w.get("bias", &[out_ch])?,
            stride: kernel,
        })
    }
}

impl Module for ConvTranspose2d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = x.conv_transpose2d(&self.weight, 0, 0, self.stride, 1)?;
        let out_ch = self.bias.dim(0)?;
        y.broadcast_add(&self.bias.reshape((1, out_ch, 1, 1))?)
    }
}

/// Exact (erf) GELU, as `nn.GELU()`.
pub fn gelu(x: &Tensor) -> candle_core::Result<Tensor> {
    x.gelu_erf()
}

/// Softmax over the last dimension.
pub fn softmax_last(x: &Tensor) -> candle_core::Result<Tensor> {
    candle_nn::ops::softmax_last_dim(&x.contiguous()?)
}
