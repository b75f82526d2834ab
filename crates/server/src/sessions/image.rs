//! What this replica's session cache keeps per session.

use std::sync::Arc;

use mobilesam_model::Embedding;

/// What the session cache keeps per session: the embedding, the digest of its image and
/// the frame index the image has in the session's clip.
#[derive(Debug)]
pub struct SessionImage {
    /// The encoded image.
    pub embedding: Arc<Embedding>,
    /// SHA-256 of the image bytes, lowercase hex.
    pub image_sha256: String,
    /// The image's position in the session's clip (`SetImage.frame_index`).
    pub frame_index: i64,
}
