//! Building blocks shared by the encoder and the decoder: a named-weights view of a
//! checkpoint, linear layers, layer norms, convolutions with BatchNorm folded in.

use candle_core::{Device, Module, Tensor, D};

use crate::checkpoint::Checkpoint;
use crate::error::Result;

/// A view of a checkpoint under a name prefix (`image_encoder.layers.0.`), handing out
/// shape-checked tensors on the model's device.
#[derive(Clone)]
pub struct Weights<'a> {
    checkpoint: &'a Checkpoint,
    prefix: String,
    device: Device,
}

impl<'a> Weights<'a> {
    /// The root view.
    pub fn new(checkpoint: &'a Checkpoint, device: &Device) -> Self {
        Self {
            checkpoint,
            prefix: String::new(),
            device: device.clone(),
        }
    }

    /// The view one module deeper (`pp("blocks").pp(0)`).
    pub fn pp(&self, name: impl std::fmt::Display) -> Self {
        Self {
            checkpoint: self.checkpoint,
            prefix: format!("{}{}.", self.prefix, name),
            device: self.device.clone(),
        }
    }

    /// Tensor `name` under this prefix, with shape `shape`, on the device.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let full = format!("{}{}", self.prefix, name);
        Ok(self.checkpoint.get(&full, shape)?.to_device(&self.device)?)
    }

    /// Tensor `name` under this prefix, kept on the host (for load-time arithmetic).
    pub fn get_host(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let full = format!("{}{}", self.prefix, name);
        self.checkpoint.get(&full, shape)
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }
}

/// `y = x W^T + b` over the last dimension.
#[derive(Debug, Clone)]
pub struct Linear {
    weight_t: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// Loads `weight` (out, in) and `bias` (out).
    pub fn load(w: &Weights, in_dim: usize, out_dim: usize) -> Result<Self> {
        let weight = w.get("weight", &[out_dim, in_dim])?;
        let bias = w.get("bias", &[out_dim])?;
        Ok(Self {
            weight_t: weight.t()?.contiguous()?,
            bias: Some(bias),
        })
    }
}

impl Linear {
    /// Host copy for the CPU kernels: weight `(in, out)` row-major, and the bias.
    pub(crate) fn to_cpu(&self) -> Result<crate::cpu::linear::Linear> {
        let (in_dim, out_dim) = self.weight_t.dims2()?;
        Ok(crate::cpu::linear::Linear {
            weight: host_values(&self.weight_t)?,
            bias: self.bias.as_ref().map(host_values).transpose()?,
            in_dim,
            out_dim,
        })
    }
}

/// A tensor's values, row-major, as `f32` on the host.
pub(crate) fn host_values(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1::<f32>()?)
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dims = x.dims().to_vec();
        let in_dim = dims[dims.len() - 1];
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let y = x.reshape((rows, in_dim))?.matmul(&self.weight_t)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out_dims = dims;
        let last = out_dims.len() - 1;
        out_dims[last] = self.weight_t.dim(1)?;
        y.reshape(out_dims)
    }
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

impl LayerNorm {
    /// Host copy for the CPU kernels.
    pub(crate) fn to_cpu(&self) -> Result<crate::cpu::norm::LayerNormParams> {
        Ok(crate::cpu::norm::LayerNormParams {
            weight: host_values(&self.weight)?,
            bias: host_values(&self.bias)?,
            eps: self.eps,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if x.device().is_cpu() {
            return norm::layer_norm_cpu(x, &self.weight, &self.bias, self.eps);
        }
        // Two-pass statistics: candle's fused kernel takes E[x^2] - E[x]^2, which loses
        // precision when the mean is large against the spread.
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

impl LayerNorm2d {
    /// Host copy for the CPU kernels (a LayerNorm over channels-last rows).
    pub(crate) fn to_cpu(&self) -> Result<crate::cpu::norm::LayerNormParams> {
        self.inner.to_cpu()
    }
}

impl Module for LayerNorm2d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.inner.forward(&x.permute((0, 2, 3, 1))?)?;
        y.permute((0, 3, 1, 2))?.contiguous()
    }
}

/// A [`Conv2d`]'s shape and hyperparameters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvGeometry {
    /// `(out_ch, in_ch / groups, k, k)`.
    pub weight_shape: (usize, usize, usize, usize),
    /// Stride.
    pub stride: usize,
    /// Zero padding.
    pub padding: usize,
    /// Groups.
    pub groups: usize,
}

/// A 2-D convolution with an optional bias; depthwise convolutions (groups == channels)
/// run a direct kernel instead of candle's per-group loop.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: usize,
    padding: usize,
    groups: usize,
}

impl Conv2d {
    /// Loads a plain `nn.Conv2d` (`weight`, and `bias` when `with_bias`).
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        w: &Weights,
        in_ch: usize,
        out_ch: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        with_bias: bool,
    ) -> Result<Self> {
        let weight = w.get("weight", &[out_ch, in_ch, kernel, kernel])?;
        let bias = if with_bias {
            Some(w.get("bias", &[out_ch])?)
        } else {
            None
        };
        Ok(Self {
            weight,
            bias,
            stride,
            padding,
            groups: 1,
        })
    }

    /// Loads TinyViT's `Conv2d_BN` (`c.weight` without bias, then `bn.*`) and folds the
    /// BatchNorm (eval mode, eps 1e-5) into the convolution's weight and bias.
    #[allow(clippy::too_many_arguments)]
    pub fn load_bn(
        w: &Weights,
        in_ch: usize,
        out_ch: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        groups: usize,
    ) -> Result<Self> {
        let c = w.pp("c");
        let bn = w.pp("bn");
        let weight = c.get_host("weight", &[out_ch, in_ch / groups, kernel, kernel])?;
        let gamma = bn.get_host("weight", &[out_ch])?;
        let beta = bn.get_host("bias", &[out_ch])?;
        let mean = bn.get_host("running_mean", &[out_ch])?;
        let var = bn.get_host("running_var", &[out_ch])?;
        let scale = (gamma / (var + 1e-5)?.sqrt()?)?;
        let weight = weight.broadcast_mul(&scale.reshape((out_ch, 1, 1, 1))?)?;
        let bias = (beta - (mean * &scale)?)?;
        let device = w.device();
        Ok(Self {
            weight: weight.to_device(device)?,
            bias: Some(bias.to_device(device)?),
            stride,
            padding,
            groups,
        })
    }
}

impl Conv2d {
    /// Host copy of the weight, `(out, in / groups, k, k)` row-major.
    pub(crate) fn host_weight(&self) -> Result<Vec<f32>> {
        host_values(&self.weight)
    }

    /// Host copy of the bias, if any.
    pub(crate) fn host_bias(&self) -> Result<Option<Vec<f32>>> {
        self.bias.as_ref().map(host_values).transpose()
    }

    /// Shape and hyperparameters, for the CPU kernels.
    pub(crate) fn geometry(&self) -> Result<ConvGeometry> {
        Ok(ConvGeometry {
            weight_shape: self.weight.dims4()?,
            stride: self.stride,
            padding: self.padding,
            groups: self.groups,
        })
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let out_ch = self.weight.dim(0)?;
        let depthwise = self.groups > 1 && self.groups == out_ch;
        let y = if depthwise && x.device().is_cpu() {
            crate::layers::depthwise::conv2d_depthwise(x, &self.weight, self.stride, self.padding)?
        } else if depthwise {
            crate::layers::depthwise::conv2d_depthwise_shifted(
                x,
                &self.weight,
                self.stride,
                self.padding,
            )?
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

impl ConvTranspose2d {
    /// For the CPU kernels: the kernel-size-equals-stride transposed convolution as a
    /// linear map from each input pixel's channels to its `k x k` output pixels, columns
    /// ordered `(dy * k + dx) * out + co`, with the bias repeated per output pixel.
    pub(crate) fn to_cpu_linear(&self) -> Result<crate::cpu::linear::Linear> {
        let (in_ch, out_ch, k, k2) = self.weight.dims4()?;
        if k != k2 || k != self.stride {
            return Err(crate::error::ModelError::Shape(
                "transposed convolution with kernel != stride".into(),
            ));
        }
        let w = host_values(&self.weight)?;
        let b = host_values(&self.bias)?;
        let cols = k * k * out_ch;
        let mut weight = vec![0.0; in_ch * cols];
        for ci in 0..in_ch {
            for co in 0..out_ch {
                for pos in 0..k * k {
                    weight[ci * cols + pos * out_ch + co] = w[(ci * out_ch + co) * k * k + pos];
                }
            }
        }
        let bias = (0..k * k).flat_map(|_| b.iter().copied()).collect();
        Ok(crate::cpu::linear::Linear {
            weight,
            bias: Some(bias),
            in_dim: in_ch,
            out_dim: cols,
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

pub mod depthwise;
pub mod norm;
