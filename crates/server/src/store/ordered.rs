//! Writes of one key in the order their values were taken: each write takes a revision
//! when its value is taken, waits for its turn, and is skipped when a newer value was taken
//! meanwhile, so a slow write never lands over a newer one. A write that is dropped
//! (the writer's bound) leaves the previous value in place until the next one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{Mutex, MutexGuard};

/// The write order of one key; clones share it.
#[derive(Debug, Default, Clone)]
pub struct OrderedKey {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    latest: AtomicU64,
    turn: Mutex<()>,
}

impl OrderedKey {
    /// The revision of a value taken now (newer than every earlier one).
    pub fn next(&self) -> u64 {
        self.inner.latest.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Waits until no other write of the key is running; the write runs while the guard
    /// is held.
    pub async fn turn(&self) -> MutexGuard<'_, ()> {
        self.inner.turn.lock().await
    }

    /// Whether `revision` is the newest value taken (else its write is superseded).
    pub fn is_latest(&self, revision: u64) -> bool {
        self.inner.latest.load(Ordering::SeqCst) == revision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn older_values_are_superseded() {
        let key = OrderedKey::default();
        let first = key.next();
        let shared = key.clone();
        let second = shared.next();
        assert!(second > first);
        let turn = key.turn().await;
        assert!(!key.is_latest(first));
        assert!(key.is_latest(second));
        assert!(shared.inner.turn.try_lock().is_err(), "one write at a time");
        drop(turn);
        assert!(shared.inner.turn.try_lock().is_ok());
    }
}
