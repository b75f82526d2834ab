//! Store writes off the request path: each write is its own task, at most `limit` in
//! flight; past the bound a write is dropped and counted, never waited for.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::metrics;

/// Bounded fire-and-forget writes.
pub struct Writes {
    permits: Arc<Semaphore>,
}

impl Writes {
    /// At most `limit` writes in flight.
    pub fn new(limit: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limit)),
        }
    }

    /// Runs `write` in the background if fewer than the bound are in flight; otherwise
    /// drops it and counts it. Returns whether it was started.
    pub fn spawn(&self, write: impl Future<Output = ()> + Send + 'static) -> bool {
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            metrics::record_store_write_dropped();
            return false;
        };
        tokio::spawn(async move {
            write.await;
            drop(permit);
        });
        true
    }

    /// Writes in flight now.
    pub fn in_flight(&self, limit: usize) -> usize {
        limit.saturating_sub(self.permits.available_permits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_past_the_bound_are_dropped() {
        let writes = Writes::new(2);
        let gate = Arc::new(Semaphore::new(0));
        let started: Vec<bool> = (0..3)
            .map(|_| {
                let gate = Arc::clone(&gate);
                writes.spawn(async move {
                    let _ = gate.acquire().await;
                })
            })
            .collect();
        assert_eq!(started, [true, true, false]);
        assert_eq!(writes.in_flight(2), 2);
        gate.add_permits(2);
        for _ in 0..100 {
            if writes.in_flight(2) == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(writes.in_flight(2), 0);
        assert!(writes.spawn(async {}));
    }
}
