//! The entry points of the lanes: what the stream, the unary RPCs, tracking and sessions
//! call to get work done. Each queues one job and words the answers in one place.

use std::sync::Arc;

use mobilesam_model::amg::AmgParams;
use mobilesam_model::{DecodeOptions, Embedding, ObjectPrompt};

use super::jobs::{
    BackgroundJob, DecodeJob, DecodeLaneJob, Decoded, EncodeJob, Encoded, GenerateEvents,
    GenerateInput, GenerateJob, JobQueues, Owner, Pending,
};
use super::video_job::{VideoDone, VideoJob, VideoWork};
use crate::error::RequestError;

/// A decode in the decode lane; [`PendingDecode::result`] waits for its masks.
#[derive(Debug)]
pub struct PendingDecode(Pending<Decoded>);

impl PendingDecode {
    /// The masks, or why there are none (a worker that stopped with the server answers
    /// UNAVAILABLE).
    pub async fn result(self) -> Result<Decoded, RequestError> {
        self.0
            .await
            .unwrap_or_else(|_| Err(server_stopped("decoding")))
    }
}

/// Queues a decode of `objects` on `embedding` for `owner`; the answer comes later (a stream
/// answers in request order). A full decode queue refuses it at once.
pub fn submit_decode(
    queues: &JobQueues,
    owner: Owner,
    embedding: Arc<Embedding>,
    objects: Vec<ObjectPrompt>,
    options: DecodeOptions,
) -> Result<PendingDecode, RequestError> {
    let (job, pending) = DecodeJob::new(owner, embedding, objects, options);
    queues.decode.submit(DecodeLaneJob::Decode(job))?;
    Ok(PendingDecode(pending))
}

/// Runs memory-tracking steps (SAM 2.1) of `objects` on frame `frame` (`embedding`) in the
/// decode lane and waits for the trackers and results. A full decode queue refuses it.
pub async fn track_video(
    queues: &JobQueues,
    embedding: Arc<Embedding>,
    frame: usize,
    objects: Vec<VideoWork>,
) -> Result<VideoDone, RequestError> {
    let (job, pending) = VideoJob::new(embedding, frame, objects);
    queues.decode.submit(DecodeLaneJob::Video(job))?;
    pending
        .await
        .unwrap_or_else(|_| Err(server_stopped("tracking")))
}

/// Decodes `objects` on `embedding` for `owner` and waits for the masks.
pub async fn decode(
    queues: &JobQueues,
    owner: Owner,
    embedding: Arc<Embedding>,
    objects: Vec<ObjectPrompt>,
    options: DecodeOptions,
) -> Result<Decoded, RequestError> {
    submit_decode(queues, owner, embedding, objects, options)?
        .result()
        .await
}

/// Decodes and encodes `image` (encoded bytes) in the encode lane and waits for its
/// embedding.
pub async fn encode(queues: &JobQueues, image: Vec<u8>) -> Result<Encoded, RequestError> {
    let (job, pending) = EncodeJob::new(image);
    queues.encode.submit(job)?;
    pending
        .await
        .unwrap_or_else(|_| Err(server_stopped("encoding")))
}

/// Queues a generation (segment everything) in the generate lane; its masks and summary
/// arrive as events.
pub fn submit_generate(
    queues: &JobQueues,
    input: GenerateInput,
    params: AmgParams,
) -> Result<GenerateEvents, RequestError> {
    let (job, events) = GenerateJob::new(input, params);
    queues.generate.submit(BackgroundJob::Generate(job))?;
    Ok(events)
}

/// Decodes and encodes `image` in the generate lane (background work, below interactive
/// encodes) and waits for its embedding: `SetImage.prefetch`.
pub async fn prefetch(queues: &JobQueues, image: Vec<u8>) -> Result<Encoded, RequestError> {
    let (job, pending) = EncodeJob::new(image);
    queues.generate.submit(BackgroundJob::Prefetch(job))?;
    pending
        .await
        .unwrap_or_else(|_| Err(server_stopped("prefetching")))
}

/// Latest wins: `owner`'s queued decodes that no worker has started are taken out of the
/// decode lane and answered ABORTED, naming the request that superseded them.
pub fn supersede(queues: &JobQueues, owner: &Owner, by_request_id: u64) {
    let superseded = queues.supersede(|job| job.owner() == Some(owner));
    for job in superseded {
        let DecodeLaneJob::Decode(job) = job else {
            continue;
        };
        let _ = job.reply.send(Err(RequestError::Aborted(format!(
            "superseded by request {by_request_id}"
        ))));
    }
}

/// The answer to work whose worker stopped with the server before doing `what`.
pub fn server_stopped(what: &str) -> RequestError {
    RequestError::Unavailable(format!("the server stopped before {what}"))
}
