//! A session's SAM 2.1 tracking state in the store (docs/tracking.md): written in the
//! background after every change, in order ([`OrderedKey`]), under the model's identity
//! and the session id with the session records' time to live; read by a replica that
//! carries the session on. The bytes are the tracker's own ([`crate::tracking::memory`]);
//! the store only moves them.

use std::sync::Arc;

use tracing::debug;

use super::client::{Op, StoreError};
use super::ordered::OrderedKey;
use super::EmbeddingStore;

impl EmbeddingStore {
    /// Writes a session's tracking state in the background (bounded like every write):
    /// `encode` is given the served checkpoint's SHA-256 and runs off the async runtime,
    /// only when this value is still the newest of the session's (`order`), and its
    /// turn came; `None` from it skips the write (the session was closed meanwhile).
    pub fn save_tracks(
        &self,
        session_id: &str,
        order: &OrderedKey,
        encode: impl FnOnce(&str) -> Option<Vec<u8>> + Send + 'static,
    ) {
        let revision = order.next();
        let order = order.clone();
        let client = Arc::clone(&self.client);
        let key = self.model.tracks_key(session_id);
        let checkpoint = self.model.checkpoint_sha256.clone();
        let ttl = self.ttl;
        self.writes.spawn(async move {
            let _turn = order.turn().await;
            if !order.is_latest(revision) {
                return;
            }
            let encoded = tokio::task::spawn_blocking(move || encode(&checkpoint)).await;
            let Ok(Some(bytes)) = encoded else {
                return;
            };
            debug!(key, bytes = bytes.len(), revision, "tracking state written");
            super::put(&client, &key, bytes, ttl).await;
        });
    }

    /// The stored tracking state of `session_id` (its time to live restarts): `Ok(None)`
    /// when the store has none, `Err` when the store did not answer.
    pub async fn load_tracks(&self, session_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut command = redis::cmd("GETEX");
        command
            .arg(self.model.tracks_key(session_id))
            .arg("EX")
            .arg(self.ttl.as_secs());
        self.client.call(Op::Get, &command).await
    }
}
