//! Shared by the checkpoint crate's integration tests (and, through `#[path]`, the model
//! crate's): fixture paths and the seeded checkpoint.

#![allow(dead_code)]

use std::path::PathBuf;

use mobilesam_checkpoint::seeded::Manifest;
use mobilesam_checkpoint::Checkpoint;

/// `tests/fixtures` at the workspace root.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// The seeded checkpoint the reference fixtures were made with.
pub fn seeded_checkpoint() -> Checkpoint {
    let text = std::fs::read_to_string(fixtures().join("weights_manifest.json"))
        .expect("weights manifest is committed");
    Manifest::from_json(&text)
        .expect("manifest parses")
        .generate()
        .expect("weights generate")
}
