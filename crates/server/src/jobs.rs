//! The kinds of work a model worker does, and what each returns. A job carries the
//! sender of its answer; when the stream that asked drops the receiver, the job counts
//! as cancelled and is skipped. Heavy jobs (image encodes and mask generations) share
//! the encode queue; prompt decodes have their own.

use std::sync::Arc;
use std::time::Duration;

use mobilesam_model::{DecodeOptions, Embedding, ObjectMasks, ObjectPrompt};
use tokio::sync::oneshot;

use crate::error::RequestError;
use crate::generate::GenerateJob;
use crate::scheduler::{Cancellable, Scheduler};

/// Where a worker sends a job's result.
pub type Reply<T> = oneshot::Sender<Result<T, RequestError>>;

/// Where a stream waits for a job's result.
pub type Pending<T> = oneshot::Receiver<Result<T, RequestError>>;

/// The scheduler of this server's jobs: heavy jobs in the encode queue, decodes in the
/// decode queue.
pub type JobScheduler = Scheduler<HeavyJob, DecodeJob>;

/// A job of the encode (heavy) queue.
#[derive(Debug)]
pub enum HeavyJob {
    /// Encode an image for a session.
    Encode(EncodeJob),
    /// Segment everything in an image (see [`crate::generate`]).
    Generate(GenerateJob),
}

impl From<EncodeJob> for HeavyJob {
    fn from(job: EncodeJob) -> Self {
        Self::Encode(job)
    }
}

impl From<GenerateJob> for HeavyJob {
    fn from(job: GenerateJob) -> Self {
        Self::Generate(job)
    }
}

impl Cancellable for HeavyJob {
    fn is_cancelled(&self) -> bool {
        match self {
            Self::Encode(job) => job.is_cancelled(),
            Self::Generate(job) => job.is_cancelled(),
        }
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
    /// The image's embedding.
    pub embedding: Arc<Embedding>,
    /// Validated object prompts.
    pub objects: Vec<ObjectPrompt>,
    /// Single or multiple masks, low-resolution logits or not.
    pub options: DecodeOptions,
    /// Where the result goes.
    pub reply: Reply<Decoded>,
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
        embedding: Arc<Embedding>,
        objects: Vec<ObjectPrompt>,
        options: DecodeOptions,
    ) -> (Self, Pending<Decoded>) {
        let (reply, pending) = oneshot::channel();
        (
            Self {
                embedding,
                objects,
                options,
                reply,
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
