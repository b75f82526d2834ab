//! `mobilesam load --conformance SCENARIO`: the Rust runner of the cross-client conformance
//! suite (tests/conformance/README.md). Runs every step of the scenario in order against a
//! running server, over this crate's tonic client, and writes the results file that the
//! comparator checks against the other clients' (byte-identical RLE, float bits, codes).
//!
//! A step that fails is recorded and the run goes on; the runner fails (one line, exit 1)
//! only when it cannot run at all: a malformed scenario, an unwritable results file.

mod failure;
mod prompt;
mod results;
mod scenario;
mod session;
mod steps;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use results::{Outcome, ResultsFile, StepEntry};
use scenario::Scenario;
use steps::Runner;

/// Longest wait for any one answer (the Python runner's too).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs the scenario at `scenario_path` against the server at `uri` (`http://host:port`)
/// and writes the results file `out`.
pub fn run(scenario_path: &Path, uri: &str, out: &Path) -> Result<()> {
    let scenario = Scenario::load(scenario_path)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut runner = Runner::new(uri.to_string(), scenario.dir.clone(), ANSWER_TIMEOUT);
    let mut entries = Vec::with_capacity(scenario.steps.len());
    for step in &scenario.steps {
        let started = Instant::now();
        let outcome = Outcome::from(runtime.block_on(runner.run(&step.op)));
        let shown = match &outcome {
            Outcome::Done { .. } => "ok".to_string(),
            Outcome::Failed { error, message } => format!("{error} ({message})"),
        };
        eprintln!(
            "rust: {}: {shown} ({:.2} s)",
            step.name,
            started.elapsed().as_secs_f64()
        );
        entries.push(StepEntry {
            name: step.name.clone(),
            op: step.op.name(),
            outcome,
        });
    }
    // Streams still open are dropped inside the runtime that drives them.
    runtime.block_on(async move { drop(runner) });
    let results = ResultsFile {
        format: results::FORMAT,
        client: "rust",
        client_version: env!("CARGO_PKG_VERSION"),
        scenario: scenario.file_name,
        steps: entries,
    };
    write(out, &results)
}

/// Writes the results file, making its directory when needed.
fn write(out: &Path, results: &ResultsFile) -> Result<()> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    }
    let mut text = serde_json::to_string_pretty(results).context("cannot write the results")?;
    text.push('\n');
    std::fs::write(out, text).with_context(|| format!("cannot write {}", out.display()))
}
