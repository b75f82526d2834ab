//! A session's memory tracking outlives its replica (docs/tracking.md, "State in the
//! store"): with the embedding store configured, every change to a session's memory-tracked
//! objects is written to the store in the background ([`save`]), and a replica that has no
//! tracking state for a session reads it from there before it follows or prompts
//! ([`existing_or_stored`]).
//!
//! Neither ever fails a request: a write that is dropped or fails leaves the previous state
//! in the store; a missing, foreign or damaged value means the session tracks nothing here
//! (warned once per session), and a store that does not answer is asked again at the next
//! request.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::{debug, info, warn};

use super::{in_use, stored, MemoryObject};
use crate::state::AppState;
use crate::tracking::{record_size, SessionTracks, SharedTracks};

/// Writes the memory-tracked objects of `session_id` (`tracks`, behind `shared`, whose
/// lock the caller holds) to the store in the background. The objects are copied here;
/// they are serialised off the request's path, and not at all when a newer state of the
/// session was taken meanwhile or the session was closed. Nothing without a store or
/// without memory tracking.
pub fn save(state: &AppState, session_id: &str, shared: &SharedTracks, tracks: &SessionTracks) {
    let Some(store) = state.store.get() else {
        return;
    };
    if !in_use(state) {
        return;
    }
    let snapshot = tracks.memory.clone();
    let alive = Arc::downgrade(shared);
    store.save_tracks(session_id, &tracks.memory_writes, move |checkpoint| {
        (alive.strong_count() > 0).then(|| stored::encode(checkpoint, &snapshot))
    });
}

/// The tracking state of `session_id`: this replica's, else (with memory tracking and a
/// store) the one in the store, which this replica then keeps and counts toward the
/// session's memory. A session the store has no valid state for is kept with none, so the
/// store is asked once; `None` when there is no state here and the store was not asked or
/// did not answer.
pub async fn existing_or_stored(state: &AppState, session_id: &str) -> Option<SharedTracks> {
    if let Some(local) = state.tracking.existing(session_id) {
        return Some(local);
    }
    if !in_use(state) {
        return None;
    }
    let store = state.store.get()?;
    let bytes = match store.load_tracks(session_id).await {
        Ok(bytes) => bytes,
        Err(error) => {
            debug!(session_id, %error, "tracking state not read from the store; asking again at the next request");
            return None;
        }
    };
    let size = bytes.as_ref().map_or(0, Vec::len);
    let memory = match bytes {
        Some(bytes) => decode(bytes, store.model().checkpoint_sha256.clone(), session_id).await,
        None => BTreeMap::new(),
    };
    let loaded = memory.len();
    let shared = state.tracking.adopt(
        session_id,
        SessionTracks {
            memory,
            ..SessionTracks::default()
        },
    );
    if loaded > 0 {
        info!(
            session_id,
            objects = loaded,
            bytes = size,
            "tracking state carried on from the store"
        );
        if let Some(session) = state.sessions.get(session_id) {
            let tracks = shared.lock().await;
            record_size(state, session_id, &session.embedding, &tracks);
        }
    }
    Some(shared)
}

/// The objects of a stored value, decoded off the async runtime; none (warned) when the
/// value is not a valid state of the served checkpoint.
async fn decode(
    bytes: Vec<u8>,
    checkpoint_sha256: String,
    session_id: &str,
) -> BTreeMap<u64, MemoryObject> {
    let decoded =
        tokio::task::spawn_blocking(move || stored::decode(&bytes, &checkpoint_sha256)).await;
    match decoded {
        Ok(Ok(objects)) => objects,
        Ok(Err(reason)) => {
            warn!(session_id, %reason, "ignoring a stored tracking state: the session tracks nothing here");
            BTreeMap::new()
        }
        Err(_) => BTreeMap::new(),
    }
}
