//! Flags shared by the commands that run the model: `--checkpoint` and `--device`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use mobilesam_model::Sam;

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

    /// Device to run on: cpu, cuda[:N] (build with --features cuda) or metal[:N] (build
    /// with --features metal).
    #[arg(long, value_name = "DEVICE", default_value = "cpu")]
    pub device: DeviceSpec,
}

impl ModelArgs {
    /// Resolves the checkpoint (downloading it if needed), opens the device and loads the
    /// model.
    pub fn load(&self) -> Result<Sam> {
        let path = checkpoint_source::resolve(self.checkpoint.as_deref())?;
        let device = self.device.open()?;
        Sam::load(&path, &device)
            .with_context(|| format!("cannot load the model from {}", path.display()))
    }
}
