//! Model workers: OS threads that each own one model on the device and run jobs from the
//! scheduler until it closes. Inference is blocking CPU/GPU work, so it stays off the
//! async runtime.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use candle_core::Device;
use mobilesam_model::checkpoint::Checkpoint;
use mobilesam_model::image::decode_image;
use mobilesam_model::Sam;
use tracing::{debug, info, warn};

use crate::error::{RequestError, ServerError};
use crate::generate;
use crate::jobs::{DecodeJob, Decoded, EncodeJob, Encoded, HeavyJob, JobScheduler};
use crate::scheduler::Work;
use crate::{fault_injection, metrics};

/// Facts about the loaded model, for `GetModelInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSummary {
    /// Parameters of the whole model.
    pub parameters: u64,
    /// Size of the checkpoint file.
    pub checkpoint_bytes: u64,
}

/// Running worker threads.
pub struct WorkerPool {
    threads: Vec<JoinHandle<()>>,
}

impl WorkerPool {
    /// Starts `count` workers; each builds its own model from `checkpoint` on `device`.
    /// Returns once every worker has its model, or the first load error (the started
    /// workers are then stopped).
    pub fn start(
        count: usize,
        checkpoint: Arc<Checkpoint>,
        device: Device,
        scheduler: Arc<JobScheduler>,
        max_image_pixels: u64,
    ) -> Result<(Self, ModelSummary), ServerError> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut threads = Vec::with_capacity(count);
        for index in 0..count {
            let checkpoint = Arc::clone(&checkpoint);
            let device = device.clone();
            let queue = Arc::clone(&scheduler);
            let ready = ready_tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("mobilesam-worker-{index}"))
                .spawn(move || {
                    let mut sam = match Sam::from_checkpoint(&checkpoint, &device) {
                        Ok(sam) => sam,
                        Err(e) => {
                            let _ = ready.send(Err(ServerError::Model(e)));
                            return;
                        }
                    };
                    let summary = ModelSummary {
                        parameters: sam.parameter_counts().total,
                        checkpoint_bytes: sam.checkpoint_bytes(),
                    };
                    let _ = ready.send(Ok(summary));
                    drop(ready);
                    // The checkpoint stays (one copy shared by all workers) so that a
                    // worker whose job panicked can replace its model.
                    while run(index, &sam, &queue, max_image_pixels) == RunEnd::Panicked {
                        sam = replace_model(index, sam, &checkpoint, &device);
                    }
                });
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(source) => {
                    scheduler.close();
                    return Err(ServerError::Io {
                        context: "cannot start a worker thread",
                        source,
                    });
                }
            }
        }
        drop(ready_tx);
        let pool = Self { threads };
        let mut summary = None;
        for _ in 0..count {
            match ready_rx.recv() {
                Ok(Ok(s)) => summary = Some(s),
                Ok(Err(e)) => {
                    scheduler.close();
                    pool.join();
                    return Err(e);
                }
                Err(_) => {
                    scheduler.close();
                    pool.join();
                    return Err(ServerError::Worker("a worker died while loading".into()));
                }
            }
        }
        metrics::set_workers_ready(count);
        let summary = summary.ok_or_else(|| ServerError::Worker("no workers".into()))?;
        Ok((pool, summary))
    }

    /// Waits for every worker to finish (after the scheduler was closed).
    pub fn join(self) {
        for thread in self.threads {
            if thread.join().is_err() {
                warn!("a worker thread panicked");
            }
        }
        metrics::set_workers_ready(0);
    }
}

/// Why a worker loop returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunEnd {
    /// The scheduler closed and the queues are empty.
    Stopped,
    /// A job panicked (it was answered INTERNAL): the model may hold broken state.
    Panicked,
}

std::thread_local! {
    /// Set by [`guarded`] when a job of this worker thread panicked.
    static JOB_PANICKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A fresh model for a worker whose job panicked; the old one when the rebuild fails.
fn replace_model(index: usize, old: Sam, checkpoint: &Checkpoint, device: &Device) -> Sam {
    match Sam::from_checkpoint(checkpoint, device) {
        Ok(sam) => {
            metrics::record_worker_restart();
            warn!(worker = index, "worker replaced its model after a panic");
            sam
        }
        Err(e) => {
            warn!(worker = index, error = %e, "cannot rebuild the model; keeping the old one");
            old
        }
    }
}

/// The worker loop: take the next job (decodes first), run it, send the result. A mask
/// generation runs the decodes that wait between its steps. Returns when the scheduler
/// closes, or right after a job panicked.
fn run(index: usize, sam: &Sam, scheduler: &JobScheduler, max_image_pixels: u64) -> RunEnd {
    debug!(worker = index, "worker ready");
    while let Some(work) = scheduler.next() {
        match work {
            Work::Encode(HeavyJob::Encode(job)) => encode(sam, job, max_image_pixels),
            Work::Encode(HeavyJob::Generate(job)) => {
                generate::job::run(sam, job, max_image_pixels, &mut || {
                    while let Some(decode_job) = scheduler.try_next_decode() {
                        decode(sam, decode_job);
                    }
                });
            }
            Work::Decode(job) => decode(sam, job),
        }
        if JOB_PANICKED.with(|flag| flag.replace(false)) {
            return RunEnd::Panicked;
        }
    }
    debug!(worker = index, "worker stopped");
    RunEnd::Stopped
}

fn encode(sam: &Sam, job: EncodeJob, max_image_pixels: u64) {
    let start = Instant::now();
    let result = guarded("encode", || {
        let image = decode_image(&job.image, max_image_pixels)?;
        if let Some(stub) = fault_injection::encode(sam, image.width(), image.height()) {
            return Ok(stub?);
        }
        Ok(sam.embed(&image)?)
    });
    let elapsed = start.elapsed();
    let result = result.map(|embedding| {
        metrics::record_encode(elapsed);
        info!(
            width = embedding.original_size.1,
            height = embedding.original_size.0,
            encode_ms = elapsed.as_secs_f64() * 1e3,
            "image encoded"
        );
        Encoded {
            embedding: Arc::new(embedding),
            elapsed,
        }
    });
    let _ = job.reply.send(result);
}

fn decode(sam: &Sam, job: DecodeJob) {
    let start = Instant::now();
    let result = guarded("decode", || {
        Ok(sam.decode(&job.embedding, &job.objects, job.options)?)
    });
    let elapsed = start.elapsed();
    let result = result.map(|objects| {
        metrics::record_decode(elapsed);
        Decoded { objects, elapsed }
    });
    let _ = job.reply.send(result);
}

/// Runs model code, turning a panic into an internal error so one bad job cannot take a
/// worker down (the worker then replaces its model before its next job).
pub(crate) fn guarded<T>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, RequestError>,
) -> Result<T, RequestError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        metrics::record_worker_panic(what);
        JOB_PANICKED.with(|flag| flag.set(true));
        warn!("{what} panicked; the request is answered INTERNAL");
        Err(RequestError::Internal(format!(
            "{what} failed inside the server"
        )))
    })
}
