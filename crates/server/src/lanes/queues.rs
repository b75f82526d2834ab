//! The job queues between the gRPC streams and the model workers: one bounded FIFO per
//! lane.
//!
//! Three lanes, each with its own queue, its own bound and its own workers (see
//! [`crate::lanes::workers`]), so no kind of work waits behind another in a queue:
//!
//! - `decode`: prompt decodes (light, latency-critical: a click);
//! - `encode`: `SetImage` encodes of interactive sessions (heavy);
//! - `generate`: `GenerateMasks` (background, heaviest).
//!
//! Which lane wins the CPU when all of them run is the operating system's choice, steered
//! by the lanes' thread priorities ([`crate::lanes::priority`]). A full queue refuses a job at
//! once (the caller answers RESOURCE_EXHAUSTED); a job whose client went away is dropped
//! without running; [`LaneQueues::supersede`] takes queued decodes of one owner out so that
//! their caller answers them ABORTED (latest wins). The queues know nothing of the model:
//! jobs are any type that can tell whether anyone still waits for it.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use crate::error::RequestError;
use crate::lanes::Lane;
use crate::metrics;

/// A unit of work that may be abandoned by its client.
pub trait Cancellable {
    /// True when nobody waits for the result any more.
    fn is_cancelled(&self) -> bool;
}

/// Lane bounds, one per lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneCapacities {
    /// Prompt decodes.
    pub decode: usize,
    /// Image encodes.
    pub encode: usize,
    /// Mask generations.
    pub generate: usize,
}

struct Queued<T> {
    job: T,
    enqueued: Instant,
}

struct State<T> {
    jobs: VecDeque<Queued<T>>,
    closed: bool,
}

/// One lane's bounded FIFO, shared by the producers (streams) and the lane's workers.
pub struct LaneQueue<T> {
    state: Mutex<State<T>>,
    available: Condvar,
    capacity: usize,
    lane: Lane,
}

impl<T: Cancellable> LaneQueue<T> {
    /// An empty queue of `lane` holding at most `capacity` jobs.
    pub fn new(lane: Lane, capacity: usize) -> Self {
        Self {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                closed: false,
            }),
            available: Condvar::new(),
            capacity,
            lane,
        }
    }

    /// Queues a job, or refuses it at once when the queue is full or closed.
    pub fn submit(&self, job: T) -> Result<(), RequestError> {
        let mut state = self.lock();
        if state.closed {
            return Err(RequestError::Unavailable(
                "the server is shutting down; reconnect to another instance".into(),
            ));
        }
        if state.jobs.len() >= self.capacity {
            let before = state.jobs.len();
            state.jobs.retain(|q| !q.job.is_cancelled());
            metrics::record_cancelled(self.lane, before - state.jobs.len());
        }
        if state.jobs.len() >= self.capacity {
            return Err(RequestError::ResourceExhausted(format!(
                "the {} queue is full ({} jobs); retry later",
                self.lane.label(),
                self.capacity
            )));
        }
        state.jobs.push_back(Queued {
            job,
            enqueued: Instant::now(),
        });
        metrics::set_queue_depth(self.lane, state.jobs.len());
        drop(state);
        self.available.notify_one();
        Ok(())
    }

    /// Blocks until a live job is queued and returns it (oldest first); jobs whose client
    /// went away are dropped on the way. `None` once the queue is closed and empty.
    pub fn next(&self) -> Option<T> {
        let mut state = self.lock();
        loop {
            if let Some(job) = self.pop_live(&mut state) {
                return Some(job);
            }
            if state.closed {
                return None;
            }
            state = self
                .available
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// A live queued job, without blocking.
    pub fn try_next(&self) -> Option<T> {
        let mut state = self.lock();
        self.pop_live(&mut state)
    }

    /// Takes every queued job for which `matches` holds out of the queue, oldest first.
    /// A job a worker already took is not queued any more, so it is never among them.
    pub fn take_where(&self, mut matches: impl FnMut(&T) -> bool) -> Vec<T> {
        let mut state = self.lock();
        let mut taken = Vec::new();
        let mut kept = VecDeque::with_capacity(state.jobs.len());
        for queued in state.jobs.drain(..) {
            if matches(&queued.job) {
                taken.push(queued.job);
            } else {
                kept.push_back(queued);
            }
        }
        state.jobs = kept;
        metrics::set_queue_depth(self.lane, state.jobs.len());
        taken
    }

    /// Refuses new jobs; the workers finish the queued ones, then [`Self::next`] returns
    /// `None`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.available.notify_all();
    }

    /// Jobs waiting.
    pub fn depth(&self) -> usize {
        self.lock().jobs.len()
    }

    fn pop_live(&self, state: &mut State<T>) -> Option<T> {
        let mut cancelled = 0;
        let found = loop {
            match state.jobs.pop_front() {
                None => break None,
                Some(q) if q.job.is_cancelled() => cancelled += 1,
                Some(q) => {
                    metrics::record_queue_wait(self.lane, q.enqueued.elapsed());
                    break Some(q.job);
                }
            }
        };
        if cancelled > 0 {
            metrics::record_cancelled(self.lane, cancelled);
        }
        metrics::set_queue_depth(self.lane, state.jobs.len());
        found
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The three lanes: decodes `D`, encodes `E`, generations `G`.
pub struct LaneQueues<D, E, G> {
    /// Prompt decodes.
    pub decode: LaneQueue<D>,
    /// Image encodes.
    pub encode: LaneQueue<E>,
    /// Mask generations.
    pub generate: LaneQueue<G>,
}

impl<D: Cancellable, E: Cancellable, G: Cancellable> LaneQueues<D, E, G> {
    /// Empty lanes with these bounds.
    pub fn new(capacities: LaneCapacities) -> Self {
        Self {
            decode: LaneQueue::new(Lane::Decode, capacities.decode),
            encode: LaneQueue::new(Lane::Encode, capacities.encode),
            generate: LaneQueue::new(Lane::Generate, capacities.generate),
        }
    }

    /// Queues a prompt decode.
    pub fn submit_decode(&self, job: D) -> Result<(), RequestError> {
        self.decode.submit(job)
    }

    /// Queues an image encode.
    pub fn submit_encode(&self, job: E) -> Result<(), RequestError> {
        self.encode.submit(job)
    }

    /// Queues a mask generation.
    pub fn submit_generate(&self, job: G) -> Result<(), RequestError> {
        self.generate.submit(job)
    }

    /// Latest wins: takes the queued (not started) decodes for which `owned` holds out of
    /// the decode lane, in request order, and counts them as superseded.
    pub fn supersede(&self, owned: impl FnMut(&D) -> bool) -> Vec<D> {
        let taken = self.decode.take_where(owned);
        metrics::record_superseded(taken.len());
        taken
    }

    /// Closes every lane: new jobs are refused, queued ones still run.
    pub fn close(&self) {
        self.decode.close();
        self.encode.close();
        self.generate.close();
    }

    /// Jobs waiting in (decode, encode, generate).
    pub fn depths(&self) -> (usize, usize, usize) {
        (
            self.decode.depth(),
            self.encode.depth(),
            self.generate.depth(),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[derive(Debug)]
    struct Job {
        name: &'static str,
        owner: u32,
        cancelled: Arc<AtomicBool>,
    }

    impl Job {
        fn new(name: &'static str) -> Self {
            Self::owned(name, 0)
        }

        fn owned(name: &'static str, owner: u32) -> Self {
            Self {
                name,
                owner,
                cancelled: Arc::new(AtomicBool::new(false)),
            }
        }
    }

    impl Cancellable for Job {
        fn is_cancelled(&self) -> bool {
            self.cancelled.load(Ordering::Relaxed)
        }
    }

    type Lanes = LaneQueues<Job, Job, Job>;

    fn lanes(capacity: usize) -> Lanes {
        LaneQueues::new(LaneCapacities {
            decode: capacity,
            encode: capacity,
            generate: capacity,
        })
    }

    fn names(jobs: Vec<Job>) -> Vec<&'static str> {
        jobs.into_iter().map(|j| j.name).collect()
    }

    #[test]
    fn each_lane_serves_only_its_own_jobs_in_fifo_order() {
        let s = lanes(4);
        s.submit_encode(Job::new("e1")).unwrap();
        s.submit_generate(Job::new("g1")).unwrap();
        s.submit_decode(Job::new("d1")).unwrap();
        s.submit_encode(Job::new("e2")).unwrap();
        s.submit_decode(Job::new("d2")).unwrap();
        s.close();
        let drain = |q: &LaneQueue<Job>| names(std::iter::from_fn(|| q.next()).collect());
        assert_eq!(drain(&s.decode), ["d1", "d2"]);
        assert_eq!(drain(&s.encode), ["e1", "e2"]);
        assert_eq!(drain(&s.generate), ["g1"]);
    }

    #[test]
    fn each_lane_has_its_own_bound() {
        let s = LaneQueues::<Job, Job, Job>::new(LaneCapacities {
            decode: 2,
            encode: 1,
            generate: 1,
        });
        s.submit_generate(Job::new("g1")).unwrap();
        let err = s.submit_generate(Job::new("g2")).unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert!(err.to_string().contains("generate queue is full"), "{err}");
        // A full generate lane refuses nothing of the interactive lanes.
        s.submit_encode(Job::new("e1")).unwrap();
        s.submit_decode(Job::new("d1")).unwrap();
        s.submit_decode(Job::new("d2")).unwrap();
        assert_eq!(s.depths(), (2, 1, 1));
    }

    #[test]
    fn try_next_never_blocks() {
        let s = lanes(2);
        assert!(s.decode.try_next().is_none());
        s.submit_encode(Job::new("e1")).unwrap();
        assert!(s.decode.try_next().is_none());
        s.submit_decode(Job::new("d1")).unwrap();
        assert_eq!(s.decode.try_next().map(|j| j.name), Some("d1"));
        assert_eq!(s.depths(), (0, 1, 0));
    }

    #[test]
    fn cancelled_jobs_are_skipped_and_free_their_slot() {
        let s = lanes(1);
        let job = Job::new("gone");
        let flag = Arc::clone(&job.cancelled);
        s.submit_decode(job).unwrap();
        flag.store(true, Ordering::Relaxed);
        // The slot of the cancelled job is reclaimed.
        s.submit_decode(Job::new("live")).unwrap();
        assert_eq!(s.decode.next().map(|j| j.name), Some("live"));
        assert_eq!(s.depths(), (0, 0, 0));
    }

    #[test]
    fn supersede_takes_only_the_owners_queued_decodes_in_order() {
        let s = lanes(8);
        s.submit_decode(Job::owned("a1", 1)).unwrap();
        s.submit_decode(Job::owned("b1", 2)).unwrap();
        s.submit_decode(Job::owned("a2", 1)).unwrap();
        s.submit_encode(Job::owned("a-encode", 1)).unwrap();
        // a1 has started: a worker took it, so it cannot be superseded.
        assert_eq!(s.decode.next().map(|j| j.name), Some("a1"));
        let taken = s.supersede(|j| j.owner == 1);
        assert_eq!(names(taken), ["a2"]);
        assert_eq!(s.decode.next().map(|j| j.name), Some("b1"));
        assert_eq!(s.depths(), (0, 1, 0));
    }

    #[test]
    fn closed_lanes_drain_then_stop_and_refuse() {
        let s: Arc<Lanes> = Arc::new(lanes(2));
        s.submit_encode(Job::new("e1")).unwrap();
        let worker = {
            let s = Arc::clone(&s);
            std::thread::spawn(move || names(std::iter::from_fn(|| s.encode.next()).collect()))
        };
        std::thread::sleep(Duration::from_millis(20));
        s.close();
        assert_eq!(
            s.submit_decode(Job::new("late")).unwrap_err().code(),
            tonic::Code::Unavailable
        );
        assert_eq!(worker.join().expect("worker thread"), ["e1"]);
    }

    /// A flood of decodes (producers that never stop) cannot starve the encode or the
    /// generate lane: their workers take their own jobs while the decode lane stays full.
    #[test]
    fn a_decode_flood_does_not_starve_encodes_or_generations() {
        let s: Arc<Lanes> = Arc::new(lanes(4));
        let stop = Arc::new(AtomicBool::new(false));
        let flood = {
            let (s, stop) = (Arc::clone(&s), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut refused = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if s.submit_decode(Job::new("d")).is_err() {
                        refused += 1;
                        std::thread::yield_now();
                    }
                }
                refused
            })
        };
        // The decode worker runs slowly, so the decode lane stays full.
        let decoder = {
            let (s, stop) = (Arc::clone(&s), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if s.decode.try_next().is_some() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            })
        };
        // The flood has filled the decode lane before the other lanes are asked.
        let filled = Instant::now();
        while s.decode.depth() < 4 {
            assert!(
                filled.elapsed() < Duration::from_secs(30),
                "the decode lane never filled"
            );
            std::thread::yield_now();
        }
        let served = |q: &LaneQueue<Job>, name| {
            (0..20).all(|_| {
                q.submit(Job::new(name)).is_ok() && q.next().is_some_and(|j| j.name == name)
            })
        };
        assert!(served(&s.encode, "e"));
        assert!(served(&s.generate, "g"));
        stop.store(true, Ordering::Relaxed);
        decoder.join().expect("decoder");
        flood.join().expect("flood");
    }
}
