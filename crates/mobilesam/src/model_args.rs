//! Flags shared by the commands that run the model: `--checkpoint`, `--checkpoint-sha256`,
//! `--device` and `--backend`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use mobilesam_checkpoint::digest::Sha256Digest;
use mobilesam_checkpoint::Checkpoint;
use mobilesam_model::{Backend, Sam};

use crate::checkpoint_source;
use mobilesam_model::device::DeviceSpec;

/// Which weights to load, and where to run them.
#[derive(Debug, clap::Args)]
pub struct ModelArgs {
    /// MobileSAM weights: the official `mobile_sam.pt` or a `.safetensors` file with the
    /// same tensor names. Default: $MOBILESAM_CHECKPOINT, else `mobile_sam.pt` in the
    /// cache directory ($MOBILESAM_CACHE_DIR, else ~/.cache/mobilesam), downloaded there
    /// on first use.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,

    /// The SHA-256 the checkpoint file must have (64 hex digits, as `sha256sum` prints): a
    /// different file is refused before it is used, and a download is kept only if it
    /// matches. `mobilesam info` prints a file's digest.
    #[arg(long, value_name = "HEX", env = "MOBILESAM_CHECKPOINT_SHA256")]
    pub checkpoint_sha256: Option<Sha256Digest>,

    /// Device to run on: cpu, cuda[:N] (build with --features cuda) or metal[:N] (build
    /// with --features metal).
    #[arg(long, value_name = "DEVICE", default_value = "cpu")]
    pub device: DeviceSpec,

    /// Implementation of the encoder and decoder: `fused` (hand-written CPU kernels, the
    /// default on the CPU) or `candle` (tensor operations, the default on GPUs; on the CPU,
    /// the slower reference).
    #[arg(long, value_name = "BACKEND", env = "MOBILESAM_BACKEND")]
    pub backend: Option<Backend>,
}

impl ModelArgs {
    /// Resolves the checkpoint (downloading it if needed), opens the device and loads the
    /// model.
    pub fn load(&self) -> Result<Sam> {
        let expected = self.checkpoint_sha256.as_ref();
        let path = checkpoint_source::resolve(self.checkpoint.as_deref(), expected)?;
        let device = self.device.open()?;
        let context = || format!("cannot load the model from {}", path.display());
        let checkpoint = Checkpoint::load_verified(&path, expected).with_context(context)?;
        let backend = Backend::choose(self.backend, &device).with_context(context)?;
        Sam::with_backend(&checkpoint, &device, backend).with_context(context)
    }
}
