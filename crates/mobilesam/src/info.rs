//! `mobilesam info`: the file's SHA-256, model family (read from the tensor shapes),
//! parameter counts per part and file size, as Ultralytics' `model.info()` reports them.

use anyhow::{Context, Result};
use mobilesam_checkpoint::digest::Sha256Digest;
use mobilesam_checkpoint::{Checkpoint, ParameterCounts};
use mobilesam_model::Family;
use serde::Serialize;

use crate::checkpoint_source;
use crate::output;

/// Flags of `mobilesam info`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// MobileSAM weights (`mobile_sam.pt` or `.safetensors`). Default: as for `segment`
    /// ($MOBILESAM_CHECKPOINT, else the cached official weights, downloaded on first use).
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<std::path::PathBuf>,

    /// The SHA-256 the checkpoint file must have (64 hex digits), as for `segment`.
    #[arg(long, value_name = "HEX", env = "MOBILESAM_CHECKPOINT_SHA256")]
    pub checkpoint_sha256: Option<Sha256Digest>,

    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// What `info --json` prints.
#[derive(Debug, Serialize)]
pub struct Info {
    /// The checkpoint file.
    pub checkpoint: String,
    /// SHA-256 of the file, 64 hex digits (the value for `--checkpoint-sha256`).
    pub sha256: String,
    /// Parameters per part and in total (buffers such as BatchNorm statistics excluded).
    pub parameters: ParameterCounts,
    /// The model family read from the tensor names and shapes (`mobile_sam`, `sam_vit_b`,
    /// `sam_vit_l`, `sam_vit_h`, `sam_vit` for other ViT sizes, `sam2.1_hiera_t`, `_s`,
    /// `_b+`, `_l`, `sam2.1_hiera` for other Hiera sizes), or `unsupported`.
    pub family: String,
    /// The family in words (sizes read from the checkpoint), or why it is not served.
    pub family_detail: String,
    /// Whether the family has SAM 2's memory bank (video tracking with memory).
    pub memory_tracking: bool,
    /// Number of tensors in the file, buffers included.
    pub tensors: usize,
    /// File size in bytes.
    pub file_bytes: u64,
    /// File size in MB of 2^20 bytes, as Ultralytics reports it.
    pub file_size_mb: f64,
}

/// Reads the checkpoint and prints its summary.
pub fn run(args: InfoArgs) -> Result<()> {
    let expected = args.checkpoint_sha256.as_ref();
    let path = checkpoint_source::resolve(args.checkpoint.as_deref(), expected)?;
    let checkpoint =
        Checkpoint::load_verified(&path, expected).context("cannot read the checkpoint")?;
    let file_bytes = checkpoint.file_bytes();
    let (family, family_detail, memory_tracking, summary) = match Family::detect(&checkpoint) {
        Ok(family) => (
            family.name().to_string(),
            family.describe(),
            family.memory_tracking(),
            summary_name(&family),
        ),
        Err(e) => ("unsupported".to_string(), e.to_string(), false, "MobileSAM"),
    };
    let info = Info {
        checkpoint: path.display().to_string(),
        sha256: checkpoint
            .sha256()
            .map(ToString::to_string)
            .unwrap_or_default(),
        parameters: checkpoint.parameter_counts(),
        family,
        family_detail,
        memory_tracking,
        tensors: checkpoint.names().len(),
        file_bytes,
        file_size_mb: (file_bytes as f64 / f64::from(1 << 20) * 10.0).round() / 10.0,
    };
    let text = if args.json {
        serde_json::to_string_pretty(&info)?
    } else {
        table(&info, summary)
    };
    output::print_line(text.trim_end())
}

/// The family's name in the table's summary line.
fn summary_name(family: &Family) -> &'static str {
    match family {
        Family::MobileSam => "MobileSAM",
        Family::SamVit(_) => "SAM ViT",
        Family::Sam2(_) => "SAM 2.1",
    }
}

/// The human-readable summary; `summary` names the family in its last line.
fn table(info: &Info, summary: &str) -> String {
    let p = &info.parameters;
    let rows = [
        ("image_encoder", p.image_encoder),
        ("prompt_encoder", p.prompt_encoder),
        ("mask_decoder", p.mask_decoder),
        ("total", p.total),
    ];
    let mut out = format!(
        "checkpoint: {}\nsha256: {}\nfamily: {} ({})\nmemory tracking: {}\n{:<16}{:>14}\n",
        info.checkpoint,
        info.sha256,
        info.family,
        info.family_detail,
        if info.memory_tracking { "yes" } else { "no" },
        "part",
        "parameters"
    );
    for (name, count) in rows {
        out.push_str(&format!("{name:<16}{:>14}\n", thousands(count)));
    }
    out.push_str(&format!(
        "{summary} summary: {} parameters, {} tensors, {:.1} MB ({} bytes)\n",
        thousands(p.total),
        info.tensors,
        info.file_size_mb,
        info.file_bytes
    ));
    out
}

/// `10130092` -> `10,130,092`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(10130092), "10,130,092");
    }
}
