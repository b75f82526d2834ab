//! What `mobilesam serve` writes to stderr, as log files and pipes receive it.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use crate::server_support::Launch;

/// Text logs go to a pipe here, as to a file or a log collector: no ANSI colour codes.
#[test]
fn text_logs_into_a_pipe_have_no_colour_codes() {
    let mut command = Launch::args(&[]).log_format("text").command();
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
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
