//! Ultralytics' predict-time letterbox: scale the image so its longer side fits `imgsz`
//! (scaling up too), round each side as Python's `round` does, pad to the next multiple of
//! the stride (`auto=True` in `predict`), centred, with gray 114.
//!
//! The resize reproduces OpenCV's `cv2.resize(..., INTER_LINEAR)` on 8-bit images bit for
//! bit: half-pixel centres, 11-bit fixed-point weights, the vertical pass's SIMD rounding
//! (`((a >> 4) * b0 >> 16) + ((c >> 4) * b1 >> 16) + 2 >> 2`, which OpenCV 5 applies to
//! whole rows, tails included), and the exact-2x shortcut to `INTER_AREA`.

use std::borrow::Cow;

use image::RgbImage;
use rayon::prelude::*;

/// The geometry of one letterbox: the model input's size and where the image lies in it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Original width and height.
    pub orig: (usize, usize),
    /// Resized (unpadded) width and height.
    pub resized: (usize, usize),
    /// Model input width and height (resized plus padding).
    pub input: (usize, usize),
    /// Left and top padding.
    pub pad: (usize, usize),
}

impl Letterbox {
    /// The letterbox of a `width x height` image for square size `imgsz` and `stride`.
    pub fn new(width: usize, height: usize, imgsz: usize, stride: usize) -> Self {
        let (w0, h0) = (width as f64, height as f64);
        let s = imgsz as f64;
        let r = (s / h0).min(s / w0);
        let new_w = ((w0 * r).round_ties_even() as usize).max(1);
        let new_h = ((h0 * r).round_ties_even() as usize).max(1);
        let stride = stride.max(1);
        let dw = imgsz.saturating_sub(new_w) % stride;
        let dh = imgsz.saturating_sub(new_h) % stride;
        let (dw, dh) = (dw as f64 / 2.0, dh as f64 / 2.0);
        let left = (dw - 0.1).round_ties_even().max(0.0) as usize;
        let right = (dw + 0.1).round_ties_even().max(0.0) as usize;
        let top = (dh - 0.1).round_ties_even().max(0.0) as usize;
        let bottom = (dh + 0.1).round_ties_even().max(0.0) as usize;
        Self {
            orig: (width, height),
            resized: (new_w, new_h),
            input: (new_w + left + right, new_h + top + bottom),
            pad: (left, top),
        }
    }

    /// Ultralytics' `scale_boxes`: a box in model-input pixels back to the original image,
    /// clipped to it.
    pub fn unscale(&self, b: [f32; 4]) -> [f32; 4] {
        let gain_x = self.resized.0 as f64 / self.orig.0 as f64;
        let gain_y = self.resized.1 as f64 / self.orig.1 as f64;
        let (px, py) = (self.pad.0 as f32, self.pad.1 as f32);
        let (w, h) = (self.orig.0 as f32, self.orig.1 as f32);
        [
            ((b[0] - px) / gain_x as f32).clamp(0.0, w),
            ((b[1] - py) / gain_y as f32).clamp(0.0, h),
            ((b[2] - px) / gain_x as f32).clamp(0.0, w),
            ((b[3] - py) / gain_y as f32).clamp(0.0, h),
        ]
    }

    /// The model input, channels-last RGB scaled to [0, 1]: `(H, W, 3)` row-major, into
    /// `out` (every value is written). A linear resize writes each row straight into the
    /// input (no resized image in between), a band of rows per task.
    ///
    /// # Panics
    /// When `out` is not `3 * W * H` long or the image is not the letterbox's size.
    pub fn fill_hwc(&self, image: &RgbImage, out: &mut [f32]) {
        let (sw, sh) = self.orig;
        let (rw, rh) = self.resized;
        let (iw, ih) = self.input;
        let (left, top) = self.pad;
        assert!(
            out.len() == 3 * iw * ih && image.as_raw().len() == 3 * sw * sh,
            "letterbox: sizes"
        );
        let src = image.as_raw();
        let source = if sw == rw && sh == rh {
            ResizedRows::Image(Cow::Borrowed(src))
        } else if sw == rw * 2 && sh == rh * 2 {
            ResizedRows::Image(Cow::Owned(resize_area_half(src, sw, rw, rh)))
        } else {
            ResizedRows::Linear(LinearResizer::new(src, sw, sh, rw, rh))
        };
        out.par_chunks_mut(RESIZE_BAND_ROWS * 3 * iw)
            .enumerate()
            .for_each(|(band, rows)| {
                let mut cache = RowCache::default();
                let mut bytes = vec![0u8; 3 * rw];
                for (i, dst) in rows.chunks_exact_mut(3 * iw).enumerate() {
                    let Some(y) = (band * RESIZE_BAND_ROWS + i)
                        .checked_sub(top)
                        .filter(|&y| y < rh)
                    else {
                        dst.fill(PAD);
                        continue;
                    };
                    let row = match &source {
                        ResizedRows::Linear(resizer) => {
                            resizer.row(y, &mut cache, &mut bytes);
                            &bytes[..]
                        }
                        ResizedRows::Image(resized) => &resized[y * rw * 3..(y + 1) * rw * 3],
                    };
                    dst[..left * 3].fill(PAD);
                    for (d, s) in dst[left * 3..(left + rw) * 3].iter_mut().zip(row) {
                        *d = f32::from(*s) / 255.0;
                    }
                    dst[(left + rw) * 3..].fill(PAD);
                }
            });
    }

    /// The model input, channels-first RGB scaled to [0, 1]: `(3, H, W)` row-major.
    pub fn apply(&self, image: &RgbImage) -> Vec<f32> {
        let resized = resize_linear_u8(
            image.as_raw(),
            self.orig.0,
            self.orig.1,
            self.resized.0,
            self.resized.1,
        );
        let (iw, ih) = self.input;
        let plane = iw * ih;
        let mut out = vec![PAD; 3 * plane];
        let (rw, rh) = self.resized;
        for y in 0..rh {
            let row = &resized[y * rw * 3..(y + 1) * rw * 3];
            let oy = y + self.pad.1;
            for x in 0..rw {
                let o = oy * iw + x + self.pad.0;
                for c in 0..3 {
                    out[c * plane + o] = f32::from(row[x * 3 + c]) / 255.0;
                }
            }
        }
        out
    }
}

/// `INTER_RESIZE_COEF_BITS` and its scale.
/// The padding's value after scaling to [0, 1] (Ultralytics pads with 114).
const PAD: f32 = 114.0 / 255.0;

const COEF_BITS: u32 = 11;
const COEF_SCALE: f32 = (1 << COEF_BITS) as f32;

/// OpenCV's interpolation table for one axis: source index and the two fixed-point
/// weights per destination index.
fn axis_table(src: usize, dst: usize) -> Vec<(isize, i32, i32)> {
    let inv_scale = dst as f64 / src as f64;
    let scale = 1.0 / inv_scale;
    (0..dst)
        .map(|d| {
            let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let s = f.floor();
            let frac = f - s;
            let a0 = round_half_even(((1.0f32 - frac) * COEF_SCALE) as f64);
            let a1 = round_half_even((frac * COEF_SCALE) as f64);
            (s as isize, a0, a1)
        })
        .collect()
}

fn round_half_even(v: f64) -> i32 {
    v.round_ties_even().clamp(i16::MIN as f64, i16::MAX as f64) as i32
}

/// `cv2.resize(src, (dw, dh), interpolation=cv2.INTER_LINEAR)` for interleaved RGB bytes.
pub fn resize_linear_u8(src: &[u8], sw: usize, sh: usize, dw: usize, dh: usize) -> Vec<u8> {
    if sw == dw && sh == dh {
        return src.to_vec();
    }
    if sw == dw * 2 && sh == dh * 2 {
        return resize_area_half(src, sw, dw, dh);
    }
    let resizer = LinearResizer::new(src, sw, sh, dw, dh);
    let width = dw * CHANNELS;
    let mut out = vec![0u8; dh * width];
    out.par_chunks_mut(RESIZE_BAND_ROWS * width)
        .enumerate()
        .for_each(|(band, rows)| {
            let mut cache = RowCache::default();
            for (i, dst) in rows.chunks_exact_mut(width).enumerate() {
                resizer.row(band * RESIZE_BAND_ROWS + i, &mut cache, dst);
            }
        });
    out
}

/// Where the letterbox takes its resized rows from.
enum ResizedRows<'a> {
    /// The resized image: the image itself (no resize), or the exact-half `INTER_AREA`
    /// shortcut's.
    Image(Cow<'a, [u8]>),
    /// Row by row from the linear resize.
    Linear(LinearResizer<'a>),
}

/// Channels of the interleaved images the resize takes.
const CHANNELS: usize = 3;

/// One `INTER_LINEAR` resize, an output row at a time: a band of rows computes each
/// source row's horizontal pass once and keeps it (in a [`RowCache`]) while the next
/// output rows still use it.
struct LinearResizer<'a> {
    src: &'a [u8],
    sw: usize,
    sh: usize,
    /// Per output column: the two source columns and their weights. Out of range, OpenCV
    /// uses the edge pixel with weight 1.
    columns: Vec<(usize, usize, i32, i32)>,
    /// Per output row: the first source row and the two weights.
    rows: Vec<(isize, i32, i32)>,
}

/// The horizontal passes (fixed point, x 2048) of the two source rows an output row
/// reads, and which rows they are.
struct RowCache {
    r0: Vec<i32>,
    r1: Vec<i32>,
    rows: (usize, usize),
}

impl Default for RowCache {
    fn default() -> Self {
        Self {
            r0: Vec::new(),
            r1: Vec::new(),
            rows: (usize::MAX, usize::MAX),
        }
    }
}

impl<'a> LinearResizer<'a> {
    fn new(src: &'a [u8], sw: usize, sh: usize, dw: usize, dh: usize) -> Self {
        let columns = axis_table(sw, dw)
            .iter()
            .map(|&(sx, a0, a1)| {
                if sx < 0 {
                    (0, 0, COEF_SCALE as i32, 0)
                } else if sx as usize >= sw - 1 {
                    (sw - 1, sw - 1, COEF_SCALE as i32, 0)
                } else {
                    (sx as usize, sx as usize + 1, a0, a1)
                }
            })
            .collect();
        Self {
            src,
            sw,
            sh,
            columns,
            rows: axis_table(sh, dh),
        }
    }

    /// The horizontal pass of source row `y` into `out`.
    fn hpass(&self, y: usize, out: &mut Vec<i32>) {
        const CN: usize = CHANNELS;
        out.resize(self.columns.len() * CN, 0);
        let row = &self.src[y * self.sw * CN..(y + 1) * self.sw * CN];
        for (o, &(x0, x1, a0, a1)) in out.chunks_exact_mut(CN).zip(&self.columns) {
            let (p0, p1) = (&row[x0 * CN..x0 * CN + CN], &row[x1 * CN..x1 * CN + CN]);
            for c in 0..CN {
                o[c] = i32::from(p0[c]) * a0 + i32::from(p1[c]) * a1;
            }
        }
    }

    /// Output row `y` into `dst` (`dw * 3` bytes).
    fn row(&self, y: usize, cache: &mut RowCache, dst: &mut [u8]) {
        let clamp_y = |s: isize| s.clamp(0, self.sh as isize - 1) as usize;
        let (sy, b0, b1) = self.rows[y];
        let (y0, y1) = (clamp_y(sy), clamp_y(sy + 1));
        if cache.rows != (y0, y1) {
            if y0 == cache.rows.1 {
                std::mem::swap(&mut cache.r0, &mut cache.r1);
            } else {
                self.hpass(y0, &mut cache.r0);
            }
            self.hpass(y1, &mut cache.r1);
            cache.rows = (y0, y1);
        }
        for ((d, &a), &c) in dst.iter_mut().zip(&cache.r0).zip(&cache.r1) {
            let v = ((((a >> 4) * b0) >> 16) + (((c >> 4) * b1) >> 16) + 2) >> 2;
            *d = v.clamp(0, 255) as u8;
        }
    }
}

/// Output rows per parallel task of [`resize_linear_u8`] and [`Letterbox::fill_hwc`].
const RESIZE_BAND_ROWS: usize = 32;

fn resize_area_half(src: &[u8], sw: usize, dw: usize, dh: usize) -> Vec<u8> {
    const CN: usize = 3;
    let mut out = vec![0u8; dw * dh * CN];
    for y in 0..dh {
        let r0 = &src[2 * y * sw * CN..(2 * y + 1) * sw * CN];
        let r1 = &src[(2 * y + 1) * sw * CN..(2 * y + 2) * sw * CN];
        for x in 0..dw {
            for c in 0..CN {
                let i = 2 * x * CN + c;
                let sum = u32::from(r0[i])
                    + u32::from(r0[i + CN])
                    + u32::from(r1[i])
                    + u32::from(r1[i + CN]);
                out[(y * dw + x) * CN + c] = ((sum + 2) >> 2) as u8;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letterbox_geometry_follows_ultralytics() {
        // 640x480 at 640: no resize, 480 is a multiple of 32, no padding.
        let lb = Letterbox::new(640, 480, 640, 32);
        assert_eq!(
            (lb.resized, lb.input, lb.pad),
            ((640, 480), (640, 480), (0, 0))
        );
        // 500x375 -> 640x480.
        let lb = Letterbox::new(500, 375, 640, 32);
        assert_eq!(
            (lb.resized, lb.input, lb.pad),
            ((640, 480), (640, 480), (0, 0))
        );
        // 300x500 -> 384x640, already a multiple of 32.
        let lb = Letterbox::new(300, 500, 640, 32);
        assert_eq!((lb.resized, lb.input), ((384, 640), (384, 640)));
        // 1000x333 -> 640x213 (213.12), padded to 224: 5.5 -> top 5, bottom 6.
        let lb = Letterbox::new(1000, 333, 640, 32);
        assert_eq!(
            (lb.resized, lb.input, lb.pad),
            ((640, 213), (640, 224), (0, 5))
        );
    }

    #[test]
    fn exact_sizes_are_copied_and_halving_averages() {
        let src: Vec<u8> = (0..4 * 2 * 3).map(|v| v as u8).collect();
        assert_eq!(resize_linear_u8(&src, 4, 2, 4, 2), src);
        let half = resize_linear_u8(&src, 4, 2, 2, 1);
        // Block of (0,3,12,15) -> (30 + 2) / 4 = 8.
        assert_eq!(half[0], 8);
    }

    #[test]
    fn channels_last_input_is_the_channels_first_one_transposed() {
        // Upscale, downscale, exact size and exact half, with padding on either axis.
        for (w, h) in [(600, 400), (123, 77), (640, 480), (1280, 960), (64, 200)] {
            let pixels: Vec<u8> = (0..w * h * 3).map(|i| ((i * 7919) % 251) as u8).collect();
            let image = RgbImage::from_raw(w as u32, h as u32, pixels).expect("sized buffer");
            let lb = Letterbox::new(w, h, 640, 32);
            let (iw, ih) = lb.input;
            let mut hwc = vec![f32::NAN; 3 * iw * ih];
            lb.fill_hwc(&image, &mut hwc);
            let chw = lb.apply(&image);
            for p in 0..iw * ih {
                for c in 0..3 {
                    assert_eq!(hwc[p * 3 + c], chw[c * iw * ih + p], "{w}x{h} pixel {p}");
                }
            }
        }
    }
}
