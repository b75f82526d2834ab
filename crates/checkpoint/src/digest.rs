//! SHA-256 digests. Of a checkpoint file ([`Sha256Digest`]): printed by `mobilesam info`,
//! and compared with the digest a user expects (`--checkpoint-sha256`) before the weights
//! are used. As lowercase hex ([`sha256_hex`]): the content address of an embedding is the
//! image's SHA-256 plus the model's identity (the checkpoint file's digest,
//! [`Checkpoint::sha256`](crate::Checkpoint::sha256), and the model crate's
//! `image::PREPROCESS_VERSION`), spelled as store keys and `image_sha256` fields carry them.

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::error::{CheckpointError, Result};

/// A SHA-256 digest; shown and parsed as 64 hexadecimal digits (as `sha256sum` prints).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The digest of a file, read in blocks; errors name the path.
    pub fn of_file(path: &Path) -> Result<Self> {
        let io_error = |source| CheckpointError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io_error)?;
        let mut hasher = Sha256::new();
        let mut block = vec![0u8; 1 << 20];
        loop {
            match file.read(&mut block) {
                Ok(0) => break,
                Ok(n) => hasher.update(&block[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_error(e)),
            }
        }
        Ok(Self(hasher.finalize().into()))
    }

    /// The 32 digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// `Ok` when `found` is this digest; otherwise [`CheckpointError::Invalid`] for `shown`,
    /// naming both digests.
    pub fn expect(&self, found: &Sha256Digest, shown: &str) -> Result<()> {
        if self == found {
            return Ok(());
        }
        Err(CheckpointError::Invalid {
            path: shown.to_string(),
            reason: format!("SHA-256 mismatch: expected {self}, the file has {found}"),
        })
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl FromStr for Sha256Digest {
    type Err = String;

    /// 64 hexadecimal digits, either case; surrounding spaces are ignored.
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let text = text.trim();
        let wrong = || {
            format!(
                "`{text}` is not a SHA-256 digest (expected 64 hexadecimal digits, as sha256sum prints)"
            )
        };
        if text.len() != 64 || !text.is_ascii() {
            return Err(wrong());
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| wrong())?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| wrong())?;
        }
        Ok(Self(bytes))
    }
}

/// Length of a SHA-256 digest written as lowercase hex.
pub const SHA256_HEX_LEN: usize = 64;

/// The SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256Digest::of(bytes).to_string()
}

/// Whether `text` is a SHA-256 digest exactly as [`sha256_hex`] writes it: 64 lowercase
/// hex digits (store keys are compared byte for byte, so no other spelling is accepted).
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == SHA256_HEX_LEN && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FIPS 180-2, appendix B.1.
    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn digests_match_the_standard_vector_and_round_trip() {
        let digest = Sha256Digest::of(b"abc");
        assert_eq!(digest.to_string(), ABC);
        assert_eq!(ABC.parse::<Sha256Digest>(), Ok(digest));
        assert_eq!(ABC.to_uppercase().parse::<Sha256Digest>(), Ok(digest));
    }

    #[test]
    fn file_digests_equal_byte_digests() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("weights.bin");
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).expect("write");
        assert_eq!(
            Sha256Digest::of_file(&path).expect("hash"),
            Sha256Digest::of(&bytes)
        );
        assert!(matches!(
            Sha256Digest::of_file(&dir.path().join("missing")),
            Err(CheckpointError::Io { .. })
        ));
    }

    #[test]
    fn malformed_digests_are_refused() {
        for text in [
            "",
            "abc",
            &ABC[1..],
            &format!("{ABC}0"),
            &ABC.replace('a', "g"),
        ] {
            let err = text.parse::<Sha256Digest>().unwrap_err();
            assert!(err.contains("64 hexadecimal digits"), "{err}");
        }
        // A multi-byte character must not split a pair.
        let odd = format!("é{}", &ABC[2..]);
        assert!(odd.parse::<Sha256Digest>().is_err());
    }

    #[test]
    fn a_mismatch_names_both_digests() {
        let expected: Sha256Digest = ABC.parse().expect("digest");
        let found = Sha256Digest::of(b"abd");
        let err = expected.expect(&found, "w.pt").unwrap_err().to_string();
        assert!(
            err.contains(ABC) && err.contains(&found.to_string()),
            "{err}"
        );
        assert!(err.contains("w.pt"), "{err}");
        assert!(expected.expect(&expected, "w.pt").is_ok());
    }

    #[test]
    fn known_digest() {
        // FIPS 180-2 test vector.
        assert_eq!(sha256_hex(b"abc"), ABC);
    }

    #[test]
    fn recognises_hex_digests() {
        assert!(is_sha256_hex(&sha256_hex(b"")));
        assert!(!is_sha256_hex(&sha256_hex(b"").to_uppercase()));
        assert!(!is_sha256_hex("abc"));
        assert!(!is_sha256_hex(&"g".repeat(64)));
    }
}
