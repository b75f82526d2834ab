//! Image and checkpoint digests as text: the content address of an embedding is the
//! image's SHA-256 plus the model's identity (the checkpoint file's digest,
//! [`crate::checkpoint::Checkpoint::sha256`], and [`crate::image::PREPROCESS_VERSION`]).
//! The hashing itself is [`Sha256Digest`]'s; these are its lowercase-hex spellings, as
//! store keys and `image_sha256` fields carry them.

use crate::checkpoint_digest::Sha256Digest;

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

    #[test]
    fn known_digest() {
        // FIPS 180-2 test vector.
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn recognises_hex_digests() {
        assert!(is_sha256_hex(&sha256_hex(b"")));
        assert!(!is_sha256_hex(&sha256_hex(b"").to_uppercase()));
        assert!(!is_sha256_hex("abc"));
        assert!(!is_sha256_hex(&"g".repeat(64)));
    }
}
