//! Where the weights come from: an explicit path, `$MOBILESAM_CHECKPOINT`, or the official
//! `mobile_sam.pt`, downloaded once into a cache directory.
//!
//! The download goes to a temporary file next to its destination and is renamed into
//! place only when complete (and, with `--checkpoint-sha256`, only when its digest is the
//! expected one), so an interrupted or altered download never lands in the cache, and
//! concurrent first runs do not corrupt each other.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use mobilesam_checkpoint::digest::Sha256Digest;

/// The official MobileSAM weights.
pub const DEFAULT_URL: &str =
    "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt";

/// Name of the cached checkpoint inside the cache directory.
pub const FILE_NAME: &str = "mobile_sam.pt";

/// Environment variable naming a checkpoint file to use when none is given explicitly.
pub const CHECKPOINT_ENV: &str = "MOBILESAM_CHECKPOINT";

/// Environment variable overriding the cache directory.
pub const CACHE_DIR_ENV: &str = "MOBILESAM_CACHE_DIR";

/// Environment variable overriding the download URL (a mirror, or a test server).
pub const URL_ENV: &str = "MOBILESAM_CHECKPOINT_URL";

/// Largest download accepted: the official file is about 40 MB.
const MAX_DOWNLOAD_BYTES: u64 = 1 << 30;

/// The checkpoint file to load: `explicit` if given, else `$MOBILESAM_CHECKPOINT`, else
/// `mobile_sam.pt` in the cache directory (`$MOBILESAM_CACHE_DIR`, or the user's cache
/// directory + `mobilesam/`), downloaded there first if it is missing.
///
/// An explicit or environment path must exist; a failed download says where to put the
/// file by hand. A download whose SHA-256 is not `expected` (when given) is deleted, not
/// cached; files already on disk are checked by whoever reads them
/// ([`Checkpoint::load_verified`](mobilesam_checkpoint::Checkpoint::load_verified),
/// [`verify_file`]).
pub fn resolve(explicit: Option<&Path>, expected: Option<&Sha256Digest>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        return existing_file(path, "--checkpoint");
    }
    if let Some(path) = std::env::var_os(CHECKPOINT_ENV).filter(|v| !v.is_empty()) {
        return existing_file(Path::new(&path), CHECKPOINT_ENV);
    }
    let dir = cache_dir()?;
    let path = dir.join(FILE_NAME);
    if path.is_file() {
        return Ok(path);
    }
    let url = std::env::var(URL_ENV)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_string());
    download(&url, &dir, &path, expected).with_context(|| {
        format!(
            "no checkpoint given and {FILE_NAME} could not be downloaded from {url}; \
             download it yourself and put it at {}, or pass --checkpoint FILE \
             (or set {CHECKPOINT_ENV})",
            path.display()
        )
    })?;
    Ok(path)
}

/// The cache directory: `$MOBILESAM_CACHE_DIR`, else the platform cache directory (XDG
/// `~/.cache` on Linux) + `mobilesam`.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(CACHE_DIR_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    match dirs::cache_dir() {
        Some(dir) => Ok(dir.join("mobilesam")),
        None => bail!(
            "no cache directory is known for this user; set {CACHE_DIR_ENV} or pass --checkpoint FILE"
        ),
    }
}

/// `path` if it is a file, else an error naming where it came from.
fn existing_file(path: &Path, source: &str) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path.to_path_buf())
    } else if path.exists() {
        bail!(
            "checkpoint {} (from {source}) is not a file",
            path.display()
        )
    } else {
        bail!(
            "checkpoint file {} (from {source}) does not exist",
            path.display()
        )
    }
}

/// Checks that the file at `path` has the SHA-256 `expected`; the error names the file and
/// both digests.
pub fn verify_file(path: &Path, expected: &Sha256Digest) -> Result<()> {
    let found = Sha256Digest::of_file(path)?;
    expected.expect(&found, &path.display().to_string())?;
    Ok(())
}

/// Downloads `url` to `dest` through a temporary file in `dir`, with a progress bar on
/// stderr; with `expected`, the temporary file must have that SHA-256 to be renamed.
fn download(url: &str, dir: &Path, dest: &Path, expected: Option<&Sha256Digest>) -> Result<()> {
    fs::create_dir_all(dir)
        .with_context(|| format!("cannot create cache directory {}", dir.display()))?;
    let part = dir.join(format!(".{FILE_NAME}.{}.part", std::process::id()));
    let result = download_to(url, &part)
        .and_then(|()| match expected {
            Some(expected) => verify_file(&part, expected)
                .context("the download is not the expected checkpoint (--checkpoint-sha256)"),
            None => Ok(()),
        })
        .and_then(|()| {
            fs::rename(&part, dest)
                .with_context(|| format!("cannot move {} to {}", part.display(), dest.display()))
        });
    match &result {
        Ok(()) => eprintln!("saved {}", dest.display()),
        // Best effort: the temporary file may not exist.
        Err(_) => drop(fs::remove_file(&part)),
    }
    result
}

/// Streams `url` into a new file at `path` and checks that it looks like a checkpoint.
fn download_to(url: &str, path: &Path) -> Result<()> {
    eprintln!("downloading the MobileSAM checkpoint from {url}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut response = agent.get(url).call().context("request failed")?;
    let body = response.body_mut();
    let progress = progress_bar(body.content_length());
    let mut reader = progress.wrap_read(body.with_config().limit(MAX_DOWNLOAD_BYTES).reader());
    let mut file =
        fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut head = [0u8; 9];
    let head_len = read_head(&mut reader, &mut head).context("download interrupted")?;
    file.write_all(&head[..head_len])
        .and_then(|()| io::copy(&mut reader, &mut file).map(drop))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("download to {} failed", path.display()))?;
    progress.finish_and_clear();
    if !looks_like_checkpoint(&head[..head_len]) {
        bail!("the server sent something that is neither a torch.save zip nor safetensors");
    }
    Ok(())
}

/// Fills `head` as far as the stream allows; returns the number of bytes read.
fn read_head(reader: &mut impl Read, head: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < head.len() {
        match reader.read(&mut head[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// A `torch.save` zip starts with `PK\x03\x04`; safetensors with an 8-byte header length
/// followed by `{`.
fn looks_like_checkpoint(head: &[u8]) -> bool {
    head.starts_with(b"PK\x03\x04") || head.get(8) == Some(&b'{')
}

/// A byte progress bar when the size is known, else a byte counter; hidden when stderr
/// is not a terminal.
fn progress_bar(len: Option<u64>) -> ProgressBar {
    match len {
        Some(len) => ProgressBar::new(len).with_style(
            ProgressStyle::with_template(
                "{bar:40.cyan/blue} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_checkpoint_headers() {
        assert!(looks_like_checkpoint(b"PK\x03\x04rest"));
        assert!(looks_like_checkpoint(b"\x10\0\0\0\0\0\0\0{\"a\""));
        assert!(!looks_like_checkpoint(b"<!DOCTYPE html>"));
        assert!(!looks_like_checkpoint(b""));
    }
}
