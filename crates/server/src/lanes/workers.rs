//! Model workers: OS threads that each own one model on the device and run the jobs of one
//! scheduler lane until it closes. Inference is blocking CPU/GPU work, so it stays off the
//! async runtime.
//!
//! Each lane (decode, encode, generate) has its own workers and its own rayon pool for the
//! model's kernels, all at the lane's OS priority ([`crate::lanes::priority`]): a prompt never
//! waits in a queue behind an encode, and when both compute the operating system gives the
//! CPU to the decode first. The encode and generate lanes' kernel threads also pause at
//! the model's yield points while a decode runs ([`crate::lanes::yield_gate`]).

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use candle_core::Device;
use mobilesam_checkpoint::Checkpoint;
use mobilesam_model::image::decode_image;
use mobilesam_model::video::VideoModel;
use mobilesam_model::{Backend, ModelError, Sam};
use tracing::{debug, info, warn};

use crate::config::ServerConfig;
use crate::error::RequestError;
use crate::error::ServerError;
use crate::generate;
use crate::lanes::job_guard::{guarded, in_pool};
use crate::lanes::jobs::{
    BackgroundJob, DecodeJob, DecodeLaneJob, Decoded, EncodeJob, Encoded, JobQueues,
};
use crate::lanes::priority::Priority;
use crate::lanes::video_job::{self, VideoDone, VideoJob};
use crate::lanes::yield_gate::YieldGate;
use crate::lanes::Lane;
use crate::{fault_injection, metrics};

/// Facts about the loaded model, for `GetModelInfo`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSummary {
    /// Parameters of the whole model.
    pub parameters: u64,
    /// Size of the checkpoint file.
    pub checkpoint_bytes: u64,
    /// The checkpoint's model family (`mobile_sam`, `sam_vit_b`, ...), for
    /// `ModelInfo.family`.
    pub family: &'static str,
    /// Whether the family has SAM 2's memory bank, for `ModelInfo.memory_tracking`.
    pub memory_tracking: bool,
    /// The reference generator's defaults for the family (`GenerateParams`' unset fields).
    pub generate_defaults: mobilesam_model::amg::AmgParams,
}

/// What one lane's workers are: how many, the threads of their kernel pool, and their
/// OS priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneSpec {
    /// The lane.
    pub lane: Lane,
    /// Worker threads, each with its own model.
    pub workers: usize,
    /// Threads of the lane's kernel (rayon) pool, shared by its workers.
    pub threads: usize,
    /// OS priority of the workers and of the pool's threads.
    pub priority: Priority,
}

impl LaneSpec {
    /// The three lanes of a server with `config`.
    pub fn all(config: &ServerConfig) -> [Self; 3] {
        let lanes = &config.lanes;
        let threads = lanes.threads();
        [
            Self {
                lane: Lane::Decode,
                workers: lanes.decode_workers,
                threads,
                priority: lanes.decode_priority,
            },
            Self {
                lane: Lane::Encode,
                workers: lanes.encode_workers,
                threads,
                priority: lanes.encode_priority,
            },
            Self {
                lane: Lane::Generate,
                workers: lanes.generate_workers,
                threads,
                priority: lanes.generate_priority,
            },
        ]
    }
}

/// What every worker needs, whatever its lane.
struct Shared {
    checkpoint: Arc<Checkpoint>,
    device: Device,
    backend: Backend,
    queues: Arc<JobQueues>,
    max_image_pixels: u64,
    gate: Arc<YieldGate>,
}

/// Running worker threads.
pub struct WorkerPool {
    threads: Vec<JoinHandle<()>>,
}

impl WorkerPool {
    /// Starts the workers of every lane; each builds its own model from `checkpoint` on
    /// `device` with `backend`. Returns once every worker has its model, or the first load
    /// error (the started workers are then stopped). Running decodes and encodes are counted
    /// at `gate`, where the lanes below them give way.
    pub fn start(
        lanes: &[LaneSpec],
        checkpoint: Arc<Checkpoint>,
        (device, backend): (Device, Backend),
        queues: Arc<JobQueues>,
        max_image_pixels: u64,
        gate: Arc<YieldGate>,
    ) -> Result<(Self, ModelSummary), ServerError> {
        let shared = Arc::new(Shared {
            checkpoint,
            device,
            backend,
            queues: Arc::clone(&queues),
            max_image_pixels,
            gate,
        });
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut pool = Self {
            threads: Vec::new(),
        };
        for spec in lanes {
            let started = build_kernel_pool(spec, &shared.gate).and_then(|kernels| {
                let kernels = Arc::new(kernels);
                for index in 0..spec.workers {
                    let thread = spawn_worker(*spec, index, &shared, &kernels, ready_tx.clone())?;
                    pool.threads.push(thread);
                }
                Ok(())
            });
            if let Err(e) = started {
                queues.close();
                pool.join();
                return Err(e);
            }
        }
        drop(ready_tx);
        let count = pool.threads.len();
        let mut summary = None;
        for _ in 0..count {
            match ready_rx.recv() {
                Ok(Ok(s)) => summary = Some(s),
                Ok(Err(e)) => {
                    queues.close();
                    pool.join();
                    return Err(e);
                }
                Err(_) => {
                    queues.close();
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

/// The rayon pool in which a lane's model kernels run, its threads at the lane's
/// priority and with the lane's yield hook (jobs run on these threads, see [`in_pool`]).
fn build_kernel_pool(
    spec: &LaneSpec,
    gate: &Arc<YieldGate>,
) -> Result<rayon::ThreadPool, ServerError> {
    let (lane, priority) = (spec.lane.label(), spec.priority);
    let hook = gate.hook_for(spec.lane);
    rayon::ThreadPoolBuilder::new()
        .num_threads(spec.threads.max(1))
        .thread_name(move |i| format!("mobilesam-{lane}-kernel-{i}"))
        .start_handler(move |_| {
            apply_priority(lane, priority);
            mobilesam_kernels::yield_point::install_on_this_thread(hook.clone());
        })
        .build()
        .map_err(|e| ServerError::Worker(format!("cannot start the {lane} lane's threads: {e}")))
}

/// Lowers the calling thread to its lane's priority; a failure is logged, not fatal.
fn apply_priority(lane: &'static str, priority: Priority) {
    if let Err(e) = priority.apply_to_current_thread() {
        warn!(lane, %priority, error = %e, "cannot set the lane's thread priority");
    }
}

fn spawn_worker(
    spec: LaneSpec,
    index: usize,
    shared: &Arc<Shared>,
    kernels: &Arc<rayon::ThreadPool>,
    ready: mpsc::Sender<Result<ModelSummary, ServerError>>,
) -> Result<JoinHandle<()>, ServerError> {
    let shared = Arc::clone(shared);
    let kernels = Arc::clone(kernels);
    let lane = spec.lane.label();
    std::thread::Builder::new()
        .name(format!("mobilesam-{lane}-{index}"))
        .spawn(move || {
            apply_priority(lane, spec.priority);
            let mut models = match Models::build(spec.lane, &shared) {
                Ok(models) => models,
                Err(e) => {
                    let _ = ready.send(Err(ServerError::Model(e)));
                    return;
                }
            };
            let sam = &models.sam;
            let summary = ModelSummary {
                parameters: sam.parameter_counts().total,
                checkpoint_bytes: sam.checkpoint_bytes(),
                family: sam.family().name(),
                memory_tracking: sam.family().memory_tracking(),
                generate_defaults: mobilesam_model::amg::AmgParams::for_family(sam.family()),
            };
            let _ = ready.send(Ok(summary));
            drop(ready);
            // The checkpoint stays (one copy shared by all workers) so that a worker
            // whose job panicked can replace its model.
            while run(spec.lane, index, &models, &shared, &kernels) == RunEnd::Panicked {
                models = replace_models(spec.lane, index, models, &shared);
            }
        })
        .map_err(|source| ServerError::Io {
            context: "cannot start a worker thread",
            source,
        })
}

/// Why a worker loop returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunEnd {
    /// The scheduler closed and the queues are empty.
    Stopped,
    /// A job panicked (it was answered INTERNAL): the model may hold broken state.
    Panicked,
}

/// What one worker computes with: the image model and, on the decode lane of a SAM 2.1
/// checkpoint, the video tracker's modules beside it.
struct Models {
    sam: Arc<Sam>,
    video: Option<VideoModel>,
}

impl Models {
    fn build(lane: Lane, shared: &Shared) -> Result<Self, ModelError> {
        let sam = Arc::new(Sam::with_backend(
            &shared.checkpoint,
            &shared.device,
            shared.backend,
        )?);
        let video = if lane == Lane::Decode && sam.family().memory_tracking() {
            Some(VideoModel::load(&shared.checkpoint, Arc::clone(&sam))?)
        } else {
            None
        };
        Ok(Self { sam, video })
    }
}

/// Fresh models for a worker whose job panicked; the old ones when the rebuild fails.
fn replace_models(lane: Lane, index: usize, old: Models, shared: &Shared) -> Models {
    match Models::build(lane, shared) {
        Ok(models) => {
            metrics::record_worker_restart();
            warn!(worker = index, "worker replaced its model after a panic");
            models
        }
        Err(e) => {
            warn!(worker = index, error = %e, "cannot rebuild the model; keeping the old one");
            old
        }
    }
}

/// The worker loop of one lane: take the lane's next job, run it in the lane's kernel
/// pool, send the result. Returns when the lane closes, or right after a job panicked.
fn run(
    lane: Lane,
    index: usize,
    models: &Models,
    shared: &Shared,
    kernels: &rayon::ThreadPool,
) -> RunEnd {
    let sam = &*models.sam;
    debug!(lane = lane.label(), worker = index, "worker ready");
    let queues = &shared.queues;
    let max_image_pixels = shared.max_image_pixels;
    loop {
        let panicked = match lane {
            Lane::Decode => queues
                .decode
                .next()
                .map(|job| in_pool(kernels, || decode_lane(models, job, &shared.gate))),
            Lane::Encode => queues
                .encode
                .next()
                .map(|job| in_pool(kernels, || encode(sam, job, max_image_pixels, &shared.gate))),
            Lane::Generate => queues
                .generate
                .next()
                .map(|job| in_pool(kernels, || background(sam, job, max_image_pixels))),
        };
        match panicked {
            None => {
                debug!(lane = lane.label(), worker = index, "worker stopped");
                return RunEnd::Stopped;
            }
            Some(true) => return RunEnd::Panicked,
            Some(false) => {}
        }
    }
}

/// An encode of the encode lane: counted at the gate, so background work gives way.
fn encode(sam: &Sam, job: EncodeJob, max_image_pixels: u64, gate: &YieldGate) {
    let _running = gate.encoding();
    run_encode(sam, job, max_image_pixels);
}

/// A job of the generate lane. A prefetch is not counted as an encode at the gate: it is
/// background work itself, and pauses like a generation.
fn background(sam: &Sam, job: BackgroundJob, max_image_pixels: u64) {
    match job {
        BackgroundJob::Generate(job) => generate::run::run(sam, job, max_image_pixels),
        BackgroundJob::Prefetch(job) => run_encode(sam, job, max_image_pixels),
    }
}

/// Decodes the job's image, encodes it and sends the embedding.
fn run_encode(sam: &Sam, job: EncodeJob, max_image_pixels: u64) {
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

/// A job of the decode lane: a prompt decode or a memory-tracking step.
fn decode_lane(models: &Models, job: DecodeLaneJob, gate: &YieldGate) {
    match job {
        DecodeLaneJob::Decode(job) => decode(&models.sam, job, gate),
        DecodeLaneJob::Video(job) => video(models.video.as_ref(), job, gate),
    }
}

/// Memory-tracking steps: only a SAM 2.1 checkpoint has the modules.
fn video(model: Option<&VideoModel>, job: VideoJob, gate: &YieldGate) {
    let _running = gate.decoding(job.created);
    let start = Instant::now();
    let result = guarded("memory tracking", || {
        let model = model.ok_or_else(|| {
            RequestError::FailedPrecondition("memory tracking needs a SAM 2.1 checkpoint".into())
        })?;
        fault_injection::decode();
        video_job::run(model, &job)
    });
    let elapsed = start.elapsed();
    let result = result.map(|objects| {
        metrics::record_decode(elapsed);
        VideoDone { objects, elapsed }
    });
    let _ = job.reply.send(result);
}

fn decode(sam: &Sam, job: DecodeJob, gate: &YieldGate) {
    let _running = gate.decoding(job.created);
    let start = Instant::now();
    let result = guarded("decode", || {
        fault_injection::decode();
        Ok(sam.decode(&job.embedding, &job.objects, job.options)?)
    });
    let elapsed = start.elapsed();
    let result = result.map(|objects| {
        metrics::record_decode(elapsed);
        Decoded { objects, elapsed }
    });
    let _ = job.reply.send(result);
}
