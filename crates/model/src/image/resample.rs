//! A port of Pillow 13's `Resample.c` for 8-bit RGB with the BILINEAR filter (8-bit fixed
//! point, two passes in Pillow's order), so that resized pixels are bit-identical to
//! Pillow's `Image.resize(size, BILINEAR)`, which the reference preprocessing runs.

use image::RgbImage;
use rayon::prelude::*;

use crate::error::{ModelError, Result};

/// Resizes to `width` x `height` exactly as Pillow's `Image.resize(size, BILINEAR)` does
/// (triangle filter whose support widens with the downscale factor, 22-bit fixed-point
/// weights, rounding and clamping to 8 bits after each pass, the passes in Pillow 13's
/// order, see `horizontal_first`).
/// Zero sizes give [`ModelError::ImageDecode`].
pub fn resize_rgb(image: &RgbImage, width: usize, height: usize) -> Result<RgbImage> {
    let (in_w, in_h) = (image.width() as usize, image.height() as usize);
    if in_w == 0 || in_h == 0 || width == 0 || height == 0 {
        return Err(ModelError::ImageDecode(format!(
            "cannot resize a {in_w}x{in_h} image to {width}x{height}"
        )));
    }
    let out_w = u32::try_from(width).map_err(|_| too_wide(width, height))?;
    let out_h = u32::try_from(height).map_err(|_| too_wide(width, height))?;
    let src = image.as_raw();
    let need_horizontal = width != in_w;
    let need_vertical = height != in_h;
    let pixels = if horizontal_first(in_w, in_h, width, height) {
        let vert = Coefficients::new(in_h, height);
        // Only the source rows the vertical pass reads go through the horizontal pass.
        let (first_row, end_row) = vert.span();
        let rows = &src[first_row * in_w * 3..end_row * in_w * 3];
        let horizontal;
        let rows = if need_horizontal {
            horizontal = resample_horizontal(rows, in_w, &Coefficients::new(in_w, width));
            &horizontal[..]
        } else {
            rows
        };
        if need_vertical {
            resample_vertical(rows, width, &vert, first_row)
        } else {
            rows.to_vec()
        }
    } else {
        let vertical = resample_vertical(src, in_w, &Coefficients::new(in_h, height), 0);
        if need_horizontal {
            resample_horizontal(&vertical, in_w, &Coefficients::new(in_w, width))
        } else {
            vertical
        }
    };
    RgbImage::from_raw(out_w, out_h, pixels).ok_or_else(|| too_wide(width, height))
}

/// Pillow 13's pass order (`ImagingResampleInner`, python-pillow/Pillow#9549): vertical
/// first when the height loses more than twice as many pixels as the width, otherwise
/// horizontal first. Releases before Pillow 13 go horizontal first in (nearly) all cases;
/// the two orders can differ by 1 in a few values because each pass rounds to 8 bits.
fn horizontal_first(in_w: usize, in_h: usize, out_w: usize, out_h: usize) -> bool {
    let dh = in_h as i64 - out_h as i64;
    let dw = in_w as i64 - out_w as i64;
    !(dh > 0 && dh > dw.saturating_mul(2))
}

fn too_wide(width: usize, height: usize) -> ModelError {
    ModelError::ImageDecode(format!("cannot resize to {width}x{height}"))
}

/// Fixed-point bits of Pillow's 8-bit resampling weights (`PRECISION_BITS`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the BILINEAR filter: for each
/// output index, the first input index, the number of taps and the fixed-point weights.
struct Coefficients {
    /// `(first input index, number of taps)` per output index.
    bounds: Vec<(usize, usize)>,
    /// Weights, `ksize` per output index (unused tail is zero).
    weights: Vec<i32>,
    /// Stride of `weights`.
    ksize: usize,
}

impl Coefficients {
    fn new(in_size: usize, out_size: usize) -> Self {
        let scale = in_size as f64 / out_size as f64;
        let filter_scale = scale.max(1.0);
        // The bilinear (triangle) filter has support 1.
        let support = filter_scale;
        let ksize = support.ceil() as usize * 2 + 1;
        let inv = 1.0 / filter_scale;
        let mut bounds = Vec::with_capacity(out_size);
        let mut weights = vec![0i32; out_size * ksize];
        let mut taps = vec![0.0f64; ksize];
        for (xx, out_weights) in weights.chunks_exact_mut(ksize).enumerate() {
            let center = (xx as f64 + 0.5) * scale;
            // C `(int)` truncates toward zero; negative values are clamped to 0 anyway.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let count = xmax.saturating_sub(xmin);
            let mut total = 0.0;
            for (x, tap) in taps.iter_mut().enumerate().take(count) {
                let w = triangle(((x + xmin) as f64 - center + 0.5) * inv);
                *tap = w;
                total += w;
            }
            for (tap, out) in taps.iter().zip(out_weights.iter_mut()).take(count) {
                let w = if total != 0.0 { tap / total } else { *tap };
                let fixed = w * f64::from(1u32 << PRECISION_BITS);
                *out = if w < 0.0 {
                    (fixed - 0.5) as i32
                } else {
                    (fixed + 0.5) as i32
                };
            }
            bounds.push((xmin, count));
        }
        Self {
            bounds,
            weights,
            ksize,
        }
    }

    /// The half-open range of input indices any output reads.
    fn span(&self) -> (usize, usize) {
        let first = self.bounds.first().map_or(0, |b| b.0);
        let end = self.bounds.last().map_or(0, |b| b.0 + b.1);
        (first, end.max(first))
    }

    fn taps(&self, out_index: usize) -> (usize, &[i32]) {
        let (start, count) = self.bounds[out_index];
        let offset = out_index * self.ksize;
        (start, &self.weights[offset..offset + count])
    }
}

/// Pillow's `bilinear_filter`.
fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// Pillow's `clip8`: drop the fixed-point fraction and clamp to 0..=255.
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Rounding offset every fixed-point sum starts from.
const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// Resamples each RGB row of `src` (rows of `in_w` pixels) to `coeffs.bounds.len()` pixels.
fn resample_horizontal(src: &[u8], in_w: usize, coeffs: &Coefficients) -> Vec<u8> {
    let out_w = coeffs.bounds.len();
    let rows = src.len() / (in_w * 3);
    let mut out = vec![0u8; rows * out_w * 3];
    out.par_chunks_exact_mut(out_w * 3)
        .zip(src.par_chunks_exact(in_w * 3))
        .for_each(|(out_row, src_row)| {
            mobilesam_kernels::yield_point::reached();
            for (xx, px) in out_row.chunks_exact_mut(3).enumerate() {
                let (start, weights) = coeffs.taps(xx);
                let window = &src_row[start * 3..(start + weights.len()) * 3];
                let (mut r, mut g, mut b) = (HALF, HALF, HALF);
                for (&k, s) in weights.iter().zip(window.chunks_exact(3)) {
                    r += i32::from(s[0]) * k;
                    g += i32::from(s[1]) * k;
                    b += i32::from(s[2]) * k;
                }
                px[0] = clip8(r);
                px[1] = clip8(g);
                px[2] = clip8(b);
            }
        });
    out
}

/// Resamples the columns of `src` (RGB rows of `width` pixels; row 0 is input row
/// `first_row`) to `coeffs.bounds.len()` rows.
fn resample_vertical(src: &[u8], width: usize, coeffs: &Coefficients, first_row: usize) -> Vec<u8> {
    let stride = width * 3;
    let out_h = coeffs.bounds.len();
    let mut out = vec![0u8; out_h * stride];
    out.par_chunks_exact_mut(stride).enumerate().for_each_init(
        || vec![0i32; stride],
        |acc, (yy, out_row)| {
            mobilesam_kernels::yield_point::reached();
            let (start, weights) = coeffs.taps(yy);
            acc.fill(HALF);
            // Integer sums: accumulating row by row gives Pillow's exact result.
            for (i, &k) in weights.iter().enumerate() {
                let row_start = (start + i - first_row) * stride;
                let row = &src[row_start..row_start + stride];
                for (a, &s) in acc.iter_mut().zip(row) {
                    *a += i32::from(s) * k;
                }
            }
            for (o, &a) in out_row.iter_mut().zip(acc.iter()) {
                *o = clip8(a);
            }
        },
    );
    out
}
