//! What `mobilesam serve` writes to stderr, as log files and pipes receive it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::server_support::checkpoint;

/// Text logs go to a pipe here, as to a file or a log collector: no ANSI colour codes.
#[test]
fn text_logs_into_a_pipe_have_no_colour_codes() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mobilesam"));
    command
        .arg("serve")
        .arg("--checkpoint")
        .arg(checkpoint())
        .args(["--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"])
        .args(["--workers", "1", "--log-format", "text"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars() {
        if key.starts_with("MOBILESAM_") {
            command.env_remove(key);
        }
    }
    let mut child = command.spawn().expect("start mobilesam serve");
    let stderr = child.stderr.take().expect("stderr");
    let (lines_tx, lines_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut lines = Vec::new();
    while !lines.iter().any(|l: &String| l.contains("metrics")) {
        match lines_rx.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => lines.push(line),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = lines.join("\n");
    assert!(text.contains("INFO"), "text log lines expected: {text}");
    assert!(text.contains("metrics"), "the listeners are logged: {text}");
    assert!(!text.contains('\u{1b}'), "colour codes in a pipe: {text:?}");
}
