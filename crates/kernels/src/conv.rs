//! Dense 3x3 convolution (zero padding 1) on a channels-last map: each task gathers the 3x3
//! neighbourhoods of a block of output pixels (im2col) into its scratch and multiplies them
//! by the weight; bias and the activation are applied in the same pass. Inputs of a few
//! channels (an RGB image) are convolved directly instead, one output row per task.

use rayon::prelude::*;

use super::buffers::with_scratch;
use super::conv_narrow;
use super::epilogue::{apply_epilogue, Activation, Epilogue};
use super::linear::par_row_blocks;
use super::matmul::{matmul, MatRef};

/// A 3x3 convolution with zero padding 1.
#[derive(Debug, Clone)]
pub struct Conv3x3 {
    /// `(9 * in_ch, out_ch)`, row `(ky * 3 + kx) * in_ch + ci`.
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    in_ch: usize,
    out_ch: usize,
    stride: usize,
    /// For an RGB input (3 channels in, a multiple of 16 out): the weight in blocks of
    /// output channels, for the direct path. With 27 products per output channel,
    /// gathering im2col patches and calling the matrix product cost more than the
    /// arithmetic.
    rgb_blocks: Option<Vec<RgbBlock>>,
    /// Whether the channels take the direct path of [`super::conv_narrow`].
    narrow: bool,
}

impl Conv3x3 {
    /// From PyTorch's `(out_ch, in_ch, 3, 3)` weight.
    pub fn from_torch(
        weight: &[f32],
        bias: Option<Vec<f32>>,
        in_ch: usize,
        out_ch: usize,
        stride: usize,
    ) -> Self {
        assert_eq!(weight.len(), out_ch * in_ch * 9, "conv weight shape");
        let mut packed = vec![0.0; 9 * in_ch * out_ch];
        for o in 0..out_ch {
            for i in 0..in_ch {
                for tap in 0..9 {
                    packed[(tap * in_ch + i) * out_ch + o] = weight[(o * in_ch + i) * 9 + tap];
                }
            }
        }
        let rgb_blocks = (in_ch == 3 && out_ch.is_multiple_of(RGB_BLOCK)).then(|| {
            (0..out_ch / RGB_BLOCK)
                .map(|b| {
                    let mut block = [0.0; RGB_TAPS * RGB_BLOCK];
                    for (k, taps) in block.chunks_exact_mut(RGB_BLOCK).enumerate() {
                        taps.copy_from_slice(&packed[k * out_ch + b * RGB_BLOCK..][..RGB_BLOCK]);
                    }
                    block
                })
                .collect()
        });
        Self {
            weight: packed,
            bias,
            in_ch,
            out_ch,
            stride,
            rgb_blocks,
            narrow: conv_narrow::supports(in_ch, out_ch),
        }
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.out_ch
    }

    /// Output (height, width) for an input of `h x w`.
    pub fn out_size(&self, h: usize, w: usize) -> (usize, usize) {
        ((h - 1) / self.stride + 1, (w - 1) / self.stride + 1)
    }

    /// `x` (h, w, in_ch) -> `out` (h_out, w_out, out_ch), `activation` last.
    ///
    /// # Panics
    /// When the lengths do not match.
    pub fn forward(&self, x: &[f32], h: usize, w: usize, out: &mut [f32], activation: Activation) {
        let (ci, co) = (self.in_ch, self.out_ch);
        let (ho, wo) = self.out_size(h, w);
        assert!(
            x.len() == h * w * ci && out.len() == ho * wo * co,
            "conv3x3: shapes"
        );
        let k = 9 * ci;
        let weight = MatRef::rows(&self.weight, k, co, co);
        let epilogue = Epilogue {
            bias: self.bias.as_deref(),
            activation,
        };
        if self.rgb_blocks.is_some() || self.narrow {
            out.par_chunks_mut(wo * co)
                .enumerate()
                .for_each(|(oy, row)| {
                    crate::yield_point::reached();
                    let input_rows: [Option<&[f32]>; 3] = std::array::from_fn(|ky| {
                        (oy * self.stride + ky)
                            .checked_sub(1)
                            .filter(|&iy| iy < h)
                            .map(|iy| &x[iy * w * ci..(iy + 1) * w * ci])
                    });
                    match &self.rgb_blocks {
                        Some(blocks) => rgb_row(input_rows, w, blocks, self.stride, row),
                        None => conv_narrow::row(
                            input_rows,
                            w,
                            &self.weight,
                            (ci, co),
                            self.stride,
                            row,
                        ),
                    }
                    apply_epilogue(row, co, epilogue, None);
                });
            return;
        }
        par_row_blocks(out, co, |p0, rows| {
            let n = rows.len() / co;
            with_scratch(n * k, |cols| {
                for (r, patch) in cols.chunks_exact_mut(k).enumerate() {
                    let p = p0 + r;
                    let (oy, ox) = (p / wo, p % wo);
                    for (ky, dst) in patch.chunks_exact_mut(3 * ci).enumerate() {
                        self.gather_row(x, h, w, oy * self.stride + ky, ox * self.stride, dst);
                    }
                }
                matmul(MatRef::rows(cols, n, k, k), weight, rows, co, false);
            });
            apply_epilogue(rows, co, epilogue, None);
        });
    }
}

/// Values of one RGB patch: 3 x 3 pixels of 3 channels.
const RGB_TAPS: usize = 27;

/// Output channels per register block of the RGB path.
const RGB_BLOCK: usize = 16;

/// The weights of [`RGB_BLOCK`] output channels for the RGB path: row `k` (patch value
/// `(ky * 3 + kx) * 3 + c`) holds the block's channels.
type RgbBlock = [f32; RGB_TAPS * RGB_BLOCK];

/// Output pixels computed together by the RGB path: their accumulators are independent
/// chains of FMAs, and each weight row loaded serves all of them.
const RGB_PIXELS: usize = 4;

multiversioned! {
    /// One output row of a convolution of an RGB input, without bias: `inputs` are the
    /// three input rows of the kernel (`None` outside the map), `w` pixels each.
    fn rgb_row(inputs: [Option<&[f32]>; 3], w: usize, blocks: &[RgbBlock], stride: usize, row: &mut [f32]) {
        let co = blocks.len() * RGB_BLOCK;
        let wo = row.len() / co;
        let mut ox = 0;
        while ox < wo {
            let count = RGB_PIXELS.min(wo - ox);
            let mut patches = [[0.0f32; RGB_TAPS]; RGB_PIXELS];
            for (i, patch) in patches.iter_mut().take(count).enumerate() {
                rgb_patch(&inputs, w, (ox + i) * stride, patch);
            }
            let pixels = &mut row[ox * co..(ox + count) * co];
            for (b, block) in blocks.iter().enumerate() {
                // Fixed sizes throughout: the loops unroll into vector FMAs on registers.
                let mut acc = [[0.0f32; RGB_BLOCK]; RGB_PIXELS];
                for (k, taps) in block.chunks_exact(RGB_BLOCK).enumerate() {
                    for (a, patch) in acc.iter_mut().zip(&patches) {
                        let v = patch[k];
                        for (a, &t) in a.iter_mut().zip(taps) {
                            *a = v.mul_add(t, *a);
                        }
                    }
                }
                for (i, a) in acc.iter().take(count).enumerate() {
                    pixels[i * co + b * RGB_BLOCK..][..RGB_BLOCK].copy_from_slice(a);
                }
            }
            ox += count;
        }
    }
}

/// The 3x3 RGB patch centred on input column `x1 - 1` of the three input rows (zeros
/// outside the map).
#[inline(always)]
fn rgb_patch(inputs: &[Option<&[f32]>; 3], w: usize, x1: usize, patch: &mut [f32; RGB_TAPS]) {
    let inside = x1 >= 1 && x1 + 1 < w;
    for (ky, input) in inputs.iter().enumerate() {
        let Some(input) = input else {
            continue;
        };
        if inside {
            // All three columns inside: one run of nine values, copied at a fixed size.
            let (Ok(dst), Ok(src)) = (
                <&mut [f32; 9]>::try_from(&mut patch[ky * 9..ky * 9 + 9]),
                <&[f32; 9]>::try_from(&input[(x1 - 1) * 3..(x1 + 2) * 3]),
            ) else {
                continue;
            };
            *dst = *src;
            continue;
        }
        for kx in 0..3 {
            if let Some(ix) = (x1 + kx).checked_sub(1).filter(|&x| x < w) {
                patch[(ky * 3 + kx) * 3..][..3].copy_from_slice(&input[ix * 3..ix * 3 + 3]);
            }
        }
    }
}

impl Conv3x3 {
    /// One kernel row of an im2col patch: input row `iy1 - 1`, columns `ix1 - 1 ..= ix1 +
    /// 1` (zero outside the map), `3 * in_ch` values into `dst`.
    fn gather_row(&self, x: &[f32], h: usize, w: usize, iy1: usize, ix1: usize, dst: &mut [f32]) {
        let ci = self.in_ch;
        let Some(iy) = iy1.checked_sub(1).filter(|&y| y < h) else {
            dst.fill(0.0);
            return;
        };
        if ix1 >= 1 && ix1 + 1 < w {
            // All three columns inside: one contiguous run of the row.
            let src = &x[(iy * w + ix1 - 1) * ci..][..3 * ci];
            match (
                <&[f32; 9]>::try_from(src),
                <&mut [f32; 9]>::try_from(&mut *dst),
            ) {
                // The RGB input: a fixed-size copy instead of a call per pixel.
                (Ok(src), Ok(dst)) => *dst = *src,
                _ => dst.copy_from_slice(src),
            }
            return;
        }
        for (tap, d) in dst.chunks_exact_mut(ci).enumerate() {
            match (ix1 + tap).checked_sub(1).filter(|&x| x < w) {
                Some(ix) => d.copy_from_slice(&x[(iy * w + ix) * ci..][..ci]),
                None => d.fill(0.0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_direct_convolution() {
        // 3 input channels take the fixed-size gather (or, with 16 or 32 output channels,
        // the direct RGB path), 8 or 16 the narrow direct path (with 8 or 16 output
        // channels), the others the general one.
        for ci in [2, 3, 5, 8, 16] {
            for co in [4, 8, 16, 32] {
                check_against_direct(ci, co);
            }
        }
    }

    fn check_against_direct(ci: usize, co: usize) {
        // 19 columns: two full blocks of the narrow path's 8 pixels and a short one.
        let (h, w) = (6, 19);
        let x: Vec<f32> = (0..h * w * ci)
            .map(|i| ((i * 13) % 17) as f32 * 0.1 - 0.8)
            .collect();
        let weight: Vec<f32> = (0..co * ci * 9)
            .map(|i| ((i * 5) % 7) as f32 * 0.3 - 1.0)
            .collect();
        let bias: Vec<f32> = (0..co).map(|i| i as f32).collect();
        for stride in [1, 2] {
            let conv = Conv3x3::from_torch(&weight, Some(bias.clone()), ci, co, stride);
            let (ho, wo) = conv.out_size(h, w);
            let mut out = vec![0.0; ho * wo * co];
            conv.forward(&x, h, w, &mut out, Activation::Identity);
            for oy in 0..ho {
                for ox in 0..wo {
                    for o in 0..co {
                        let mut s = bias[o];
                        for i in 0..ci {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let iy = (oy * stride + ky) as isize - 1;
                                    let ix = (ox * stride + kx) as isize - 1;
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w
                                    {
                                        s += x[(iy as usize * w + ix as usize) * ci + i]
                                            * weight[((o * ci + i) * 3 + ky) * 3 + kx];
                                    }
                                }
                            }
                        }
                        let got = out[(oy * wo + ox) * co + o];
                        assert!((got - s).abs() < 1e-4, "stride {stride}");
                    }
                }
            }
        }
    }
}
