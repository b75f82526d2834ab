//! SAM 2.1's video tracker: `SAM2VideoPredictor`'s arithmetic (sam2 1.1.0) for one object
//! at a time, frame by frame, for a server that streams frames.
//!
//! - [`VideoModel`] (`model.rs`): the memory encoder, memory attention, object-pointer and
//!   temporal projections beside the image model ([`crate::Sam`]), and the three steps of
//!   `track_step`.
//! - [`ObjectTracker`] (`tracker.rs`): one object; `add_prompt` (`add_new_points_or_box`)
//!   and `track` / `track_in` (one frame of `propagate_in_video`).
//! - [`TrackerState`] (`state.rs`): what the tracker keeps, flat in the clip's length,
//!   serialisable.
//! - `position.rs`: the fixed sine encodings.
//!
//! Settings fixed as the issue asks: `add_all_frames_to_correct_as_cond` on (every prompted
//! frame conditions), `fill_hole_area` 0, `binarize_mask_from_pts_for_mem_enc` on (the
//! builder's default), `non_overlap_masks` and `clear_non_cond_mem_around_input` off,
//! `max_cond_frames_in_attn` unlimited, memory stride 1.

pub mod model;
pub mod position;
pub mod state;
pub mod tracker;

pub use model::{VideoModel, NO_OBJECT_LOGIT};
pub use state::{Direction, FrameMemory, TrackerState};
pub use tracker::{FrameResult, ObjectTracker};
