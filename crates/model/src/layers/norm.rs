//! LayerNorm over the last dimension on the CPU, with two-pass statistics (mean, then the
//! mean of squared deviations) as PyTorch computes them.

use candle_core::{Result, Tensor};
use rayon::prelude::*;

/// `(x - mean) / sqrt(var + eps) * weight + bias` over the last dimension of `x`.
pub fn layer_norm_cpu(x: &Tensor, weight: &Tensor, bias: &Tensor, eps: f32) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let Some(&dim) = dims.last() else {
        candle_core::bail!("layer norm of a scalar");
    };
    let input = x.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
    let weight = weight.to_vec1::<f32>()?;
    let bias = bias.to_vec1::<f32>()?;
    let mut out = vec![0f32; input.len()];
    out.par_chunks_mut(dim)
        .zip(input.par_chunks(dim))
        .for_each(|(dst, src)| {
            let mean = src.iter().sum::<f32>() / dim as f32;
            let var = src.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / dim as f32;
            let inv_std = 1.0 / (var + eps).sqrt();
            for (((d, s), w), b) in dst.iter_mut().zip(src).zip(&weight).zip(&bias) {
                *d = (s - mean) * inv_std * w + b;
            }
        });
    Tensor::from_vec(out, dims, x.device())
}
