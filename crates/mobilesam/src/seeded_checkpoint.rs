//! `mobilesam seeded-checkpoint`: writes seeded random weights in the official checkpoint's
//! layout, for tests, benchmarks and deployment smoke tests where the real weights are not
//! at hand. The masks they produce are meaningless; the shapes, speed and wire behaviour are
//! the real model's.

use std::path::PathBuf;

use anyhow::{Context, Result};
use mobilesam_checkpoint::seeded::Manifest;

/// Flags of `mobilesam seeded-checkpoint`.
#[derive(Debug, clap::Args)]
pub struct SeededCheckpointArgs {
    /// Weights manifest (tensor names, shapes and value ranges), e.g.
    /// tests/fixtures/weights_manifest.json.
    #[arg(long, value_name = "FILE")]
    pub manifest: PathBuf,

    /// Where to write the `.safetensors` file.
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,
}

/// Generates the weights and writes them.
pub fn run(args: SeededCheckpointArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.manifest)
        .with_context(|| format!("cannot read {}", args.manifest.display()))?;
    let checkpoint = Manifest::from_json(&text)?.generate()?;
    if let Some(dir) = args.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    checkpoint.save_safetensors(&args.output)?;
    eprintln!(
        "wrote {} tensors to {}",
        checkpoint.names().len(),
        args.output.display()
    );
    Ok(())
}
