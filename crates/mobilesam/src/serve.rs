//! `mobilesam serve`: the gRPC streaming server (see the `mobilesam-server` crate).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use mobilesam_checkpoint::digest::Sha256Digest;
use mobilesam_server::ServerConfig;

use crate::checkpoint_source;

/// Flags of `mobilesam serve`; every flag can also be set with a `MOBILESAM_*`
/// environment variable.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// MobileSAM weights: the official `mobile_sam.pt` or a `.safetensors` file with the
    /// same tensor names. Default: `mobile_sam.pt` in the cache directory
    /// ($MOBILESAM_CACHE_DIR, else ~/.cache/mobilesam), downloaded there on first use.
    #[arg(long, value_name = "FILE", env = "MOBILESAM_CHECKPOINT")]
    pub checkpoint: Option<PathBuf>,

    /// The SHA-256 the checkpoint file must have (64 hex digits, as `sha256sum` prints):
    /// the server refuses to start with a different file, and keeps a download only if it
    /// matches. `mobilesam info` prints a file's digest.
    #[arg(long, value_name = "HEX", env = "MOBILESAM_CHECKPOINT_SHA256")]
    pub checkpoint_sha256: Option<Sha256Digest>,

    #[command(flatten)]
    pub server: ServerConfig,
}

/// Runs the server until SIGTERM or SIGINT.
pub fn run(args: ServeArgs) -> Result<()> {
    mobilesam_server::init_logging(args.server.log_format);
    let expected = args.checkpoint_sha256.as_ref();
    let checkpoint = checkpoint_path(args.checkpoint.as_deref(), expected)?;
    mobilesam_server::run(args.server, checkpoint)?;
    Ok(())
}

/// The checkpoint to serve: the given file, else the default one (cached or downloaded);
/// with `expected`, checked to have that SHA-256 before the server starts.
fn checkpoint_path(explicit: Option<&Path>, expected: Option<&Sha256Digest>) -> Result<PathBuf> {
    let path = checkpoint_source::resolve(explicit, expected).context("no checkpoint to serve")?;
    if let Some(expected) = expected {
        checkpoint_source::verify_file(&path, expected)
            .context("refusing to serve the checkpoint (--checkpoint-sha256)")?;
    }
    Ok(path)
}
