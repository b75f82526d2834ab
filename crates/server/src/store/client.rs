//! The Redis (or Valkey) connection: `redis::aio::ConnectionManager` (it reconnects with
//! backoff by itself), every call under a timeout, and the store's up/down state, logged
//! once per change and published as `mobilesam_embedding_store_up`.

use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, RedisError};
use tracing::{info, warn};

use crate::error::ServerError;
use crate::metrics;

/// Longest pause between two health checks while the store is down.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// First pause after the store went down.
const MIN_BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait for a health check: a busy machine is not a dead store.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between two health checks while the store is up.
const HEALTHY_INTERVAL: Duration = Duration::from_secs(2);

/// One store operation, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A read.
    Get,
    /// A write.
    Put,
    /// An existence check (precompute).
    Exists,
    /// A health check.
    Ping,
}

impl Op {
    /// The `op` label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Put => "put",
            Self::Exists => "exists",
            Self::Ping => "ping",
        }
    }
}

/// Why a store call gave no answer. Never shown to clients: it means "miss".
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No answer within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The store refused or the connection failed.
    #[error("{0}")]
    Redis(#[from] RedisError),
}

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// A connection to the store.
pub struct StoreClient {
    manager: ConnectionManager,
    timeout: Duration,
    state: AtomicU8,
    /// The URL without its password, for logs.
    display: String,
}

impl StoreClient {
    /// A client for `url` (`redis://` or `rediss://`), the password taken from
    /// `password_file` when given. Connects lazily: an unreachable store is not an error
    /// here (the server starts and serves without it); a malformed URL or an unreadable
    /// password file is.
    pub fn open(
        url: &str,
        password_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<Self, ServerError> {
        let display = redact(url);
        let bad = |e: String| ServerError::Config(format!("--embedding-store {display}: {e}"));
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(bad("the URL must start with redis:// or rediss://".into()));
        }
        let mut info = url.into_connection_info().map_err(|e| bad(e.to_string()))?;
        if let Some(path) = password_file {
            let password = std::fs::read_to_string(path).map_err(|e| {
                ServerError::Config(format!(
                    "--embedding-store-password-file {}: {e}",
                    path.display()
                ))
            })?;
            let settings = info.redis_settings().clone().set_password(password.trim());
            info = info.set_redis_settings(settings);
        }
        if url.starts_with("rediss://") {
            // rustls needs a process-wide crypto provider; the server's TLS uses ring too.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = redis::Client::open(info).map_err(|e| bad(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500))
            .set_connection_timeout(Some(timeout.max(Duration::from_millis(500))))
            .set_response_timeout(Some(timeout.max(Duration::from_secs(1))));
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            manager,
            timeout,
            state: AtomicU8::new(UNKNOWN),
            display,
        })
    }

    /// The URL, password removed.
    pub fn display_url(&self) -> &str {
        &self.display
    }

    /// Whether the last call reached the store.
    pub fn is_up(&self) -> bool {
        self.state.load(Ordering::Relaxed) == UP
    }

    /// Runs one command under the timeout, recording its duration, errors and the
    /// store's state.
    pub async fn call<T: redis::FromRedisValue>(
        &self,
        op: Op,
        command: &redis::Cmd,
    ) -> Result<T, StoreError> {
        self.call_within(op, command, self.timeout).await
    }

    /// [`Self::call`] with its own timeout (writes and precompute wait longer).
    pub async fn call_within<T: redis::FromRedisValue>(
        &self,
        op: Op,
        command: &redis::Cmd,
        timeout: Duration,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let mut connection = self.manager.clone();
        let result = match tokio::time::timeout(timeout, command.query_async(&mut connection)).await
        {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(StoreError::Redis(e)),
            Err(_) => Err(StoreError::Timeout(timeout)),
        };
        match &result {
            Ok(_) => {
                if op != Op::Ping {
                    metrics::record_store_duration(op.label(), started.elapsed());
                }
                self.mark(true, None);
            }
            Err(e) => {
                metrics::record_store_error(op.label());
                // A slow answer does not mean the store is gone; a failed call does.
                if matches!(e, StoreError::Redis(_)) || op == Op::Ping {
                    self.mark(false, Some(e));
                }
            }
        }
        result
    }

    /// Checks the store until `stop` is cancelled: every few seconds while it is up, with
    /// a growing pause while it is down. Each check also makes the connection manager
    /// reconnect.
    pub async fn watch(&self, stop: tokio_util::sync::CancellationToken) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let ok = self
                .call_within::<String>(Op::Ping, &redis::cmd("PING"), PING_TIMEOUT)
                .await
                .is_ok();
            let pause = if ok {
                backoff = MIN_BACKOFF;
                HEALTHY_INTERVAL
            } else {
                let pause = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                pause
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Records the store's state; logs and publishes a change.
    fn mark(&self, up: bool, error: Option<&StoreError>) {
        let new = if up { UP } else { DOWN };
        let old = self.state.swap(new, Ordering::Relaxed);
        if old == new {
            return;
        }
        metrics::set_store_up(up);
        if up {
            info!(store = %self.display, "embedding store reachable");
        } else {
            let error = error.map(ToString::to_string).unwrap_or_default();
            warn!(
                store = %self.display,
                %error,
                "embedding store unreachable; serving without it (encoding instead) and reconnecting"
            );
        }
    }
}

/// `url` with any password replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let authority = match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("***@{host}"),
        },
        None => authority.to_string(),
    };
    if path.is_empty() && !rest.contains('/') {
        format!("{scheme}://{authority}")
    } else {
        format!("{scheme}://{authority}/{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_logged() {
        assert_eq!(
            redact("redis://:hunter2@cache:6379/0"),
            "redis://:***@cache:6379/0"
        );
        assert_eq!(
            redact("rediss://user:hunter2@cache"),
            "rediss://user:***@cache"
        );
        assert_eq!(redact("redis://cache:6379"), "redis://cache:6379");
    }

    #[tokio::test]
    async fn bad_urls_are_refused_and_unreachable_stores_are_not() {
        let t = Duration::from_millis(100);
        for bad in ["http://cache", "redis://cache:notaport"] {
            assert!(StoreClient::open(bad, None, t).is_err(), "{bad}");
        }
        let missing = Path::new("/nonexistent/password");
        let err = StoreClient::open("redis://127.0.0.1:1", Some(missing), t)
            .err()
            .expect("unreadable password file");
        assert!(err.to_string().contains("password-file"), "{err}");
        // Nothing listens on port 1: opening works, calls fail fast and mark it down.
        let client = StoreClient::open("redis://127.0.0.1:1", None, t).expect("lazy client");
        let ping = client.call::<String>(Op::Ping, &redis::cmd("PING")).await;
        assert!(ping.is_err());
        assert!(!client.is_up());
    }
}
