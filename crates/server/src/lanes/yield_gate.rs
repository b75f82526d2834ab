//! Interaction first, cooperatively: background work pauses at the model's yield points
//! while work of a higher lane runs.
//!
//! Thread priorities ([`crate::lanes::priority`]) decide who gets a contended core, but a decode
//! still shares the cores, caches and memory bandwidth with an encode running beside it
//! (a click took about 1.5x longer while encodes ran at `batch:10`). The gate removes the
//! contention instead: every running decode is counted, and an encode reaching a yield
//! point between two steps of the model ([`mobilesam_kernels::yield_point`]) waits until no
//! decode runs. A generation waits likewise while decodes or encodes run.
//!
//! Pauses are for interaction, not for a saturated decode lane. A decode that starts
//! after the decode lane was idle for [`MIN_IDLE_GAP`] pauses background work (a click),
//! and so does every decode queued while it ran (a burst of prompts). Prompts that arrive
//! back to back (a client that sends its next prompt the moment an answer arrives) keep
//! the decode lane busy all the time; pausing encodes for them would stop uploads, so they
//! share the cores by the lanes' OS priorities instead.
//!
//! A pause is bounded so background work always progresses: one pause lasts at most
//! `max_pause`, and after a pause the same thread runs at least twice as long as it paused
//! before it pauses again (so background work keeps two thirds of the wall time, competing
//! for the CPU as without the gate). A click every 250 ms (a decode of ~60 ms on 2 loaded
//! cores) pauses the encodes for every click.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use mobilesam_kernels::yield_point::YieldHook;

use crate::lanes::Lane;
use crate::metrics;

/// Default longest pause of background work at one yield point.
pub const DEFAULT_MAX_PAUSE: Duration = Duration::from_millis(250);

/// How long the decode lane must have been idle for the next decode to pause background
/// work: far longer than the round trip between two back-to-back prompts of one client,
/// far shorter than a person's time between two clicks.
pub const MIN_IDLE_GAP: Duration = Duration::from_millis(20);

/// `decodes_idle_since` before the first decode ended.
const NEVER: u64 = u64::MAX;

/// Counts the running work of the interactive lanes; background lanes wait on it.
pub struct YieldGate {
    decodes: AtomicUsize,
    encodes: AtomicUsize,
    /// Whether the running decodes pause background work (they followed an idle lane).
    decodes_pause_others: AtomicBool,
    /// When the decode lane last became idle, in nanoseconds since `epoch`.
    decodes_idle_since: AtomicU64,
    epoch: Instant,
    changed: Mutex<()>,
    idle: Condvar,
    max_pause: Duration,
}

/// Marks one decode or encode as running until dropped.
pub struct Running<'a> {
    gate: &'a YieldGate,
    counter: &'a AtomicUsize,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let was = self.counter.fetch_sub(1, Ordering::AcqRel);
        if was == 1 && std::ptr::eq(self.counter, &self.gate.decodes) {
            let now = self.gate.nanos_at(Instant::now());
            self.gate.decodes_idle_since.store(now, Ordering::Release);
        }
        // Taking the lock orders this wake-up after a waiter's check of the counters.
        drop(self.gate.changed.lock().unwrap_or_else(|e| e.into_inner()));
        self.gate.idle.notify_all();
    }
}

/// How much longer than its last pause a thread runs before it may pause again.
const RUN_PER_PAUSED: u32 = 2;

std::thread_local! {
    /// When the calling thread may pause again (it must first run [`RUN_PER_PAUSED`] times
    /// as long as it paused).
    static NEXT_PAUSE_ALLOWED: Cell<Option<Instant>> = const { Cell::new(None) };
}

impl YieldGate {
    /// A gate whose pauses last at most `max_pause` (zero: background work never pauses).
    pub fn new(max_pause: Duration) -> Self {
        Self {
            decodes: AtomicUsize::new(0),
            encodes: AtomicUsize::new(0),
            decodes_pause_others: AtomicBool::new(false),
            decodes_idle_since: AtomicU64::new(NEVER),
            epoch: Instant::now(),
            changed: Mutex::new(()),
            idle: Condvar::new(),
            max_pause,
        }
    }

    /// Marks a prompt decode, asked for at `queued_at`, as running. A decode that starts
    /// on an idle decode lane decides whether the decodes pause background work: yes
    /// after an idle gap, and as the decodes before it when it was queued while they ran.
    pub fn decoding(&self, queued_at: Instant) -> Running<'_> {
        if self.decodes.fetch_add(1, Ordering::AcqRel) == 0 {
            let idle_since = self.decodes_idle_since.load(Ordering::Acquire);
            let queued = self.nanos_at(queued_at);
            let same_burst = idle_since != NEVER && queued <= idle_since;
            if !same_burst {
                let idle_for = self.nanos_at(Instant::now()).saturating_sub(idle_since);
                let pauses = idle_since == NEVER || idle_for >= MIN_IDLE_GAP.as_nanos() as u64;
                self.decodes_pause_others.store(pauses, Ordering::Release);
            }
        }
        Running {
            gate: self,
            counter: &self.decodes,
        }
    }

    /// Marks an interactive image encode as running.
    pub fn encoding(&self) -> Running<'_> {
        self.encodes.fetch_add(1, Ordering::AcqRel);
        Running {
            gate: self,
            counter: &self.encodes,
        }
    }

    /// The hook that `lane`'s threads run at each yield point: encodes give way to
    /// decodes, generations to decodes and encodes. `None` for the decode lane, and when
    /// pauses are off.
    pub fn hook_for(self: &Arc<Self>, lane: Lane) -> Option<YieldHook> {
        if self.max_pause.is_zero() {
            return None;
        }
        let gate = Arc::clone(self);
        match lane {
            Lane::Decode => None,
            Lane::Encode => Some(Arc::new(move || {
                gate.give_way(lane, |g| g.decodes_running())
            })),
            Lane::Generate => Some(Arc::new(move || {
                gate.give_way(lane, |g| g.decodes_running() || g.encodes_running())
            })),
        }
    }

    /// Whether decodes run that background work gives way to.
    fn decodes_running(&self) -> bool {
        self.decodes.load(Ordering::Acquire) > 0
            && self.decodes_pause_others.load(Ordering::Acquire)
    }

    fn nanos_at(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(NEVER - 1)
    }

    fn encodes_running(&self) -> bool {
        self.encodes.load(Ordering::Acquire) > 0
    }

    /// Waits while `busy` holds, within the pause bounds; records the pause.
    fn give_way(&self, lane: Lane, busy: impl Fn(&Self) -> bool) {
        if !busy(self) {
            return;
        }
        let start = Instant::now();
        if NEXT_PAUSE_ALLOWED
            .with(Cell::get)
            .is_some_and(|t| start < t)
        {
            return;
        }
        let deadline = start + self.max_pause;
        let mut guard = self.changed.lock().unwrap_or_else(|e| e.into_inner());
        while busy(self) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            guard = match self.idle.wait_timeout(guard, deadline - now) {
                Ok((guard, _)) => guard,
                Err(e) => e.into_inner().0,
            };
        }
        drop(guard);
        let end = Instant::now();
        let paused = end - start;
        NEXT_PAUSE_ALLOWED.with(|t| t.set(Some(end + paused * RUN_PER_PAUSED)));
        metrics::record_yield_pause(lane, paused);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_hook(gate: &Arc<YieldGate>, lane: Lane) -> Duration {
        let hook = gate.hook_for(lane).expect("a background lane has a hook");
        let start = Instant::now();
        hook();
        start.elapsed()
    }

    #[test]
    fn nothing_running_means_no_pause_and_decodes_never_pause() {
        let gate = Arc::new(YieldGate::new(Duration::from_secs(5)));
        assert!(run_hook(&gate, Lane::Encode) < Duration::from_millis(50));
        assert!(run_hook(&gate, Lane::Generate) < Duration::from_millis(50));
        assert!(gate.hook_for(Lane::Decode).is_none());
        assert!(Arc::new(YieldGate::new(Duration::ZERO))
            .hook_for(Lane::Encode)
            .is_none());
    }

    #[test]
    fn an_encode_waits_until_the_running_decode_ends() {
        let gate = Arc::new(YieldGate::new(Duration::from_secs(10)));
        let decode_ends = {
            let gate = Arc::clone(&gate);
            let (started_tx, started_rx) = std::sync::mpsc::channel();
            let thread = std::thread::spawn(move || {
                let running = gate.decoding(Instant::now());
                started_tx.send(()).expect("send");
                std::thread::sleep(Duration::from_millis(200));
                let ended = Instant::now();
                drop(running);
                ended
            });
            started_rx.recv().expect("decode started");
            thread
        };
        let hook = gate.hook_for(Lane::Encode).expect("hook");
        hook();
        let resumed = Instant::now();
        let ended = decode_ends.join().expect("decode thread");
        assert!(
            resumed >= ended,
            "the encode resumed before the decode ended"
        );
        assert!(resumed - ended < Duration::from_secs(2));
    }

    #[test]
    fn generations_give_way_to_encodes_but_encodes_do_not() {
        let gate = Arc::new(YieldGate::new(Duration::from_millis(150)));
        let _encode = gate.encoding();
        assert!(run_hook(&gate, Lane::Encode) < Duration::from_millis(100));
        assert!(run_hook(&gate, Lane::Generate) >= Duration::from_millis(150));
    }

    /// Decodes that follow each other with no idle gap (a saturated decode lane) do not
    /// pause encodes; the next decode after an idle gap does.
    #[test]
    fn back_to_back_decodes_do_not_pause_but_a_click_after_a_gap_does() {
        let gate = Arc::new(YieldGate::new(Duration::from_millis(200)));
        drop(gate.decoding(Instant::now()));
        let next = gate.decoding(Instant::now());
        assert!(run_hook(&gate, Lane::Encode) < Duration::from_millis(100));
        drop(next);
        std::thread::sleep(MIN_IDLE_GAP * 2);
        let click = gate.decoding(Instant::now());
        let queued_during_the_click = Instant::now();
        assert!(run_hook(&gate, Lane::Encode) >= Duration::from_millis(200));
        // A prompt queued while the click ran belongs to the same burst and pauses too
        // (on another thread: this one has just paused and must run before pausing again).
        drop(click);
        std::thread::sleep(MIN_IDLE_GAP / 4);
        let _burst = gate.decoding(queued_during_the_click);
        let gate2 = Arc::clone(&gate);
        let paused = std::thread::spawn(move || run_hook(&gate2, Lane::Encode))
            .join()
            .expect("thread");
        assert!(paused >= Duration::from_millis(200), "{paused:?}");
    }

    /// A decode lane that never idles cannot stop an encode: each pause ends at the bound,
    /// and the thread then runs twice as long as it paused before it may pause again.
    #[test]
    fn a_busy_decode_lane_cannot_starve_an_encode() {
        let max_pause = Duration::from_millis(300);
        let gate = Arc::new(YieldGate::new(max_pause));
        let _forever = gate.decoding(Instant::now());
        let hook = gate.hook_for(Lane::Encode).expect("hook");
        let first = Instant::now();
        hook();
        let paused = first.elapsed();
        assert!(paused >= max_pause && paused < max_pause * 20, "{paused:?}");
        // Right after a pause the thread runs instead of pausing again.
        let again = Instant::now();
        for _ in 0..1000 {
            hook();
        }
        assert!(again.elapsed() < max_pause, "{:?}", again.elapsed());
        // Once it has run twice as long as it paused, it gives way again.
        std::thread::sleep(paused * RUN_PER_PAUSED);
        let third = Instant::now();
        hook();
        assert!(third.elapsed() >= max_pause);
    }
}
