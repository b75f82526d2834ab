//! The `mobilesam` command end to end, one module per subcommand or concern: the real binary
//! run on small images and seeded weights (`tests/fixtures/weights_manifest.json`).
//!
//! One test binary instead of one per file: each integration-test binary links the whole
//! dependency tree again, which cost CI about a minute per handful of files.

mod cli_support;

mod cli_annotate;
mod cli_detect;
mod cli_download;
mod cli_errors;
mod cli_families;
mod cli_generate;
mod cli_info;
mod cli_integrity;
mod cli_segment;
