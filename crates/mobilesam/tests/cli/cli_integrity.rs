//! Integrity on the command line: a cut image is an error (`segment`, `embed`) or skipped
//! (`annotate`), never segmented; `--checkpoint-sha256` / `MOBILESAM_CHECKPOINT_SHA256`
//! refuse a different checkpoint (`segment`, `info`, `serve`, and a download before it is
//! cached); `info` prints the file's SHA-256, as `sha256sum` computes it.

use crate::cli_support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;

use cli_support::{
    arg, checkpoint, failure, failure_after_notes, run, run_env, success, temp_dir, workspace,
};
use serde_json::Value;

/// A digest no test file has.
const WRONG: &str = "0000000000000000000000000000000000000000000000000000000000000001";

/// The SHA-256 of `path` as coreutils' `sha256sum` prints it (an implementation
/// independent of ours).
fn sha256sum(path: &std::path::Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    assert!(out.status.success());
    String::from_utf8(out.stdout).expect("utf-8")[..64].to_string()
}

/// A JPEG written by Pillow, cut in half.
fn half_jpeg(dir: &std::path::Path) -> std::path::PathBuf {
    let bytes = std::fs::read(workspace().join("tests/fixtures/truncation/baseline.jpg"))
        .expect("fixture jpeg");
    let path = dir.join("half.jpg");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("write");
    path
}

#[test]
fn a_cut_jpeg_is_an_error_for_segment_and_embed() {
    let dir = temp_dir();
    let half = half_jpeg(dir.path());
    let out_file = dir.path().join("out.npy");
    let segment = [
        "segment",
        "--checkpoint",
        arg(checkpoint()),
        "--image",
        arg(&half),
        "--points",
        "[1, 2]",
    ];
    failure(&run(&segment), "image data is truncated");
    let embed = [
        "embed",
        "--checkpoint",
        arg(checkpoint()),
        "--image",
        arg(&half),
        "--output",
        arg(&out_file),
    ];
    failure(&run(&embed), "image data is truncated");
    assert!(!out_file.exists());
}

#[test]
fn annotate_reports_and_skips_a_cut_image() {
    let tmp = temp_dir();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    let fixtures = workspace().join("tests/fixtures/annotate");
    std::fs::copy(fixtures.join("images/a.png"), data.join("a.png")).expect("copy");
    half_jpeg(&data);
    let detections = tmp.path().join("detections");
    std::fs::create_dir_all(&detections).expect("mkdir");
    std::fs::copy(fixtures.join("detections/a.txt"), detections.join("a.txt")).expect("copy");
    // Boxes for the cut image too: it must be skipped for its data, not for want of boxes.
    std::fs::copy(
        fixtures.join("detections/a.txt"),
        detections.join("half.txt"),
    )
    .expect("copy");
    let out = run(&[
        "annotate",
        "--data",
        arg(&data),
        "--detections",
        arg(&detections),
        "--checkpoint",
        arg(checkpoint()),
    ]);
    success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warning = stderr
        .lines()
        .find(|l| l.contains("half.jpg"))
        .unwrap_or_else(|| panic!("no warning for half.jpg: {stderr}"));
    assert!(
        warning.starts_with("warning: skipping") && warning.contains("image data is truncated"),
        "{warning}"
    );
    assert!(stderr.contains("annotated 1 images"), "{stderr}");
    let labels: Vec<String> = std::fs::read_dir(tmp.path().join("labels"))
        .expect("labels dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(labels, ["a.txt"], "no labels for the cut image");
}

#[test]
fn info_prints_the_files_sha256() {
    let expected = sha256sum(checkpoint());
    let json: Value = serde_json::from_str(&success(&run(&[
        "info",
        "--checkpoint",
        arg(checkpoint()),
        "--json",
    ])))
    .expect("JSON");
    assert_eq!(json["sha256"], expected);
    let table = success(&run(&["info", "--checkpoint", arg(checkpoint())]));
    assert!(table.contains(&format!("sha256: {expected}")), "{table}");
    // The printed digest is accepted back, in either case.
    let upper = expected.to_uppercase();
    success(&run(&[
        "info",
        "--checkpoint",
        arg(checkpoint()),
        "--checkpoint-sha256",
        &upper,
    ]));
}

#[test]
fn a_wrong_digest_is_refused_naming_both() {
    let actual = sha256sum(checkpoint());
    let segment = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec![
            "segment",
            "--checkpoint",
            arg(checkpoint()),
            "--image",
            arg(cli_support::image()),
            "--points",
            "[10, 12]",
        ];
        args.extend_from_slice(extra);
        run_env(&args, env)
    };
    for out in [
        segment(&["--checkpoint-sha256", WRONG], &[]),
        segment(&[], &[("MOBILESAM_CHECKPOINT_SHA256", WRONG)]),
    ] {
        let message = failure(&out, "SHA-256 mismatch");
        assert!(
            message.contains(WRONG) && message.contains(&actual),
            "{message}"
        );
    }
    // The right digest loads and segments.
    success(&segment(&["--checkpoint-sha256", &actual], &[]));
    // A malformed digest is a usage error, refused by the argument parser (clap: exit 2).
    let malformed = segment(&["--checkpoint-sha256", "abc"], &[]);
    let stderr = String::from_utf8_lossy(&malformed.stderr);
    assert_eq!(malformed.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("64 hexadecimal digits"),
        "{stderr}"
    );
    let info = run(&[
        "info",
        "--checkpoint",
        arg(checkpoint()),
        "--checkpoint-sha256",
        WRONG,
    ]);
    failure(&info, &actual);
}

#[test]
fn serve_refuses_to_start_with_a_wrong_digest() {
    let actual = sha256sum(checkpoint());
    let out = run_env(
        &[
            "serve",
            "--checkpoint",
            arg(checkpoint()),
            "--addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
        &[("MOBILESAM_CHECKPOINT_SHA256", WRONG)],
    );
    let message = failure(&out, "SHA-256 mismatch");
    assert!(
        message.contains(WRONG) && message.contains(&actual),
        "{message}"
    );
}

/// Serves `body` once on a loopback port; returns the URL.
fn serve_once(body: Vec<u8>) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let url = format!(
        "http://{}/mobile_sam.pt",
        listener.local_addr().expect("addr")
    );
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if line == "\r\n" {
                break;
            }
            line.clear();
        }
        let mut stream = reader.into_inner();
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).expect("head");
        stream.write_all(&body).expect("body");
    });
    (url, handle)
}

#[test]
fn a_download_with_the_wrong_digest_is_not_cached() {
    let fixture = workspace().join("tests/fixtures/torch_save_small.pt");
    let actual = sha256sum(&fixture);
    let body = std::fs::read(&fixture).expect("fixture");
    let cache = temp_dir();
    let (url, server) = serve_once(body.clone());
    let env = [
        ("MOBILESAM_CACHE_DIR", arg(cache.path())),
        ("MOBILESAM_CHECKPOINT_URL", url.as_str()),
        ("MOBILESAM_CHECKPOINT_SHA256", WRONG),
    ];
    // "downloading ..." is printed before the error.
    let message = failure_after_notes(&run_env(&["info"], &env), "SHA-256 mismatch", 1);
    assert!(
        message.contains(WRONG) && message.contains(&actual),
        "{message}"
    );
    server.join().expect("server thread");
    assert_eq!(
        std::fs::read_dir(cache.path()).expect("list").count(),
        0,
        "neither the checkpoint nor a partial file is left"
    );
    // With the right digest the same download is kept.
    let (url, server) = serve_once(body.clone());
    let env = [
        ("MOBILESAM_CACHE_DIR", arg(cache.path())),
        ("MOBILESAM_CHECKPOINT_URL", url.as_str()),
        ("MOBILESAM_CHECKPOINT_SHA256", actual.as_str()),
    ];
    success(&run_env(&["info"], &env));
    server.join().expect("server thread");
    assert_eq!(
        std::fs::read(cache.path().join("mobile_sam.pt")).expect("cached"),
        body
    );
}
