//! Refusing images whose data ends early, where the decoder would not.
//!
//! The JPEG decoder (zune-jpeg, through `image`) fills the rows it never received with grey
//! and returns success; the WebP decoder accepts a file a few bytes short of its RIFF size.
//! Pillow, which the reference uses, refuses both ("image file is truncated"). These checks
//! read only the container structure, before any pixel is decoded:
//!
//! - JPEG: the marker segments are walked from SOI, the entropy-coded data of every scan is
//!   skipped (stuffed `FF 00` bytes and restart markers belong to it), and the stream must
//!   reach its EOI marker. Bytes after EOI are ignored, as Pillow ignores them; a thumbnail
//!   inside an APP segment is skipped with its segment, so its EOI does not count.
//! - WebP: the data must hold the whole RIFF chunk its header declares.
//!
//! PNG, GIF, TIFF and BMP decoders already fail on missing pixel data.

use image::ImageFormat;

/// Why the bytes are refused: the reason after "image data is truncated" or "image data is
/// corrupt".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incomplete {
    /// The data ends before the format's end (EOI, RIFF size).
    Truncated(&'static str),
    /// A structure field is impossible (a JPEG segment length below 2).
    Corrupt(&'static str),
}

impl std::fmt::Display for Incomplete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Incomplete::Truncated(why) => write!(f, "image data is truncated ({why})"),
            Incomplete::Corrupt(why) => write!(f, "image data is corrupt ({why})"),
        }
    }
}

/// Checks that `bytes`, already recognised as `format`, hold the whole image; formats whose
/// decoders detect truncation themselves pass.
pub fn check_complete(format: ImageFormat, bytes: &[u8]) -> Result<(), Incomplete> {
    match format {
        ImageFormat::Jpeg => jpeg_reaches_end_of_image(bytes),
        ImageFormat::WebP => webp_holds_its_riff_chunk(bytes),
        _ => Ok(()),
    }
}

/// JPEG markers without a length field.
fn is_standalone(marker: u8) -> bool {
    matches!(marker, 0x01 | 0xD0..=0xD8)
}

const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;
const NO_EOI: Incomplete =
    Incomplete::Truncated("the JPEG stream ends before its end-of-image marker");

/// Walks the JPEG's segments and scans to its EOI marker.
fn jpeg_reaches_end_of_image(bytes: &[u8]) -> Result<(), Incomplete> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err(Incomplete::Corrupt("a JPEG must start with SOI"));
    }
    let mut pos = 2;
    loop {
        // The next marker: libjpeg skips stray bytes before it, and any number of 0xFF fill
        // bytes may precede its code.
        while pos < bytes.len() && bytes[pos] != 0xFF {
            pos += 1;
        }
        while pos < bytes.len() && bytes[pos] == 0xFF {
            pos += 1;
        }
        let Some(&marker) = bytes.get(pos) else {
            return Err(NO_EOI);
        };
        pos += 1;
        if marker == EOI {
            return Ok(());
        }
        if is_standalone(marker) || marker == 0x00 {
            continue;
        }
        let Some(length) = bytes.get(pos..pos + 2) else {
            return Err(NO_EOI);
        };
        let length = usize::from(u16::from_be_bytes([length[0], length[1]]));
        if length < 2 {
            return Err(Incomplete::Corrupt("a JPEG segment length is below 2"));
        }
        pos += length;
        if pos > bytes.len() {
            return Err(NO_EOI);
        }
        if marker == SOS {
            pos = skip_entropy_coded_data(bytes, pos);
        }
    }
}

/// The position of the first marker after the entropy-coded data starting at `pos` (the
/// data's end when there is none): `FF 00` is a stuffed data byte, `FF D0`..`FF D7` restart
/// markers inside the scan.
fn skip_entropy_coded_data(bytes: &[u8], mut pos: usize) -> usize {
    while pos + 1 < bytes.len() {
        if bytes[pos] == 0xFF {
            match bytes[pos + 1] {
                0x00 | 0xD0..=0xD7 => pos += 2,
                _ => return pos,
            }
        } else {
            pos += 1;
        }
    }
    bytes.len()
}

/// `RIFF`, the chunk size (little-endian, excluding these 8 bytes), `WEBP`: the data must
/// be at least that long.
fn webp_holds_its_riff_chunk(bytes: &[u8]) -> Result<(), Incomplete> {
    let Some(size) = bytes.get(4..8) else {
        return Err(Incomplete::Truncated("the WebP header is incomplete"));
    };
    let declared = u64::from(u32::from_le_bytes([size[0], size[1], size[2], size[3]])) + 8;
    if (bytes.len() as u64) < declared {
        return Err(Incomplete::Truncated(
            "the WebP file is shorter than its RIFF header says",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SOI, an APP1 segment holding a whole thumbnail JPEG (with its own EOI), SOS with two
    /// entropy-coded bytes, a stuffed `FF 00`, a restart marker, then EOI.
    fn minimal_jpeg() -> Vec<u8> {
        let mut jpeg = vec![0xFF, 0xD8];
        let thumbnail = [0xFF, 0xD8, 0xFF, 0xD9];
        jpeg.extend_from_slice(&[0xFF, 0xE1, 0, 2 + thumbnail.len() as u8]);
        jpeg.extend_from_slice(&thumbnail);
        jpeg.extend_from_slice(&[0xFF, 0xDA, 0, 3, 1]);
        jpeg.extend_from_slice(&[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56]);
        jpeg.extend_from_slice(&[0xFF, 0xD9]);
        jpeg
    }

    #[test]
    fn a_whole_jpeg_passes_and_every_cut_is_refused() {
        let jpeg = minimal_jpeg();
        assert_eq!(check_complete(ImageFormat::Jpeg, &jpeg), Ok(()));
        for cut in 2..jpeg.len() {
            assert_eq!(
                check_complete(ImageFormat::Jpeg, &jpeg[..cut]),
                Err(NO_EOI),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn bytes_after_the_end_of_image_are_ignored() {
        let mut jpeg = minimal_jpeg();
        jpeg.extend_from_slice(b"camera maker's trailer");
        assert_eq!(check_complete(ImageFormat::Jpeg, &jpeg), Ok(()));
    }

    #[test]
    fn an_impossible_segment_length_is_corrupt() {
        let jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 0, 1, 0xFF, 0xD9];
        assert!(matches!(
            check_complete(ImageFormat::Jpeg, &jpeg),
            Err(Incomplete::Corrupt(_))
        ));
    }

    #[test]
    fn a_webp_shorter_than_its_riff_size_is_refused() {
        let mut webp = b"RIFF\x0c\0\0\0WEBPVP8 ".to_vec();
        webp.extend_from_slice(&[0; 4]);
        assert_eq!(webp.len(), 20);
        assert_eq!(check_complete(ImageFormat::WebP, &webp), Ok(()));
        assert!(check_complete(ImageFormat::WebP, &webp[..19]).is_err());
        assert!(check_complete(ImageFormat::WebP, &webp[..6]).is_err());
    }

    #[test]
    fn messages_name_the_cause() {
        assert_eq!(
            NO_EOI.to_string(),
            "image data is truncated (the JPEG stream ends before its end-of-image marker)"
        );
    }
}
