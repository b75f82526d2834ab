//! The figures of a load run, as one JSON line or as text.

use std::collections::BTreeMap;

use serde::Serialize;

use super::latency::Percentiles;
use super::server_probe::Memory;

/// Everything a load run reports.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Concurrent streams in the load phase.
    pub streams: usize,
    /// Prompts per stream asked for.
    pub prompts_per_stream: usize,
    /// Prompts sent in the load phase.
    pub sent: u64,
    /// Prompts answered with masks in the load phase.
    pub ok: u64,
    /// Errors by gRPC code name, both phases.
    pub errors: BTreeMap<String, u64>,
    /// Wall time of the load phase, seconds.
    pub elapsed_s: f64,
    /// Prompts answered with masks per second in the load phase.
    pub throughput_per_s: f64,
    /// Round trips of prompts answered with masks in the load phase.
    pub latency_ms: Option<Percentiles>,
    /// Round trips of prompts answered with an error in the load phase (how fast a full
    /// server says RESOURCE_EXHAUSTED).
    pub error_latency_ms: Option<Percentiles>,
    /// The server's encode time of the image, ms.
    pub encode_ms: f64,
    /// The sequential round-trip phase against the in-process decode.
    pub round_trip: RoundTrip,
    /// Session memory from the server's gauges (with `--metrics-addr`).
    pub session: Option<SessionMemory>,
    /// Server process memory (with `--server-pid`).
    pub server_memory: Option<ServerMemory>,
}

/// One stream, one prompt in flight: what gRPC adds to a decode.
#[derive(Debug, Serialize)]
pub struct RoundTrip {
    /// Round trips measured.
    pub prompts: usize,
    /// Median round trip over gRPC, ms.
    pub grpc_p50_ms: Option<f64>,
    /// Median of the server's own `decode_ms`, ms.
    pub server_decode_p50_ms: Option<f64>,
    /// Median of round trip minus the server's `decode_ms`: transport, queueing and
    /// message conversion, ms.
    pub transport_p50_ms: Option<f64>,
    /// Median in-process decode of the same prompt (with `--checkpoint`), ms.
    pub in_process_p50_ms: Option<f64>,
    /// `grpc_p50_ms - in_process_p50_ms`, ms.
    pub overhead_p50_ms: Option<f64>,
}

/// Memory the server holds per cached session.
#[derive(Debug, Serialize)]
pub struct SessionMemory {
    /// `mobilesam_sessions`.
    pub sessions: u64,
    /// `mobilesam_session_cache_bytes`.
    pub cache_bytes: u64,
    /// `cache_bytes / sessions` (the embedding of one image).
    pub bytes_per_session: Option<u64>,
}

/// The server's resident memory.
#[derive(Debug, Serialize)]
pub struct ServerMemory {
    /// Before the run: model loaded, no session.
    pub idle: Memory,
    /// After the run.
    pub after: Memory,
}

impl Report {
    /// Human-readable lines.
    pub fn text(&self) -> String {
        let mut out = Vec::new();
        out.push(format!(
            "load: {} streams x {} prompts: {} sent, {} ok in {:.2} s = {:.1} prompts/s",
            self.streams,
            self.prompts_per_stream,
            self.sent,
            self.ok,
            self.elapsed_s,
            self.throughput_per_s
        ));
        if let Some(p) = &self.latency_ms {
            out.push(format!(
                "latency ms (ok): p50 {:.2}, p95 {:.2}, p99 {:.2}, max {:.2}",
                p.p50, p.p95, p.p99, p.max
            ));
        }
        if let Some(p) = &self.error_latency_ms {
            out.push(format!(
                "latency ms (errors): p50 {:.2}, p95 {:.2}, p99 {:.2}",
                p.p50, p.p95, p.p99
            ));
        }
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        out.push(format!(
            "errors: {}",
            if errors.is_empty() {
                "none".to_string()
            } else {
                errors.join(", ")
            }
        ));
        let r = &self.round_trip;
        let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
        out.push(format!(
            "round trip ({} prompts, one in flight): gRPC p50 {} ms, server decode p50 {} ms, \
             transport p50 {} ms, in-process p50 {} ms, overhead p50 {} ms",
            r.prompts,
            show(r.grpc_p50_ms),
            show(r.server_decode_p50_ms),
            show(r.transport_p50_ms),
            show(r.in_process_p50_ms),
            show(r.overhead_p50_ms)
        ));
        if let Some(s) = &self.session {
            out.push(format!(
                "sessions: {}, cache {} bytes, {} bytes per session",
                s.sessions,
                s.cache_bytes,
                s.bytes_per_session.map_or("-".into(), |b| b.to_string())
            ));
        }
        if let Some(m) = &self.server_memory {
            out.push(format!(
                "server RSS: idle {:.1} MiB, after {:.1} MiB, peak {:.1} MiB",
                mib(m.idle.rss_bytes),
                mib(m.after.rss_bytes),
                mib(m.after.peak_rss_bytes)
            ));
        }
        out.join("\n")
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
