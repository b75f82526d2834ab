//! Scheduling: how work reaches the model and who gets the CPU.
//!
//! Three lanes ([`Lane`]), each with its own bounded queue ([`queues`]), its own workers and
//! kernel pool ([`workers`]), and its own OS priority ([`priority`]):
//!
//! - `decode`: prompt decodes (light, latency-critical: a click);
//! - `encode`: `SetImage` encodes of interactive sessions (heavy);
//! - `generate`: background work: `GenerateMasks` (heaviest) and `SetImage.prefetch`
//!   encodes.
//!
//! A prompt never queues behind an encode, and when lanes compute at the same time the
//! operating system gives the CPU to the decode first. Background work also pauses at the
//! model's yield points while higher lanes run ([`yield_gate`]). A panic inside model code
//! fails only its job ([`job_guard`]). Every flag of the lanes is in [`config`].
//!
//! Transports and tracking enter through [`submit`]: [`decode`], [`submit_decode`],
//! [`encode`], [`prefetch`], [`submit_generate`] and [`supersede`], which queue a job ([`jobs`]) and
//! word every refusal the same way (a full queue: RESOURCE_EXHAUSTED; a stopping server:
//! UNAVAILABLE; a superseded prompt: ABORTED).

pub mod config;
pub mod job_guard;
pub mod jobs;
pub mod lane;
pub mod priority;
pub mod queues;
pub mod reply;
pub mod submit;
pub mod video_job;
pub mod workers;
pub mod yield_gate;

pub use config::LaneConfig;
pub use jobs::{JobQueues, Owner};
pub use lane::Lane;
pub use submit::{
    decode, encode, prefetch, submit_decode, submit_generate, supersede, track_video, PendingDecode,
};
