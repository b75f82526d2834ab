//! SAM 2's preprocessing (`SAM2ImagePredictor.set_image` through `SAM2Transforms`): the
//! image as float32 in 0..1 (`ToTensor`), resized to 1024x1024 without keeping its aspect
//! ratio or padding (`Resize` on the float tensor: PyTorch's antialiased bilinear,
//! horizontal pass first, float32 throughout), then normalized with ImageNet's mean and
//! standard deviation in 0..1 units.

use image::RgbImage;
use rayon::prelude::*;

use super::{Preprocessed, IMAGE_SIZE};
use crate::error::{ModelError, Result};

/// Per-channel (R, G, B) mean, in 0..1 units.
pub const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// Per-channel (R, G, B) standard deviation, in 0..1 units.
pub const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The source span and normalized weights of each output sample of one axis, as PyTorch's
/// `_compute_indices_min_size_weights_aa` (bilinear filter, `align_corners=False`) computes
/// them in float32.
struct Taps {
    /// Per output sample: first source index and the weights from there.
    spans: Vec<(usize, Vec<f32>)>,
}

impl Taps {
    fn new(input: usize, output: usize) -> Self {
        let scale = input as f32 / output as f32;
        let support = if scale >= 1.0 { scale } else { 1.0 };
        let invscale = if scale >= 1.0 { 1.0 / scale } else { 1.0 };
        let spans = (0..output)
            .map(|i| {
                let center = scale * (i as f32 + 0.5);
                let xmin = ((center - support + 0.5) as i64).max(0) as usize;
                let xmax = ((center + support + 0.5) as i64).min(input as i64) as usize;
                let mut weights: Vec<f32> = (xmin..xmax)
                    .map(|j| {
                        let x = (j as f32 - center + 0.5) * invscale;
                        (1.0 - x.abs()).max(0.0)
                    })
                    .collect();
                let total: f32 = weights.iter().sum();
                if total != 0.0 {
                    weights.iter_mut().for_each(|w| *w /= total);
                }
                (xmin, weights)
            })
            .collect();
        Self { spans }
    }

    /// One output sample from `line` read with `stride`.
    fn sample(&self, i: usize, line: &[f32], stride: usize) -> f32 {
        let (start, weights) = &self.spans[i];
        let mut t = 0f32;
        for (j, w) in weights.iter().enumerate() {
            t += line[(start + j) * stride] * w;
        }
        t
    }
}

/// Resizes to 1024x1024 and normalizes, as `SAM2ImagePredictor.set_image`.
/// `input_size` of the result is (1024, 1024): the image fills the whole input.
pub fn preprocess_stretched(image: &RgbImage) -> Result<Preprocessed> {
    let (h, w) = (image.height() as usize, image.width() as usize);
    if h == 0 || w == 0 {
        return Err(ModelError::ImageDecode(format!(
            "image is {w}x{h} pixels; width and height must be positive"
        )));
    }
    let side = IMAGE_SIZE;
    let cols = Taps::new(w, side);
    let rows = Taps::new(h, side);
    let src = image.as_raw();
    let mut pixels = vec![0f32; 3 * side * side];
    for (c, out) in pixels.chunks_exact_mut(side * side).enumerate() {
        // Horizontal pass: h rows of `side` samples.
        let mut across = vec![0f32; h * side];
        across
            .par_chunks_exact_mut(side)
            .zip(src.par_chunks_exact(w * 3))
            .for_each(|(row_out, row)| {
                let line: Vec<f32> = row
                    .chunks_exact(3)
                    .map(|px| f32::from(px[c]) / 255.0)
                    .collect();
                for (x, o) in row_out.iter_mut().enumerate() {
                    *o = cols.sample(x, &line, 1);
                }
            });
        // Vertical pass, then normalization.
        out.par_chunks_exact_mut(side)
            .enumerate()
            .for_each(|(y, row_out)| {
                mobilesam_kernels::yield_point::reached();
                for (x, o) in row_out.iter_mut().enumerate() {
                    let v = rows.sample(y, &across[x..], side);
                    *o = (v - MEAN[c]) / STD[c];
                }
            });
    }
    Ok(Preprocessed {
        pixels,
        original_size: (h, w),
        input_size: (side, side),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upscaling_matches_plain_bilinear() {
        // Upscaling 2 -> 4: PyTorch's bilinear with align_corners False, edges clamped.
        let taps = Taps::new(2, 4);
        let line = [0.0f32, 1.0];
        let got: Vec<f32> = (0..4).map(|i| taps.sample(i, &line, 1)).collect();
        assert_eq!(got, vec![0.0, 0.25, 0.75, 1.0]);
    }

    #[test]
    fn downscaling_averages_with_a_wider_triangle() {
        // 4 -> 2: each output is a triangle of support 2 over its four nearest inputs.
        let taps = Taps::new(4, 2);
        let line = [0.0f32, 0.0, 1.0, 1.0];
        let got: Vec<f32> = (0..2).map(|i| taps.sample(i, &line, 1)).collect();
        // Output 0: centre 1, inputs 0, 1, 2 weigh 0.75, 0.75, 0.25 (input -1 clipped);
        // output 1: centre 3, inputs 1, 2, 3 weigh 0.25, 0.75, 0.75 (input 4 clipped).
        assert!((got[0] - 0.25 / 1.75).abs() < 1e-6, "{got:?}");
        assert!((got[1] - 1.5 / 1.75).abs() < 1e-6, "{got:?}");
    }

    #[test]
    fn the_whole_input_is_the_image() {
        let image = RgbImage::from_pixel(30, 20, image::Rgb([255, 0, 128]));
        let p = preprocess_stretched(&image).expect("preprocesses");
        assert_eq!(p.input_size, (1024, 1024));
        assert_eq!(p.original_size, (20, 30));
        let plane = 1024 * 1024;
        assert!((p.pixels[0] - (1.0 - MEAN[0]) / STD[0]).abs() < 1e-5);
        assert!((p.pixels[plane + 5000] - (0.0 - MEAN[1]) / STD[1]).abs() < 1e-5);
        assert!((p.pixels[3 * plane - 1] - (128.0 / 255.0 - MEAN[2]) / STD[2]).abs() < 1e-5);
    }
}
