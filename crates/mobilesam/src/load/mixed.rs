//! The mixed scenario of `mobilesam load` (`--uploaders K --clickers M`): do clicks stay
//! fast while other clients upload images?
//!
//! Four phases of `--duration` each (the last two are short), on one machine, one after
//! the other so that each sees the same server:
//!
//! 1. idle: M clickers, each on its own stream resuming one cached session, click (one
//!    prompt in flight each);
//! 2. latest wins: on one stream, bursts of 20 prompts sent without waiting, every one
//!    with `supersede_pending`; the time from the first send to the last answer;
//! 3. uploads alone: K uploaders, each on its own stream, send `SetImage` with a new image
//!    (a variant of the image, so no cache can answer it) as soon as the previous is ready;
//! 4. mixed: the uploaders and the clickers at once.
//!
//! It reports click percentiles idle and mixed and their ratios, and the encode throughput
//! alone and mixed.

use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use image::{DynamicImage, ImageFormat, Rgba};
use mobilesam_proto::v1;
use mobilesam_proto::v1::segment_request::Request;
use mobilesam_proto::v1::segment_response::Response;
use serde::Serialize;
use tonic::{Code, Status};

use super::conversation::Conversation;
use super::driver::{self, Plan, Tally};
use super::latency::{self, Percentiles};

/// Prompts per latest-wins burst.
pub const BURST: usize = 20;
/// Latest-wins bursts measured.
const BURSTS: usize = 10;
/// Image variants the uploaders cycle through.
const VARIANTS: usize = 8;

/// What the mixed scenario reports.
#[derive(Debug, Serialize)]
pub struct MixedReport {
    /// Streams uploading images.
    pub uploaders: usize,
    /// Streams clicking.
    pub clickers: usize,
    /// Length of the idle, uploads-alone and mixed phases, seconds.
    pub phase_s: f64,
    /// Least time between one clicker's clicks, ms (0: back to back).
    pub click_interval_ms: f64,
    /// Click round trips with nobody uploading.
    pub idle_click_ms: Option<Percentiles>,
    /// Click round trips while the uploaders upload.
    pub mixed_click_ms: Option<Percentiles>,
    /// Mixed over idle, per percentile.
    pub click_ratio: Option<Ratios>,
    /// Mixed click p99 over idle click p50 (the target: at most 2).
    pub mixed_p99_over_idle_p50: Option<f64>,
    /// Images encoded per second with nobody clicking.
    pub encodes_per_s_alone: f64,
    /// Images encoded per second while the clickers click.
    pub encodes_per_s_mixed: f64,
    /// Mixed over alone (the target: at least 0.75).
    pub encode_ratio: Option<f64>,
    /// Bursts of 20 superseding prompts: first send to last answer.
    pub supersede_burst_ms: Option<Percentiles>,
    /// Median burst over idle click p50 (the target: at most 3).
    pub supersede_over_idle_p50: Option<f64>,
    /// Prompts of the bursts answered ABORTED (superseded).
    pub superseded: u64,
    /// Errors by gRPC code, clicks and uploads (ABORTED of the bursts excluded).
    pub errors: std::collections::BTreeMap<String, u64>,
}

/// Ratios of percentiles.
#[derive(Debug, Serialize)]
pub struct Ratios {
    /// p50 over p50.
    pub p50: f64,
    /// p95 over p95.
    pub p95: f64,
    /// p99 over p99.
    pub p99: f64,
}

impl MixedReport {
    /// The report as text.
    pub fn text(&self) -> String {
        let p = |p: &Option<Percentiles>| {
            p.map_or_else(
                || "no samples".to_string(),
                |p| {
                    format!(
                        "p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms ({} clicks)",
                        p.p50, p.p95, p.p99, p.count
                    )
                },
            )
        };
        let opt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"));
        let mut lines = vec![
            format!(
                "mixed scenario: {} uploaders, {} clickers ({}), {:.0} s per phase",
                self.uploaders,
                self.clickers,
                if self.click_interval_ms > 0.0 {
                    format!("one click per {:.0} ms at most", self.click_interval_ms)
                } else {
                    "clicks back to back".to_string()
                },
                self.phase_s
            ),
            format!("clicks idle:   {}", p(&self.idle_click_ms)),
            format!("clicks mixed:  {}", p(&self.mixed_click_ms)),
        ];
        if let Some(r) = &self.click_ratio {
            lines.push(format!(
                "mixed / idle:  p50 x{:.2}, p95 x{:.2}, p99 x{:.2}; mixed p99 / idle p50 x{}",
                r.p50,
                r.p95,
                r.p99,
                opt(self.mixed_p99_over_idle_p50)
            ));
        }
        lines.push(format!(
            "encodes/s:     alone {:.2}, mixed {:.2}, ratio {}",
            self.encodes_per_s_alone,
            self.encodes_per_s_mixed,
            opt(self.encode_ratio)
        ));
        lines.push(format!(
            "{BURST} superseding prompts, first send to last answer: {}; median / idle p50 x{}; {} superseded",
            p(&self.supersede_burst_ms).replace("clicks", "bursts"),
            opt(self.supersede_over_idle_p50),
            self.superseded
        ));
        if !self.errors.is_empty() {
            lines.push(format!("errors: {:?}", self.errors));
        }
        lines.join("\n")
    }
}

/// Runs the four phases against the server of `plan`, whose session `session_id` holds
/// the image.
pub async fn run(
    plan: &Plan,
    session_id: &str,
    uploaders: usize,
    clickers: usize,
    phase: Duration,
) -> Result<MixedReport> {
    let variants = Arc::new(image_variants(&plan.image)?);
    let mut errors = Tally::default();

    let idle = clicks(plan, session_id, clickers, Instant::now() + phase).await;
    let (bursts, superseded) = supersede_bursts(plan, session_id, &mut errors).await;
    let (alone, alone_s) = uploads(plan, &variants, uploaders, phase).await;
    let mixed_deadline = Instant::now() + phase;
    let (mixed_clicks, (mixed_uploads, mixed_s)) = tokio::join!(
        clicks(plan, session_id, clickers, mixed_deadline),
        uploads(plan, &variants, uploaders, phase),
    );

    for tally in [&idle, &mixed_clicks, &alone, &mixed_uploads] {
        for (code, n) in &tally.errors {
            *errors.errors.entry(code.clone()).or_default() += n;
        }
    }
    let idle_ms = latency::percentiles(&idle.ok);
    let mixed_ms = latency::percentiles(&mixed_clicks.ok);
    let bursts_ms = latency::percentiles(&bursts);
    let per_s = |t: &Tally, s: f64| if s > 0.0 { t.ok.len() as f64 / s } else { 0.0 };
    let (alone_rate, mixed_rate) = (per_s(&alone, alone_s), per_s(&mixed_uploads, mixed_s));
    Ok(MixedReport {
        uploaders,
        clickers,
        phase_s: phase.as_secs_f64(),
        click_interval_ms: plan.prompt_interval.as_secs_f64() * 1e3,
        idle_click_ms: idle_ms,
        mixed_click_ms: mixed_ms,
        click_ratio: idle_ms.zip(mixed_ms).map(|(i, m)| Ratios {
            p50: m.p50 / i.p50,
            p95: m.p95 / i.p95,
            p99: m.p99 / i.p99,
        }),
        mixed_p99_over_idle_p50: idle_ms.zip(mixed_ms).map(|(i, m)| m.p99 / i.p50),
        encodes_per_s_alone: alone_rate,
        encodes_per_s_mixed: mixed_rate,
        encode_ratio: (alone_rate > 0.0).then(|| mixed_rate / alone_rate),
        supersede_burst_ms: bursts_ms,
        supersede_over_idle_p50: idle_ms.zip(bursts_ms).map(|(i, b)| b.p50 / i.p50),
        superseded,
        errors: errors.errors,
    })
}

/// `clickers` streams resume the session and click until `deadline`.
async fn clicks(plan: &Plan, session_id: &str, clickers: usize, deadline: Instant) -> Tally {
    let mut plan = plan.clone();
    plan.streams = clickers;
    plan.prompts = usize::MAX;
    driver::load_phase(&plan, session_id, deadline).await.0
}

/// `uploaders` streams send new images for `phase`; the tally's `ok` holds one entry per
/// image encoded. Returns it and the phase's wall time in seconds.
async fn uploads(
    plan: &Plan,
    variants: &Arc<Vec<Vec<u8>>>,
    uploaders: usize,
    phase: Duration,
) -> (Tally, f64) {
    let start = Instant::now();
    let deadline = start + phase;
    let tasks: Vec<_> = (0..uploaders)
        .map(|u| {
            let (uri, timeout, variants) =
                (plan.uri.clone(), plan.answer_timeout, Arc::clone(variants));
            tokio::spawn(async move { upload_stream(&uri, timeout, &variants, u, deadline).await })
        })
        .collect();
    let mut total = Tally::default();
    for task in tasks {
        let tally = task.await.unwrap_or_else(|_| {
            let mut t = Tally::default();
            t.count_error(Code::Internal);
            t
        });
        total.sent += tally.sent;
        total.ok.extend(tally.ok);
        for (code, n) in tally.errors {
            *total.errors.entry(code).or_default() += n;
        }
    }
    // Encodes still running at the deadline finish after it: count the time they took.
    (total, start.elapsed().as_secs_f64())
}

async fn upload_stream(
    uri: &str,
    timeout: Duration,
    variants: &[Vec<u8>],
    uploader: usize,
    deadline: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut conversation = match Conversation::open(uri, timeout).await {
        Ok(c) => c,
        Err(status) => {
            tally.count_error(status.code());
            return tally;
        }
    };
    let mut i = uploader;
    while Instant::now() < deadline {
        let request = Request::SetImage(v1::SetImage {
            image: variants[i % variants.len()].clone(),
            session_id: String::new(),
            ..Default::default()
        });
        i += 1;
        tally.sent += 1;
        let start = Instant::now();
        match conversation.ask(request).await {
            Ok(Response::ImageReady(_)) => tally.ok.push(start.elapsed()),
            Ok(Response::Error(e)) => tally.count_error(Code::from_i32(e.code)),
            Ok(_) => tally.count_error(Code::Internal),
            Err(status) => {
                tally.count_error(status.code());
                break;
            }
        }
    }
    tally
}

/// Bursts of [`BURST`] superseding prompts on one stream: each burst's time from the first
/// send to the last answer, and the prompts answered ABORTED.
async fn supersede_bursts(
    plan: &Plan,
    session_id: &str,
    errors: &mut Tally,
) -> (Vec<Duration>, u64) {
    let mut times = Vec::new();
    let mut superseded = 0;
    let mut conversation = match driver::resume(plan, session_id).await {
        Ok(c) => c,
        Err(status) => {
            errors.count_error(status.code());
            return (times, 0);
        }
    };
    for burst in 0..BURSTS {
        match one_burst(&mut conversation, plan, burst as u64 * BURST as u64).await {
            Ok((elapsed, aborted)) => {
                times.push(elapsed);
                superseded += aborted;
            }
            Err(status) => {
                errors.count_error(status.code());
                break;
            }
        }
    }
    (times, superseded)
}

async fn one_burst(
    conversation: &mut Conversation,
    plan: &Plan,
    first_id: u64,
) -> Result<(Duration, u64), Status> {
    let start = Instant::now();
    for i in 0..BURST {
        let mut prompt = plan.prompt.clone();
        prompt.request_id = first_id + i as u64 + 1;
        prompt.supersede_pending = true;
        // A point that moves, as a hover preview's would.
        if let Some(point) = prompt
            .objects
            .first_mut()
            .and_then(|o| o.points.first_mut())
        {
            point.x += i as f32;
        }
        conversation.send(Request::Prompt(prompt)).await?;
    }
    let mut aborted = 0;
    for _ in 0..BURST {
        match conversation.receive().await? {
            Response::Masks(_) => {}
            Response::Error(e) if e.code == Code::Aborted as i32 => aborted += 1,
            Response::Error(e) => return Err(Status::new(Code::from_i32(e.code), e.message)),
            other => return Err(Status::internal(format!("unexpected answer {other:?}"))),
        }
    }
    Ok((start.elapsed(), aborted))
}

/// Copies of the image that differ in one pixel, as PNG: every upload is a new image to
/// the server (no content-addressed cache can answer it).
fn image_variants(bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
    let image = image::load_from_memory(bytes).context("cannot decode the image")?;
    let mut rgba = image.to_rgba8();
    (0..VARIANTS)
        .map(|i| {
            rgba.put_pixel(0, 0, Rgba([i as u8, 255 - i as u8, 7, 255]));
            let mut out = Cursor::new(Vec::new());
            DynamicImage::ImageRgba8(rgba.clone())
                .write_to(&mut out, ImageFormat::Png)
                .context("cannot encode an image variant")?;
            Ok(out.into_inner())
        })
        .collect()
}
