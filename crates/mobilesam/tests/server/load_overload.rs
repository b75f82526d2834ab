//! `mobilesam load` against the real `mobilesam serve` on loopback, past capacity: one
//! worker and a decode queue of one, six streams. The server must keep answering (masks
//! for some prompts, RESOURCE_EXHAUSTED for the rest, faster than a mask), report one
//! embedding per session, stay alive and keep its memory bounded.

use crate::cli_support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// Bytes of one cached embedding: 256 x 64 x 64 float32.
const EMBEDDING_BYTES: f64 = (256 * 64 * 64 * 4) as f64;

/// Ceiling on the server's resident memory after the run: the seeded model (40 MB), one
/// encoder pass at 1024 x 1024 and a few decodes fit several times over; a server that
/// buffered the refused work would not.
const RSS_CEILING_BYTES: f64 = 1024.0 * 1024.0 * 1024.0;

/// A `mobilesam serve` child, killed when dropped.
struct Server {
    child: Child,
    grpc: SocketAddr,
    metrics: SocketAddr,
}

impl Server {
    fn start(extra: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mobilesam"));
        command
            .arg("serve")
            .arg("--checkpoint")
            .arg(cli_support::checkpoint())
            .args(["--addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"])
            .args(["--log-format", "json"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for key in cli_support::MOBILESAM_ENV {
            command.env_remove(key);
        }
        let mut child = command.spawn().expect("start mobilesam serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let Ok(json) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let message = json["fields"]["message"].as_str().unwrap_or_default();
                if let Some(addr) = json["fields"]["addr"].as_str() {
                    let _ = tx.send((message.to_string(), addr.to_string()));
                }
            }
        });
        let (mut grpc, mut metrics) = (None, None);
        while grpc.is_none() || metrics.is_none() {
            let Ok((message, addr)) = rx.recv_timeout(Duration::from_secs(120)) else {
                let _ = child.kill();
                panic!("the server did not log its addresses");
            };
            let addr: SocketAddr = addr.parse().expect("socket address");
            if message.starts_with("gRPC") {
                grpc = Some(addr);
            } else if message.starts_with("metrics") {
                metrics = Some(addr);
            }
        }
        Self {
            child,
            grpc: grpc.expect("grpc"),
            metrics: metrics.expect("metrics"),
        }
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `mobilesam load` with `args` and returns its last stdout line as JSON.
fn load(server: &Server, args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_mobilesam"))
        .arg("load")
        .args(["--addr", &server.grpc.to_string()])
        .args(["--metrics-addr", &server.metrics.to_string()])
        .args(["--server-pid", &server.child.id().to_string()])
        .arg("--image")
        .arg(cli_support::image())
        .arg("--json")
        .args(args)
        .output()
        .expect("run mobilesam load");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "load failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.lines().last().expect("a JSON line");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"))
}

fn number(report: &Value, pointer: &str) -> f64 {
    report
        .pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} missing in {report}"))
}

#[test]
fn past_capacity_the_server_refuses_quickly_and_stays_bounded() {
    let mut server = Server::start(&["--workers", "1", "--queue-capacity", "1"]);
    let checkpoint = cli_support::checkpoint().display().to_string();
    let report = load(
        &server,
        &[
            "--streams",
            "6",
            "--prompts",
            "400",
            "--duration",
            "3s",
            "--round-trips",
            "3",
            "--checkpoint",
            &checkpoint,
        ],
    );
    eprintln!("load report: {report}");

    // Some prompts were answered with masks, at a measurable rate and latency.
    assert!(number(&report, "/ok") > 0.0, "{report}");
    assert!(number(&report, "/throughput_per_s") > 0.0, "{report}");
    let (p50, p95, p99) = (
        number(&report, "/latency_ms/p50"),
        number(&report, "/latency_ms/p95"),
        number(&report, "/latency_ms/p99"),
    );
    assert!(0.0 < p50 && p50 <= p95 && p95 <= p99, "{report}");

    // The rest were refused with RESOURCE_EXHAUSTED and nothing else, and a refusal came
    // back faster than a mask (it waits for no decode).
    let errors = report["errors"].as_object().expect("errors");
    assert!(
        errors.keys().all(|code| code == "RESOURCE_EXHAUSTED"),
        "{report}"
    );
    assert!(
        number(&report, "/errors/RESOURCE_EXHAUSTED") > 0.0,
        "{report}"
    );
    assert!(
        number(&report, "/error_latency_ms/p50") < p50,
        "refusals are not faster than masks: {report}"
    );
    assert_eq!(
        number(&report, "/sent"),
        number(&report, "/ok") + number(&report, "/errors/RESOURCE_EXHAUSTED"),
        "{report}"
    );

    // The round trip against the in-process decode of the same prompt.
    assert_eq!(number(&report, "/round_trip/prompts"), 3.0, "{report}");
    let grpc = number(&report, "/round_trip/grpc_p50_ms");
    let in_process = number(&report, "/round_trip/in_process_p50_ms");
    assert!(grpc > 0.0 && in_process > 0.0, "{report}");
    let overhead = number(&report, "/round_trip/overhead_p50_ms");
    assert!((overhead - (grpc - in_process)).abs() < 1e-6, "{report}");

    // One session, one embedding.
    assert_eq!(number(&report, "/session/sessions"), 1.0, "{report}");
    assert_eq!(
        number(&report, "/session/bytes_per_session"),
        EMBEDDING_BYTES,
        "{report}"
    );

    // Alive, with bounded memory.
    assert!(server.alive(), "the server died under load");
    let idle = number(&report, "/server_memory/idle/rss_bytes");
    let after = number(&report, "/server_memory/after/rss_bytes");
    assert!(idle > 0.0 && after < RSS_CEILING_BYTES, "{report}");
}

/// `--click-interval` paces each stream like a user (here one click per 500 ms over 2 s:
/// at most 5 clicks, where back to back gives dozens), in the plain run and in the mixed
/// scenario, whose report covers every phase.
#[test]
fn clicks_are_paced_and_the_mixed_scenario_reports_every_phase() {
    let server = Server::start(&[]);
    let paced = ["--click-interval", "500ms", "--duration", "2s"];
    let plain = load(
        &server,
        &[&["--streams", "1", "--round-trips", "1"][..], &paced[..]].concat(),
    );
    eprintln!("paced load report: {plain}");
    let clicks = number(&plain, "/ok");
    assert!(
        (2.0..=5.0).contains(&clicks),
        "{clicks} clicks in 2 s: {plain}"
    );

    let mixed = load(
        &server,
        &[&["--uploaders", "1", "--clickers", "1"][..], &paced[..]].concat(),
    );
    eprintln!("mixed report: {mixed}");
    assert_eq!(number(&mixed, "/click_interval_ms"), 500.0, "{mixed}");
    for phase in ["/idle_click_ms/count", "/mixed_click_ms/count"] {
        let clicks = number(&mixed, phase);
        assert!((1.0..=5.0).contains(&clicks), "{phase} {clicks}: {mixed}");
    }
    assert!(number(&mixed, "/encodes_per_s_alone") > 0.0, "{mixed}");
    assert!(number(&mixed, "/encodes_per_s_mixed") > 0.0, "{mixed}");
    // Bursts of 20 superseding prompts: all but the last of each are superseded or
    // decoded, and at least some were superseded.
    assert!(number(&mixed, "/superseded") > 0.0, "{mixed}");
    assert!(number(&mixed, "/supersede_burst_ms/p50") > 0.0, "{mixed}");
    assert!(
        mixed["errors"].as_object().expect("errors").is_empty(),
        "{mixed}"
    );
}

#[test]
fn an_unreachable_server_is_a_one_line_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_mobilesam"))
        .args(["load", "--addr", "127.0.0.1:1", "--answer-timeout", "5s"])
        .arg("--image")
        .arg(cli_support::image())
        .output()
        .expect("run mobilesam load");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("UNAVAILABLE"), "{stderr}");
}
