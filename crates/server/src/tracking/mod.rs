//! Following objects from frame to frame, on the server.
//!
//! A `Prompt` with `track` set makes its session follow the prompt's objects (each named
//! by its `object_id`); every later `SetImage` with an image on that session decodes the
//! new frame once per followed object with the [recipe] and answers `ImageReady.tracked`.
//! The state (per object, its result per frame index: [`RecipeObject`]) belongs to the
//! session, not to the stream, so a resumed session keeps tracking; it counts toward the
//! session's memory and is dropped with the session (`CloseSession`, expiry, eviction).
//!
//! Every change to one session's state takes that session's lock, which is fair (first
//! come, first served): a tracked prompt, the follow-up on the next frame and an untrack
//! are applied in the order they arrived.

mod answer;
pub mod config;
pub mod frames;
pub mod memory;
pub mod recipe;
pub mod recipe_object;
mod recipe_ops;
mod session_ops;
pub mod session_size;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use dashmap::DashMap;
use mobilesam_model::{DecodeOptions, ObjectPrompt};
use tokio::sync::Mutex;

use crate::error::RequestError;
use crate::store::OrderedKey;

pub use config::TrackingConfig;
pub use recipe::{ObjectState, Thresholds, Track};
pub use recipe_object::RecipeObject;
pub use session_ops::{attach, follow, predict, prompt, untrack, untrack_rpc, wants_tracking};
pub use session_size::record_size;

/// The objects one session follows, by object id (ascending): with the recipe (MobileSAM,
/// SAM ViT) or with SAM 2.1's memory tracker (the served checkpoint decides).
#[derive(Debug, Default)]
pub struct SessionTracks {
    /// Object id -> results per frame, for the recipe.
    pub objects: BTreeMap<u64, RecipeObject>,
    /// The frame the recipe last answered on (a prompt or a follow-up): the direction of
    /// travel onto the next frame is read from it.
    pub previous_frame: Option<usize>,
    /// Object id -> tracker and results, for memory tracking.
    pub memory: BTreeMap<u64, memory::MemoryObject>,
    /// The order of the writes of `memory` to the shared store.
    pub memory_writes: OrderedKey,
}

impl SessionTracks {
    /// Bytes of state held (the recipe's stored masks, with 256 KiB of logits on at most
    /// three frames per object; the tracker state and stored results of memory-tracked
    /// objects).
    pub fn size_bytes(&self) -> u64 {
        self.objects
            .values()
            .map(RecipeObject::size_bytes)
            .sum::<u64>()
            + self
                .memory
                .values()
                .map(memory::MemoryObject::size_bytes)
                .sum::<u64>()
    }

    /// The frames for which any object followed by the recipe holds a result.
    pub fn recipe_frames(&self) -> BTreeSet<usize> {
        self.objects
            .values()
            .flat_map(RecipeObject::frames)
            .collect()
    }

    /// Whether the session tracks `id`, either way.
    pub fn contains(&self, id: u64) -> bool {
        self.objects.contains_key(&id) || self.memory.contains_key(&id)
    }

    /// Number of objects tracked, either way.
    pub fn len(&self) -> usize {
        self.objects.len() + self.memory.len()
    }

    /// Whether nothing is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// RESOURCE_EXHAUSTED when tracking `ids` would make the session track more objects
    /// than `max` (`--max-tracked-objects`).
    pub fn check_capacity(&self, ids: &[u64], max: usize) -> Result<(), RequestError> {
        let new = ids.iter().filter(|&&id| !self.contains(id)).count();
        let total = self.len() + new;
        if total > max {
            return Err(RequestError::ResourceExhausted(format!(
                "the session would track {total} objects; at most {max} are allowed \
                 (--max-tracked-objects): untrack some first"
            )));
        }
        Ok(())
    }
}

/// A checked prompt that goes through tracking.
#[derive(Debug)]
pub struct Prompted {
    /// The prompt's request id.
    pub request_id: u64,
    /// `Prompt.track`.
    pub track: bool,
    /// Each object's id (0: none).
    pub ids: Vec<u64>,
    /// The model prompts, in order.
    pub objects: Vec<ObjectPrompt>,
    /// The decode options.
    pub options: DecodeOptions,
}

/// One session's tracking state, behind its lock.
pub type SharedTracks = Arc<Mutex<SessionTracks>>;

/// Every session's tracking state.
#[derive(Debug)]
pub struct Tracker {
    sessions: DashMap<String, SharedTracks>,
    config: TrackingConfig,
}

impl Tracker {
    /// No session tracks anything yet.
    pub fn new(config: TrackingConfig) -> Self {
        Self {
            sessions: DashMap::new(),
            config,
        }
    }

    /// The settings.
    pub fn config(&self) -> TrackingConfig {
        self.config
    }

    /// The thresholds of the recipe.
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            min_score: self.config.track_min_score,
            max_area_change: self.config.track_max_area_change,
        }
    }

    /// The state of `session_id`, created empty when it has none.
    pub fn session(&self, session_id: &str) -> SharedTracks {
        Arc::clone(
            self.sessions
                .entry(session_id.to_string())
                .or_default()
                .value(),
        )
    }

    /// The state of `session_id`: `tracks` when it has none yet (loaded from the store),
    /// else the one it has (a request on this replica made it meanwhile).
    pub fn adopt(&self, session_id: &str, tracks: SessionTracks) -> SharedTracks {
        Arc::clone(
            self.sessions
                .entry(session_id.to_string())
                .or_insert_with(|| Arc::new(Mutex::new(tracks)))
                .value(),
        )
    }

    /// The state of `session_id`, if it ever tracked anything.
    pub fn existing(&self, session_id: &str) -> Option<SharedTracks> {
        self.sessions.get(session_id).map(|s| Arc::clone(s.value()))
    }

    /// Drops the state of a closed session; false when it had none.
    pub fn close(&self, session_id: &str) -> bool {
        self.sessions.remove(session_id).is_some()
    }

    /// Drops the state of every session for which `alive` is false (expired or evicted
    /// from the session cache); returns how many.
    pub fn retain(&self, alive: impl Fn(&str) -> bool) -> usize {
        let before = self.sessions.len();
        self.sessions.retain(|id, _| alive(id));
        before.saturating_sub(self.sessions.len())
    }

    /// Number of sessions with tracking state.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session has tracking state.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_created_shared_closed_and_swept() {
        let tracker = Tracker::new(TrackingConfig::default());
        assert!(tracker.existing("a").is_none());
        let a = tracker.session("a");
        assert!(Arc::ptr_eq(&a, &tracker.session("a")));
        tracker.session("b");
        assert_eq!(tracker.retain(|id| id == "b"), 1);
        assert!(tracker.existing("a").is_none());
        let adopted = tracker.adopt("c", SessionTracks::default());
        assert!(Arc::ptr_eq(
            &adopted,
            &tracker.adopt("c", SessionTracks::default())
        ));
        assert!(tracker.close("c"));
        assert!(tracker.close("b"));
        assert!(!tracker.close("b"));
        assert!(tracker.is_empty());
    }

    #[test]
    fn size_and_frames_count_the_recipe_objects() {
        let mask = mobilesam_model::MaskOutput {
            score: 0.9,
            area: 1,
            bbox: [0.0, 0.0, 1.0, 1.0],
            rle: mobilesam_model::masks::Rle {
                size: [2, 2],
                counts: "0".into(),
            },
            stability_score: 0.9,
            low_res_logits: Some(vec![0.0; 256 * 256]),
            polygons: None,
        };
        let mut tracks = SessionTracks::default();
        let mut followed = RecipeObject::default();
        followed.prompt(3, ObjectState::from_mask(mask, (2, 2)), false);
        tracks.objects.insert(3, followed);
        let mut lost = RecipeObject::default();
        lost.prompt(5, ObjectState::Lost, false);
        tracks.objects.insert(4, lost);
        let fixed = std::mem::size_of::<mobilesam_model::MaskOutput>() as u64;
        let lost_bytes = std::mem::size_of::<ObjectState>() as u64;
        assert_eq!(tracks.size_bytes(), 256 * 1024 + 1 + fixed + lost_bytes);
        assert_eq!(tracks.recipe_frames(), BTreeSet::from([3, 5]));
    }
}
