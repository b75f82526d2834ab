//! Segment everything on a worker of the generate lane: runs one [`GenerateJob`] and sends
//! its events (every mask, then the outcome).

use std::ops::ControlFlow;
use std::time::Instant;

use mobilesam_model::amg::{self, AmgSource};
use mobilesam_model::image::decode_image;
use mobilesam_model::Sam;
use tracing::{debug, info};

use crate::lanes::job_guard::guarded;
use crate::lanes::jobs::{GenerateEvent, GenerateInput, GenerateJob, Generated};
use crate::lanes::Lane;
use crate::metrics;

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
            metrics::record_cancelled(Lane::Generate, 1);
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
