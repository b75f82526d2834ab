//! The job queues between the gRPC streams and the model workers.
//!
//! Two bounded FIFO queues: encode jobs (heavy) and decode jobs (light, latency-critical).
//! Workers always take a decode job when one is waiting. A full queue refuses a job at
//! once (the stream answers RESOURCE_EXHAUSTED); a job whose client went away is dropped
//! without running. The queue knows nothing of the model: jobs are any type that can tell
//! whether anyone still waits for it.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use crate::error::RequestError;
use crate::metrics::{self, Queue};

/// A unit of work that may be abandoned by its client.
pub trait Cancellable {
    /// True when nobody waits for the result any more.
    fn is_cancelled(&self) -> bool;
}

/// A job taken from a queue.
#[derive(Debug)]
pub enum Work<E, D> {
    /// An encode job.
    Encode(E),
    /// A decode job.
    Decode(D),
}

struct Queued<T> {
    job: T,
    enqueued: Instant,
}

struct Queues<E, D> {
    encode: VecDeque<Queued<E>>,
    decode: VecDeque<Queued<D>>,
    closed: bool,
}

/// Bounded encode and decode queues shared by the streams (producers) and the worker
/// threads (consumers).
pub struct Scheduler<E, D> {
    queues: Mutex<Queues<E, D>>,
    available: Condvar,
    capacity: usize,
}

impl<E: Cancellable, D: Cancellable> Scheduler<E, D> {
    /// Empty queues holding at most `capacity` jobs each.
    pub fn new(capacity: usize) -> Self {
        Self {
            queues: Mutex::new(Queues {
                encode: VecDeque::new(),
                decode: VecDeque::new(),
                closed: false,
            }),
            available: Condvar::new(),
            capacity,
        }
    }

    /// Queues an encode (heavy) job, or refuses it at once when the queue is full or
    /// closed.
    pub fn submit_encode(&self, job: impl Into<E>) -> Result<(), RequestError> {
        let mut queues = self.lock();
        check_open(&queues)?;
        push(&mut queues.encode, job.into(), self.capacity, Queue::Encode)?;
        drop(queues);
        self.available.notify_one();
        Ok(())
    }

    /// Queues a decode job, or refuses it at once when the queue is full or closed.
    pub fn submit_decode(&self, job: D) -> Result<(), RequestError> {
        let mut queues = self.lock();
        check_open(&queues)?;
        push(&mut queues.decode, job, self.capacity, Queue::Decode)?;
        drop(queues);
        self.available.notify_one();
        Ok(())
    }

    /// Blocks until a job is available and returns it, decode jobs first; jobs whose
    /// client went away are dropped on the way. Returns `None` once the scheduler is
    /// closed and both queues are empty.
    pub fn next(&self) -> Option<Work<E, D>> {
        let mut queues = self.lock();
        loop {
            if let Some(job) = pop_live(&mut queues.decode, Queue::Decode) {
                return Some(Work::Decode(job));
            }
            if let Some(job) = pop_live(&mut queues.encode, Queue::Encode) {
                return Some(Work::Encode(job));
            }
            if queues.closed {
                return None;
            }
            queues = self
                .available
                .wait(queues)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// A waiting decode job, without blocking: a worker busy with a long heavy job takes
    /// decodes in between its steps, so prompts are not stuck behind it.
    pub fn try_next_decode(&self) -> Option<D> {
        pop_live(&mut self.lock().decode, Queue::Decode)
    }

    /// Refuses new jobs; workers finish the queued ones, then [`Self::next`] returns
    /// `None`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.available.notify_all();
    }

    /// Jobs waiting in (encode, decode).
    pub fn depths(&self) -> (usize, usize) {
        let queues = self.lock();
        (queues.encode.len(), queues.decode.len())
    }

    fn lock(&self) -> MutexGuard<'_, Queues<E, D>> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn check_open<E, D>(queues: &Queues<E, D>) -> Result<(), RequestError> {
    if queues.closed {
        return Err(RequestError::Unavailable(
            "the server is shutting down; reconnect to another instance".into(),
        ));
    }
    Ok(())
}

fn push<T: Cancellable>(
    queue: &mut VecDeque<Queued<T>>,
    job: T,
    capacity: usize,
    which: Queue,
) -> Result<(), RequestError> {
    if queue.len() >= capacity {
        let before = queue.len();
        queue.retain(|q| !q.job.is_cancelled());
        metrics::record_cancelled(which, before - queue.len());
    }
    if queue.len() >= capacity {
        return Err(RequestError::ResourceExhausted(format!(
            "the {} queue is full ({capacity} jobs); retry later",
            which.label()
        )));
    }
    queue.push_back(Queued {
        job,
        enqueued: Instant::now(),
    });
    metrics::set_queue_depth(which, queue.len());
    Ok(())
}

fn pop_live<T: Cancellable>(queue: &mut VecDeque<Queued<T>>, which: Queue) -> Option<T> {
    let mut cancelled = 0;
    let found = loop {
        match queue.pop_front() {
            None => break None,
            Some(q) if q.job.is_cancelled() => cancelled += 1,
            Some(q) => {
                metrics::record_queue_wait(which, q.enqueued.elapsed());
                break Some(q.job);
            }
        }
    };
    if cancelled > 0 {
        metrics::record_cancelled(which, cancelled);
    }
    metrics::set_queue_depth(which, queue.len());
    found
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
        cancelled: Arc<AtomicBool>,
    }

    impl Job {
        fn new(name: &'static str) -> Self {
            Self {
                name,
                cancelled: Arc::new(AtomicBool::new(false)),
            }
        }
    }

    impl Cancellable for Job {
        fn is_cancelled(&self) -> bool {
            self.cancelled.load(Ordering::Relaxed)
        }
    }

    fn name(work: Option<Work<Job, Job>>) -> String {
        match work {
            Some(Work::Encode(j)) => format!("encode {}", j.name),
            Some(Work::Decode(j)) => format!("decode {}", j.name),
            None => "none".into(),
        }
    }

    #[test]
    fn decodes_go_first_and_each_queue_is_fifo() {
        let s = Scheduler::new(4);
        s.submit_encode(Job::new("e1")).unwrap();
        s.submit_encode(Job::new("e2")).unwrap();
        s.submit_decode(Job::new("d1")).unwrap();
        s.submit_decode(Job::new("d2")).unwrap();
        s.close();
        let order: Vec<String> = std::iter::from_fn(|| s.next().map(|w| name(Some(w)))).collect();
        assert_eq!(order, ["decode d1", "decode d2", "encode e1", "encode e2"]);
    }

    #[test]
    fn full_queue_refuses_at_once() {
        let s: Scheduler<Job, Job> = Scheduler::new(1);
        s.submit_decode(Job::new("d1")).unwrap();
        let err = s.submit_decode(Job::new("d2")).unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        // The other queue is independent.
        s.submit_encode(Job::new("e1")).unwrap();
    }

    #[test]
    fn try_next_decode_takes_only_decodes_and_never_blocks() {
        let s: Scheduler<Job, Job> = Scheduler::new(2);
        assert!(s.try_next_decode().is_none());
        s.submit_encode(Job::new("e1")).unwrap();
        assert!(s.try_next_decode().is_none());
        s.submit_decode(Job::new("d1")).unwrap();
        assert_eq!(s.try_next_decode().map(|j| j.name), Some("d1"));
        assert_eq!(s.depths(), (1, 0));
    }

    #[test]
    fn cancelled_jobs_are_skipped_and_free_their_slot() {
        let s: Scheduler<Job, Job> = Scheduler::new(1);
        let job = Job::new("gone");
        let flag = Arc::clone(&job.cancelled);
        s.submit_decode(job).unwrap();
        flag.store(true, Ordering::Relaxed);
        // The slot of the cancelled job is reclaimed.
        s.submit_decode(Job::new("live")).unwrap();
        assert_eq!(name(s.next()), "decode live");
        assert_eq!(s.depths(), (0, 0));
    }

    #[test]
    fn closed_scheduler_drains_then_stops_and_refuses() {
        let s: Arc<Scheduler<Job, Job>> = Arc::new(Scheduler::new(2));
        s.submit_encode(Job::new("e1")).unwrap();
        let worker = {
            let s = Arc::clone(&s);
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while let Some(w) = s.next() {
                    seen.push(name(Some(w)));
                }
                seen
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        s.close();
        assert_eq!(
            s.submit_decode(Job::new("late")).unwrap_err().code(),
            tonic::Code::Unavailable
        );
        let seen = worker.join().expect("worker thread");
        assert_eq!(seen, ["encode e1"]);
    }
}
