//! The kinds of work a model worker does, and what each returns. A job carries the
//! sender of its answer; when the stream that asked drops the receiver, the job counts
//! as cancelled and is skipped. Each kind has its own lane: prompt decodes, image encodes,
//! mask generations.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mobilesam_model::amg::{AmgMask, AmgParams};
use mobilesam_model::{DecodeOptions, Embedding, ObjectMasks, ObjectPrompt};
use tokio::sync::{mpsc, oneshot};

use super::queues::{Cancellable, LaneQueues};
pub use super::reply::{Pending, Reply};
use super::video_job::VideoJob;
use crate::error::RequestError;

/// The scheduler of this server's jobs: one lane each for prompt decodes (and
/// memory-tracking steps), image encodes and mask generations.
pub type JobQueues = LaneQueues<DecodeLaneJob, EncodeJob, BackgroundJob>;

/// The decode lane's work: interactive jobs on one frame.
#[derive(Debug)]
pub enum DecodeLaneJob {
    /// Prompts decoded on an embedding.
    Decode(DecodeJob),
    /// SAM 2.1 memory tracking on one frame.
    Video(VideoJob),
}

impl DecodeLaneJob {
    /// The owner of a prompt decode (memory-tracking steps have none: never superseded).
    pub fn owner(&self) -> Option<&Owner> {
        match self {
            Self::Decode(job) => Some(&job.owner),
            Self::Video(_) => None,
        }
    }
}

impl Cancellable for DecodeLaneJob {
    fn is_cancelled(&self) -> bool {
        match self {
            Self::Decode(job) => job.is_cancelled(),
            Self::Video(job) => job.is_cancelled(),
        }
    }
}

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

/// The image a generation works on.
#[derive(Debug)]
pub enum GenerateInput {
    /// Encoded image bytes, decoded and encoded on the worker (crops allowed).
    Image(Vec<u8>),
    /// A cached embedding of the whole image.
    Embedding(Arc<Embedding>),
}

/// What a worker reports about a generation, in this order: every mask, then `Done`.
#[derive(Debug)]
pub enum GenerateEvent {
    /// A final mask.
    Mask(Box<AmgMask>),
    /// The generation ended: a summary, or why it failed.
    Done(Result<Generated, RequestError>),
}

/// A finished generation's summary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Generated {
    /// Masks sent before this summary.
    pub mask_count: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Time in the image encoder (zero for a cached embedding).
    pub encode: Duration,
    /// The whole generation on the worker, image decode and encodes included.
    pub elapsed: Duration,
}

/// Where the requester receives a generation's events.
pub type GenerateEvents = mpsc::UnboundedReceiver<GenerateEvent>;

/// Segment everything in one image. Unbounded events: the worker never waits for a slow
/// client, and a generation's masks are bounded by its points.
#[derive(Debug)]
pub struct GenerateJob {
    /// The image or its embedding.
    pub input: GenerateInput,
    /// Checked generator parameters.
    pub params: AmgParams,
    /// Where the events go.
    pub events: mpsc::UnboundedSender<GenerateEvent>,
}

impl GenerateJob {
    /// A job and the receiver of its events.
    pub fn new(input: GenerateInput, params: AmgParams) -> (Self, GenerateEvents) {
        let (events, receiver) = mpsc::unbounded_channel();
        (
            Self {
                input,
                params,
                events,
            },
            receiver,
        )
    }
}

impl Cancellable for GenerateJob {
    fn is_cancelled(&self) -> bool {
        self.events.is_closed()
    }
}

/// The generate lane's work: background jobs that give way to every interactive one.
#[derive(Debug)]
pub enum BackgroundJob {
    /// Segment everything in one image.
    Generate(GenerateJob),
    /// Encode an image ahead of its use (`SetImage.prefetch`).
    Prefetch(EncodeJob),
}

impl Cancellable for BackgroundJob {
    fn is_cancelled(&self) -> bool {
        match self {
            Self::Generate(job) => job.is_cancelled(),
            Self::Prefetch(job) => job.is_cancelled(),
        }
    }
}
