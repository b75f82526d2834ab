//! Tensors out of a `torch.save` zip held in memory: the pickle (`<archive>/data.pkl`,
//! read by [`crate::pickle`]) says which storage entry, offset, shape and
//! strides each tensor has; views of one storage and non-contiguous strides are gathered
//! into contiguous tensors.
//!
//! No allocation exceeds the zip's own size: an entry that claims or expands to more bytes
//! than the file holds is refused, and so is a tensor whose view would materialize more
//! bytes than the file (torch writes storages uncompressed, so a real checkpoint never
//! does either).

use std::collections::HashMap;
use std::io::{Cursor, Read};

use candle_core::{Device, Tensor};

use crate::pickle::{read_state_dict, TensorRef};

pub type Archive<'a> = zip::ZipArchive<Cursor<&'a [u8]>>;

/// Reads every tensor of the `torch.save` zip `bytes`.
pub fn read_torch_zip(bytes: &[u8]) -> Result<HashMap<String, Tensor>, String> {
    let limit = bytes.len() as u64;
    let mut zip = open_archive(bytes)?;
    let pickle_name = (0..zip.len())
        .filter_map(|i| zip.name_for_index(i).and_then(|name| name.ok()))
        .map(|name| name.to_string())
        .find(|name| name.ends_with("data.pkl"))
        .ok_or("the zip has no data.pkl (not a torch.save file)")?;
    let archive = pickle_name.strip_suffix("data.pkl").unwrap_or_default();
    let pickle = read_entry(&mut zip, &pickle_name, limit)?;
    let infos = read_state_dict(&pickle).map_err(|e| format!("{pickle_name}: {e}"))?;
    if infos.is_empty() {
        return Err("the pickle holds no tensors (expected a state_dict)".into());
    }
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut tensors = HashMap::with_capacity(infos.len());
    for info in infos {
        let entry = format!("{archive}data/{}", info.storage_key);
        if !storages.contains_key(&entry) {
            let data = read_entry(&mut zip, &entry, limit)
                .map_err(|e| format!("tensor `{}`: {e}", info.name))?;
            storages.insert(entry.clone(), data);
        }
        let tensor = tensor_from_storage(&storages[&entry], &info, limit)
            .map_err(|e| format!("tensor `{}`: {e}", info.name))?;
        tensors.insert(info.name, tensor);
    }
    Ok(tensors)
}

/// Opens the zip with its archive starting at byte 0, as `torch.save` writes it.
///
/// The zip crate's default (`ArchiveOffset::Detect`, zip 9.8.2) guesses the start of the
/// central directory as "end record minus directory size" when the 32-bit end record holds
/// real values. torch (and Python's `zipfile` past 65535 entries) also write zip64 end
/// records, whose 76 bytes sit between the directory and that end record. When the first
/// directory entry is exactly 76 bytes long (`<folder>/data.pkl` with a 21-character folder,
/// i.e. a file such as `my_model_v2_final_ep3.pt`), the guess lands on the second entry, the
/// crate reads the zip64 record as a third, and fails with "Invalid Central Directory
/// header". A known offset of 0 makes it read the directory where the end record says.
fn open_archive(bytes: &[u8]) -> Result<Archive<'_>, String> {
    let config = zip::read::Config {
        archive_offset: zip::read::ArchiveOffset::Known(0),
    };
    zip::ZipArchive::with_config(config, Cursor::new(bytes)).map_err(|e| e.to_string())
}

/// The uncompressed bytes of one entry, refused beyond `limit` bytes.
pub fn read_entry(zip: &mut Archive<'_>, name: &str, limit: u64) -> Result<Vec<u8>, String> {
    let entry = zip
        .by_name(name)
        .map_err(|e| format!("zip entry {name}: {e}"))?;
    if entry.size() > limit {
        return Err(format!(
            "zip entry {name} claims {} bytes, more than the file's {limit}",
            entry.size()
        ));
    }
    let mut data = Vec::with_capacity(entry.size() as usize);
    entry
        .take(limit + 1)
        .read_to_end(&mut data)
        .map_err(|e| format!("zip entry {name}: {e}"))?;
    if data.len() as u64 > limit {
        return Err(format!(
            "zip entry {name} expands to more than the file's {limit} bytes"
        ));
    }
    Ok(data)
}

/// Builds one contiguous tensor from a little-endian storage blob and a strided view, at
/// most `limit` bytes large.
pub fn tensor_from_storage(storage: &[u8], info: &TensorRef, limit: u64) -> Result<Tensor, String> {
    let elem = info.dtype.size_in_bytes();
    let n_storage = storage.len() / elem;
    let dims = info.shape.as_slice();
    let numel = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or("the shape's element count overflows")?;
    if (numel as u64).saturating_mul(elem as u64) > limit {
        return Err(format!(
            "shape {dims:?} needs more bytes than the file's {limit}"
        ));
    }
    if numel == 0 {
        return Tensor::zeros(dims, info.dtype, &Device::Cpu).map_err(|e| e.to_string());
    }
    // The largest flat index the view touches must lie inside the storage.
    let mut max_index = info.offset;
    for (d, s) in dims.iter().zip(&info.stride) {
        max_index = (d - 1)
            .checked_mul(*s)
            .and_then(|reach| max_index.checked_add(reach))
            .ok_or("stride overflow")?;
    }
    if max_index >= n_storage {
        return Err(format!(
            "view reaches element {max_index} of a storage of {n_storage} elements"
        ));
    }
    let flat = Tensor::from_raw_buffer(
        &storage[..n_storage * elem],
        info.dtype,
        &[n_storage],
        &Device::Cpu,
    )
    .map_err(|e| e.to_string())?;
    if is_contiguous(dims, &info.stride) {
        return flat
            .narrow(0, info.offset, numel)
            .and_then(|t| t.reshape(dims))
            .map_err(|e| e.to_string());
    }
    if u32::try_from(max_index).is_err() {
        return Err("storage too large to gather a strided view from".into());
    }
    let mut indexes = Vec::with_capacity(numel);
    let mut counter = vec![0usize; dims.len()];
    for _ in 0..numel {
        let idx = info.offset
            + counter
                .iter()
                .zip(&info.stride)
                .map(|(c, s)| c * s)
                .sum::<usize>();
        // idx <= max_index, which fits in u32 (checked above).
        indexes.push(idx as u32);
        for axis in (0..dims.len()).rev() {
            counter[axis] += 1;
            if counter[axis] < dims[axis] {
                break;
            }
            counter[axis] = 0;
        }
    }
    let indexes = Tensor::from_vec(indexes, numel, &Device::Cpu).map_err(|e| e.to_string())?;
    flat.index_select(&indexes, 0)
        .and_then(|t| t.reshape(dims))
        .map_err(|e| e.to_string())
}

/// Row-major contiguity; dimensions of size 1 may have any stride.
fn is_contiguous(dims: &[usize], stride: &[usize]) -> bool {
    let mut expected = 1usize;
    for (&d, &s) in dims.iter().zip(stride).rev() {
        if d != 1 && s != expected {
            return false;
        }
        expected = expected.saturating_mul(d);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguity_ignores_unit_dimensions() {
        assert!(is_contiguous(&[2, 3], &[3, 1]));
        assert!(is_contiguous(&[2, 1, 3], &[3, 99, 1]));
        assert!(!is_contiguous(&[2, 3], &[1, 2]));
    }

    #[test]
    fn a_broadcast_view_larger_than_the_file_is_refused() {
        // A stride-0 view of one element with a huge shape would gather 4 * 2^40 bytes.
        let info = TensorRef {
            name: "w".into(),
            dtype: candle_core::DType::F32,
            storage_key: "0".into(),
            offset: 0,
            shape: vec![1 << 20, 1 << 20],
            stride: vec![0, 0],
        };
        let err = tensor_from_storage(&[0; 4], &info, 3000).unwrap_err();
        assert!(err.contains("needs more bytes than the file"), "{err}");
    }

    #[test]
    fn garbage_zips_are_errors() {
        assert!(read_torch_zip(b"PK\x03\x04garbage").is_err());
        assert!(read_torch_zip(b"").is_err());
    }
}
