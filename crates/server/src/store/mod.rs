//! The shared embedding store: the optional tier behind the local session cache, on
//! Redis 7 or Valkey. Replicas that share it reuse each other's embeddings (content
//! addressed, see [`key`]) and resume each other's sessions (session records and, with
//! SAM 2.1, the sessions' tracking state), and `mobilesam embed --data` fills it ahead of
//! time.
//!
//! The store never makes a request fail: reads have a timeout and any miss, error or
//! foreign value ([`value`]) means "encode"; writes run in the background, bounded
//! ([`writer`]); a store that is down at start or goes down later is logged once per
//! change and retried with backoff ([`client`]).

pub mod client;
pub mod config;
pub mod key;
pub mod ordered;
mod tracks;
pub mod value;
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use candle_core::Device;
use mobilesam_model::Embedding;
use tracing::{debug, warn};

pub use client::{Op, StoreClient, StoreError};
pub use config::{StoreConfig, StoreDtype};
pub use key::{ModelId, SessionRecord};
pub use ordered::OrderedKey;
pub use value::HostEmbedding;

use crate::error::ServerError;
use crate::metrics;

/// Longest wait for a background write (a 17 MiB SAM 2 value on a busy network).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Embeddings and session records of one model in the store.
pub struct EmbeddingStore {
    client: Arc<StoreClient>,
    writes: writer::Writes,
    model: ModelId,
    dtype: StoreDtype,
    ttl: Duration,
    /// Where rebuilt embeddings go: the workers' device.
    device: Device,
}

impl EmbeddingStore {
    /// The store for `model`, over `client`.
    pub fn new(
        client: Arc<StoreClient>,
        config: &StoreConfig,
        model: ModelId,
        device: Device,
    ) -> Self {
        Self {
            client,
            writes: writer::Writes::new(config.embedding_store_max_pending_writes),
            model,
            dtype: config.embedding_store_dtype,
            ttl: config.embedding_store_ttl,
            device,
        }
    }

    /// The client of `config`'s store, or `None` when no store is configured.
    pub fn client(config: &StoreConfig) -> Result<Option<Arc<StoreClient>>, ServerError> {
        config.validate()?;
        let Some(url) = &config.embedding_store else {
            return Ok(None);
        };
        let client = StoreClient::open(
            url,
            config.embedding_store_password_file.as_deref(),
            config.embedding_store_timeout,
        )?;
        Ok(Some(Arc::new(client)))
    }

    /// The identity embeddings are stored under.
    pub fn model(&self) -> &ModelId {
        &self.model
    }

    /// The embedding of the image `image_sha256`, when the store has a valid one (its time
    /// to live restarts). A miss, a timeout, an error or a value that is not ours is `None`.
    pub async fn load(&self, image_sha256: &str) -> Option<Arc<Embedding>> {
        let key = self.model.embedding_key(image_sha256);
        let mut command = redis::cmd("GETEX");
        command.arg(&key).arg("EX").arg(self.ttl.as_secs());
        let bytes: Vec<u8> = self
            .client
            .call::<Option<Vec<u8>>>(Op::Get, &command)
            .await
            .ok()??;
        let model = self.model.clone();
        let digest = image_sha256.to_string();
        let device = self.device.clone();
        let rebuilt = tokio::task::spawn_blocking(move || {
            let host = value::decode(&bytes, &model, &digest)?;
            Embedding::from_host(host, &device).map_err(|_| value::BadValue::Format)
        })
        .await
        .ok()?;
        match rebuilt {
            Ok(embedding) => Some(Arc::new(embedding)),
            Err(reason) => {
                // Encoding again overwrites it.
                warn!(key, %reason, "ignoring a stored embedding");
                None
            }
        }
    }

    /// Writes the embedding of `image_sha256` in the background (bounded: dropped and
    /// counted when too many writes are in flight).
    pub fn save(&self, image_sha256: &str, embedding: Arc<Embedding>) {
        let client = Arc::clone(&self.client);
        let key = self.model.embedding_key(image_sha256);
        let (model, dtype, ttl) = (self.model.clone(), self.dtype, self.ttl);
        let digest = image_sha256.to_string();
        self.writes.spawn(async move {
            let encoded = tokio::task::spawn_blocking(move || {
                let host = embedding.to_host().ok()?;
                Some(value::encode(&host, &model, &digest, dtype))
            })
            .await;
            let Ok(Some(bytes)) = encoded else {
                metrics::record_store_error(Op::Put.label());
                return;
            };
            put(&client, &key, bytes, ttl).await;
        });
    }

    /// Writes a session record in the background (bounded like [`Self::save`]).
    pub fn save_session(&self, session_id: &str, record: &SessionRecord) {
        let client = Arc::clone(&self.client);
        let key = key::session_key(session_id);
        let text = record.to_text().into_bytes();
        let ttl = self.ttl;
        self.writes
            .spawn(async move { put(&client, &key, text, ttl).await });
    }

    /// The stored record of `session_id` (its time to live restarts); `None` on a miss,
    /// a timeout, an error or a malformed record.
    pub async fn load_session(&self, session_id: &str) -> Option<SessionRecord> {
        let mut command = redis::cmd("GETEX");
        command
            .arg(key::session_key(session_id))
            .arg("EX")
            .arg(self.ttl.as_secs());
        let bytes: Vec<u8> = self
            .client
            .call::<Option<Vec<u8>>>(Op::Get, &command)
            .await
            .ok()??;
        SessionRecord::parse(&bytes)
    }

    /// Deletes a session record and the session's tracking state in the background (a
    /// client closed its session).
    pub fn forget_session(&self, session_id: &str) {
        let client = Arc::clone(&self.client);
        let mut command = redis::cmd("DEL");
        command
            .arg(key::session_key(session_id))
            .arg(self.model.tracks_key(session_id));
        self.writes.spawn(async move {
            let _ = client
                .call_within::<i64>(Op::Put, &command, WRITE_TIMEOUT)
                .await;
        });
    }
}

async fn put(client: &StoreClient, key: &str, bytes: Vec<u8>, ttl: Duration) {
    let mut command = redis::cmd("SET");
    command.arg(key).arg(bytes).arg("EX").arg(ttl.as_secs());
    if let Err(error) = client
        .call_within::<()>(Op::Put, &command, WRITE_TIMEOUT)
        .await
    {
        debug!(key, %error, "store write failed");
    }
}

/// Why [`Precompute::connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A setting is wrong (the URL, the password file).
    #[error(transparent)]
    Config(#[from] ServerError),
    /// The store did not answer.
    #[error("the embedding store {url} does not answer: {source}")]
    Unreachable {
        /// The URL, password removed.
        url: String,
        /// What went wrong.
        source: StoreError,
    },
}

/// Direct, awaited access for `mobilesam embed --data` (no background writes, no model
/// device): which embeddings exist, and writing one.
pub struct Precompute {
    client: StoreClient,
    model: ModelId,
    dtype: StoreDtype,
    ttl: Duration,
}

impl Precompute {
    /// Connects to `config`'s store (which must be set) for `model`; fails when the store
    /// does not answer a PING.
    pub async fn connect(config: &StoreConfig, model: ModelId) -> Result<Self, ConnectError> {
        config.validate()?;
        let url = config
            .embedding_store
            .as_deref()
            .ok_or_else(|| ServerError::Config("an embedding store URL is needed".into()))?;
        let client = StoreClient::open(
            url,
            config.embedding_store_password_file.as_deref(),
            config.embedding_store_timeout.max(Duration::from_secs(5)),
        )?;
        client
            .call::<String>(Op::Ping, &redis::cmd("PING"))
            .await
            .map_err(|source| ConnectError::Unreachable {
                url: client.display_url().to_string(),
                source,
            })?;
        Ok(Self {
            client,
            model,
            dtype: config.embedding_store_dtype,
            ttl: config.embedding_store_ttl,
        })
    }

    /// Whether the store holds a valid embedding of `image_sha256` for this model (a
    /// foreign or damaged value counts as absent, so it is encoded again).
    pub async fn contains(&self, image_sha256: &str) -> Result<bool, StoreError> {
        let mut command = redis::cmd("GET");
        command.arg(self.model.embedding_key(image_sha256));
        let bytes: Option<Vec<u8>> = self.client.call(Op::Get, &command).await?;
        Ok(bytes.is_some_and(|b| value::decode(&b, &self.model, image_sha256).is_ok()))
    }

    /// Writes the embedding of `image_sha256` and waits for the store's answer.
    pub async fn save(&self, image_sha256: &str, host: &HostEmbedding) -> Result<(), StoreError> {
        let bytes = value::encode(host, &self.model, image_sha256, self.dtype);
        let mut command = redis::cmd("SET");
        command
            .arg(self.model.embedding_key(image_sha256))
            .arg(bytes)
            .arg("EX")
            .arg(self.ttl.as_secs());
        self.client
            .call_within::<()>(Op::Put, &command, WRITE_TIMEOUT)
            .await
    }
}
