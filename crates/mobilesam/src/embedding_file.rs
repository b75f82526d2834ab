//! The files of `mobilesam embed --output FILE.npy`, read back by `segment --embedding`:
//! `FILE.npy` holds the image embedding, float32 (1, C, 64, 64), C the checkpoint's prompt
//! width (256 in the official models); a SAM 2.1 embedding adds its high-resolution
//! features beside it, `FILE.high_res_s0.npy` (1, C/8, 256, 256) and
//! `FILE.high_res_s1.npy` (1, C/4, 128, 128). Reading checks the files against the
//! checkpoint, so an embedding of another model is a one-line error, never a wrong mask.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use mobilesam_model::architecture::EMBED_SIDE;
use mobilesam_model::embedding::HIGH_RES_SIDES;
use mobilesam_model::{Embedding, Family, HostEmbedding, Sam};

use crate::npy;

/// Shape of the image embedding file for `channels`.
pub fn image_shape(channels: usize) -> [usize; 4] {
    [1, channels, EMBED_SIDE, EMBED_SIDE]
}

/// Shapes of the two high-resolution files for `channels`.
pub fn high_res_shapes(channels: usize) -> [[usize; 4]; 2] {
    let [s0, s1] = HIGH_RES_SIDES;
    [[1, channels / 8, s0, s0], [1, channels / 4, s1, s1]]
}

/// The two high-resolution files that go with the embedding file `path`
/// (`x.npy` -> `x.high_res_s0.npy`, `x.high_res_s1.npy`).
pub fn high_res_paths(path: &Path) -> [PathBuf; 2] {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
    let stem = stem.unwrap_or_default();
    ["s0", "s1"].map(|level| path.with_file_name(format!("{stem}.high_res_{level}.npy")))
}

/// Writes `host` to `path` (and its high-resolution features beside it); returns every file
/// written. High-resolution files of an earlier SAM 2.1 embedding at the same path are
/// removed when `host` has none, so the files always describe one embedding.
pub fn write(path: &Path, host: &HostEmbedding) -> Result<Vec<PathBuf>> {
    npy::write_f32(path, &image_shape(host.channels), &host.values)?;
    let mut written = vec![path.to_path_buf()];
    let siblings = high_res_paths(path);
    match &host.high_res {
        Some(levels) => {
            for ((file, shape), values) in siblings
                .iter()
                .zip(high_res_shapes(host.channels))
                .zip(levels)
            {
                npy::write_f32(file, &shape, values)?;
                written.push(file.clone());
            }
        }
        None => {
            for file in siblings.iter().filter(|f| f.exists()) {
                std::fs::remove_file(file)
                    .with_context(|| format!("cannot remove the stale {}", file.display()))?;
            }
        }
    }
    Ok(written)
}

/// The embedding at `path` of a `height` x `width` image, for `sam`: an error naming the
/// mismatch when the files were written with a checkpoint of another family or width.
pub fn read(path: &Path, sam: &Sam, height: usize, width: usize) -> Result<Embedding> {
    let family = sam.family();
    let channels = sam.embedding_channels();
    let (shape, values) = npy::read_f32(path)?;
    let expected = image_shape(channels);
    if shape.len() == 4 && shape[2..] == expected[2..] && shape[1] != channels {
        bail!(
            "embedding {} has {} channels but this {} checkpoint's have {channels}: it was \
             written with another checkpoint",
            path.display(),
            shape[1],
            family.name()
        );
    }
    ensure!(
        shape == expected,
        "embedding {} has shape {shape:?}, expected {expected:?}",
        path.display()
    );
    let siblings = high_res_paths(path);
    let sam2 = matches!(family, Family::Sam2(_));
    let high_res = match (sam2, siblings[0].exists()) {
        (true, true) => Some(read_high_res(&siblings, channels)?),
        (false, false) => None,
        (true, false) => bail!(
            "embedding {} has no SAM 2 high-resolution features ({} is missing): it was not \
             written with a SAM 2.1 checkpoint, and this one is {}",
            path.display(),
            siblings[0].display(),
            family.name()
        ),
        (false, true) => bail!(
            "embedding {} comes with SAM 2 high-resolution features ({}): it was written with \
             a SAM 2.1 checkpoint, and this one is {}",
            path.display(),
            siblings[0].display(),
            family.name()
        ),
    };
    let host = HostEmbedding {
        channels,
        values,
        high_res,
        original_size: (height, width),
        input_size: sam.input_size(height, width),
    };
    Embedding::from_host(host, sam.device())
        .with_context(|| format!("cannot use the embedding {}", path.display()))
}

/// Both high-resolution levels, shapes checked.
fn read_high_res(files: &[PathBuf; 2], channels: usize) -> Result<[Vec<f32>; 2]> {
    let mut levels = Vec::with_capacity(2);
    for (file, expected) in files.iter().zip(high_res_shapes(channels)) {
        let (shape, values) = npy::read_f32(file)?;
        ensure!(
            shape == expected,
            "high-resolution features {} have shape {shape:?}, expected {expected:?}",
            file.display()
        );
        levels.push(values);
    }
    let s1 = levels.pop().unwrap_or_default();
    let s0 = levels.pop().unwrap_or_default();
    Ok([s0, s1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn high_res_files_sit_beside_the_embedding() {
        let [s0, s1] = high_res_paths(Path::new("out/coffee.npy"));
        assert_eq!(s0, Path::new("out/coffee.high_res_s0.npy"));
        assert_eq!(s1, Path::new("out/coffee.high_res_s1.npy"));
        assert_eq!(high_res_shapes(64), [[1, 8, 256, 256], [1, 16, 128, 128]]);
    }
}
