//! Depthwise 2-D convolution as shifted whole-tensor multiply-adds. candle's grouped
//! convolution splits the tensor into one convolution per group, which for TinyViT's
//! 256-channel depthwise layers costs far more than the math.

use candle_core::{Result, Tensor};

/// The input's (B, C, H, W) and the square kernel's size, checking that `weight` is
/// (C, 1, K, K).
fn depthwise_shapes(x: &Tensor, weight: &Tensor) -> Result<((usize, usize, usize, usize), usize)> {
    let dims = x.dims4()?;
    let (wc, one, k, k2) = weight.dims4()?;
    if wc != dims.1 || one != 1 || k != k2 {
        candle_core::bail!(
            "depthwise conv: input has {} channels, kernel is {:?}",
            dims.1,
            weight.dims()
        );
    }
    Ok((dims, k))
}

/// `x` (B, C, H, W) convolved with `weight` (C, 1, K, K), zero padding `padding`, stride
/// `stride`, no bias, from whole-tensor operations on any device: one shifted
/// multiply-add per kernel tap (k * k element-wise passes over the padded input) instead
/// of candle's grouped convolution, which launches one convolution per channel. Stride 2
/// takes every other row and column of the stride-1 result, which is exact when the
/// stride-1 output's height and width are even (TinyViT's 256, 128 and 64); other shapes
/// fall back to candle's grouped convolution.
pub fn conv2d_depthwise_shifted(
    x: &Tensor,
    weight: &Tensor,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let ((b, c, h, w), k) = depthwise_shapes(x, weight)?;
    let full_h = h + 2 * padding + 1 - k;
    let full_w = w + 2 * padding + 1 - k;
    let subsample = match stride {
        1 => false,
        2 if full_h.is_multiple_of(2) && full_w.is_multiple_of(2) => true,
        _ => return x.conv2d(weight, padding, stride, 1, c),
    };
    let padded = x.pad_with_zeros(2, padding, padding)?;
    let padded = padded.pad_with_zeros(3, padding, padding)?;
    let taps = weight.reshape((c, k * k))?;
    let mut acc: Option<Tensor> = None;
    for ky in 0..k {
        let rows = padded.narrow(2, ky, full_h)?;
        for kx in 0..k {
            let window = rows.narrow(3, kx, full_w)?;
            let tap = taps.narrow(1, ky * k + kx, 1)?.reshape((1, c, 1, 1))?;
            let term = window.broadcast_mul(&tap)?;
            acc = Some(match acc {
                None => term,
                Some(sum) => (sum + term)?,
            });
        }
    }
    let Some(full) = acc else {
        candle_core::bail!("depthwise conv: empty kernel");
    };
    if !subsample {
        return Ok(full);
    }
    full.reshape((b, c, full_h / 2, 2, full_w / 2, 2))?
        .narrow(3, 0, 1)?
        .narrow(5, 0, 1)?
        .reshape((b, c, full_h / 2, full_w / 2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn shifted_form_matches_grouped_convolution() -> Result<()> {
        let dev = Device::Cpu;
        // Even sizes take the shifted path at both strides; 9 x 11 falls back at stride 2.
        for (h, w) in [(8, 12), (9, 11)] {
            let x = Tensor::randn(0f32, 1.0, (2, 6, h, w), &dev)?;
            let wt = Tensor::randn(0f32, 1.0, (6, 1, 3, 3), &dev)?;
            for stride in [1, 2] {
                let ours = conv2d_depthwise_shifted(&x, &wt, stride, 1)?;
                let reference = x.conv2d(&wt, 1, stride, 1, 6)?;
                assert_eq!(ours.dims(), reference.dims(), "{h}x{w} stride {stride}");
                let diff = (ours - reference)?.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(diff < 1e-5, "{h}x{w} stride {stride}: max diff {diff}");
            }
        }
        Ok(())
    }
}
