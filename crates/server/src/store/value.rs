//! The stored form of an embedding: a fixed header that names what the values are (format
//! version, precision, the model identity, the image digest, the sizes, the channels and
//! whether SAM 2's high-resolution levels follow) and then the values, little-endian f32 or
//! f16: the C x 64 x 64 image embedding, then for SAM 2 the C/8 x 256 x 256 and
//! C/4 x 128 x 128 levels.
//!
//! Version 2 is written; version 1 (256 channels, no high-resolution levels, a header
//! without the channel count) is still read. A value is only used when every header field
//! matches what the reader expects, so an entry written by another model, another
//! preprocessing, an unknown format version, a truncated write or anything else that is not
//! ours is a miss, never a wrong mask.

use mobilesam_checkpoint::digest::SHA256_HEX_LEN;
use mobilesam_model::architecture::EMBED_CHANNELS;
pub use mobilesam_model::HostEmbedding;

use super::config::StoreDtype;
use super::key::ModelId;

/// First bytes of every stored embedding.
pub const MAGIC: &[u8; 8] = b"MSAMEMB\0";
/// Version of the layout written.
pub const FORMAT_VERSION: u16 = 2;
/// Version 1: 256 channels, no high-resolution levels; still read.
pub const FORMAT_VERSION_1: u16 = 1;
/// Bytes before the values in version 1: magic, version, dtype, a reserved byte, the
/// preprocessing version, two digests, four sizes and the value count.
pub const HEADER_LEN_V1: usize = 8 + 2 + 1 + 1 + 4 + SHA256_HEX_LEN * 2 + 4 * 4 + 4;
/// Bytes before the values in version 2: version 1's header with the flags byte in place
/// of the reserved one, and the channel count before the value count.
pub const HEADER_LEN: usize = HEADER_LEN_V1 + 4;
/// Most channels a stored embedding may declare (the official models have 256).
pub const MAX_CHANNELS: usize = 4096;
/// Flag bit: SAM 2's two high-resolution levels follow the image embedding.
const FLAG_HIGH_RES: u8 = 1;

/// Why a stored value was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadValue {
    /// Shorter than the header, or the length does not match the header.
    #[error("wrong size: {0} bytes")]
    Size(usize),
    /// Not written by this server, or by an unknown layout version.
    #[error("not an embedding of this format")]
    Format,
    /// Written for another checkpoint or preprocessing.
    #[error("written by another model")]
    Model,
    /// Written for other image bytes.
    #[error("written for another image")]
    Image,
    /// Sizes or channels out of range, or a value count that does not fit them.
    #[error("impossible sizes")]
    Sizes,
}

/// Serialises `embedding` of the image `image_sha256` for `model` at `dtype`, in the
/// current version.
pub fn encode(
    embedding: &HostEmbedding,
    model: &ModelId,
    image_sha256: &str,
    dtype: StoreDtype,
) -> Vec<u8> {
    let levels: &[Vec<f32>] = embedding.high_res.as_ref().map_or(&[], |l| l.as_slice());
    let count = embedding.values.len() + levels.iter().map(Vec::len).sum::<usize>();
    let mut out = Vec::with_capacity(HEADER_LEN + count * dtype.bytes_per_value());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.push(dtype_code(dtype));
    out.push(if levels.is_empty() { 0 } else { FLAG_HIGH_RES });
    out.extend_from_slice(&model.preprocess_version.to_le_bytes());
    out.extend_from_slice(fixed_hex(&model.checkpoint_sha256).as_slice());
    out.extend_from_slice(fixed_hex(image_sha256).as_slice());
    let (oh, ow) = embedding.original_size;
    let (ih, iw) = embedding.input_size;
    for n in [oh, ow, ih, iw, embedding.channels, count] {
        out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
    }
    for values in std::iter::once(&embedding.values).chain(levels) {
        match dtype {
            StoreDtype::F32 => values
                .iter()
                .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
            StoreDtype::F16 => values
                .iter()
                .for_each(|v| out.extend_from_slice(&half::f16::from_f32(*v).to_le_bytes())),
        }
    }
    out
}

/// Reads a stored value (version 2 or 1), checking that it is an embedding of
/// `image_sha256` made by `model`.
pub fn decode(
    bytes: &[u8],
    model: &ModelId,
    image_sha256: &str,
) -> Result<HostEmbedding, BadValue> {
    if bytes.len() < HEADER_LEN_V1 {
        return Err(BadValue::Size(bytes.len()));
    }
    let mut reader = Reader { bytes, at: 0 };
    if reader.take(8) != MAGIC {
        return Err(BadValue::Format);
    }
    let version = reader.u16();
    let header_len = match version {
        FORMAT_VERSION => HEADER_LEN,
        FORMAT_VERSION_1 => HEADER_LEN_V1,
        _ => return Err(BadValue::Format),
    };
    if bytes.len() < header_len {
        return Err(BadValue::Size(bytes.len()));
    }
    let dtype = match reader.take(1)[0] {
        1 => StoreDtype::F32,
        2 => StoreDtype::F16,
        _ => return Err(BadValue::Format),
    };
    let flags = reader.take(1)[0];
    let high_res = version == FORMAT_VERSION && flags & FLAG_HIGH_RES != 0;
    if version == FORMAT_VERSION && flags & !FLAG_HIGH_RES != 0 {
        return Err(BadValue::Format);
    }
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
    let mut next = || reader.u32() as usize;
    let original_size = (next(), next());
    let input_size = (next(), next());
    let channels = if version == FORMAT_VERSION {
        next()
    } else {
        EMBED_CHANNELS
    };
    let count = next();
    let lengths = lengths(channels, high_res).ok_or(BadValue::Sizes)?;
    if !sizes_ok(original_size, input_size) || count != lengths.iter().sum::<usize>() {
        return Err(BadValue::Sizes);
    }
    let payload = &bytes[header_len..];
    if payload.len() != count * dtype.bytes_per_value() {
        return Err(BadValue::Size(bytes.len()));
    }
    let values = values(payload, dtype);
    if values.iter().any(|v| !v.is_finite()) {
        return Err(BadValue::Format);
    }
    let (image, rest) = values.split_at(lengths[0]);
    let high_res = high_res.then(|| {
        let (s0, s1) = rest.split_at(lengths[1]);
        [s0.to_vec(), s1.to_vec()]
    });
    Ok(HostEmbedding {
        channels,
        values: image.to_vec(),
        high_res,
        original_size,
        input_size,
    })
}

/// Values of the image embedding and of each high-resolution level present, for
/// `channels`; `None` when the channel count is impossible.
fn lengths(channels: usize, high_res: bool) -> Option<Vec<usize>> {
    if channels == 0 || channels > MAX_CHANNELS || !channels.is_multiple_of(8) {
        return None;
    }
    let [image, s0, s1] = HostEmbedding::expected_lengths(channels);
    Some(if high_res {
        vec![image, s0, s1]
    } else {
        vec![image]
    })
}

/// Whether the sizes are an image and its place in the 1024x1024 input.
fn sizes_ok(original_size: (usize, usize), input_size: (usize, usize)) -> bool {
    let side = mobilesam_model::image::IMAGE_SIZE;
    original_size.0 > 0
        && original_size.1 > 0
        && (1..=side).contains(&input_size.0)
        && (1..=side).contains(&input_size.1)
        && input_size.0.max(input_size.1) == side
}

/// The payload's numbers as f32.
fn values(payload: &[u8], dtype: StoreDtype) -> Vec<f32> {
    match dtype {
        StoreDtype::F32 => payload
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        StoreDtype::F16 => payload
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
    }
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
mod tests;
