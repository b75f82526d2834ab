//! The generation job: what a worker needs to segment everything in one image, and the
//! events it sends back (every mask, then the outcome).

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mobilesam_model::amg::{self, AmgMask, AmgParams, AmgSource};
use mobilesam_model::image::decode_image;
use mobilesam_model::{Embedding, Sam};
use tokio::sync::mpsc;
use tracing::{debug, info};

use crate::error::RequestError;
use crate::job_guard::guarded;
use crate::metrics::{self, Queue};
use crate::scheduler::Cancellable;

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

/// Runs a generation on a worker of the generate lane. Before every crop and every batch
/// of points it stops if the client went away.
pub fn run(sam: &Sam, job: GenerateJob, max_image_pixels: u64) {
    let start = Instant::now();
    let GenerateJob {
        input,
        params,
        events,
    } = job;
    let mut steps = 0usize;
    let mut next_step = || {
        if events.is_closed() {
            return ControlFlow::Break(());
        }
        steps += 1;
        ControlFlow::Continue(())
    };
    let outcome = guarded("generate", || {
        let image;
        let source = match &input {
            GenerateInput::Image(bytes) => {
                image = decode_image(bytes, max_image_pixels)?;
                AmgSource::Image(&image)
            }
            GenerateInput::Embedding(embedding) => AmgSource::Embedding(embedding),
        };
        let (height, width) = match source {
            AmgSource::Image(image) => (image.height() as usize, image.width() as usize),
            AmgSource::Embedding(embedding) => embedding.original_size,
        };
        info!(
            width,
            height,
            points_per_side = params.points_per_side,
            crop_n_layers = params.crop_n_layers,
            "generating masks"
        );
        let run = amg::generate_with(sam, source, &params, &mut next_step)?;
        Ok(run.map(|run| (run, width, height)))
    });
    let (run, width, height) = match outcome {
        Ok(Some(done)) => done,
        Ok(None) => {
            metrics::record_cancelled(Queue::Generate, 1);
            debug!(steps, "generation stopped: its client went away");
            return;
        }
        Err(e) => {
            let _ = events.send(GenerateEvent::Done(Err(e)));
            return;
        }
    };
    let mask_count = run.masks.len();
    for mask in run.masks {
        if events.send(GenerateEvent::Mask(Box::new(mask))).is_err() {
            return;
        }
    }
    let elapsed = start.elapsed();
    info!(
        masks = mask_count,
        generate_ms = elapsed.as_secs_f64() * 1e3,
        "masks generated"
    );
    let _ = events.send(GenerateEvent::Done(Ok(Generated {
        mask_count,
        width,
        height,
        encode: run.encode_time,
        elapsed,
    })));
}
