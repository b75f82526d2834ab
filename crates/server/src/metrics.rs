//! Every Prometheus metric of the server: names, labels, buckets and the functions that
//! record them. Nothing else in the crate names a metric.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `mobilesam_encode_duration_seconds` | histogram | |
//! | `mobilesam_decode_duration_seconds` | histogram | |
//! | `mobilesam_queue_wait_seconds` | histogram | `queue`, `lane` (`decode`, `encode`, `generate`) |
//! | `mobilesam_request_duration_seconds` | histogram | `kind`, `lane` |
//! | `mobilesam_requests_total` | counter | `kind`, `code` |
//! | `mobilesam_jobs_cancelled_total` | counter | `queue` |
//! | `mobilesam_prompts_superseded_total` | counter | |
//! | `mobilesam_session_evictions_total` | counter | `reason` (`capacity`, `expired`) |
//! | `mobilesam_worker_panics_total` | counter | `job` (`encode`, `decode`, ...) |
//! | `mobilesam_worker_restarts_total` | counter | |
//! | `mobilesam_unauthenticated_total` | counter | |
//! | `mobilesam_sessions` | gauge | |
//! | `mobilesam_session_cache_bytes` | gauge | |
//! | `mobilesam_queue_depth` | gauge | `queue` |
//! | `mobilesam_active_streams` | gauge | |
//! | `mobilesam_workers_ready` | gauge | |
//! | `mobilesam_embedding_lookups_total` | counter | `source` (`local`, `store`, `miss`) |
//! | `mobilesam_embedding_store_duration_seconds` | histogram | `op` (`get`, `put`, `exists`) |
//! | `mobilesam_embedding_store_errors_total` | counter | `op` (`get`, `put`, `exists`, `ping`) |
//! | `mobilesam_embedding_store_writes_dropped_total` | counter | |
//! | `mobilesam_embedding_store_up` | gauge | |
//!
//! `kind` is one of `set_image`, `resume`, `prompt`, `model_info`, `generate`, `empty`;
//! `code` is the gRPC code name of the answer (`OK`, `INVALID_ARGUMENT`, ...); `lane` is the
//! scheduler lane that ran the work (`decode`, `encode`, `generate`; `none` for requests
//! that need no worker). The `queue` and `lane` labels of the queue metrics carry the same
//! value: `queue` stays for the dashboards and autoscalers that select on it.

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tonic::Code;

use crate::error::ServerError;
use crate::lanes::Lane;

/// Image encoder time per image (decode of the image bytes included).
pub const ENCODE_DURATION: &str = "mobilesam_encode_duration_seconds";
/// Prompt encoder + mask decoder + postprocessing time per prompt.
pub const DECODE_DURATION: &str = "mobilesam_decode_duration_seconds";
/// Time a job waited in its queue before a worker took it.
pub const QUEUE_WAIT: &str = "mobilesam_queue_wait_seconds";
/// Time from reading a request to having its answer, by request kind.
pub const REQUEST_DURATION: &str = "mobilesam_request_duration_seconds";
/// Pauses of background work (encodes, generations) at the model's yield points while work
/// of a higher lane ran, by the lane that paused.
pub const YIELD_PAUSE: &str = "mobilesam_yield_pause_seconds";
/// Answered requests, by kind and gRPC code.
pub const REQUESTS_TOTAL: &str = "mobilesam_requests_total";
/// Queued prompts answered ABORTED because a newer prompt asked for `supersede_pending`.
pub const PROMPTS_SUPERSEDED: &str = "mobilesam_prompts_superseded_total";
/// Queued jobs dropped because their client went away.
pub const JOBS_CANCELLED: &str = "mobilesam_jobs_cancelled_total";
/// Sessions dropped from the cache by the caps (`capacity`) or the idle TTL (`expired`).
pub const SESSION_EVICTIONS: &str = "mobilesam_session_evictions_total";
/// Jobs whose model code panicked (answered INTERNAL; the worker goes on).
pub const WORKER_PANICS: &str = "mobilesam_worker_panics_total";
/// Models rebuilt by workers after a panic.
pub const WORKER_RESTARTS: &str = "mobilesam_worker_restarts_total";
/// Requests refused for a missing or wrong bearer token.
pub const UNAUTHENTICATED: &str = "mobilesam_unauthenticated_total";
/// Cached sessions.
pub const SESSIONS: &str = "mobilesam_sessions";
/// Bytes held by cached session embeddings.
pub const SESSION_CACHE_BYTES: &str = "mobilesam_session_cache_bytes";
/// Jobs waiting, per queue.
pub const QUEUE_DEPTH: &str = "mobilesam_queue_depth";
/// Open `Segment` streams.
pub const ACTIVE_STREAMS: &str = "mobilesam_active_streams";
/// Workers with a loaded model.
pub const WORKERS_READY: &str = "mobilesam_workers_ready";

/// Embedding lookups by where the embedding was found (`local`, `store`) or `miss`.
pub const EMBEDDING_LOOKUPS: &str = "mobilesam_embedding_lookups_total";
/// Time of one embedding-store call, by `op`.
pub const EMBEDDING_STORE_DURATION: &str = "mobilesam_embedding_store_duration_seconds";
/// Embedding-store calls that failed or timed out, by `op`.
pub const EMBEDDING_STORE_ERRORS: &str = "mobilesam_embedding_store_errors_total";
/// Embedding-store writes dropped because too many were in flight.
pub const EMBEDDING_STORE_WRITES_DROPPED: &str = "mobilesam_embedding_store_writes_dropped_total";
/// 1 while the embedding store answers, else 0 (also 0 with no store configured).
pub const EMBEDDING_STORE_UP: &str = "mobilesam_embedding_store_up";

/// Buckets of store calls: from 0.1 ms (loopback) to the 250 ms default timeout and past it.
pub const STORE_BUCKETS_SECONDS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Histogram buckets in seconds, from a millisecond (a decode on a GPU) to a minute (a
/// large image encoded on a slow CPU under load).
pub const LATENCY_BUCKETS_SECONDS: [f64; 17] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
    120.0,
];

/// What a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// `SetImage` with an image.
    SetImage,
    /// `SetImage` with only a session id.
    Resume,
    /// `SetImage` with `prefetch`: an encode ahead of use.
    Prefetch,
    /// `Prompt`.
    Prompt,
    /// `GetModelInfo`.
    ModelInfo,
    /// `CloseSession`.
    CloseSession,
    /// `GenerateMasks`, the RPC or on a stream.
    Generate,
    /// A `SegmentRequest` with neither field set.
    Empty,
    /// `Untrack`, the RPC or on a stream.
    Untrack,
}

impl RequestKind {
    /// The `kind` label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::SetImage => "set_image",
            Self::Resume => "resume",
            Self::Prefetch => "prefetch",
            Self::Prompt => "prompt",
            Self::ModelInfo => "model_info",
            Self::CloseSession => "close_session",
            Self::Generate => "generate",
            Self::Empty => "empty",
            Self::Untrack => "untrack",
        }
    }

    /// The `lane` label value: the scheduler lane that runs this kind of request.
    pub fn lane(self) -> &'static str {
        match self {
            Self::SetImage => Lane::Encode.label(),
            Self::Prompt => Lane::Decode.label(),
            Self::Generate | Self::Prefetch => Lane::Generate.label(),
            Self::Resume | Self::ModelInfo | Self::CloseSession | Self::Empty | Self::Untrack => {
                "none"
            }
        }
    }
}

/// The `code` label value: the gRPC code's canonical name.
pub fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Installs the process-wide Prometheus recorder with this module's buckets and
/// descriptions; the handle renders the `/metrics` page.
pub fn install() -> Result<PrometheusHandle, ServerError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS_SECONDS)
        .map_err(|e| ServerError::Metrics(e.to_string()))?
        .set_buckets_for_metric(
            Matcher::Full(EMBEDDING_STORE_DURATION.into()),
            &STORE_BUCKETS_SECONDS,
        )
        .map_err(|e| ServerError::Metrics(e.to_string()))?
        .install_recorder()
        .map_err(|e| ServerError::Metrics(e.to_string()))?;
    describe();
    zero_gauges();
    Ok(handle)
}

/// Publishes every gauge at zero, so a scrape before the first request shows them.
fn zero_gauges() {
    set_sessions(0, 0);
    set_queue_depth(Lane::Encode, 0);
    set_queue_depth(Lane::Decode, 0);
    set_queue_depth(Lane::Generate, 0);
    gauge!(ACTIVE_STREAMS).set(0.0);
    set_workers_ready(0);
    set_store_up(false);
    counter!(EMBEDDING_STORE_WRITES_DROPPED).absolute(0);
    for source in ["local", "store", "miss"] {
        counter!(EMBEDDING_LOOKUPS, "source" => source).absolute(0);
    }
}

fn describe() {
    use metrics::Unit;
    describe_histogram!(
        ENCODE_DURATION,
        Unit::Seconds,
        "Image decode + image encoder time per image."
    );
    describe_histogram!(
        DECODE_DURATION,
        Unit::Seconds,
        "Prompt encoder + mask decoder + postprocessing time per prompt."
    );
    describe_histogram!(
        QUEUE_WAIT,
        Unit::Seconds,
        "Time a job waited in its queue before a worker took it."
    );
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Time from reading a request to having its answer."
    );
    describe_histogram!(
        YIELD_PAUSE,
        Unit::Seconds,
        "Pauses of encodes and generations at yield points while higher-lane work ran."
    );
    describe_counter!(REQUESTS_TOTAL, "Answered requests by kind and gRPC code.");
    describe_counter!(
        PROMPTS_SUPERSEDED,
        "Queued prompts answered ABORTED because a newer prompt superseded them."
    );
    describe_counter!(
        JOBS_CANCELLED,
        "Queued jobs dropped because their client went away."
    );
    describe_counter!(
        SESSION_EVICTIONS,
        "Sessions dropped from the cache, by reason (capacity, expired)."
    );
    describe_counter!(WORKER_PANICS, "Jobs whose model code panicked, by job.");
    describe_counter!(WORKER_RESTARTS, "Models rebuilt by workers after a panic.");
    describe_counter!(
        UNAUTHENTICATED,
        "Requests refused for a missing or wrong bearer token."
    );
    describe_gauge!(SESSIONS, "Cached sessions.");
    describe_gauge!(
        SESSION_CACHE_BYTES,
        Unit::Bytes,
        "Bytes held by cached session embeddings."
    );
    describe_gauge!(QUEUE_DEPTH, "Jobs waiting, per queue.");
    describe_gauge!(ACTIVE_STREAMS, "Open Segment streams.");
    describe_gauge!(WORKERS_READY, "Workers with a loaded model.");
    describe_store();
}

fn describe_store() {
    describe_counter!(
        EMBEDDING_LOOKUPS,
        "Embedding lookups by where the embedding was found (local, store) or miss."
    );
    describe_histogram!(
        EMBEDDING_STORE_DURATION,
        metrics::Unit::Seconds,
        "Time of one embedding-store call, by op."
    );
    describe_counter!(
        EMBEDDING_STORE_ERRORS,
        "Embedding-store calls that failed or timed out, by op."
    );
    describe_counter!(
        EMBEDDING_STORE_WRITES_DROPPED,
        "Embedding-store writes dropped because too many were in flight."
    );
    describe_gauge!(
        EMBEDDING_STORE_UP,
        "1 while the embedding store answers, else 0."
    );
}

/// Counts an embedding lookup; `source` is `local`, `store` or `miss`.
pub fn record_embedding_lookup(source: &'static str) {
    counter!(EMBEDDING_LOOKUPS, "source" => source).increment(1);
}

/// Records one successful store call.
pub fn record_store_duration(op: &'static str, elapsed: Duration) {
    histogram!(EMBEDDING_STORE_DURATION, "op" => op).record(elapsed.as_secs_f64());
}

/// Counts a failed or timed-out store call.
pub fn record_store_error(op: &'static str) {
    counter!(EMBEDDING_STORE_ERRORS, "op" => op).increment(1);
}

/// Counts a store write dropped at the in-flight bound.
pub fn record_store_write_dropped() {
    counter!(EMBEDDING_STORE_WRITES_DROPPED).increment(1);
}

/// Publishes whether the store answers.
pub fn set_store_up(up: bool) {
    gauge!(EMBEDDING_STORE_UP).set(if up { 1.0 } else { 0.0 });
}

/// Records one pause of `lane`'s work at a yield point.
pub fn record_yield_pause(lane: Lane, paused: Duration) {
    histogram!(YIELD_PAUSE, "lane" => lane.label()).record(paused.as_secs_f64());
}

/// Records one image encode.
pub fn record_encode(elapsed: Duration) {
    histogram!(ENCODE_DURATION).record(elapsed.as_secs_f64());
}

/// Records one prompt decode.
pub fn record_decode(elapsed: Duration) {
    histogram!(DECODE_DURATION).record(elapsed.as_secs_f64());
}

/// Records how long a job waited in `queue`.
pub fn record_queue_wait(queue: Lane, waited: Duration) {
    histogram!(QUEUE_WAIT, "queue" => queue.label(), "lane" => queue.label())
        .record(waited.as_secs_f64());
}

/// Sets the number of jobs waiting in `queue`.
pub fn set_queue_depth(queue: Lane, depth: usize) {
    gauge!(QUEUE_DEPTH, "queue" => queue.label()).set(depth as f64);
}

/// Counts queued jobs dropped because their client went away.
pub fn record_cancelled(queue: Lane, jobs: usize) {
    counter!(JOBS_CANCELLED, "queue" => queue.label()).increment(jobs as u64);
}

/// Counts queued prompts superseded by a newer one (latest wins).
pub fn record_superseded(prompts: usize) {
    if prompts > 0 {
        counter!(PROMPTS_SUPERSEDED).increment(prompts as u64);
    }
}

/// Records one answered request: its duration and its code.
pub fn record_request(kind: RequestKind, code: Code, elapsed: Duration) {
    histogram!(REQUEST_DURATION, "kind" => kind.label(), "lane" => kind.lane())
        .record(elapsed.as_secs_f64());
    counter!(REQUESTS_TOTAL, "kind" => kind.label(), "code" => code_label(code)).increment(1);
}

/// Publishes the size of the session cache.
pub fn set_sessions(sessions: usize, bytes: u64) {
    gauge!(SESSIONS).set(sessions as f64);
    gauge!(SESSION_CACHE_BYTES).set(bytes as f64);
}

/// Counts a `Segment` stream opening (+1) or closing (-1).
pub fn add_active_streams(delta: f64) {
    gauge!(ACTIVE_STREAMS).increment(delta);
}

/// Counts sessions dropped from the cache; `reason` is `capacity` or `expired`.
pub fn record_session_evictions(reason: &'static str, sessions: usize) {
    counter!(SESSION_EVICTIONS, "reason" => reason).increment(sessions as u64);
}

/// Counts a job whose model code panicked.
pub fn record_worker_panic(job: &'static str) {
    counter!(WORKER_PANICS, "job" => job).increment(1);
}

/// Counts a model rebuilt by a worker after a panic.
pub fn record_worker_restart() {
    counter!(WORKER_RESTARTS).increment(1);
}

/// Counts a request refused for a missing or wrong bearer token.
pub fn record_unauthenticated() {
    counter!(UNAUTHENTICATED).increment(1);
}

/// Sets the number of workers with a loaded model.
pub fn set_workers_ready(workers: usize) {
    gauge!(WORKERS_READY).set(workers as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_increasing_and_span_ms_to_minutes() {
        assert!(LATENCY_BUCKETS_SECONDS.windows(2).all(|w| w[0] < w[1]));
        const { assert!(LATENCY_BUCKETS_SECONDS[0] <= 0.001) };
        const { assert!(LATENCY_BUCKETS_SECONDS[LATENCY_BUCKETS_SECONDS.len() - 1] >= 60.0) };
    }

    #[test]
    fn recorder_renders_names_and_buckets() {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS_SECONDS)
            .expect("buckets")
            .build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            record_encode(Duration::from_millis(1500));
            record_request(RequestKind::Prompt, Code::Ok, Duration::from_millis(3));
            record_request(
                RequestKind::Prompt,
                Code::InvalidArgument,
                Duration::from_millis(1),
            );
            set_sessions(2, 8 << 20);
            record_queue_wait(Lane::Decode, Duration::from_millis(2));
            record_superseded(3);
        });
        let text = handle.render();
        assert!(text.contains("mobilesam_encode_duration_seconds_bucket{le=\"2.5\"} 1"));
        assert!(text.contains("mobilesam_encode_duration_seconds_count 1"));
        assert!(text.contains("mobilesam_requests_total{kind=\"prompt\",code=\"OK\"} 1"));
        assert!(
            text.contains("mobilesam_requests_total{kind=\"prompt\",code=\"INVALID_ARGUMENT\"} 1")
        );
        assert!(text.contains("mobilesam_session_cache_bytes 8388608"));
        assert!(text.contains(
            "mobilesam_request_duration_seconds_count{kind=\"prompt\",lane=\"decode\"} 2"
        ));
        assert!(
            text.contains("mobilesam_queue_wait_seconds_count{queue=\"decode\",lane=\"decode\"} 1")
        );
        assert!(text.contains("mobilesam_prompts_superseded_total 3"));
    }
}
