//! Opt-in wall-time accounting per named step of the CPU paths (for performance work and
//! the README's per-stage table): off unless [`enable`] was called, and then one mutex
//! lock per step. Every step is also a cooperative yield point ([`crate::yield_point`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ENABLED: AtomicBool = AtomicBool::new(false);
static TOTALS: Mutex<Vec<(&'static str, Duration, u64)>> = Mutex::new(Vec::new());

/// Starts (or stops) recording step times.
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// The steps recorded so far, in order of first appearance: (name, total time, count);
/// clears them.
pub fn take() -> Vec<(&'static str, Duration, u64)> {
    TOTALS
        .lock()
        .map(|mut t| std::mem::take(&mut *t))
        .unwrap_or_default()
}

/// Times `f` as step `name` when recording is on; first gives way at a yield point.
pub fn step<R>(name: &'static str, f: impl FnOnce() -> R) -> R {
    crate::yield_point::reached();
    if !ENABLED.load(Ordering::Relaxed) {
        return f();
    }
    let start = Instant::now();
    let out = f();
    let elapsed = start.elapsed();
    if let Ok(mut totals) = TOTALS.lock() {
        match totals.iter_mut().find(|(n, _, _)| *n == name) {
            Some(entry) => {
                entry.1 += elapsed;
                entry.2 += 1;
            }
            None => totals.push((name, elapsed, 1)),
        }
    }
    out
}
