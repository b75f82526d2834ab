//! The first run without `--checkpoint` downloads the weights into the cache directory,
//! later runs use the cached file; a download that is not a checkpoint is not cached.
//! A one-shot HTTP server on the loopback interface stands in for GitHub.

use crate::cli_support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::thread::JoinHandle;

use cli_support::{arg, failure_after_notes, run_env, success, temp_dir, workspace};
use serde_json::Value;

/// Serves `body` once with status 200 on a loopback port; returns the URL and the thread.
fn serve_once(body: Vec<u8>) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let url = format!(
        "http://{}/mobile_sam.pt",
        listener.local_addr().expect("addr")
    );
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        // Read the request head up to the blank line.
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if line == "\r\n" {
                break;
            }
            line.clear();
        }
        let mut stream = reader.into_inner();
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).expect("write head");
        stream.write_all(&body).expect("write body");
    });
    (url, handle)
}

#[test]
fn downloads_once_into_the_cache() {
    let fixture = workspace().join("tests/fixtures/torch_save_small.pt");
    let body = std::fs::read(&fixture).expect("read fixture");
    let (url, server) = serve_once(body.clone());
    let cache = temp_dir();
    let cached = cache.path().join("mobile_sam.pt");
    let env = [
        ("MOBILESAM_CACHE_DIR", arg(cache.path())),
        ("MOBILESAM_CHECKPOINT_URL", url.as_str()),
    ];
    let first: Value =
        serde_json::from_str(&success(&run_env(&["info", "--json"], &env))).expect("JSON");
    server.join().expect("server thread");
    assert_eq!(std::fs::read(&cached).expect("cached file"), body);
    assert_eq!(first["checkpoint"], arg(&cached));
    assert_eq!(first["file_bytes"], body.len());
    // The server is gone: the second run must use the cache.
    let second: Value =
        serde_json::from_str(&success(&run_env(&["info", "--json"], &env))).expect("JSON");
    assert_eq!(second, first);
    let files = std::fs::read_dir(cache.path()).expect("list").count();
    assert_eq!(files, 1, "only the checkpoint is left in the cache");
}

#[test]
fn a_download_that_is_not_a_checkpoint_is_not_cached() {
    let (url, server) = serve_once(b"<!DOCTYPE html><html>rate limited</html>".to_vec());
    let cache = temp_dir();
    let env = [
        ("MOBILESAM_CACHE_DIR", arg(cache.path())),
        ("MOBILESAM_CHECKPOINT_URL", url.as_str()),
    ];
    failure_after_notes(
        &run_env(&["info"], &env),
        "neither a torch.save zip nor safetensors",
        1,
    );
    server.join().expect("server thread");
    assert_eq!(std::fs::read_dir(cache.path()).expect("list").count(), 0);
}
