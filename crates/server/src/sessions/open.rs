//! The session layer that both transports (the `Segment` stream and the unary RPCs) call to
//! open, resume and close sessions. It finds an image's embedding in the cheapest place:
//!
//! 1. this replica's memory, by content ([`super::content::ContentIndex`]): `LOCAL_CACHE`;
//! 2. the shared store, when one is configured ([`crate::store`]): `STORE`;
//! 3. else the image is encoded on a worker: `ENCODED`, and written to the store in the
//!    background.
//!
//! A session resumed by id comes from the session cache, else from its record in the
//! store (another replica opened it). The store never makes a request fail: a miss, a
//! timeout or an error just moves on to the next step.

use std::sync::Arc;

use mobilesam_checkpoint::digest::{is_sha256_hex, sha256_hex};
use mobilesam_model::Embedding;
use mobilesam_proto::v1;
use mobilesam_proto::v1::EmbeddingSource;

use crate::convert;
use crate::error::RequestError;
use crate::lanes;
use crate::metrics::{self, RequestKind};
use crate::state::AppState;
use crate::store::SessionRecord;
use crate::tracking::frames::FrameIndex;
use crate::validate::ImageRequest;

use super::image::SessionImage;

/// A session that is ready for prompts.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The session's id.
    pub session_id: String,
    /// Its image's embedding.
    pub embedding: Arc<Embedding>,
    /// Where the embedding came from.
    pub source: EmbeddingSource,
    /// SHA-256 of the image bytes.
    pub image_sha256: String,
    /// Encoder time, 0 unless the image was encoded for this request.
    pub encode_ms: f64,
    /// Whether the session cache kept the session (false: the embedding alone is larger
    /// than the whole cache).
    pub cached: bool,
    /// The image's position in the session's clip.
    pub frame_index: i64,
    /// The server assigned `frame_index` (the one after the session's previous image): the
    /// client sent none. False when the client gave it, and for a resumed session.
    pub frame_assigned: bool,
}

impl Opened {
    /// The image's frame, for tracking.
    pub fn frame(&self) -> FrameIndex {
        FrameIndex {
            index: self.frame_index,
            assigned: self.frame_assigned,
        }
    }

    /// The `ImageReady` answer.
    pub fn image_ready(&self) -> v1::ImageReady {
        let mut ready = convert::image_ready(&self.session_id, &self.embedding, self.encode_ms);
        ready.source = self.source as i32;
        ready.image_sha256.clone_from(&self.image_sha256);
        ready.frame_index = self.frame_index;
        ready
    }

    /// The `ImageReady` answer as a stream response.
    pub fn response(&self) -> v1::SegmentResponse {
        convert::in_stream(v1::segment_response::Response::ImageReady(
            self.image_ready(),
        ))
    }
}

/// The answer to resuming a session nobody has.
pub fn session_not_found(session_id: &str) -> RequestError {
    RequestError::NotFound(format!(
        "session {session_id} is unknown or has expired; send the image again with SetImage"
    ))
}

/// What a checked `SetImage` counts as in the request metrics.
pub fn request_kind(request: &ImageRequest) -> RequestKind {
    match request {
        ImageRequest::Resume { .. } => RequestKind::Resume,
        ImageRequest::Encode { .. } | ImageRequest::Digest { .. } => RequestKind::SetImage,
        ImageRequest::Prefetch { .. } => RequestKind::Prefetch,
    }
}

/// Answers a checked `SetImage`. A new image, or an image named by digest, goes to the
/// session the client named, else to `current` (a stream's session: the next frame),
/// else to a new session. Its frame index is `frame_index`, else the one after the
/// session's previous image (0 for a new session). A prefetch is [`prefetch`]'s.
pub async fn open(
    state: &AppState,
    request: ImageRequest,
    current: Option<String>,
    frame_index: Option<i64>,
) -> Result<Opened, RequestError> {
    let session_for = |requested: Option<String>| {
        requested
            .or(current)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
    };
    let frame_for = |session_id: &str| {
        frame_index.unwrap_or_else(|| {
            state
                .sessions
                .get(session_id)
                .map_or(0, |previous| previous.frame_index.saturating_add(1))
        })
    };
    match request {
        ImageRequest::Resume { session_id } => {
            let mut opened = resume(state, session_id).await?;
            opened.frame_index = frame_index.unwrap_or(opened.frame_index);
            Ok(opened)
        }
        ImageRequest::Encode { image, session_id } => {
            let session_id = session_for(session_id);
            let frame = frame_for(&session_id);
            let opened = open_image(state, image, (session_id, frame)).await?;
            Ok(assigned(opened, frame_index))
        }
        ImageRequest::Digest {
            image_sha256,
            session_id,
        } => {
            let session_id = session_for(session_id);
            let frame = frame_for(&session_id);
            let opened = open_digest(state, &image_sha256, (session_id, frame)).await?;
            Ok(assigned(opened, frame_index))
        }
        ImageRequest::Prefetch { .. } => Err(RequestError::Internal(
            "a prefetch opens no session; it is answered by sessions::prefetch".into(),
        )),
    }
}

/// `opened`, marked as numbered by the server when the client gave no `frame_index`.
fn assigned(opened: Opened, frame_index: Option<i64>) -> Opened {
    Opened {
        frame_assigned: frame_index.is_none(),
        ..opened
    }
}

/// The key under which a prefetched embedding waits in the session cache (so the cache's
/// TTL and bounds apply) until a `SetImage{image_sha256}` opens a session on it.
pub fn prefetch_key(image_sha256: &str) -> String {
    format!("prefetch:{image_sha256}")
}

/// `SetImage.prefetch`: the embedding of `image` from memory or the store, else encoded in
/// the generate lane (below every interactive encode), then kept in this replica's cache
/// and written to the store. Opens no session; answers `ImageReady{prefetched}`.
pub async fn prefetch(
    state: &AppState,
    image: Vec<u8>,
    frame_index: Option<i64>,
) -> Result<v1::ImageReady, RequestError> {
    let (image, image_sha256) = hash(image).await?;
    let (embedding, source, encode_ms) = match find(state, &image_sha256).await {
        Some((embedding, source)) => (embedding, source, 0.0),
        None => {
            metrics::record_embedding_lookup("miss");
            let encoded = lanes::prefetch(&state.queues, image).await?;
            if let Some(store) = state.store.get() {
                store.save(&image_sha256, Arc::clone(&encoded.embedding));
            }
            let encode_ms = encoded.elapsed.as_secs_f64() * 1e3;
            (encoded.embedding, EmbeddingSource::Encoded, encode_ms)
        }
    };
    state.content.insert(&image_sha256, &embedding);
    let size = u64::try_from(embedding.size_bytes()).unwrap_or(u64::MAX);
    let frame_index = frame_index.unwrap_or(0);
    let mut ready = convert::image_ready("", &embedding, encode_ms);
    let value = Arc::new(SessionImage {
        embedding,
        image_sha256: image_sha256.clone(),
        frame_index,
    });
    state
        .sessions
        .insert(prefetch_key(&image_sha256), value, size);
    ready.source = source as i32;
    ready.image_sha256 = image_sha256;
    ready.prefetched = true;
    ready.frame_index = frame_index;
    Ok(ready)
}

/// The image and its SHA-256 (lowercase hex), hashed off the async runtime.
async fn hash(image: Vec<u8>) -> Result<(Vec<u8>, String), RequestError> {
    tokio::task::spawn_blocking(move || {
        let digest = sha256_hex(&image);
        (image, digest)
    })
    .await
    .map_err(|_| RequestError::Internal("hashing the image failed".into()))
}

/// Opens `session` (its id and the image's frame index) on `image`: the embedding of the
/// same bytes from memory or the store, else a new encode (then written to the store in
/// the background).
pub async fn open_image(
    state: &AppState,
    image: Vec<u8>,
    session: (String, i64),
) -> Result<Opened, RequestError> {
    let (image, image_sha256) = hash(image).await?;
    if let Some((embedding, source)) = find(state, &image_sha256).await {
        return Ok(keep(state, session, embedding, source, image_sha256, 0.0));
    }
    metrics::record_embedding_lookup("miss");
    let encoded = lanes::encode(&state.queues, image).await?;
    if let Some(store) = state.store.get() {
        store.save(&image_sha256, Arc::clone(&encoded.embedding));
    }
    let encode_ms = encoded.elapsed.as_secs_f64() * 1e3;
    Ok(keep(
        state,
        session,
        encoded.embedding,
        EmbeddingSource::Encoded,
        image_sha256,
        encode_ms,
    ))
}

/// Opens `session` (its id and the image's frame index) on the embedding of the image
/// whose bytes hash to `image_sha256` (memory or store); NOT_FOUND when neither has it.
pub async fn open_digest(
    state: &AppState,
    image_sha256: &str,
    session: (String, i64),
) -> Result<Opened, RequestError> {
    let image_sha256 = image_sha256.to_ascii_lowercase();
    if !is_sha256_hex(&image_sha256) {
        return Err(RequestError::InvalidArgument(
            "image_sha256 must be 64 hex digits (the SHA-256 of the image bytes)".into(),
        ));
    }
    match find(state, &image_sha256).await {
        Some((embedding, source)) => Ok(keep(state, session, embedding, source, image_sha256, 0.0)),
        None => {
            metrics::record_embedding_lookup("miss");
            Err(RequestError::NotFound(format!(
                "no embedding of image {image_sha256} here or in the embedding store; \
                 send the image bytes"
            )))
        }
    }
}

/// Resumes `session_id`: from the session cache, else from its record in the store.
pub async fn resume(state: &AppState, session_id: String) -> Result<Opened, RequestError> {
    if let Some(cached) = state.sessions.get(&session_id) {
        metrics::record_embedding_lookup("local");
        return Ok(Opened {
            embedding: Arc::clone(&cached.embedding),
            image_sha256: cached.image_sha256.clone(),
            session_id,
            source: EmbeddingSource::LocalCache,
            encode_ms: 0.0,
            cached: true,
            frame_index: cached.frame_index,
            frame_assigned: false,
        });
    }
    let Some(store) = state.store.get() else {
        return Err(session_not_found(&session_id));
    };
    let Some(record) = store.load_session(&session_id).await else {
        return Err(session_not_found(&session_id));
    };
    match find(state, &record.image_sha256).await {
        Some((embedding, source)) => Ok(keep(
            state,
            (session_id, 0),
            embedding,
            source,
            record.image_sha256,
            0.0,
        )),
        None => {
            metrics::record_embedding_lookup("miss");
            Err(session_not_found(&session_id))
        }
    }
}

/// Closes a session here and in the store; false when this replica did not cache it.
pub fn close(state: &AppState, session_id: &str) -> bool {
    if let Some(store) = state.store.get() {
        store.forget_session(session_id);
    }
    state.sessions.close(session_id)
}

/// The embedding of `image_sha256` from memory, else from the store.
async fn find(state: &AppState, image_sha256: &str) -> Option<(Arc<Embedding>, EmbeddingSource)> {
    if let Some(embedding) = state.content.get(image_sha256) {
        metrics::record_embedding_lookup("local");
        return Some((embedding, EmbeddingSource::LocalCache));
    }
    let embedding = state.store.get()?.load(image_sha256).await?;
    metrics::record_embedding_lookup("store");
    Some((embedding, EmbeddingSource::Store))
}

/// Caches the session here (and its record in the store) and describes it.
fn keep(
    state: &AppState,
    (session_id, frame_index): (String, i64),
    embedding: Arc<Embedding>,
    source: EmbeddingSource,
    image_sha256: String,
    encode_ms: f64,
) -> Opened {
    state.content.insert(&image_sha256, &embedding);
    let size = u64::try_from(embedding.size_bytes()).unwrap_or(u64::MAX);
    let value = Arc::new(SessionImage {
        embedding: Arc::clone(&embedding),
        image_sha256: image_sha256.clone(),
        frame_index,
    });
    let cached = state.sessions.insert(session_id.clone(), value, size);
    if let Some(store) = state.store.get() {
        let (height, width) = embedding.original_size;
        let record = SessionRecord {
            image_sha256: image_sha256.clone(),
            width: u32::try_from(width).unwrap_or(u32::MAX),
            height: u32::try_from(height).unwrap_or(u32::MAX),
        };
        store.save_session(&session_id, &record);
    }
    Opened {
        session_id,
        embedding,
        source,
        image_sha256,
        encode_ms,
        cached,
        frame_index,
        frame_assigned: false,
    }
}
