//! Content addresses: an embedding is named by the SHA-256 of the image bytes and the
//! model's identity (the checkpoint file's SHA-256 and the preprocessing version), so two
//! uploads of the same bytes share one embedding and a different image, or the same image
//! under other weights, never finds it. Session records name a session's embedding; a
//! session's tracking state is kept under the model's identity and the session id.

use mobilesam_checkpoint::digest::is_sha256_hex;

/// Prefix of every key the server writes.
pub const KEY_PREFIX: &str = "mobilesam";

/// What makes two embeddings of the same bytes interchangeable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelId {
    /// SHA-256 of the checkpoint file, lowercase hex.
    pub checkpoint_sha256: String,
    /// [`mobilesam_model::image::PREPROCESS_VERSION`] of the server that encoded.
    pub preprocess_version: u32,
}

impl ModelId {
    /// The identity of the running model.
    pub fn new(checkpoint_sha256: String) -> Self {
        Self {
            checkpoint_sha256,
            preprocess_version: mobilesam_model::image::PREPROCESS_VERSION,
        }
    }

    /// The store key of the embedding of the image whose bytes hash to `image_sha256`.
    pub fn embedding_key(&self, image_sha256: &str) -> String {
        format!(
            "{KEY_PREFIX}:emb:{}:p{}:{image_sha256}",
            self.checkpoint_sha256, self.preprocess_version
        )
    }

    /// The store key of a session's SAM 2.1 tracking state: under the model's identity
    /// too, since the tracker's memories are this checkpoint's features of this
    /// preprocessing, so another model never reads them.
    pub fn tracks_key(&self, session_id: &str) -> String {
        format!(
            "{KEY_PREFIX}:track:{}:p{}:{session_id}",
            self.checkpoint_sha256, self.preprocess_version
        )
    }
}

/// The store key of a session record.
pub fn session_key(session_id: &str) -> String {
    format!("{KEY_PREFIX}:session:{session_id}")
}

/// A session's entry in the store: which image it works on, and the image's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// SHA-256 of the session's current image.
    pub image_sha256: String,
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
}

impl SessionRecord {
    /// The stored text: `v1 <image sha256> <width> <height>`.
    pub fn to_text(&self) -> String {
        format!("v1 {} {} {}", self.image_sha256, self.width, self.height)
    }

    /// Parses [`Self::to_text`]; anything else is `None`.
    pub fn parse(text: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(text).ok()?;
        let mut fields = text.split(' ');
        if fields.next()? != "v1" {
            return None;
        }
        let image_sha256 = fields.next()?.to_string();
        let width = fields.next()?.parse().ok()?;
        let height = fields.next()?.parse().ok()?;
        if fields.next().is_some() || !is_sha256_hex(&image_sha256) {
            return None;
        }
        Some(Self {
            image_sha256,
            width,
            height,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mobilesam_checkpoint::digest::sha256_hex;

    #[test]
    fn keys_name_model_and_image() {
        let model = ModelId::new(sha256_hex(b"weights"));
        let a = model.embedding_key(&sha256_hex(b"a"));
        assert!(a.starts_with("mobilesam:emb:"));
        assert!(a.contains(&model.checkpoint_sha256));
        assert_ne!(a, model.embedding_key(&sha256_hex(b"b")));
        let other = ModelId::new(sha256_hex(b"other"));
        assert_ne!(a, other.embedding_key(&sha256_hex(b"a")));
        assert_eq!(session_key("s1"), "mobilesam:session:s1");
        let tracks = model.tracks_key("s1");
        assert!(tracks.starts_with("mobilesam:track:") && tracks.ends_with(":s1"));
        assert_ne!(tracks, other.tracks_key("s1"));
    }

    #[test]
    fn session_records_round_trip_and_refuse_garbage() {
        let record = SessionRecord {
            image_sha256: sha256_hex(b"a"),
            width: 64,
            height: 48,
        };
        assert_eq!(
            SessionRecord::parse(record.to_text().as_bytes()),
            Some(record.clone())
        );
        for bad in ["", "v2 x 1 2", "v1 abc 1 2", "v1", "\u{ff}"] {
            assert_eq!(SessionRecord::parse(bad.as_bytes()), None, "{bad:?}");
        }
        let extra = format!("{} 9", record.to_text());
        assert_eq!(SessionRecord::parse(extra.as_bytes()), None);
    }
}
