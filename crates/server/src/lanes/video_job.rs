//! Memory-tracking jobs (SAM 2.1): one frame of each object's [`ObjectTracker`] on the
//! decode lane, beside the prompt decodes. The session hands each object's tracker to the
//! job and takes it back with the frame's result, so all model work (memory attention,
//! heads, memory encoder, the mask's upscale, RLE and polygons) runs on a worker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mobilesam_model::masks::polygon::DEFAULT_EPSILON;
use mobilesam_model::masks::regions::mask_regions;
use mobilesam_model::masks::upscale::upscale_stretched_to_scored_mask;
use mobilesam_model::video::{Direction, FrameResult, ObjectTracker, VideoModel};
use mobilesam_model::{Embedding, MaskOutput, ObjectPrompt};
use tokio::sync::oneshot;

use super::queues::Cancellable;
use super::reply::{Pending, Reply};
use crate::error::RequestError;

/// What one object's tracker does on the job's frame.
#[derive(Debug, Clone)]
pub enum VideoStep {
    /// `add_new_points_or_box` on the frame (a conditioning frame).
    Prompt(ObjectPrompt),
    /// One frame of `propagate_in_video`, after visiting `start` first (when given): the
    /// conditioning frame a propagation starts from, in the given direction.
    Track {
        /// The prompted frame the object's propagation starts from, and the way it goes.
        start: Option<(usize, Direction)>,
    },
}

/// One object's part of a [`VideoJob`].
#[derive(Debug, Clone)]
pub struct VideoWork {
    /// The object's tracker (a copy: the session keeps its own until the job succeeds).
    pub tracker: ObjectTracker,
    /// What to do.
    pub step: VideoStep,
    /// Whether the mask's polygons are wanted.
    pub polygons: bool,
}

/// One object's outcome: the tracker after the step, the frame's result and its mask.
#[derive(Debug, Clone)]
pub struct VideoObjectDone {
    /// The tracker to keep.
    pub tracker: ObjectTracker,
    /// The frame's logits and object score.
    pub result: FrameResult,
    /// The mask at the frame's resolution (empty when the object is occluded); `score` is
    /// the object score's sigmoid.
    pub mask: MaskOutput,
}

/// The outcome of a [`VideoJob`].
#[derive(Debug)]
pub struct VideoDone {
    /// Per object, in job order.
    pub objects: Vec<VideoObjectDone>,
    /// Time spent on the worker.
    pub elapsed: Duration,
}

/// Memory-tracking work on one frame.
#[derive(Debug)]
pub struct VideoJob {
    /// The frame's embedding.
    pub embedding: Arc<Embedding>,
    /// The frame's index in the clip.
    pub frame: usize,
    /// Per object.
    pub objects: Vec<VideoWork>,
    /// Where the result goes.
    pub reply: Reply<VideoDone>,
    /// When the job was made.
    pub created: Instant,
}

impl VideoJob {
    /// A job and the receiver of its result.
    pub fn new(
        embedding: Arc<Embedding>,
        frame: usize,
        objects: Vec<VideoWork>,
    ) -> (Self, Pending<VideoDone>) {
        let (reply, pending) = oneshot::channel();
        (
            Self {
                embedding,
                frame,
                objects,
                reply,
                created: Instant::now(),
            },
            pending,
        )
    }
}

impl Cancellable for VideoJob {
    fn is_cancelled(&self) -> bool {
        self.reply.is_closed()
    }
}

/// Runs every object's step of `job` with `model` (on a worker).
pub fn run(model: &VideoModel, job: &VideoJob) -> Result<Vec<VideoObjectDone>, RequestError> {
    job.objects
        .iter()
        .map(|work| {
            let mut tracker = work.tracker.clone();
            let embedding = &job.embedding;
            let result = match &work.step {
                VideoStep::Prompt(prompt) => {
                    tracker.add_prompt(model, job.frame, prompt, embedding)?
                }
                VideoStep::Track { start } => {
                    if let Some((start, direction)) = *start {
                        tracker.track_in(model, start, embedding, direction)?;
                    }
                    tracker.track(model, job.frame, embedding)?
                }
            };
            let mask = mask_of(&result, embedding.original_size, work.polygons)?;
            Ok(VideoObjectDone {
                tracker,
                result,
                mask,
            })
        })
        .collect()
}

/// The frame's mask: the low-resolution logits stretched to the frame, thresholded at 0.
fn mask_of(
    result: &FrameResult,
    size: (usize, usize),
    polygons: bool,
) -> Result<MaskOutput, RequestError> {
    let (mask, stability_score) = upscale_stretched_to_scored_mask(&result.low_res_logits, size)?;
    let area = mask.area();
    let polygons =
        polygons.then(|| mask_regions(&mask.data, mask.height, mask.width, DEFAULT_EPSILON));
    Ok(MaskOutput {
        score: 1.0 / (1.0 + (-result.object_score_logit).exp()),
        area,
        bbox: mask.bbox(),
        rle: mask.to_rle(),
        stability_score,
        low_res_logits: None,
        polygons,
    })
}
