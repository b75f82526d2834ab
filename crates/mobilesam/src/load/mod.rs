//! `mobilesam load`: K concurrent streams x M prompts against a running server, bounded in
//! time; throughput, latency percentiles, errors per gRPC code, the round trip against the
//! in-process decode, session memory and server RSS. With `--conformance`, it runs the
//! cross-client conformance scenario instead (`conformance`).

mod conformance;
mod conversation;
mod driver;
mod in_process;
mod latency;
mod mixed;
mod report;
mod server_probe;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mobilesam_model::image::{decode_image, DEFAULT_MAX_IMAGE_PIXELS};
use mobilesam_model::{DecodeOptions, ObjectPrompt, Point};
use mobilesam_proto::v1;

use driver::{Plan, Tally};
use in_process::InProcess;
use mobilesam_server::metrics::code_label;
use report::{Report, RoundTrip, ServerMemory, SessionMemory};

/// Arguments of `mobilesam load`: a load run (--image, required), the mixed scenario
/// (--image --uploaders K) or a conformance run (--conformance SCENARIO --out FILE).
#[derive(Debug, clap::Args)]
#[command(after_help = "Modes:\n  \
    load run:     mobilesam load --addr ADDR --image FILE [--streams K --prompts M ...]\n  \
    mixed:        mobilesam load --addr ADDR --image FILE --uploaders K [--clickers M ...]\n  \
    conformance:  mobilesam load --addr ADDR --conformance SCENARIO --out FILE\n\n\
    The conformance run takes only --addr, --conformance and --out \
    (tests/conformance/README.md).")]
pub struct LoadArgs {
    /// The server's gRPC address: host:port or http://host:port.
    #[arg(long, value_name = "ADDR")]
    pub addr: String,

    /// Run the cross-client conformance scenario (tests/conformance/scenario.json) instead
    /// of a load run: every step in order, results written to --out for
    /// tests/conformance/compare.py. Steps that fail are recorded; exit 0 once the file is
    /// written. Each answer may take up to 300 s.
    #[arg(
        long,
        value_name = "SCENARIO",
        requires = "out",
        conflicts_with_all = ["image", "checkpoint", "metrics_addr", "server_pid", "uploaders", "json"],
        help_heading = "Conformance"
    )]
    pub conformance: Option<PathBuf>,

    /// The results file of --conformance (its directory is made when missing).
    #[arg(
        long,
        value_name = "FILE",
        requires = "conformance",
        help_heading = "Conformance"
    )]
    pub out: Option<PathBuf>,

    /// Concurrent streams (each its own connection) in the load phase.
    #[arg(long, value_name = "K", default_value_t = 4)]
    pub streams: usize,

    /// Prompts per stream in the load phase (one in flight per stream).
    #[arg(long, value_name = "M", default_value_t = 50)]
    pub prompts: usize,

    /// Stop sending prompts this long (e.g. 30s, 2m) after the image is ready; prompts in
    /// flight are still answered.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub duration: Duration,

    /// The image: encoded once, then every stream resumes its session. Required unless
    /// --conformance is given.
    #[arg(long, value_name = "FILE", required_unless_present = "conformance")]
    pub image: Option<PathBuf>,

    /// Ask for three candidate masks per prompt instead of one.
    #[arg(long)]
    pub multimask: bool,

    /// Single prompts (one stream, one in flight) timed before the load phase, each
    /// followed by the same decode in-process when --checkpoint is given.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub round_trips: usize,

    /// The server's weights, loaded here too to time the same decode in-process (the
    /// round trip's overhead); without it no overhead is reported.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,

    /// The server's metrics listener (host:port), for the session memory gauges.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// The server's process id, for its resident memory (Linux /proc).
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,

    /// Longest wait for any one answer.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub answer_timeout: Duration,

    /// The mixed scenario: K streams upload new images continuously while --clickers
    /// streams click; reports clicks idle and mixed, encode throughput alone and mixed,
    /// and bursts of superseding prompts. Each phase lasts --duration. 0: the plain load
    /// run.
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub uploaders: usize,

    /// Streams that click in the mixed scenario (one prompt in flight each).
    #[arg(long, value_name = "M", default_value_t = 1)]
    pub clickers: usize,

    /// Least time between the starts of one stream's prompts: a user's pace (e.g. 500ms
    /// for two clicks a second). 0: each prompt is sent as soon as the previous answer is
    /// in. Applies to the load run and to the mixed scenario's clickers.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = humantime::parse_duration)]
    pub click_interval: Duration,

    /// Print the report as JSON; the last line is one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs `mobilesam load`.
pub fn run(args: LoadArgs) -> Result<()> {
    if let Some(scenario) = &args.conformance {
        let out = args
            .out
            .as_deref()
            .context("--conformance needs --out FILE")?;
        return conformance::run(scenario, &uri(&args.addr), out);
    }
    if args.streams == 0 {
        bail!("--streams must be at least 1");
    }
    let image_path = args.image.as_deref().context("--image is required")?;
    let image_bytes = std::fs::read(image_path)
        .with_context(|| format!("cannot read {}", image_path.display()))?;
    let image = decode_image(&image_bytes, DEFAULT_MAX_IMAGE_PIXELS)
        .with_context(|| format!("cannot decode {}", image_path.display()))?;
    let (x, y) = (image.width() as f32 / 2.0, image.height() as f32 / 2.0);
    let idle = args
        .server_pid
        .map(server_probe::memory)
        .transpose()
        .context("cannot read the server's memory")?;
    let plan = Plan {
        uri: uri(&args.addr),
        image: image_bytes,
        prompt: v1::Prompt {
            request_id: 0,
            objects: vec![v1::ObjectPrompt {
                points: vec![v1::Point { x, y, label: 1 }],
                r#box: None,
                mask_input: Vec::new(),
                ..Default::default()
            }],
            multimask_output: args.multimask,
            return_low_res_logits: false,
            ..Default::default()
        },
        streams: args.streams,
        prompts: args.prompts,
        answer_timeout: args.answer_timeout,
        prompt_interval: args.click_interval,
    };
    let in_process = match &args.checkpoint {
        Some(path) => {
            let prompt = vec![ObjectPrompt {
                points: vec![Point { x, y, label: 1 }],
                ..ObjectPrompt::default()
            }];
            let options = DecodeOptions {
                multimask: args.multimask,
                return_low_res_logits: false,
                return_polygons: false,
            };
            Some(InProcess::new(path, &image, prompt, options)?)
        }
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let failed = |s: tonic::Status| anyhow::anyhow!("{}: {}", code_label(s.code()), s.message());
    let (mut first, ready) = runtime
        .block_on(driver::open_session(&plan))
        .map_err(failed)
        .context("cannot open a session")?;
    if args.uploaders > 0 {
        drop(first);
        let report = runtime.block_on(mixed::run(
            &plan,
            &ready.session_id,
            args.uploaders,
            args.clickers.max(1),
            args.duration,
        ))?;
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            println!("{}", report.text());
        }
        return Ok(());
    }
    let deadline = Instant::now() + args.duration;

    // Round trips, each followed by the same decode in this process: interleaved, so both
    // see the same machine.
    let mut rt = Tally::default();
    let mut in_process_times = Vec::new();
    for i in 0..args.round_trips {
        if Instant::now() >= deadline {
            break;
        }
        if let Err(status) =
            runtime.block_on(driver::prompt(&mut first, &plan, i as u64 + 1, &mut rt))
        {
            rt.count_error(status.code());
            break;
        }
        if let Some(model) = &in_process {
            in_process_times.push(model.time_one()?);
        }
    }
    drop(first);
    let (load, load_elapsed) =
        runtime.block_on(driver::load_phase(&plan, &ready.session_id, deadline));

    let session = args.metrics_addr.map(session_memory).transpose()?;
    let after = args
        .server_pid
        .map(server_probe::memory)
        .transpose()
        .context("cannot read the server's memory")?;

    let grpc_p50 = latency::percentiles(&rt.ok).map(|p| p.p50);
    let in_process_p50 = latency::percentiles(&in_process_times).map(|p| p.p50);
    let transport: Vec<Duration> = rt
        .ok
        .iter()
        .zip(&rt.server_decode_ms)
        .map(|(total, decode)| total.saturating_sub(Duration::from_secs_f64(decode.max(0.0) / 1e3)))
        .collect();
    let mut errors = load.errors.clone();
    for (code, n) in &rt.errors {
        *errors.entry(code.clone()).or_default() += n;
    }
    let elapsed_s = load_elapsed.as_secs_f64();
    let ok = load.ok.len() as u64;
    let report = Report {
        streams: args.streams,
        prompts_per_stream: args.prompts,
        sent: load.sent,
        ok,
        errors,
        elapsed_s,
        throughput_per_s: if elapsed_s > 0.0 {
            ok as f64 / elapsed_s
        } else {
            0.0
        },
        latency_ms: latency::percentiles(&load.ok),
        error_latency_ms: latency::percentiles(&load.refused),
        encode_ms: ready.encode_ms,
        round_trip: RoundTrip {
            prompts: rt.ok.len(),
            grpc_p50_ms: grpc_p50,
            server_decode_p50_ms: median(&rt.server_decode_ms),
            transport_p50_ms: latency::percentiles(&transport).map(|p| p.p50),
            in_process_p50_ms: in_process_p50,
            overhead_p50_ms: grpc_p50.zip(in_process_p50).map(|(g, i)| g - i),
        },
        session,
        server_memory: idle
            .zip(after)
            .map(|(idle, after)| ServerMemory { idle, after }),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", report.text());
    }
    Ok(())
}

/// `host:port` becomes `http://host:port`; a URI with a scheme is kept.
fn uri(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len().saturating_sub(1) / 2).copied()
}

fn session_memory(addr: SocketAddr) -> Result<SessionMemory> {
    let metrics = server_probe::scrape(addr)?;
    let gauge = |name: &str| {
        metrics
            .get(name)
            .map(|v| *v as u64)
            .with_context(|| format!("the metrics page of {addr} has no {name}"))
    };
    let sessions = gauge(server_probe::SESSIONS)?;
    let cache_bytes = gauge(server_probe::SESSION_CACHE_BYTES)?;
    Ok(SessionMemory {
        sessions,
        cache_bytes,
        bytes_per_session: cache_bytes.checked_div(sessions),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_get_a_scheme() {
        assert_eq!(uri("127.0.0.1:50051"), "http://127.0.0.1:50051");
        assert_eq!(uri("https://h:1"), "https://h:1");
    }

    #[test]
    fn median_of_values() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0]), Some(1.0));
        assert_eq!(median(&[]), None);
    }
}
