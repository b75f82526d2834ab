//! Depthwise 3x3 convolution (zero padding 1, stride 1 or 2) on a channels-last map, with
//! bias and an optional activation; vectorized over channels, output rows in parallel.

use rayon::prelude::*;

use super::epilogue::{activate, Activation};

/// A depthwise 3x3 convolution with its (BatchNorm-folded) bias.
#[derive(Debug, Clone)]
pub struct DepthwiseConv3x3 {
    /// Tap-major: `weight[tap * channels + c]`, tap = `ky * 3 + kx`.
    weight: Vec<f32>,
    bias: Vec<f32>,
    channels: usize,
    stride: usize,
}

impl DepthwiseConv3x3 {
    /// From PyTorch's `(channels, 1, 3, 3)` weight.
    pub fn from_torch(weight: &[f32], bias: Vec<f32>, stride: usize) -> Self {
        let channels = bias.len();
        assert_eq!(weight.len(), channels * 9, "depthwise weight shape");
        let mut tap_major = vec![0.0; channels * 9];
        for c in 0..channels {
            for tap in 0..9 {
                tap_major[tap * channels + c] = weight[c * 9 + tap];
            }
        }
        Self {
            weight: tap_major,
            bias,
            channels,
            stride,
        }
    }

    /// The step between output pixels, in input pixels.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Output (height, width) for an input of `h x w`.
    pub fn out_size(&self, h: usize, w: usize) -> (usize, usize) {
        ((h - 1) / self.stride + 1, (w - 1) / self.stride + 1)
    }

    /// `x` (h, w, channels) -> `out` (h_out, w_out, channels).
    ///
    /// # Panics
    /// When the lengths do not match.
    pub fn forward(&self, x: &[f32], h: usize, w: usize, out: &mut [f32], activation: Activation) {
        let c = self.channels;
        let (ho, wo) = self.out_size(h, w);
        assert!(
            x.len() == h * w * c && out.len() == ho * wo * c,
            "depthwise: shapes"
        );
        out.par_chunks_mut(wo * c)
            .enumerate()
            .for_each(|(oy, row)| {
                crate::yield_point::reached();
                let inputs = std::array::from_fn(|ky| {
                    (oy * self.stride + ky)
                        .checked_sub(1)
                        .filter(|&iy| iy < h)
                        .map(|iy| &x[iy * w * c..(iy + 1) * w * c])
                });
                self.row(inputs, w, 0, row, activation)
            });
    }

    /// Output pixels `ox0..` of one output row (as many as `out` holds, `channels` values
    /// each) from the row's three input rows (`w` pixels each; `None` above or below the
    /// map, which counts as zeros).
    ///
    /// # Panics
    /// When an input row is not `w` pixels long or `out` reaches past the row.
    pub fn row(
        &self,
        inputs: [Option<&[f32]>; 3],
        w: usize,
        ox0: usize,
        out: &mut [f32],
        activation: Activation,
    ) {
        let c = self.channels;
        let (_, wo) = self.out_size(1, w);
        assert!(
            inputs.iter().flatten().all(|r| r.len() == w * c)
                && out.len().is_multiple_of(c.max(1))
                && ox0 + out.len() / c.max(1) <= wo,
            "depthwise: row shapes"
        );
        conv_row(
            inputs,
            (w, c),
            &self.weight,
            &self.bias,
            self.stride,
            ox0,
            out,
            activation,
        );
    }
}

/// Channels per register block: the accumulators of one block stay in registers across
/// the nine taps.
const BLOCK: usize = 32;

/// Channels per register block of a layer's last channels, past its [`BLOCK`]s (80 = 2 x
/// 32 + 16, as YOLO heads have).
const TAIL_BLOCK: usize = 16;

/// The first `N` values of `values`.
#[inline(always)]
fn block<const N: usize>(values: &[f32]) -> [f32; N] {
    let mut out = [0.0; N];
    out.copy_from_slice(&values[..N]);
    out
}

/// Channels `c0..c0 + N` of one output pixel from its `taps`: bias, then the taps in order.
#[inline(always)]
fn pixel_block<const N: usize>(
    taps: &[(&[f32], usize)],
    weight: &[f32],
    bias: &[f32],
    c0: usize,
    px: &mut [f32],
) {
    let mut acc = block::<N>(&bias[c0..]);
    for &(src, ker) in taps {
        let (s, k) = (block::<N>(&src[c0..]), block::<N>(&weight[ker + c0..]));
        // Fixed-length arrays: the loop unrolls into vector FMAs on registers.
        for i in 0..N {
            acc[i] = s[i].mul_add(k[i], acc[i]);
        }
    }
    px[c0..c0 + N].copy_from_slice(&acc);
}

multiversioned! {
    #[allow(clippy::too_many_arguments)]
    fn conv_row(
        inputs: [Option<&[f32]>; 3],
        (w, c): (usize, usize),
        weight: &[f32],
        bias: &[f32],
        stride: usize,
        ox0: usize,
        row: &mut [f32],
        activation: Activation,
    ) {
        // (input pixel's values from channel 0, offset into `weight`) of the taps inside the
        // map, per output pixel.
        let mut taps: [(&[f32], usize); 9] = [(&[], 0); 9];
        for (i, px) in row.chunks_exact_mut(c).enumerate() {
            let ox = ox0 + i;
            let mut count = 0;
            for (ky, input) in inputs.iter().enumerate() {
                let Some(input) = input else {
                    continue;
                };
                for kx in 0..3 {
                    let Some(ix) = (ox * stride + kx).checked_sub(1).filter(|&x| x < w) else {
                        continue;
                    };
                    taps[count] = (&input[ix * c..(ix + 1) * c], (ky * 3 + kx) * c);
                    count += 1;
                }
            }
            let taps = &taps[..count];
            let blocks = c / BLOCK * BLOCK;
            for c0 in (0..blocks).step_by(BLOCK) {
                pixel_block::<BLOCK>(taps, weight, bias, c0, px);
            }
            let tails = blocks + (c - blocks) / TAIL_BLOCK * TAIL_BLOCK;
            for c0 in (blocks..tails).step_by(TAIL_BLOCK) {
                pixel_block::<TAIL_BLOCK>(taps, weight, bias, c0, px);
            }
            for ch in tails..c {
                let mut a = bias[ch];
                for &(src, ker) in taps {
                    a = src[ch].mul_add(weight[ker + ch], a);
                }
                px[ch] = a;
            }
        }
        activate(row, activation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_direct_convolution() {
        // Scalar channels only; one 32-channel block; 32 + 16 + scalar (YOLO heads: 80).
        for c in [5, 37, 53, 80] {
            check_channels(c);
        }
    }

    fn check_channels(c: usize) {
        let (h, w) = (7, 6);
        let x: Vec<f32> = (0..h * w * c)
            .map(|i| ((i * 13) % 17) as f32 * 0.1 - 0.8)
            .collect();
        let weight: Vec<f32> = (0..c * 9)
            .map(|i| ((i * 5) % 7) as f32 * 0.3 - 1.0)
            .collect();
        let bias: Vec<f32> = (0..c).map(|i| i as f32).collect();
        for stride in [1, 2] {
            let conv = DepthwiseConv3x3::from_torch(&weight, bias.clone(), stride);
            let (ho, wo) = conv.out_size(h, w);
            let mut out = vec![0.0; ho * wo * c];
            conv.forward(&x, h, w, &mut out, Activation::Identity);
            for oy in 0..ho {
                for ox in 0..wo {
                    for ch in 0..c {
                        let mut s = bias[ch];
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let iy = (oy * stride + ky) as isize - 1;
                                let ix = (ox * stride + kx) as isize - 1;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                    s += x[(iy as usize * w + ix as usize) * c + ch]
                                        * weight[ch * 9 + ky * 3 + kx];
                                }
                            }
                        }
                        let got = out[(oy * wo + ox) * c + ch];
                        assert!((got - s).abs() < 1e-5, "stride {stride} ({oy},{ox},{ch})");
                    }
                }
            }
        }
    }
}
