//! `mobilesam embed --data DIR --store URL`: encode every image of a folder into the
//! shared embedding store, so that serving replicas open them without encoding (the
//! first click on a precomputed image is instant).
//!
//! Images already in the store (a valid embedding for this checkpoint) are skipped, so an
//! interrupted run is resumed by running it again. A bad image is reported and skipped. A
//! progress bar shows the work; a summary (encoded, skipped, failed) ends it.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;
use mobilesam_checkpoint::digest::sha256_hex;
use mobilesam_checkpoint::Checkpoint;
use mobilesam_model::image::decode_image;
use mobilesam_model::Sam;
use mobilesam_server::store::{ModelId, Precompute, StoreConfig, StoreDtype};

use crate::model_args::ModelArgs;

/// Flags of `mobilesam embed` for a whole folder.
#[derive(Debug, clap::Args)]
pub struct DatasetArgs {
    /// Folder of images (JPEG, PNG, WebP, BMP, TIFF, GIF; not recursive) to encode into
    /// the store.
    #[arg(long, value_name = "DIR", requires = "store")]
    pub data: Option<PathBuf>,

    /// The embedding store to fill: `redis://` or `rediss://` (as `serve
    /// --embedding-store`).
    #[arg(long, value_name = "URL", env = "MOBILESAM_EMBEDDING_STORE")]
    pub store: Option<String>,

    /// File holding the store's password (overrides a password in the URL).
    #[arg(
        long,
        value_name = "FILE",
        env = "MOBILESAM_EMBEDDING_STORE_PASSWORD_FILE"
    )]
    pub store_password_file: Option<PathBuf>,

    /// How long the embeddings live in the store (as `serve --embedding-store-ttl`; a
    /// replica that reads one restarts its time).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,

    /// Precision of the stored embeddings (as `serve --embedding-store-dtype`).
    #[arg(long, value_enum, default_value_t = StoreDtype::F32)]
    pub dtype: StoreDtype,

    /// Images encoded at once, each worker with its own copy of the model.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub workers: usize,
}

/// What happened to the images.
#[derive(Debug, Default)]
struct Summary {
    encoded: usize,
    skipped: usize,
    failed: usize,
    /// Failures of the store itself (worth retrying), as opposed to bad images.
    store_failures: usize,
}

/// Encodes the folder's images that the store lacks.
pub fn run(model: &ModelArgs, args: &DatasetArgs, max_image_pixels: u64) -> Result<()> {
    let (Some(data), Some(url)) = (&args.data, &args.store) else {
        bail!("give --image and --output, or --data and --store");
    };
    if args.workers == 0 {
        bail!("--workers must be at least 1");
    }
    let images = crate::annotate::list_images(data)?;
    let expected = model.checkpoint_sha256.as_ref();
    let checkpoint = crate::checkpoint_source::resolve(model.checkpoint.as_deref(), expected)?;
    // The digest that names the model in the store is the one taken of the loaded bytes.
    let weights = Checkpoint::load_verified(&checkpoint, expected)
        .with_context(|| format!("cannot load the model from {}", checkpoint.display()))?;
    let digest = weights
        .sha256()
        .map(ToString::to_string)
        .context("the checkpoint has no file digest")?;
    let config = StoreConfig {
        embedding_store: Some(url.clone()),
        embedding_store_password_file: args.store_password_file.clone(),
        embedding_store_ttl: args.ttl,
        embedding_store_dtype: args.dtype,
        embedding_store_timeout: Duration::from_secs(10),
        ..StoreConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let store = runtime
        .block_on(Precompute::connect(&config, ModelId::new(digest)))
        .map_err(anyhow::Error::from)?;
    eprintln!(
        "{} images in {}; checkpoint {}; {} worker(s)",
        images.len(),
        data.display(),
        checkpoint.display(),
        args.workers
    );
    let started = Instant::now();
    let device = model.device.open()?;
    let backend = mobilesam_model::Backend::choose(model.backend, &device)?;
    let queue = Mutex::new(images.into_iter().collect::<VecDeque<_>>());
    let progress = crate::annotate::progress_bar(queue.lock().map_or(0, |q| q.len()) as u64);
    let summary = Mutex::new(Summary::default());
    let work = Work {
        queue: &queue,
        store: &store,
        runtime: runtime.handle(),
        progress: &progress,
        summary: &summary,
        max_image_pixels,
    };
    std::thread::scope(|scope| -> Result<()> {
        let mut workers = Vec::new();
        for _ in 0..args.workers {
            let (weights, device, work) = (&weights, &device, &work);
            workers.push(scope.spawn(move || -> Result<()> {
                let sam = Sam::with_backend(weights, device, backend)
                    .context("cannot build the model from the checkpoint")?;
                work.run(&sam);
                Ok(())
            }));
        }
        for worker in workers {
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("a worker panicked"))??;
        }
        Ok(())
    })?;
    progress.finish_and_clear();
    let summary = summary.into_inner().unwrap_or_else(|e| e.into_inner());
    eprintln!(
        "encoded {}, skipped {} (already stored), failed {} in {:.1} s",
        summary.encoded,
        summary.skipped,
        summary.failed,
        started.elapsed().as_secs_f64()
    );
    if summary.store_failures > 0 {
        bail!(
            "{} embedding(s) could not be written to the store; run again to retry",
            summary.store_failures
        );
    }
    Ok(())
}

/// What the workers share.
struct Work<'a> {
    queue: &'a Mutex<VecDeque<PathBuf>>,
    store: &'a Precompute,
    runtime: &'a tokio::runtime::Handle,
    progress: &'a ProgressBar,
    summary: &'a Mutex<Summary>,
    max_image_pixels: u64,
}

/// The fate of one image.
enum Outcome {
    Encoded,
    Skipped,
    BadImage(String),
    StoreFailed(String),
}

impl Work<'_> {
    /// Takes images until the queue is empty.
    fn run(&self, sam: &Sam) {
        loop {
            let next = self.queue.lock().ok().and_then(|mut q| q.pop_front());
            let Some(path) = next else { return };
            let outcome = self.one(sam, &path);
            let mut summary = self.summary.lock().unwrap_or_else(|e| e.into_inner());
            match outcome {
                Outcome::Encoded => summary.encoded += 1,
                Outcome::Skipped => summary.skipped += 1,
                Outcome::BadImage(reason) => {
                    summary.failed += 1;
                    // `suspend` also prints when the bar is hidden (stderr not a terminal).
                    self.progress
                        .suspend(|| eprintln!("skipped {}: {reason}", path.display()));
                }
                Outcome::StoreFailed(reason) => {
                    summary.failed += 1;
                    summary.store_failures += 1;
                    self.progress.suspend(|| {
                        eprintln!("not stored {}: the store failed: {reason}", path.display())
                    });
                }
            }
            drop(summary);
            self.progress.inc(1);
        }
    }

    fn one(&self, sam: &Sam, path: &Path) -> Outcome {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) => return Outcome::BadImage(format!("cannot read it: {e}")),
        };
        let digest = sha256_hex(&bytes);
        match self.runtime.block_on(self.store.contains(&digest)) {
            Ok(true) => return Outcome::Skipped,
            Ok(false) => {}
            Err(e) => return Outcome::StoreFailed(e.to_string()),
        }
        let image = match decode_image(&bytes, self.max_image_pixels) {
            Ok(image) => image,
            Err(e) => return Outcome::BadImage(e.to_string()),
        };
        let embedded = sam.embed(&image).and_then(|embedding| embedding.to_host());
        let host = match embedded {
            Ok(host) => host,
            Err(e) => return Outcome::BadImage(format!("cannot encode it: {e}")),
        };
        match self.runtime.block_on(self.store.save(&digest, &host)) {
            Ok(()) => Outcome::Encoded,
            Err(e) => Outcome::StoreFailed(e.to_string()),
        }
    }
}
