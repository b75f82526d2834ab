//! `mobilesam serve`: the gRPC streaming server (see the `mobilesam-server` crate).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use mobilesam_server::ServerConfig;

/// Flags of `mobilesam serve`; every flag can also be set with a `MOBILESAM_*`
/// environment variable.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// MobileSAM weights: the official `mobile_sam.pt` or a `.safetensors` file with the
    /// same tensor names. Default: `mobile_sam.pt` in the cache directory
    /// ($MOBILESAM_CACHE_DIR, else ~/.cache/mobilesam), downloaded there on first use.
    #[arg(long, value_name = "FILE", env = "MOBILESAM_CHECKPOINT")]
    pub checkpoint: Option<PathBuf>,

    #[command(flatten)]
    pub server: ServerConfig,
}

/// Runs the server until SIGTERM or SIGINT.
pub fn run(args: ServeArgs) -> Result<()> {
    mobilesam_server::init_logging(args.server.log_format);
    let checkpoint = checkpoint_path(args.checkpoint.as_deref())?;
    mobilesam_server::run(args.server, checkpoint)?;
    Ok(())
}

/// The checkpoint to serve: the given file, else the default one (cached or downloaded).
fn checkpoint_path(explicit: Option<&Path>) -> Result<PathBuf> {
    crate::checkpoint_source::resolve(explicit).context("no checkpoint to serve")
}
