//! SHA-256 digests of image bytes and checkpoint files: the content address of an
//! embedding is the image's digest plus the model's identity (the checkpoint file's
//! digest and [`crate::image::PREPROCESS_VERSION`]).

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{ModelError, Result};

/// Length of a SHA-256 digest written as lowercase hex.
pub const SHA256_HEX_LEN: usize = 64;

/// The SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The SHA-256 of a file's bytes (a checkpoint), lowercase hex; read in 1 MiB blocks.
pub fn file_sha256(path: &Path) -> Result<String> {
    let io_error = |source| ModelError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io_error)?;
    let mut hasher = Sha256::new();
    let mut block = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut block).map_err(io_error)?;
        if read == 0 {
            break;
        }
        hasher.update(&block[..read]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Whether `text` looks like a SHA-256 digest: 64 lowercase hex digits.
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == SHA256_HEX_LEN && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        // FIPS 180-2 test vector.
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("weights.bin");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).expect("write");
        assert_eq!(file_sha256(&path).expect("digest"), sha256_hex(&data));
        assert!(file_sha256(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn recognises_hex_digests() {
        assert!(is_sha256_hex(&sha256_hex(b"")));
        assert!(!is_sha256_hex(&sha256_hex(b"").to_uppercase()));
        assert!(!is_sha256_hex("abc"));
        assert!(!is_sha256_hex(&"g".repeat(64)));
    }
}
