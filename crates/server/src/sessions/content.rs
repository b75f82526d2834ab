//! This replica's content index: image SHA-256 -> the embedding a cached session holds,
//! so two uploads of the same bytes share one encode. It holds weak references only: the
//! session cache (TTL, caps) decides what stays in memory, and an embedding no session
//! holds any more is simply not found here.

use std::sync::{Arc, Weak};

use dashmap::DashMap;
use mobilesam_model::Embedding;

/// Image digest -> embedding, while some session holds it.
#[derive(Default)]
pub struct ContentIndex {
    entries: DashMap<String, Weak<Embedding>>,
}

impl ContentIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// The embedding of the image `image_sha256`, if a session still holds it.
    pub fn get(&self, image_sha256: &str) -> Option<Arc<Embedding>> {
        let found = self.entries.get(image_sha256)?.upgrade();
        if found.is_none() {
            self.entries
                .remove_if(image_sha256, |_, weak| weak.strong_count() == 0);
        }
        found
    }

    /// Records that `embedding` is the embedding of the image `image_sha256`.
    pub fn insert(&self, image_sha256: &str, embedding: &Arc<Embedding>) {
        self.entries
            .insert(image_sha256.to_string(), Arc::downgrade(embedding));
    }

    /// Drops the entries whose embedding is gone; returns how many.
    pub fn remove_dead(&self) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, weak| weak.strong_count() > 0);
        before - self.entries.len()
    }

    /// Number of entries (live or not yet swept).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn embedding() -> Arc<Embedding> {
        let values = vec![0.0; Embedding::VALUES];
        Arc::new(
            Embedding::from_host_f32(values, (2, 2), (1024, 1024), &Device::Cpu)
                .expect("embedding"),
        )
    }

    #[test]
    fn finds_held_embeddings_and_forgets_dropped_ones() {
        let index = ContentIndex::new();
        let held = embedding();
        index.insert("a", &held);
        index.insert("b", &embedding()); // nobody holds it
        assert!(Arc::ptr_eq(&index.get("a").expect("held"), &held));
        assert!(index.get("b").is_none());
        assert!(index.get("c").is_none());
        index.insert("c", &embedding());
        assert_eq!(index.remove_dead(), 1);
        assert_eq!(index.len(), 1);
        drop(held);
        assert!(index.get("a").is_none());
        assert!(index.is_empty());
    }
}
