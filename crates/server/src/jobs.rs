//! The kinds of work a model worker does, and what each returns. A job carries the
//! sender of its answer; when the stream that asked drops the receiver, the job counts
//! as cancelled and is skipped. Each kind has its own scheduler lane: prompt decodes,
//! image encodes, mask generations.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mobilesam_model::{DecodeOptions, Embedding, ObjectMasks, ObjectPrompt};
use tokio::sync::oneshot;

use crate::error::RequestError;
use crate::generate::GenerateJob;
use crate::scheduler::{Cancellable, Scheduler};

/// Where a worker sends a job's result.
pub type Reply<T> = oneshot::Sender<Result<T, RequestError>>;

/// Where a stream waits for a job's result.
pub type Pending<T> = oneshot::Receiver<Result<T, RequestError>>;

/// The scheduler of this server's jobs: one lane each for prompt decodes, image encodes
/// and mask generations.
pub type JobScheduler = Scheduler<DecodeJob, EncodeJob, GenerateJob>;

/// Whose prompt a decode job answers, for `supersede_pending`: a newer prompt of the same
/// owner takes the owner's queued decodes out of the lane (latest wins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// A `Segment` stream (ids from [`Owner::next_stream`]).
    Stream(u64),
    /// A session of the unary `Predict` RPC.
    Session(String),
    /// Tracking's decodes (prompts with `track` or object ids, and the follow-up on each
    /// new frame): no stream or session owns them, so `supersede_pending` never takes them
    /// out (an aborted follow-up or correction would leave the tracking state behind).
    Tracking,
}

impl Owner {
    /// A fresh owner for a new stream.
    pub fn next_stream() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self::Stream(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// Decode image bytes and run the image encoder.
#[derive(Debug)]
pub struct EncodeJob {
    /// Encoded image (JPEG, PNG, WebP, ...).
    pub image: Vec<u8>,
    /// Where the result goes.
    pub reply: Reply<Encoded>,
}

/// An encoded image.
#[derive(Debug)]
pub struct Encoded {
    /// The embedding and the image's sizes.
    pub embedding: Arc<Embedding>,
    /// Time spent decoding and encoding.
    pub elapsed: Duration,
}

/// Run the prompt encoder and mask decoder on an embedding.
#[derive(Debug)]
pub struct DecodeJob {
    /// Whose prompt this is.
    pub owner: Owner,
    /// The image's embedding.
    pub embedding: Arc<Embedding>,
    /// Validated object prompts.
    pub objects: Vec<ObjectPrompt>,
    /// Single or multiple masks, low-resolution logits or not.
    pub options: DecodeOptions,
    /// Where the result goes.
    pub reply: Reply<Decoded>,
    /// When the job was made (just before it was queued).
    pub created: Instant,
}

/// The masks of one prompt.
#[derive(Debug)]
pub struct Decoded {
    /// Per object, in prompt order.
    pub objects: Vec<ObjectMasks>,
    /// Time spent decoding and postprocessing.
    pub elapsed: Duration,
}

impl EncodeJob {
    /// A job and the receiver of its result.
    pub fn new(image: Vec<u8>) -> (Self, Pending<Encoded>) {
        let (reply, pending) = oneshot::channel();
        (Self { image, reply }, pending)
    }
}

impl DecodeJob {
    /// A job and the receiver of its result.
    pub fn new(
        owner: Owner,
        embedding: Arc<Embedding>,
        objects: Vec<ObjectPrompt>,
        options: DecodeOptions,
    ) -> (Self, Pending<Decoded>) {
        let (reply, pending) = oneshot::channel();
        (
            Self {
                owner,
                embedding,
                objects,
                options,
                reply,
                created: Instant::now(),
            },
            pending,
        )
    }
}

impl Cancellable for EncodeJob {
    fn is_cancelled(&self) -> bool {
        self.reply.is_closed()
    }
}

impl Cancellable for DecodeJob {
    fn is_cancelled(&self) -> bool {
        self.reply.is_closed()
    }
}

/// Answers the decodes `superseded` (taken out of the decode lane, not started) with
/// ABORTED, naming the prompt that superseded them.
pub fn answer_superseded(superseded: Vec<DecodeJob>, by_request_id: u64) {
    for job in superseded {
        let _ = job.reply.send(Err(RequestError::Aborted(format!(
            "superseded by request {by_request_id}"
        ))));
    }
}
