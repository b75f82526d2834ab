//! The stored form of an embedding: a fixed header that names what the values are (format
//! version, precision, the model identity, the image digest, the sizes) and then the
//! 256x64x64 values, little-endian f32 or f16.
//!
//! A value is only used when every header field matches what the reader expects, so an
//! entry written by another model, another preprocessing, another format version, a
//! truncated write or anything else that is not ours is a miss, never a wrong mask.

use mobilesam_checkpoint::digest::SHA256_HEX_LEN;
use mobilesam_model::Embedding;

use super::config::StoreDtype;
use super::key::ModelId;

/// First bytes of every stored embedding.
pub const MAGIC: &[u8; 8] = b"MSAMEMB\0";
/// Version of this layout.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes before the values.
pub const HEADER_LEN: usize = 8 + 2 + 1 + 1 + 4 + SHA256_HEX_LEN * 2 + 4 * 4 + 4;

/// An embedding's values and sizes, on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostEmbedding {
    /// (height, width) of the original image.
    pub original_size: (usize, usize),
    /// (height, width) of the resized image inside the model input.
    pub input_size: (usize, usize),
    /// The 256x64x64 features, row-major.
    pub values: Vec<f32>,
}

/// Why a stored value was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadValue {
    /// Shorter than the header, or the length does not match the header.
    #[error("wrong size: {0} bytes")]
    Size(usize),
    /// Not written by this server, or by another layout version.
    #[error("not an embedding of this format")]
    Format,
    /// Written for another checkpoint or preprocessing.
    #[error("written by another model")]
    Model,
    /// Written for other image bytes.
    #[error("written for another image")]
    Image,
    /// Sizes out of range.
    #[error("impossible sizes")]
    Sizes,
}

/// Serialises `embedding` of the image `image_sha256` for `model` at `dtype`.
pub fn encode(
    embedding: &HostEmbedding,
    model: &ModelId,
    image_sha256: &str,
    dtype: StoreDtype,
) -> Vec<u8> {
    let count = embedding.values.len();
    let mut out = Vec::with_capacity(HEADER_LEN + count * dtype.bytes_per_value());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.push(dtype_code(dtype));
    out.push(0);
    out.extend_from_slice(&model.preprocess_version.to_le_bytes());
    out.extend_from_slice(fixed_hex(&model.checkpoint_sha256).as_slice());
    out.extend_from_slice(fixed_hex(image_sha256).as_slice());
    let (oh, ow) = embedding.original_size;
    let (ih, iw) = embedding.input_size;
    for side in [oh, ow, ih, iw, count] {
        out.extend_from_slice(&u32::try_from(side).unwrap_or(u32::MAX).to_le_bytes());
    }
    match dtype {
        StoreDtype::F32 => {
            for v in &embedding.values {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        StoreDtype::F16 => {
            for v in &embedding.values {
                out.extend_from_slice(&half::f16::from_f32(*v).to_le_bytes());
            }
        }
    }
    out
}

/// Reads a stored value, checking that it is an embedding of `image_sha256` made by
/// `model`.
pub fn decode(
    bytes: &[u8],
    model: &ModelId,
    image_sha256: &str,
) -> Result<HostEmbedding, BadValue> {
    if bytes.len() < HEADER_LEN {
        return Err(BadValue::Size(bytes.len()));
    }
    let mut reader = Reader { bytes, at: 0 };
    if reader.take(8) != MAGIC || reader.u16() != FORMAT_VERSION {
        return Err(BadValue::Format);
    }
    let dtype = match reader.take(2)[0] {
        1 => StoreDtype::F32,
        2 => StoreDtype::F16,
        _ => return Err(BadValue::Format),
    };
    let preprocess_version = reader.u32();
    let checkpoint = reader.take(SHA256_HEX_LEN);
    if preprocess_version != model.preprocess_version
        || checkpoint != fixed_hex(&model.checkpoint_sha256).as_slice()
    {
        return Err(BadValue::Model);
    }
    if reader.take(SHA256_HEX_LEN) != fixed_hex(image_sha256).as_slice() {
        return Err(BadValue::Image);
    }
    let sizes: Vec<usize> = (0..5).map(|_| reader.u32() as usize).collect();
    let (original_size, input_size, count) = ((sizes[0], sizes[1]), (sizes[2], sizes[3]), sizes[4]);
    let side = mobilesam_model::image::IMAGE_SIZE;
    let sizes_ok = count == Embedding::VALUES
        && original_size.0 > 0
        && original_size.1 > 0
        && (1..=side).contains(&input_size.0)
        && (1..=side).contains(&input_size.1)
        && input_size.0.max(input_size.1) == side;
    if !sizes_ok {
        return Err(BadValue::Sizes);
    }
    let payload = &bytes[HEADER_LEN..];
    if payload.len() != count * dtype.bytes_per_value() {
        return Err(BadValue::Size(bytes.len()));
    }
    let values: Vec<f32> = match dtype {
        StoreDtype::F32 => payload
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        StoreDtype::F16 => payload
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
    };
    if values.iter().any(|v| !v.is_finite()) {
        return Err(BadValue::Format);
    }
    Ok(HostEmbedding {
        original_size,
        input_size,
        values,
    })
}

fn dtype_code(dtype: StoreDtype) -> u8 {
    match dtype {
        StoreDtype::F32 => 1,
        StoreDtype::F16 => 2,
    }
}

/// A digest as exactly 64 bytes (cut or zero-padded), so the header has a fixed size.
fn fixed_hex(hex: &str) -> [u8; SHA256_HEX_LEN] {
    let mut out = [0u8; SHA256_HEX_LEN];
    let bytes = hex.as_bytes();
    let n = bytes.len().min(SHA256_HEX_LEN);
    out[..n].copy_from_slice(&bytes[..n]);
    out
}

/// Reads the header's fields in order; the caller checked the header's length.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let slice = &self.bytes[self.at..self.at + n];
        self.at += n;
        slice
    }

    fn u16(&mut self) -> u16 {
        let b = self.take(2);
        u16::from_le_bytes([b[0], b[1]])
    }

    fn u32(&mut self) -> u32 {
        let b = self.take(4);
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mobilesam_checkpoint::digest::sha256_hex;

    fn model() -> ModelId {
        ModelId {
            checkpoint_sha256: sha256_hex(b"weights"),
            preprocess_version: 1,
        }
    }

    fn sample() -> HostEmbedding {
        HostEmbedding {
            original_size: (48, 64),
            input_size: (768, 1024),
            values: (0..Embedding::VALUES)
                .map(|i| ((i % 977) as f32 - 488.0) * 0.013)
                .collect(),
        }
    }

    #[test]
    fn f32_round_trip_is_exact() {
        let image = sha256_hex(b"image");
        let bytes = encode(&sample(), &model(), &image, StoreDtype::F32);
        assert_eq!(bytes.len(), HEADER_LEN + Embedding::VALUES * 4);
        assert_eq!(decode(&bytes, &model(), &image), Ok(sample()));
    }

    #[test]
    fn f16_round_trip_is_close_and_half_the_size() {
        let image = sha256_hex(b"image");
        let bytes = encode(&sample(), &model(), &image, StoreDtype::F16);
        assert_eq!(bytes.len(), HEADER_LEN + Embedding::VALUES * 2);
        let back = decode(&bytes, &model(), &image).expect("decodes");
        assert_eq!(back.original_size, (48, 64));
        for (a, b) in sample().values.iter().zip(&back.values) {
            assert!((a - b).abs() <= a.abs() * 1e-3 + 1e-4, "{a} vs {b}");
        }
    }

    #[test]
    fn foreign_values_are_refused() {
        let image = sha256_hex(b"image");
        let good = encode(&sample(), &model(), &image, StoreDtype::F32);
        // Another checkpoint, another preprocessing, another image.
        let other = ModelId {
            checkpoint_sha256: sha256_hex(b"other weights"),
            ..model()
        };
        assert_eq!(decode(&good, &other, &image), Err(BadValue::Model));
        let newer = ModelId {
            preprocess_version: 2,
            ..model()
        };
        assert_eq!(decode(&good, &newer, &image), Err(BadValue::Model));
        assert_eq!(
            decode(&good, &model(), &sha256_hex(b"x")),
            Err(BadValue::Image)
        );
        // Garbage, truncation, a bad magic, a bad dtype, impossible sizes.
        assert_eq!(decode(b"garbage", &model(), &image), Err(BadValue::Size(7)));
        assert!(matches!(
            decode(&good[..good.len() - 1], &model(), &image),
            Err(BadValue::Size(_))
        ));
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(decode(&bad, &model(), &image), Err(BadValue::Format));
        let mut bad = good.clone();
        bad[10] = 9;
        assert_eq!(decode(&bad, &model(), &image), Err(BadValue::Format));
        let mut odd = sample();
        odd.input_size = (2000, 1024);
        let bad = encode(&odd, &model(), &image, StoreDtype::F32);
        assert_eq!(decode(&bad, &model(), &image), Err(BadValue::Sizes));
        let mut nan = sample();
        nan.values[5] = f32::NAN;
        let bad = encode(&nan, &model(), &image, StoreDtype::F32);
        assert_eq!(decode(&bad, &model(), &image), Err(BadValue::Format));
    }
}
