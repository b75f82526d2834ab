//! A named view of a checkpoint (`image_encoder.layers.0.`), shared by both backends:
//! shape-checked tensors on the model's device for candle, host `f32` values for the fused
//! kernels, and TinyViT's `Conv2d_BN` with its BatchNorm folded in, computed once here.

use candle_core::{Device, Tensor};

use crate::error::Result;
use mobilesam_checkpoint::Checkpoint;

/// A view of a checkpoint under a name prefix.
#[derive(Clone)]
pub struct Weights<'a> {
    checkpoint: &'a Checkpoint,
    prefix: String,
    device: Device,
}

/// A convolution's weight `(out, in / groups, k, k)` row-major and its bias, on the host.
#[derive(Debug, Clone)]
pub struct HostConv {
    /// Weight values, PyTorch layout.
    pub weight: Vec<f32>,
    /// Bias per output channel, if the layer has one.
    pub bias: Option<Vec<f32>>,
    /// `(out, in / groups, k, k)`.
    pub shape: [usize; 4],
}

impl HostConv {
    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.shape[0]
    }

    /// Input channels per group.
    pub fn in_per_group(&self) -> usize {
        self.shape[1]
    }

    /// Kernel side.
    pub fn kernel(&self) -> usize {
        self.shape[2]
    }
}

impl<'a> Weights<'a> {
    /// The root view; `device` is where [`Weights::get`] puts tensors.
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
        Ok(self.get_host(name, shape)?.to_device(&self.device)?)
    }

    /// Tensor `name` under this prefix, kept on the host.
    pub fn get_host(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let full = format!("{}{}", self.prefix, name);
        Ok(self.checkpoint.get(&full, shape)?)
    }

    /// The shape of tensor `name` under this prefix; a missing tensor is an error that
    /// names it.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        let full = format!("{}{}", self.prefix, name);
        self.checkpoint
            .shape(&full)
            .map(<[usize]>::to_vec)
            .ok_or_else(|| {
                mobilesam_checkpoint::CheckpointError::MissingTensor {
                    name: full,
                    expected: vec![],
                }
                .into()
            })
    }

    /// Dimension `dim` of tensor `name` under this prefix, the tensor having `rank`
    /// dimensions: for widths read from the checkpoint.
    pub fn dim(&self, name: &str, rank: usize, dim: usize) -> Result<usize> {
        let shape = self.shape(name)?;
        if shape.len() != rank || shape.get(dim).is_none_or(|&d| d == 0) {
            return Err(crate::error::ModelError::Shape(format!(
                "tensor `{}{name}` has shape {shape:?}, expected {rank} non-zero dimensions",
                self.prefix
            )));
        }
        Ok(shape[dim])
    }

    /// Tensor `name`'s values, row-major, as `f32` on the host.
    pub fn values(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        host_values(&self.get_host(name, shape)?)
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A plain `nn.Conv2d` (`weight`, and `bias` when `with_bias`) on the host.
    pub fn conv(
        &self,
        in_ch: usize,
        out_ch: usize,
        kernel: usize,
        with_bias: bool,
    ) -> Result<HostConv> {
        let shape = [out_ch, in_ch, kernel, kernel];
        Ok(HostConv {
            weight: self.values("weight", &shape)?,
            bias: with_bias
                .then(|| self.values("bias", &[out_ch]))
                .transpose()?,
            shape,
        })
    }

    /// TinyViT's `Conv2d_BN` (`c.weight` without bias, then `bn.*`) with the BatchNorm (eval
    /// mode, eps 1e-5) folded into the convolution's weight and bias.
    pub fn conv_bn(
        &self,
        in_ch: usize,
        out_ch: usize,
        kernel: usize,
        groups: usize,
    ) -> Result<HostConv> {
        let shape = [out_ch, in_ch / groups, kernel, kernel];
        let mut weight = self.pp("c").values("weight", &shape)?;
        let bn = self.pp("bn");
        let gamma = bn.values("weight", &[out_ch])?;
        let beta = bn.values("bias", &[out_ch])?;
        let mean = bn.values("running_mean", &[out_ch])?;
        let var = bn.values("running_var", &[out_ch])?;
        let per_channel = weight.len() / out_ch;
        let mut bias = Vec::with_capacity(out_ch);
        for (o, filter) in weight.chunks_exact_mut(per_channel).enumerate() {
            let scale = gamma[o] / (var[o] + 1e-5).sqrt();
            for v in filter {
                *v *= scale;
            }
            bias.push(beta[o] - mean[o] * scale);
        }
        Ok(HostConv {
            weight,
            bias: Some(bias),
            shape,
        })
    }
}

/// A tensor's values, row-major, as `f32` on the host.
pub fn host_values(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1::<f32>()?)
}
