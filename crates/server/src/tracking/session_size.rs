//! A session's memory as the session cache counts it: its embedding and its tracking state.

use mobilesam_model::Embedding;

use super::SessionTracks;
use crate::state::AppState;

/// Records the session's memory: its embedding and its tracking state.
pub fn record_size(
    state: &AppState,
    session_id: &str,
    embedding: &Embedding,
    tracks: &SessionTracks,
) {
    let size = embedding.size_bytes() as u64 + tracks.size_bytes();
    state.sessions.resize(session_id, size);
}
