//! A 1x1 convolution (GELU), a depthwise 3x3 convolution (GELU) and a second 1x1
//! convolution, fused per image row: TinyViT's MBConv blocks and patch-merging layers.
//!
//! Run layer by layer, the wide middle maps (e.g. 256 x 256 x 256 floats, 64 MB, in the
//! first stage) are written to memory and read back twice. Here each task owns a band of
//! output rows and keeps only the three expanded input rows the depthwise convolution
//! needs (a ring, refilled one row at a time) and a few depthwise output pixels, so the
//! middle maps never leave the cache; a band's first rows repeat the expansion of one row
//! from the band above.

use rayon::prelude::*;

use super::buffers::with_scratch;
use super::depthwise::DepthwiseConv3x3;
use super::epilogue::Activation;
use super::linear::{Fused, Linear};

/// Depthwise output pixels projected per matrix product.
const PIXELS_PER_PRODUCT: usize = 256;

/// Expand -> depthwise -> project on a channels-last map.
#[derive(Debug, Clone)]
pub struct InvertedResidual {
    /// The first 1x1 convolution (GELU after it).
    pub expand: Linear,
    /// The depthwise 3x3 convolution (GELU after it).
    pub depthwise: DepthwiseConv3x3,
    /// The second 1x1 convolution.
    pub project: Linear,
}

/// What the projection's output gets: with `residual`, the block's input is added and
/// GELU applied (MBConv); without, nothing (patch merging).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// `gelu(project(..) + x)`.
    ResidualGelu,
    /// `project(..)`.
    Plain,
}

impl InvertedResidual {
    /// Output side for an input `side x side`.
    pub fn out_side(&self, side: usize) -> usize {
        self.depthwise.out_size(side, side).0
    }

    /// `x` (side, side, expand.in_dim) -> `out` (side', side', project.out_dim).
    ///
    /// # Panics
    /// When the lengths do not match, or [`Finish::ResidualGelu`] changes the shape.
    pub fn forward(&self, x: &[f32], side: usize, out: &mut [f32], finish: Finish) {
        let (c_in, hidden, c_out) = (
            self.expand.in_dim,
            self.expand.out_dim,
            self.project.out_dim,
        );
        let out_side = self.out_side(side);
        assert!(
            x.len() == side * side * c_in
                && out.len() == out_side * out_side * c_out
                && self.project.in_dim == hidden,
            "inverted residual: shapes"
        );
        assert!(
            finish == Finish::Plain || (out_side == side && c_out == c_in),
            "inverted residual: a residual needs equal shapes"
        );
        let out_row = out_side * c_out;
        let threads = rayon::current_num_threads().max(1);
        let band = out_side.div_ceil(threads * 4).max(4);
        out.par_chunks_mut(band * out_row)
            .enumerate()
            .for_each(|(b, rows)| {
                crate::yield_point::reached();
                self.band(x, side, b * band, rows, finish)
            });
    }

    /// Output rows `oy0..` (as many as `out` holds).
    fn band(&self, x: &[f32], side: usize, oy0: usize, out: &mut [f32], finish: Finish) {
        let (c_in, hidden, c_out) = (
            self.expand.in_dim,
            self.expand.out_dim,
            self.project.out_dim,
        );
        let stride = self.depthwise.stride();
        let out_side = self.out_side(side);
        let (in_row, mid_row, out_row) = (side * c_in, side * hidden, out_side * c_out);
        let gelu = Fused {
            gelu: true,
            ..Fused::default()
        };
        with_scratch(3 * mid_row + PIXELS_PER_PRODUCT * hidden, |scratch| {
            let (ring, dw) = scratch.split_at_mut(3 * mid_row);
            // Input row j lives in ring slot j % 3 once expanded; rows below `next` are.
            let mut next = (oy0 * stride).saturating_sub(1);
            for (i, row) in out.chunks_exact_mut(out_row).enumerate() {
                let oy = oy0 + i;
                let last = (oy * stride + 1).min(side - 1);
                while next <= last {
                    let slot = &mut ring[(next % 3) * mid_row..][..mid_row];
                    self.expand
                        .forward_serial(&x[next * in_row..][..in_row], slot, gelu);
                    next += 1;
                }
                let inputs: [Option<&[f32]>; 3] = std::array::from_fn(|ky| {
                    (oy * stride + ky)
                        .checked_sub(1)
                        .filter(|&iy| iy < side)
                        .map(|iy| &ring[(iy % 3) * mid_row..][..mid_row])
                });
                for (p, chunk) in row.chunks_mut(PIXELS_PER_PRODUCT * c_out).enumerate() {
                    let pixels = chunk.len() / c_out;
                    let ox0 = p * PIXELS_PER_PRODUCT;
                    let dw = &mut dw[..pixels * hidden];
                    self.depthwise.row(inputs, side, ox0, dw, Activation::Gelu);
                    match finish {
                        Finish::ResidualGelu => {
                            let residual = &x[oy * in_row + ox0 * c_in..][..pixels * c_in];
                            self.project.forward_serial(
                                dw,
                                chunk,
                                Fused {
                                    residual: Some(residual),
                                    gelu: true,
                                    ..Fused::default()
                                },
                            )
                        }
                        Finish::Plain => self.project.forward_serial(dw, chunk, Fused::default()),
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linear(k: usize, n: usize, seed: usize) -> Linear {
        let w: Vec<f32> = (0..k * n)
            .map(|i| (((i + seed) * 37) % 23) as f32 * 0.02 - 0.2)
            .collect();
        let b: Vec<f32> = (0..n).map(|i| (i % 5) as f32 * 0.1 - 0.2).collect();
        Linear::from_torch(&w, Some(b), k, n)
    }

    fn depthwise(c: usize, stride: usize) -> DepthwiseConv3x3 {
        let w: Vec<f32> = (0..c * 9)
            .map(|i| ((i * 11) % 13) as f32 * 0.05 - 0.3)
            .collect();
        let b: Vec<f32> = (0..c).map(|i| (i % 3) as f32 * 0.1).collect();
        DepthwiseConv3x3::from_torch(&w, b, stride)
    }

    /// The same three layers, one whole map after another.
    fn layer_by_layer(ir: &InvertedResidual, x: &[f32], side: usize, finish: Finish) -> Vec<f32> {
        let gelu = Fused {
            gelu: true,
            ..Fused::default()
        };
        let mut e = vec![0.0; side * side * ir.expand.out_dim];
        ir.expand.forward(x, &mut e, gelu);
        let os = ir.out_side(side);
        let mut d = vec![0.0; os * os * ir.expand.out_dim];
        ir.depthwise
            .forward(&e, side, side, &mut d, Activation::Gelu);
        let mut y = vec![0.0; os * os * ir.project.out_dim];
        let fused = match finish {
            Finish::ResidualGelu => Fused {
                residual: Some(x),
                gelu: true,
                ..Fused::default()
            },
            Finish::Plain => Fused::default(),
        };
        ir.project.forward(&d, &mut y, fused);
        y
    }

    #[test]
    fn matches_layer_by_layer() {
        for (side, c, hidden, c_out, stride, finish) in [
            (37, 6, 20, 6, 1, Finish::ResidualGelu),
            (70, 4, 8, 4, 1, Finish::ResidualGelu),
            (37, 6, 12, 9, 2, Finish::Plain),
            (16, 5, 7, 3, 2, Finish::Plain),
        ] {
            let ir = InvertedResidual {
                expand: linear(c, hidden, 1),
                depthwise: depthwise(hidden, stride),
                project: linear(hidden, c_out, 2),
            };
            let x: Vec<f32> = (0..side * side * c)
                .map(|i| ((i * 29) % 31) as f32 * 0.1 - 1.5)
                .collect();
            let os = ir.out_side(side);
            let mut out = vec![f32::NAN; os * os * c_out];
            ir.forward(&x, side, &mut out, finish);
            let want = layer_by_layer(&ir, &x, side, finish);
            for (i, (a, b)) in out.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() < 1e-5,
                    "side {side} stride {stride} at {i}: {a} vs {b}"
                );
            }
        }
    }
}
