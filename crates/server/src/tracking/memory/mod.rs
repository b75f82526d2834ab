//! SAM 2.1 memory tracking in a session (docs/tracking.md): one [`ObjectTracker`] per
//! object, `SAM2VideoPredictor`'s arithmetic, and each object's result per frame index.
//!
//! A prompt on a frame makes it a conditioning frame of its objects and starts a new
//! generation of their results: a frame revisited with a result of the current
//! generation is answered from it (no model work); one computed before the object's last
//! prompt is tracked again. The tracker keeps only what later frames read (flat in the
//! clip's length); older frames' results are kept as RLE masks, not logits.
//!
//! Everything here is plain data: with the embedding store configured, a session's objects
//! are written to it after every change and read back by a replica that carries the
//! session on ([`persist`], in the layout of [`stored`]).

mod ops;
pub mod persist;
pub mod stored;

use std::collections::{BTreeMap, BTreeSet};

use mobilesam_model::video::ObjectTracker;
use mobilesam_model::MaskOutput;
use mobilesam_proto::v1;

pub use ops::{follow, prompt};
pub use persist::{existing_or_stored, save};

/// Whether the served checkpoint tracks with SAM 2.1's memory (`ModelInfo.memory_tracking`).
pub fn in_use(state: &crate::state::AppState) -> bool {
    state
        .model_info
        .get()
        .is_some_and(|info| info.memory_tracking)
}

/// One object's result on one frame, as answered.
#[derive(Debug, Clone)]
pub struct StoredResult {
    /// The object's generation (number of prompts) when it was computed.
    pub generation: u64,
    /// The mask (RLE, box, area, scores; polygons when asked; no logits).
    pub mask: MaskOutput,
    /// The object-score head saw no object: an empty mask, `TRACK_STATE_OCCLUDED`.
    pub occluded: bool,
}

impl StoredResult {
    /// Bytes held (the RLE counts and polygon vertices, plus the fixed part).
    pub fn size_bytes(&self) -> u64 {
        let beside_mask = std::mem::size_of::<Self>() - std::mem::size_of::<MaskOutput>();
        crate::tracking::frames::mask_bytes(&self.mask) + beside_mask as u64
    }

    /// The wire state.
    pub fn state(&self) -> v1::TrackState {
        if self.occluded {
            v1::TrackState::Occluded
        } else {
            v1::TrackState::Tracked
        }
    }
}

/// One object followed by memory tracking.
#[derive(Debug, Clone, Default)]
pub struct MemoryObject {
    /// The tracker (its state is what later frames read).
    pub tracker: ObjectTracker,
    /// Prompts given so far: results of an older generation are recomputed.
    pub generation: u64,
    /// Results by frame index.
    pub results: BTreeMap<usize, StoredResult>,
    /// The frame of the last prompt, until a later frame is tracked: the next propagation
    /// starts from it.
    pub start: Option<usize>,
    /// The last prompt asked for `return_polygons`: the follow-ups' masks carry them too.
    pub return_polygons: bool,
}

impl MemoryObject {
    /// Bytes held: the tracker's state and the stored results.
    pub fn size_bytes(&self) -> u64 {
        self.tracker.state().bytes() as u64
            + self
                .results
                .values()
                .map(StoredResult::size_bytes)
                .sum::<u64>()
    }

    /// The result on `frame` when it is current (no prompt since it was computed).
    pub fn current(&self, frame: usize) -> Option<&StoredResult> {
        self.results
            .get(&frame)
            .filter(|r| r.generation == self.generation)
    }
}

/// The frames for which any of `objects` holds a result.
pub fn stored_frames<'a>(objects: impl Iterator<Item = &'a MemoryObject>) -> BTreeSet<usize> {
    objects.flat_map(|o| o.results.keys().copied()).collect()
}
