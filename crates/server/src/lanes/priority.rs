//! Operating-system priority of a lane's threads: how the CPU is shared when prompt
//! decodes, image encodes and mask generations run at the same time.
//!
//! Each lane has its own worker threads and its own rayon pool (the model's kernels run in
//! the pool of the lane that called them), so a lane's priority covers all of its work.
//! On Linux a thread's nice value and scheduling policy are its own (unlike on most other
//! systems, where they belong to the process); lowering them never needs a privilege.
//! Elsewhere the priorities are not applied and the server logs that once.

use std::fmt;
use std::str::FromStr;

/// How a lane's threads are scheduled by the operating system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// The default policy at nice 0.
    Normal,
    /// The default policy at this nice value (1 to 19; higher runs less).
    Nice(i32),
    /// `SCHED_BATCH` at this nice value: never preempts on wake-up, for throughput work.
    Batch(i32),
    /// `SCHED_IDLE`: runs only on CPU time no other thread wants.
    Idle,
}

impl Priority {
    /// Applies this priority to the calling thread.
    pub fn apply_to_current_thread(self) -> std::io::Result<()> {
        imp::apply(self)
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Normal => f.write_str("normal"),
            Self::Nice(n) => write!(f, "nice:{n}"),
            Self::Batch(n) => write!(f, "batch:{n}"),
            Self::Idle => f.write_str("idle"),
        }
    }
}

impl FromStr for Priority {
    type Err = String;

    /// `normal`, `nice:N`, `batch:N` (N from 0 to 19; `batch` alone is `batch:0`) or
    /// `idle`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim().to_ascii_lowercase();
        let nice = |value: &str| -> Result<i32, String> {
            match value.parse::<i32>() {
                Ok(n) if (0..=19).contains(&n) => Ok(n),
                _ => Err(format!(
                    "`{value}` is not a nice value from 0 to 19 in `{text}`"
                )),
            }
        };
        match text.split_once(':') {
            None if text == "normal" => Ok(Self::Normal),
            None if text == "idle" => Ok(Self::Idle),
            None if text == "batch" => Ok(Self::Batch(0)),
            Some(("nice", n)) => Ok(Self::Nice(nice(n)?)),
            Some(("batch", n)) => Ok(Self::Batch(nice(n)?)),
            _ => Err(format!(
                "unknown priority `{text}`: use normal, nice:N, batch:N or idle"
            )),
        }
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use super::Priority;

    pub fn apply(priority: Priority) -> std::io::Result<()> {
        let (policy, nice) = match priority {
            Priority::Normal => (libc::SCHED_OTHER, 0),
            Priority::Nice(n) => (libc::SCHED_OTHER, n),
            Priority::Batch(n) => (libc::SCHED_BATCH, n),
            Priority::Idle => (libc::SCHED_IDLE, 19),
        };
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 names the calling thread; `param` outlives the call.
        if unsafe { libc::sched_setscheduler(0, policy, &param) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        let who = libc::id_t::try_from(tid).map_err(std::io::Error::other)?;
        // SAFETY: plain system call on this thread's id.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, who, nice) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::Priority;

    pub fn apply(priority: Priority) -> std::io::Result<()> {
        match priority {
            Priority::Normal => Ok(()),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "per-thread priorities are applied on Linux only",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_parse_and_print() {
        for (text, priority) in [
            ("normal", Priority::Normal),
            ("nice:10", Priority::Nice(10)),
            ("BATCH:19", Priority::Batch(19)),
            ("batch", Priority::Batch(0)),
            ("idle", Priority::Idle),
        ] {
            assert_eq!(text.parse::<Priority>(), Ok(priority));
        }
        assert_eq!(Priority::Nice(5).to_string(), "nice:5");
        assert_eq!(
            "batch:7".parse::<Priority>().map(|p| p.to_string()),
            Ok("batch:7".into())
        );
        for bad in ["nice:20", "nice:-1", "nice", "fast", "idle:3", ""] {
            assert!(bad.parse::<Priority>().is_err(), "{bad}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_thread_lowers_its_own_priority_only() {
        let lowered = std::thread::spawn(|| {
            Priority::Batch(7).apply_to_current_thread().expect("lower");
            // SAFETY: plain system calls on the calling thread.
            unsafe {
                (
                    libc::sched_getscheduler(0),
                    libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t),
                )
            }
        })
        .join()
        .expect("thread");
        assert_eq!(lowered, (libc::SCHED_BATCH, 7));
        // SAFETY: as above, on this (untouched) thread.
        let here = unsafe { libc::sched_getscheduler(0) };
        assert_eq!(here, libc::SCHED_OTHER);
    }
}
