//! Segment everything: the reference's `SamAutomaticMaskGenerator`, served two ways.
//!
//! - The `GenerateMasks` RPC ([`rpc`]): an image (encoded on a worker, with the same
//!   pixel limit and decoder as `SetImage`) or a cached session's embedding; the answer
//!   streams one `GeneratedMask` per mask, then one `GenerateSummary`.
//! - `SegmentRequest.generate_masks` on a `Segment` stream (see [`crate::transports::stream`]): the
//!   stream's current image; the answer is `generated_mask` messages then one
//!   `generate_summary`, all with the request's `request_id`, in request order among the
//!   stream's other answers.
//!
//! A generation is one job ([`GenerateJob`], run by [`run`]) of the generate lane, which has its own
//! workers, its own queue bound (`--generate-queue-capacity`; full: RESOURCE_EXHAUSTED) and
//! the lowest OS priority (`--generate-priority`, `SCHED_IDLE` by default), so it neither
//! delays prompts nor the encodes of interactive sessions. Before every crop's encode and
//! every batch of points the worker checks whether the client still waits (a client that
//! went away stops the generation there).
//!
//! When masks are sent: a mask is sent once it is final, and with the reference's
//! algorithm none is final before the generation ends. Within a crop, NMS over all its
//! point batches decides which masks stay (a later batch can suppress an earlier mask);
//! across crop layers, another NMS prefers the smaller, later crops; and
//! `min_mask_region_area` edits and filters every mask at the very end. So all masks are
//! sent, one message each and in the reference's output order, right after the last
//! batch of the last crop, followed by the summary. They equal `mobilesam generate`'s for
//! the same image and parameters.
//!
//! Parameters are checked by [`params`]: unset fields take the reference defaults, values
//! outside the ranges there are INVALID_ARGUMENT. `crop_n_layers > 0` needs the image's
//! pixels, which sessions do not keep: it is refused for a session or a stream's image.

pub mod convert;
pub mod params;
pub mod rpc;
pub mod run;

pub use crate::lanes::jobs::{
    GenerateEvent, GenerateEvents, GenerateInput, GenerateJob, Generated,
};
