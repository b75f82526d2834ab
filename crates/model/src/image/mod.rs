//! Image decoding and the reference preprocessing.
//!
//! Mirrors MobileSAM's `SamPredictor.set_image`: resize so the long side is
//! [`IMAGE_SIZE`] with Pillow's BILINEAR filter (`ResizeLongestSide.apply_image`, which goes
//! through torchvision's `resize` on a PIL image), normalize each channel with
//! [`PIXEL_MEAN`] / [`PIXEL_STD`], then zero-pad bottom-right to a square.
//!
//! - [`decode`]: bytes or a file to RGB8, with the pixel limit and the truncation checks of
//!   [`truncation`];
//! - [`resample`]: the port of Pillow 13's `Resample.c` (8-bit fixed point, two passes), so
//!   the resized pixels are bit-identical to Pillow's;
//! - here: the preprocessing itself (sizes, normalization, padding, prompt coordinates).

pub mod decode;
pub mod resample;
pub mod stretch;
pub mod truncation;

use image::RgbImage;
use rayon::prelude::*;

use crate::error::{ModelError, Result};
pub use decode::{decode_image, read_image, DEFAULT_MAX_IMAGE_PIXELS};
pub use resample::resize_rgb;

/// Side of the square model input, in pixels.
pub const IMAGE_SIZE: usize = 1024;

/// Per-channel (R, G, B) mean subtracted before the encoder, in 0..255 units.
pub const PIXEL_MEAN: [f32; 3] = [123.675, 116.28, 103.53];

/// Per-channel (R, G, B) standard deviation divided by before the encoder.
pub const PIXEL_STD: [f32; 3] = [58.395, 57.12, 57.375];

/// Version of the preprocessing above (resize, normalize, pad). It is part of an
/// embedding's content address (with the image's and the checkpoint's SHA-256): raise it
/// whenever a change makes the same image bytes give different encoder inputs, so that
/// embeddings kept outside the process are not reused across the change.
pub const PREPROCESS_VERSION: u32 = 1;

/// The (height, width) that puts the long side at `long_side`, as
/// `ResizeLongestSide.get_preprocess_shape`: `scale = long_side / max(h, w)`, each side
/// `int(side * scale + 0.5)`, in f64.
pub fn preprocess_shape(height: usize, width: usize, long_side: usize) -> (usize, usize) {
    let scale = long_side as f64 / height.max(width) as f64;
    let new_h = (height as f64 * scale + 0.5) as usize;
    let new_w = (width as f64 * scale + 0.5) as usize;
    (new_h, new_w)
}

/// Resizes so the long side is [`IMAGE_SIZE`], as `ResizeLongestSide.apply_image` (Pillow
/// BILINEAR to [`preprocess_shape`]). An image already at that size is copied.
pub fn resize_longest_side(image: &RgbImage) -> Result<RgbImage> {
    let (h, w) = (image.height() as usize, image.width() as usize);
    if h == 0 || w == 0 {
        return Err(ModelError::ImageDecode(format!(
            "image is {w}x{h} pixels; width and height must be positive"
        )));
    }
    let (new_h, new_w) = preprocess_shape(h, w, IMAGE_SIZE);
    resize_rgb(image, new_w, new_h)
}

/// The encoder input for one image and the sizes needed to map prompts and masks.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocessed {
    /// `3 * IMAGE_SIZE * IMAGE_SIZE` values, channel-planar (R, G, B), rows top to bottom:
    /// `(pixel - PIXEL_MEAN[c]) / PIXEL_STD[c]` inside the resized image, `0.0` in the
    /// padding to the right and below it.
    pub pixels: Vec<f32>,
    /// (height, width) of the original image.
    pub original_size: (usize, usize),
    /// (height, width) of the resized image inside the padded input.
    pub input_size: (usize, usize),
}

/// Resizes ([`resize_longest_side`]), normalizes and pads an RGB image into the encoder
/// input, as `SamPredictor.set_image` followed by `Sam.preprocess`.
pub fn preprocess(image: &RgbImage) -> Result<Preprocessed> {
    let original_size = (image.height() as usize, image.width() as usize);
    let resized = resize_longest_side(image)?;
    let input_size = (resized.height() as usize, resized.width() as usize);
    let (_, w) = input_size;
    let plane = IMAGE_SIZE * IMAGE_SIZE;
    let mut pixels = vec![0.0f32; 3 * plane];
    let src = resized.as_raw();
    for (c, out) in pixels.chunks_exact_mut(plane).enumerate() {
        out.par_chunks_exact_mut(IMAGE_SIZE)
            .zip(src.par_chunks_exact(w * 3))
            .for_each(|(out_row, row)| {
                mobilesam_kernels::yield_point::reached();
                for (o, px) in out_row.iter_mut().zip(row.chunks_exact(3)) {
                    *o = (f32::from(px[c]) - PIXEL_MEAN[c]) / PIXEL_STD[c];
                }
            });
    }
    Ok(Preprocessed {
        pixels,
        original_size,
        input_size,
    })
}

/// Maps a point from original-image pixels to model-input pixels, as
/// `ResizeLongestSide.apply_coords`: `x * (new_w / old_w)`, `y * (new_h / old_h)` in f64,
/// then rounded to f32. Sizes are (height, width).
pub fn scale_coords(
    x: f32,
    y: f32,
    original_size: (usize, usize),
    input_size: (usize, usize),
) -> (f32, f32) {
    let (old_h, old_w) = (original_size.0 as f64, original_size.1 as f64);
    let (new_h, new_w) = (input_size.0 as f64, input_size.1 as f64);
    let sx = f64::from(x) * (new_w / old_w);
    let sy = f64::from(y) * (new_h / old_h);
    (sx as f32, sy as f32)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::path::Path;

    use serde_json::Value;

    use super::*;

    fn fixture_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/preprocess")
    }

    fn load_json(name: &str) -> Value {
        let text = std::fs::read_to_string(fixture_dir().join(name)).expect("fixture");
        serde_json::from_str(&text).expect("fixture json")
    }

    fn num(v: &Value, key: &str) -> usize {
        v[key].as_u64().expect("number") as usize
    }

    /// `lowbias32` integer hash, as in make_preprocess_fixtures.py.
    fn lowbias32(mut x: u32) -> u32 {
        x ^= x >> 16;
        x = x.wrapping_mul(0x7feb_352d);
        x ^= x >> 15;
        x = x.wrapping_mul(0x846c_a68b);
        x ^= x >> 16;
        x
    }

    /// The textured test image of make_preprocess_fixtures.py `synth_image`.
    fn synth_image(width: usize, height: usize, seed: u32) -> RgbImage {
        let mut data = Vec::with_capacity(width * height * 3);
        for y in 0..height {
            for x in 0..width {
                for c in 0..3 {
                    let idx = ((y * width + x) * 3 + c) as u32;
                    let n = lowbias32(idx ^ seed.wrapping_mul(0x9e37_79b9)) as usize;
                    let checker = ((x / 7 + y / 5) % 2) * 60;
                    let v = x * 200 / width + y * 150 / height + (n & 63) + c * 40 + checker;
                    data.push((v & 255) as u8);
                }
            }
        }
        RgbImage::from_raw(width as u32, height as u32, data).expect("size")
    }

    /// The position-dependent checksum of make_preprocess_fixtures.py `checksum`.
    fn checksum(values: impl Iterator<Item = u64>) -> u64 {
        const K1: u64 = 0x9e37_79b9_7f4a_7c15;
        const K2: u64 = 0xff51_afd7_ed55_8ccd;
        values.enumerate().fold(0u64, |acc, (i, v)| {
            acc.wrapping_add((v ^ (i as u64).wrapping_mul(K1)).wrapping_mul(K2))
        })
    }

    fn max_abs_diff(a: &RgbImage, b: &RgbImage) -> (u8, usize) {
        let mut max = 0u8;
        let mut count = 0;
        for (x, y) in a.as_raw().iter().zip(b.as_raw()) {
            let d = x.abs_diff(*y);
            max = max.max(d);
            count += usize::from(d != 0);
        }
        (max, count)
    }

    #[test]
    fn resize_matches_pillow_bit_exactly() {
        let cases = load_json("resize_cases.json");
        let cases = cases["cases"].as_array().expect("cases");
        assert!(cases.len() >= 10);
        for case in cases {
            let src = synth_image(
                num(case, "in_w"),
                num(case, "in_h"),
                num(case, "seed") as u32,
            );
            let file = fixture_dir().join(case["file"].as_str().expect("file"));
            let expected = image::open(&file).expect("png").into_rgb8();
            let got = resize_rgb(&src, num(case, "out_w"), num(case, "out_h")).expect("resize");
            assert_eq!(got.dimensions(), expected.dimensions(), "{file:?}");
            let (max, count) = max_abs_diff(&got, &expected);
            assert_eq!((max, count), (0, 0), "{file:?}: max diff, differing values");
        }
    }

    #[test]
    fn resize_longest_side_matches_reference() {
        let cases = load_json("longest_side_cases.json");
        for case in cases["cases"].as_array().expect("cases") {
            let (in_w, in_h) = (num(case, "in_w"), num(case, "in_h"));
            let src = synth_image(in_w, in_h, num(case, "seed") as u32);
            let got = resize_longest_side(&src).expect("resize");
            let (out_w, out_h) = (num(case, "out_w"), num(case, "out_h"));
            assert_eq!(preprocess_shape(in_h, in_w, IMAGE_SIZE), (out_h, out_w));
            assert_eq!(got.dimensions(), (out_w as u32, out_h as u32));
            let mut max = 0u8;
            for s in case["samples"].as_array().expect("samples") {
                let s: Vec<u64> = s
                    .as_array()
                    .expect("sample")
                    .iter()
                    .map(|v| v.as_u64().expect("int"))
                    .collect();
                let px = got.get_pixel(s[1] as u32, s[0] as u32);
                for c in 0..3 {
                    max = max.max(px[c].abs_diff(s[2 + c] as u8));
                }
            }
            assert_eq!(max, 0, "{in_w}x{in_h}: sampled max diff");
            let expected: u64 = case["checksum"]
                .as_str()
                .expect("checksum")
                .parse()
                .expect("u64");
            let got_sum = checksum(got.as_raw().iter().map(|&v| u64::from(v)));
            assert_eq!(got_sum, expected, "{in_w}x{in_h}: checksum of all pixels");
        }
    }

    #[test]
    fn preprocess_shape_follows_reference() {
        assert_eq!(preprocess_shape(1500, 2000, 1024), (768, 1024));
        assert_eq!(preprocess_shape(97, 1500, 1024), (66, 1024));
        assert_eq!(preprocess_shape(5, 3, 1024), (1024, 614));
        assert_eq!(preprocess_shape(1024, 1024, 1024), (1024, 1024));
        assert_eq!(preprocess_shape(1, 1, 1024), (1024, 1024));
        // 683 * (1024 / 1366) = 511.999..., rounds to 512.
        assert_eq!(preprocess_shape(683, 1366, 1024), (512, 1024));
    }

    #[test]
    fn preprocess_normalizes_and_pads() {
        let src = synth_image(300, 200, 3);
        let pre = preprocess(&src).expect("preprocess");
        assert_eq!(pre.original_size, (200, 300));
        assert_eq!(pre.input_size, (683, 1024));
        assert_eq!(pre.pixels.len(), 3 * IMAGE_SIZE * IMAGE_SIZE);
        let resized = resize_longest_side(&src).expect("resize");
        let plane = IMAGE_SIZE * IMAGE_SIZE;
        for &(y, x) in &[(0usize, 0usize), (682, 1023), (100, 500)] {
            let px = resized.get_pixel(x as u32, y as u32);
            for c in 0..3 {
                let want = (f32::from(px[c]) - PIXEL_MEAN[c]) / PIXEL_STD[c];
                assert_eq!(pre.pixels[c * plane + y * IMAGE_SIZE + x], want);
            }
        }
        // Padding rows below the image are exactly zero in every channel.
        for c in 0..3 {
            let pad = &pre.pixels[c * plane + 683 * IMAGE_SIZE..(c + 1) * plane];
            assert!(pad.iter().all(|&v| v == 0.0));
        }

        let tall = synth_image(3, 517, 4);
        let pre = preprocess(&tall).expect("preprocess");
        assert_eq!(pre.input_size, (1024, 6));
        let row = &pre.pixels[5 * IMAGE_SIZE..6 * IMAGE_SIZE];
        assert!(row[..6].iter().any(|&v| v != 0.0));
        assert!(row[6..].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn scale_coords_follows_apply_coords() {
        let (x, y) = scale_coords(150.0, 100.0, (200, 300), (683, 1024));
        assert_eq!(x, (150.0f64 * (1024.0 / 300.0)) as f32);
        assert_eq!(y, (100.0f64 * (683.0 / 200.0)) as f32);
        assert_eq!(
            scale_coords(7.5, 3.25, (1024, 1024), (1024, 1024)),
            (7.5, 3.25)
        );
    }

    fn encode(image: &RgbImage, format: image::ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, format).expect("encode");
        out.into_inner()
    }

    #[test]
    fn decode_supported_formats() {
        let src = synth_image(31, 17, 9);
        for format in [
            image::ImageFormat::Png,
            image::ImageFormat::Bmp,
            image::ImageFormat::Tiff,
        ] {
            let got =
                decode_image(&encode(&src, format), DEFAULT_MAX_IMAGE_PIXELS).expect("decode");
            assert_eq!(got, src, "{format:?}");
        }
        // Lossy or palette formats: the size must survive.
        for format in [image::ImageFormat::Jpeg, image::ImageFormat::Gif] {
            let got = decode_image(&encode(&src, format), 1_000).expect("decode");
            assert_eq!(got.dimensions(), (31, 17), "{format:?}");
        }
        let mut webp = Cursor::new(Vec::new());
        image::codecs::webp::WebPEncoder::new_lossless(&mut webp)
            .encode(src.as_raw(), 31, 17, image::ExtendedColorType::Rgb8)
            .expect("webp");
        assert_eq!(decode_image(webp.get_ref(), 1_000).expect("webp"), src);
        // Grey + alpha is converted to RGB.
        let grey = image::GrayAlphaImage::from_pixel(4, 3, image::LumaA([77, 9]));
        let mut png = Cursor::new(Vec::new());
        grey.write_to(&mut png, image::ImageFormat::Png)
            .expect("encode");
        let got = decode_image(png.get_ref(), 12).expect("decode");
        assert!(got.pixels().all(|p| p.0 == [77, 77, 77]));
    }

    #[test]
    fn decode_refuses_unknown_and_corrupt_data() {
        let err = decode_image(b"definitely not an image", 1_000).unwrap_err();
        assert!(
            matches!(&err, ModelError::ImageDecode(m) if m.contains("unrecognized")),
            "{err}"
        );
        assert!(matches!(
            decode_image(&[], 1_000),
            Err(ModelError::ImageDecode(_))
        ));

        let png = encode(&synth_image(31, 17, 9), image::ImageFormat::Png);
        // Truncated pixel data.
        let err = decode_image(&png[..png.len() / 2], 1_000).unwrap_err();
        assert!(
            matches!(&err, ModelError::ImageDecode(m) if m.contains("Png")),
            "{err}"
        );
        // A valid signature followed by garbage.
        let mut garbage = png[..8].to_vec();
        garbage.extend_from_slice(&[0xAB; 64]);
        assert!(matches!(
            decode_image(&garbage, 1_000),
            Err(ModelError::ImageDecode(_))
        ));
        let jpeg = encode(&synth_image(31, 17, 9), image::ImageFormat::Jpeg);
        assert!(matches!(
            decode_image(&jpeg[..40], 1_000),
            Err(ModelError::ImageDecode(_))
        ));
        // Every message is one line.
        assert!(!err.to_string().contains('\n'));
    }

    /// A PNG with a valid header claiming `width` x `height` RGB8 pixels, an empty IDAT chunk
    /// and no pixel data.
    fn png_header_only(width: u32, height: u32) -> Vec<u8> {
        fn crc32(bytes: &[u8]) -> u32 {
            let mut crc = !0u32;
            for &b in bytes {
                crc ^= u32::from(b);
                for _ in 0..8 {
                    crc = if crc & 1 != 0 {
                        (crc >> 1) ^ 0xedb8_8320
                    } else {
                        crc >> 1
                    };
                }
            }
            !crc
        }
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = width.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&height.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        for (kind, data) in [(b"IHDR", &ihdr[..]), (b"IDAT", &[]), (b"IEND", &[])] {
            let mut chunk = kind.to_vec();
            chunk.extend_from_slice(data);
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            out.extend_from_slice(&chunk);
            out.extend_from_slice(&crc32(&chunk).to_be_bytes());
        }
        out
    }

    #[test]
    fn decode_refuses_oversized_images_from_the_header() {
        let bomb = png_header_only(100_000, 100_000);
        match decode_image(&bomb, DEFAULT_MAX_IMAGE_PIXELS) {
            Err(ModelError::ImageTooLarge {
                width,
                height,
                pixels,
                limit,
            }) => {
                assert_eq!((width, height, pixels), (100_000, 100_000, 10_000_000_000));
                assert_eq!(limit, DEFAULT_MAX_IMAGE_PIXELS);
            }
            other => panic!("expected ImageTooLarge, got {other:?}"),
        }
        // A small real image over a small limit, and exactly at it.
        let png = encode(&synth_image(31, 17, 9), image::ImageFormat::Png);
        assert!(matches!(
            decode_image(&png, 31 * 17 - 1),
            Err(ModelError::ImageTooLarge { .. })
        ));
        assert!(decode_image(&png, 31 * 17).is_ok());
    }

    #[test]
    fn read_image_reports_the_path() {
        let missing = Path::new("/nonexistent/dir/image.png");
        let err = read_image(missing, 1_000).unwrap_err();
        assert!(matches!(&err, ModelError::Io { path, .. } if path.contains("image.png")));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.bmp");
        let src = synth_image(5, 4, 1);
        std::fs::write(&path, encode(&src, image::ImageFormat::Bmp)).expect("write");
        assert_eq!(read_image(&path, 1_000).expect("read"), src);
    }

    #[test]
    fn resize_refuses_empty_sizes() {
        let src = synth_image(4, 4, 1);
        assert!(resize_rgb(&src, 0, 4).is_err());
        assert!(resize_rgb(&src, 4, 0).is_err());
        assert!(resize_longest_side(&RgbImage::new(0, 3)).is_err());
        assert!(preprocess(&RgbImage::new(3, 0)).is_err());
    }
}
