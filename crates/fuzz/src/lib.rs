//! The bodies of the fuzz targets, one module each, so that the libFuzzer entry points in
//! `fuzz_targets/` (nightly, `cargo fuzz run --fuzz-dir crates/fuzz TARGET`) and the stable
//! corpus replay test (`crates/mobilesam/tests/fuzz_corpus_replay.rs`) run the same code.
//!
//! Every `run` takes arbitrary bytes and panics only when the code under test breaks one of
//! its promises: malformed input must come back as an error of the documented kind, and
//! accepted input must satisfy the invariants the server relies on.

pub mod checkpoint;
pub mod image_decode;
pub mod prompt_json;
pub mod rle_round_trip;
pub mod segment_request;
pub mod yolo_pickle;

/// A target body: takes arbitrary bytes, panics on a broken promise.
pub type Target = fn(&[u8]);

/// Every target by name (its corpus is `corpus/<name>/`) with its body.
pub const TARGETS: [(&str, Target); 7] = [
    ("image_decode", image_decode::run),
    ("segment_request", segment_request::run),
    ("prompt_json", prompt_json::run),
    ("rle_round_trip", rle_round_trip::run),
    ("checkpoint_pt", checkpoint::run),
    ("checkpoint_safetensors", checkpoint::run),
    ("yolo_pickle", yolo_pickle::run),
];
