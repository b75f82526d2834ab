//! Shared helpers for the `cli_*` tests: seeded weights written to a file, a small test
//! image, and running the real `mobilesam` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Environment variables the binary reads; cleared for every run so the caller's
/// environment cannot change a test.
pub const MOBILESAM_ENV: [&str; 4] = [
    "MOBILESAM_CHECKPOINT",
    "MOBILESAM_CACHE_DIR",
    "MOBILESAM_CHECKPOINT_URL",
    "MOBILESAM_CHECKPOINT_SHA256",
];

/// Width of the test image.
pub const WIDTH: u32 = 64;
/// Height of the test image.
pub const HEIGHT: u32 = 48;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A scratch directory for this test binary's files, under Cargo's per-target temp dir.
pub fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mobilesam-cli");
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        dir
    })
}

/// A fresh empty directory.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(scratch()).expect("temp dir")
}

/// The seeded checkpoint of `tests/fixtures/weights_manifest.json`, generated in memory.
pub fn seeded_checkpoint() -> mobilesam_checkpoint::Checkpoint {
    let manifest_path = workspace().join("tests/fixtures/weights_manifest.json");
    let text = std::fs::read_to_string(&manifest_path).expect("read weights manifest");
    mobilesam_checkpoint::seeded::Manifest::from_json(&text)
        .expect("parse manifest")
        .generate()
        .expect("generate weights")
}

/// The seeded checkpoint as a `.safetensors` file, written once per test process (to a
/// temporary name, then renamed, so parallel test binaries never see a partial file).
pub fn checkpoint() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let path = scratch().join("seeded.safetensors");
        let part = scratch().join(format!("seeded.{}.part", std::process::id()));
        seeded_checkpoint()
            .save_safetensors(&part)
            .expect("write seeded checkpoint");
        std::fs::rename(&part, &path).expect("rename seeded checkpoint");
        path
    })
}

/// A 64x48 RGB PNG: a gradient background with a bright rectangle.
pub fn image() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let img = image::RgbImage::from_fn(WIDTH, HEIGHT, |x, y| {
            if (16..40).contains(&x) && (12..32).contains(&y) {
                image::Rgb([240, 220, 40])
            } else {
                image::Rgb([(x * 4) as u8, (y * 5) as u8, 90])
            }
        });
        let path = scratch().join("image.png");
        let part = scratch().join(format!("image.{}.part.png", std::process::id()));
        img.save(&part).expect("write test image");
        std::fs::rename(&part, &path).expect("rename test image");
        path
    })
}

/// Runs `mobilesam` with `args` and extra environment variables; MOBILESAM_* variables
/// not given are removed.
pub fn run_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mobilesam"));
    cmd.args(args);
    for var in MOBILESAM_ENV {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run mobilesam")
}

/// Runs `mobilesam` with `args`.
pub fn run(args: &[&str]) -> Output {
    run_env(args, &[])
}

/// Asserts success and returns stdout.
pub fn success(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "failed: {stderr}");
    String::from_utf8(output.stdout.clone()).expect("utf-8 stdout")
}

/// Asserts a clean failure: exit code 1, no panic, stderr one line `error: ...` that
/// contains `expected`. Returns the message.
pub fn failure(output: &Output, expected: &str) -> String {
    failure_after_notes(output, expected, 0)
}

/// As [`failure`], but allows `notes` informational lines (such as "downloading ...")
/// before the error line.
pub fn failure_after_notes(output: &Output, expected: &str, notes: usize) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(
        output.status.code(),
        Some(1),
        "exit status; stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let lines: Vec<&str> = stderr.trim_end().lines().collect();
    assert_eq!(lines.len(), notes + 1, "stderr lines: {stderr}");
    let message = lines[notes];
    assert!(message.starts_with("error: "), "{stderr}");
    assert!(message.contains(expected), "{message:?} lacks {expected:?}");
    message.to_string()
}

/// A string path argument.
pub fn arg(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}
