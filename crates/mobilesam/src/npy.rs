//! NumPy `.npy` files of little-endian float32, C order: enough to write an embedding and
//! read one back.
//!
//! Format (v1.0): the magic `\x93NUMPY`, version bytes `1 0`, a little-endian u16 header
//! length, then an ASCII Python dict literal padded with spaces and ended by `\n` so that
//! the data starts at a multiple of 64 bytes, then the raw values.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// Bytes before the v1.0 header dict: magic, version, header length.
const PREAMBLE_V1: usize = MAGIC.len() + 2 + 2;

/// The v1.0 header (preamble and padded dict) for a float32 array of `shape`.
pub fn header_f32(shape: &[usize]) -> Vec<u8> {
    let dims = match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
    let unpadded = PREAMBLE_V1 + dict.len() + 1;
    dict.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    dict.push('\n');
    let mut out = Vec::with_capacity(PREAMBLE_V1 + dict.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    // The dict of a float32 array of a few dimensions is far below u16::MAX bytes.
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

/// Writes `values` as a float32 array of `shape` (C order).
pub fn write_f32(path: &Path, shape: &[usize], values: &[f32]) -> Result<()> {
    ensure!(
        shape.iter().product::<usize>() == values.len(),
        "shape {shape:?} does not hold {} values",
        values.len()
    );
    let file =
        fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::new(file);
    let write = |out: &mut BufWriter<fs::File>| -> std::io::Result<()> {
        out.write_all(&header_f32(shape))?;
        for v in values {
            out.write_all(&v.to_le_bytes())?;
        }
        out.flush()
    };
    write(&mut out).with_context(|| format!("cannot write {}", path.display()))
}

/// Reads a float32 C-order `.npy` file (format v1, v2 or v3); returns its shape and values.
pub fn read_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_f32(&bytes).with_context(|| format!("{} is not a float32 .npy file", path.display()))
}

/// Parses the bytes of a float32 C-order `.npy` file.
pub fn parse_f32(bytes: &[u8]) -> Result<(Vec<usize>, Vec<f32>)> {
    ensure!(bytes.starts_with(MAGIC), "no NumPy magic");
    let major = *bytes.get(MAGIC.len()).context("truncated preamble")?;
    let (len_bytes, start) = match major {
        1 => (2, PREAMBLE_V1),
        2 | 3 => (4, PREAMBLE_V1 + 2),
        v => bail!("unsupported format version {v}"),
    };
    let len_field = bytes
        .get(MAGIC.len() + 2..MAGIC.len() + 2 + len_bytes)
        .context("truncated preamble")?;
    let header_len = len_field
        .iter()
        .rev()
        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
    let header = bytes
        .get(start..start + header_len)
        .context("truncated header")?;
    let header = std::str::from_utf8(header).context("header is not text")?;
    let descr = dict_value(header, "descr")?;
    ensure!(
        descr.trim_matches(['\'', '"']) == "<f4",
        "dtype is {descr}, expected '<f4' (little-endian float32)"
    );
    ensure!(
        dict_value(header, "fortran_order")? == "False",
        "Fortran-order arrays are not supported"
    );
    let shape = parse_shape(dict_value(header, "shape")?)?;
    let data = &bytes[start + header_len..];
    let count = shape.iter().product::<usize>();
    ensure!(
        data.len() == count * 4,
        "shape {shape:?} needs {} data bytes, the file has {}",
        count * 4,
        data.len()
    );
    let values = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((shape, values))
}

/// The text of `key`'s value in a header dict literal, up to the next top-level comma.
fn dict_value<'a>(header: &'a str, key: &str) -> Result<&'a str> {
    let quoted = [format!("'{key}'"), format!("\"{key}\"")];
    let at = quoted
        .iter()
        .find_map(|q| header.find(q.as_str()).map(|i| i + q.len()))
        .with_context(|| format!("header has no `{key}`"))?;
    let rest = header[at..].trim_start();
    let rest = rest
        .strip_prefix(':')
        .with_context(|| format!("malformed `{key}` entry"))?
        .trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')').map(|i| i + 1)
    } else {
        rest.find([',', '}'])
    }
    .with_context(|| format!("malformed `{key}` entry"))?;
    Ok(rest[..end].trim())
}

/// `(1, 256, 64, 64)` -> `[1, 256, 64, 64]`.
fn parse_shape(text: &str) -> Result<Vec<usize>> {
    let inner = text
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .with_context(|| format!("malformed shape {text}"))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().with_context(|| format!("malformed shape {text}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_round_trips() {
        let header = header_f32(&[1, 256, 64, 64]);
        assert_eq!(header.len() % 64, 0);
        assert_eq!(header.last(), Some(&b'\n'));
        let text = std::str::from_utf8(&header[PREAMBLE_V1..]).expect("ascii");
        assert!(text
            .starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 256, 64, 64), }"));
        let mut small = header_f32(&[2, 2]);
        for v in [1.5f32, -2.0, 0.25, 8.0] {
            small.extend_from_slice(&v.to_le_bytes());
        }
        let (shape, values) = parse_f32(&small).expect("parses");
        assert_eq!(shape, vec![2, 2]);
        assert_eq!(values, vec![1.5, -2.0, 0.25, 8.0]);
    }

    #[test]
    fn one_dimensional_shape_has_trailing_comma() {
        let header = header_f32(&[3]);
        let text = String::from_utf8_lossy(&header);
        assert!(text.contains("'shape': (3,)"));
    }

    #[test]
    fn rejects_other_dtypes_and_sizes() {
        let mut f8 = header_f32(&[1]);
        let text = String::from_utf8(f8[PREAMBLE_V1..].to_vec()).expect("ascii");
        f8.truncate(PREAMBLE_V1);
        f8.extend_from_slice(text.replace("<f4", "<f8").as_bytes());
        f8.extend_from_slice(&[0; 8]);
        assert!(parse_f32(&f8).unwrap_err().to_string().contains("<f8"));
        let mut short = header_f32(&[2]);
        short.extend_from_slice(&[0; 4]);
        assert!(parse_f32(&short).is_err());
        assert!(parse_f32(b"not npy").is_err());
    }
}
