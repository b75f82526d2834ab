//! Flags of the shared embedding store (`--embedding-store*`).

use std::path::PathBuf;
use std::time::Duration;

use crate::error::ServerError;

/// Default time an embedding (and a session record) lives in the store.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// Default longest wait for a store read before the server encodes instead.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);
/// Default largest number of store writes in flight; past it writes are dropped.
pub const DEFAULT_MAX_PENDING_WRITES: usize = 32;

/// How embeddings are written to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum StoreDtype {
    /// 32-bit floats: 4 MiB per image, exactly the encoded values.
    #[default]
    F32,
    /// 16-bit floats: 2 MiB per image (docs/store.md: the accuracy kept).
    F16,
}

impl StoreDtype {
    /// Bytes per stored value.
    pub fn bytes_per_value(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 => 2,
        }
    }

    /// The flag's spelling.
    pub fn label(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
        }
    }
}

/// The optional shared tier behind the local session cache: Redis 7 or Valkey.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct StoreConfig {
    /// Shared embedding store: `redis://[:PASSWORD@]HOST[:PORT][/DB]`, or `rediss://` for
    /// TLS. Replicas that share one store resume each other's sessions and reuse each
    /// other's embeddings. Unset: embeddings live only in this process.
    #[arg(long, env = "MOBILESAM_EMBEDDING_STORE", value_name = "URL")]
    pub embedding_store: Option<String>,

    /// File holding the store's password (a mounted Kubernetes secret); overrides a
    /// password in the URL. Surrounding whitespace is ignored.
    #[arg(
        long,
        env = "MOBILESAM_EMBEDDING_STORE_PASSWORD_FILE",
        value_name = "FILE"
    )]
    pub embedding_store_password_file: Option<PathBuf>,

    /// How long a stored embedding or session record lives after its last use.
    #[arg(long, env = "MOBILESAM_EMBEDDING_STORE_TTL", default_value = "24h", value_parser = humantime::parse_duration)]
    pub embedding_store_ttl: Duration,

    /// Precision of stored embeddings: `f32` (exact) or `f16` (half the bytes).
    #[arg(long, env = "MOBILESAM_EMBEDDING_STORE_DTYPE", value_enum, default_value_t = StoreDtype::F32)]
    pub embedding_store_dtype: StoreDtype,

    /// Longest wait for a store read; a slower store counts as a miss (the image is
    /// encoded, or a resume answers NOT_FOUND).
    #[arg(long, env = "MOBILESAM_EMBEDDING_STORE_TIMEOUT", default_value = "250ms", value_parser = humantime::parse_duration)]
    pub embedding_store_timeout: Duration,

    /// Largest number of store writes in flight; past it a write is dropped and counted
    /// (`mobilesam_embedding_store_writes_dropped_total`).
    #[arg(long, env = "MOBILESAM_EMBEDDING_STORE_MAX_PENDING_WRITES", default_value_t = DEFAULT_MAX_PENDING_WRITES)]
    pub embedding_store_max_pending_writes: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            embedding_store: None,
            embedding_store_password_file: None,
            embedding_store_ttl: DEFAULT_TTL,
            embedding_store_dtype: StoreDtype::F32,
            embedding_store_timeout: DEFAULT_TIMEOUT,
            embedding_store_max_pending_writes: DEFAULT_MAX_PENDING_WRITES,
        }
    }
}

impl StoreConfig {
    /// Checks the settings; the URL's syntax is checked when the client is built.
    pub fn validate(&self) -> Result<(), ServerError> {
        if self.embedding_store_ttl.as_secs() == 0 {
            return Err(ServerError::Config(
                "--embedding-store-ttl must be at least 1s".into(),
            ));
        }
        if self.embedding_store_timeout.is_zero() {
            return Err(ServerError::Config(
                "--embedding-store-timeout must be above 0".into(),
            ));
        }
        if self.embedding_store_max_pending_writes == 0 {
            return Err(ServerError::Config(
                "--embedding-store-max-pending-writes must be at least 1".into(),
            ));
        }
        Ok(())
    }
}
