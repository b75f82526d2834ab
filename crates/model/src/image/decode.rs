//! Image bytes to RGB8: the format guessed from the bytes, the size checked from the
//! header before any pixel is decoded, and data that ends early refused
//! ([`super::truncation`]) where the decoder would fill the missing pixels itself.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};

use super::truncation::check_complete;
use crate::error::{ModelError, Result};

/// Default largest accepted image, in pixels (width * height): 100 megapixels, a little
/// above Pillow's decompression-bomb threshold (~89 MP) and above today's 50 MP phone
/// cameras. Such an image takes 300 MB as RGB8 and 400 MB per full-resolution mask of
/// logits; servers with less memory should configure a lower limit.
pub const DEFAULT_MAX_IMAGE_PIXELS: u64 = 100_000_000;

/// Largest number of bytes one decoded pixel can take (RGBA, 32-bit float channels).
const MAX_BYTES_PER_PIXEL: u64 = 16;

/// Allowance for decoder bookkeeping on top of the pixel buffer.
const DECODER_ALLOC_SLACK: u64 = 64 * 1024 * 1024;

/// Decodes JPEG, PNG, WebP, BMP, TIFF or GIF bytes (the format is guessed from the bytes)
/// to RGB8. Alpha is dropped, grey is replicated, 16-bit channels are scaled to 8 bits; a
/// GIF gives its first frame. EXIF orientation is not applied.
///
/// The header is read first and images over `max_pixels` are refused with
/// [`ModelError::ImageTooLarge`] before any pixel data is decoded; the decoder's memory
/// limit is also set from `max_pixels`. Unknown formats and corrupt data give
/// [`ModelError::ImageDecode`]; so does data that ends early ("image data is truncated"),
/// also where the decoder would fill the missing pixels itself (see
/// [`truncation`](super::truncation)).
pub fn decode_image(bytes: &[u8], max_pixels: u64) -> Result<RgbImage> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ModelError::ImageDecode(e.to_string()))?;
    let Some(format) = reader.format() else {
        return Err(ModelError::ImageDecode(
            "unrecognized image format (expected JPEG, PNG, WebP, BMP, TIFF or GIF)".into(),
        ));
    };
    let mut limits = Limits::default();
    limits.max_alloc = Some(
        max_pixels
            .saturating_mul(MAX_BYTES_PER_PIXEL)
            .saturating_add(DECODER_ALLOC_SLACK),
    );
    reader.limits(limits);
    let decode_error = |e: image::ImageError| ModelError::ImageDecode(decode_reason(format, e));
    let decoder = reader.into_decoder().map_err(decode_error)?;
    let (width, height) = decoder.dimensions();
    check_size(width.into(), height.into(), max_pixels)?;
    check_complete(format, bytes).map_err(|e| ModelError::ImageDecode(e.to_string()))?;
    let image = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    Ok(image.into_rgb8())
}

/// The decoder's reason on one line, prefixed with the format; data that ran out is called
/// truncated.
fn decode_reason(format: ImageFormat, error: image::ImageError) -> String {
    let reason = error
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    match &error {
        image::ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            format!("image data is truncated ({format:?}: {reason})")
        }
        _ => format!("{format:?}: {reason}"),
    }
}

/// Reads and decodes an image file, as [`decode_image`]; an unreadable file gives
/// [`ModelError::Io`] naming the path.
pub fn read_image(path: &Path, max_pixels: u64) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.display().to_string(),
        source,
    })?;
    decode_image(&bytes, max_pixels)
}

/// Refuses empty images and images over `max_pixels`.
fn check_size(width: u64, height: u64, max_pixels: u64) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(ModelError::ImageDecode(format!(
            "image is {width}x{height} pixels; width and height must be positive"
        )));
    }
    let pixels = width.saturating_mul(height);
    if pixels > max_pixels {
        return Err(ModelError::ImageTooLarge {
            width,
            height,
            pixels,
            limit: max_pixels,
        });
    }
    Ok(())
}
