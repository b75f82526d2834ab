//! The session cache: session id -> encoded image, so a client can resume a session on a
//! new stream without sending the image again.
//!
//! Entries expire after an idle time-to-live; when the cache holds more than its session
//! or byte cap, the least recently used entries are evicted. A stream keeps its own handle
//! on the embedding it works on, so eviction only stops *resuming* a session, never the
//! prompts of a stream that is open.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::metrics;

/// Caps of the session cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Largest number of cached sessions.
    pub max_sessions: usize,
    /// Largest total size of the cached values, in bytes.
    pub max_bytes: u64,
    /// Idle time after which an entry is dropped.
    pub ttl: Duration,
}

struct Entry<T> {
    value: Arc<T>,
    size_bytes: u64,
    /// Nanoseconds since the store's epoch of the last insert or lookup.
    last_used: AtomicU64,
}

/// Session id -> value (an embedding), with idle TTL and LRU eviction by count and bytes.
pub struct SessionStore<T> {
    entries: DashMap<String, Entry<T>>,
    bytes: AtomicU64,
    limits: SessionLimits,
    epoch: Instant,
    /// Serialises inserts and evictions so the caps hold after every insert.
    evicting: Mutex<()>,
}

impl<T> SessionStore<T> {
    /// An empty store.
    pub fn new(limits: SessionLimits) -> Self {
        Self {
            entries: DashMap::new(),
            bytes: AtomicU64::new(0),
            limits,
            epoch: Instant::now(),
            evicting: Mutex::new(()),
        }
    }

    /// The caps the store enforces.
    pub fn limits(&self) -> SessionLimits {
        self.limits
    }

    /// Number of cached sessions.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no session is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total size of the cached values.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Caches `value` under `id` (replacing what was there), then evicts the least
    /// recently used other entries until the caps hold. Returns false when the value
    /// alone is over the byte cap and was not kept.
    pub fn insert(&self, id: String, value: Arc<T>, size_bytes: u64) -> bool {
        self.insert_at(id, value, size_bytes, Instant::now())
    }

    fn insert_at(&self, id: String, value: Arc<T>, size_bytes: u64, now: Instant) -> bool {
        let _guard = self.evicting.lock().unwrap_or_else(|e| e.into_inner());
        let entry = Entry {
            value,
            size_bytes,
            last_used: AtomicU64::new(self.stamp(now)),
        };
        if let Some(old) = self.entries.insert(id.clone(), entry) {
            self.bytes.fetch_sub(old.size_bytes, Ordering::Relaxed);
        }
        self.bytes.fetch_add(size_bytes, Ordering::Relaxed);
        let mut evicted = 0;
        while self.entries.len() > self.limits.max_sessions || self.bytes() > self.limits.max_bytes
        {
            let victim = self.least_recently_used(&id).unwrap_or_else(|| id.clone());
            if self.remove_if(&victim, |_| true) {
                evicted += 1;
            }
            if victim == id {
                break;
            }
        }
        if evicted > 0 {
            metrics::record_session_evictions("capacity", evicted);
        }
        self.publish();
        self.entries.contains_key(&id)
    }

    /// The value cached under `id`, marking it used; `None` when unknown or expired.
    pub fn get(&self, id: &str) -> Option<Arc<T>> {
        self.get_at(id, Instant::now())
    }

    fn get_at(&self, id: &str, now: Instant) -> Option<Arc<T>> {
        let stamp = self.stamp(now);
        {
            let entry = self.entries.get(id)?;
            if !self.is_expired(&entry, stamp) {
                entry.last_used.fetch_max(stamp, Ordering::Relaxed);
                return Some(Arc::clone(&entry.value));
            }
        }
        if self.remove_if(id, |entry| self.is_expired(entry, stamp)) {
            metrics::record_session_evictions("expired", 1);
        }
        None
    }

    /// Marks `id` as used now (a prompt on an open stream), if it is cached.
    pub fn touch(&self, id: &str) {
        if let Some(entry) = self.entries.get(id) {
            entry
                .last_used
                .fetch_max(self.stamp(Instant::now()), Ordering::Relaxed);
        }
    }

    /// Drops every entry idle for longer than the TTL; returns how many.
    pub fn remove_expired(&self) -> usize {
        self.remove_expired_at(Instant::now())
    }

    fn remove_expired_at(&self, now: Instant) -> usize {
        let stamp = self.stamp(now);
        let expired: Vec<String> = self
            .entries
            .iter()
            .filter(|e| self.is_expired(e.value(), stamp))
            .map(|e| e.key().clone())
            .collect();
        let mut removed = 0;
        for id in expired {
            if self.remove_if(&id, |entry| self.is_expired(entry, stamp)) {
                removed += 1;
            }
        }
        if removed > 0 {
            metrics::record_session_evictions("expired", removed);
        }
        removed
    }

    fn stamp(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    fn is_expired(&self, entry: &Entry<T>, stamp: u64) -> bool {
        let ttl = u64::try_from(self.limits.ttl.as_nanos()).unwrap_or(u64::MAX);
        stamp.saturating_sub(entry.last_used.load(Ordering::Relaxed)) > ttl
    }

    fn least_recently_used(&self, except: &str) -> Option<String> {
        self.entries
            .iter()
            .filter(|e| e.key() != except)
            .min_by_key(|e| e.value().last_used.load(Ordering::Relaxed))
            .map(|e| e.key().clone())
    }

    /// Whether `id` is cached (expired or not), without marking it used.
    pub fn contains(&self, id: &str) -> bool {
        self.entries.contains_key(id)
    }

    /// Records a new size for `id`'s entry (what the session holds besides its value grew
    /// or shrank: its tracking state), then evicts as [`SessionStore::insert`] does.
    /// False when `id` is not cached, or no longer is.
    pub fn resize(&self, id: &str, size_bytes: u64) -> bool {
        let Some(value) = self.entries.get(id).map(|e| Arc::clone(&e.value)) else {
            return false;
        };
        self.insert(id.to_string(), value, size_bytes)
    }

    /// Drops `id` (a client closed its session); false when it was not cached.
    pub fn close(&self, id: &str) -> bool {
        self.remove_if(id, |_| true)
    }

    fn remove_if(&self, id: &str, condition: impl FnOnce(&Entry<T>) -> bool) -> bool {
        match self.entries.remove_if(id, |_, entry| condition(entry)) {
            Some((_, entry)) => {
                self.bytes.fetch_sub(entry.size_bytes, Ordering::Relaxed);
                self.publish();
                true
            }
            None => false,
        }
    }

    fn publish(&self) {
        metrics::set_sessions(self.entries.len(), self.bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(max_sessions: usize, max_bytes: u64, ttl_secs: u64) -> SessionStore<u32> {
        SessionStore::new(SessionLimits {
            max_sessions,
            max_bytes,
            ttl: Duration::from_secs(ttl_secs),
        })
    }

    #[test]
    fn insert_get_replace() {
        let s = store(10, 1000, 60);
        assert!(s.insert("a".into(), Arc::new(1), 100));
        assert_eq!(s.get("a").as_deref(), Some(&1));
        assert!(s.insert("a".into(), Arc::new(2), 300));
        assert_eq!(s.get("a").as_deref(), Some(&2));
        assert_eq!((s.len(), s.bytes()), (1, 300));
        assert!(s.get("b").is_none());
    }

    #[test]
    fn byte_cap_evicts_least_recently_used() {
        let s = store(10, 250, 60);
        let t0 = Instant::now();
        s.insert_at("a".into(), Arc::new(1), 100, t0);
        s.insert_at("b".into(), Arc::new(2), 100, t0 + Duration::from_millis(1));
        // Using "a" makes "b" the least recently used.
        assert!(s.get_at("a", t0 + Duration::from_millis(2)).is_some());
        s.insert_at("c".into(), Arc::new(3), 100, t0 + Duration::from_millis(3));
        assert!(s.get("b").is_none());
        assert!(s.get("a").is_some());
        assert!(s.get("c").is_some());
        assert_eq!((s.len(), s.bytes()), (2, 200));
    }

    #[test]
    fn count_cap_evicts_least_recently_used() {
        let s = store(2, 1 << 30, 60);
        let t0 = Instant::now();
        for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
            s.insert_at(
                id.into(),
                Arc::new(i as u32),
                1,
                t0 + Duration::from_millis(i as u64),
            );
        }
        assert!(s.get("a").is_none());
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn value_over_the_byte_cap_is_not_kept() {
        let s = store(10, 50, 60);
        s.insert("small".into(), Arc::new(1), 10);
        assert!(!s.insert("huge".into(), Arc::new(2), 100));
        assert!(s.get("huge").is_none());
        // The huge value pushed everything else out before being dropped itself.
        assert_eq!(s.bytes(), 0);
    }

    #[test]
    fn idle_entries_expire() {
        let s = store(10, 1000, 10);
        let t0 = Instant::now();
        s.insert_at("a".into(), Arc::new(1), 1, t0);
        s.insert_at("b".into(), Arc::new(2), 1, t0);
        // Used at 8 s: alive until 18 s.
        assert!(s.get_at("a", t0 + Duration::from_secs(8)).is_some());
        assert!(s.get_at("b", t0 + Duration::from_secs(11)).is_none());
        assert_eq!(s.len(), 1);
        assert!(s.get_at("a", t0 + Duration::from_secs(17)).is_some());
        assert_eq!(s.remove_expired_at(t0 + Duration::from_secs(40)), 1);
        assert!(s.is_empty());
        assert_eq!(s.bytes(), 0);
    }
}
