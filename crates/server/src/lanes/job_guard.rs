//! One model job, contained: a panic inside model code becomes an INTERNAL answer for that
//! job, and the worker that ran it learns of it (so it replaces its model) even when the job
//! ran on a kernel-pool thread. Used by every lane's jobs ([`crate::lanes::workers`],
//! [`crate::generate::run`]).

use std::panic::{catch_unwind, AssertUnwindSafe};

use tracing::warn;

use crate::error::RequestError;
use crate::metrics;

std::thread_local! {
    /// Set by [`guarded`] on the kernel-pool thread whose job panicked; read by [`in_pool`].
    static JOB_PANICKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs one job in the lane's kernel pool; true when it panicked. The job runs on a pool
/// thread, not on the worker's own, so the flag that [`guarded`] set is read (and cleared)
/// there, before the pool hands the thread back.
pub(crate) fn in_pool(kernels: &rayon::ThreadPool, job: impl FnOnce() + Send) -> bool {
    kernels.install(|| {
        job();
        JOB_PANICKED.with(|flag| flag.replace(false))
    })
}

/// Runs model code, turning a panic into an internal error so one bad job cannot take a
/// worker down (the worker then replaces its model before its next job).
pub(crate) fn guarded<T>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, RequestError>,
) -> Result<T, RequestError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        metrics::record_worker_panic(what);
        JOB_PANICKED.with(|flag| flag.set(true));
        warn!("{what} panicked; the request is answered INTERNAL");
        Err(RequestError::Internal(format!(
            "{what} failed inside the server"
        )))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job that panics inside a kernel pool is reported to the worker (which then
    /// replaces its model); the next, healthy job is not.
    #[test]
    fn a_panic_inside_the_kernel_pool_reaches_the_worker() {
        let kernels = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("pool");
        let panicked = in_pool(&kernels, || {
            let answer: Result<(), RequestError> = guarded("test", || panic!("injected"));
            assert!(matches!(answer, Err(RequestError::Internal(_))));
        });
        assert!(panicked);
        let healthy = in_pool(&kernels, || {
            guarded("test", || Ok(())).expect("no panic");
        });
        assert!(!healthy);
        assert!(
            !JOB_PANICKED.with(|flag| flag.get()),
            "the worker's own flag"
        );
    }
}
