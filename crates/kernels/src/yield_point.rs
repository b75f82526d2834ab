//! Cooperative yield points: places in the fused CPU paths where long background work (an
//! image encode, a mask generation) may pause so that latency-critical work (a prompt
//! decode) gets the cores.
//!
//! The model does not decide whether to pause. A caller installs a hook on the threads that
//! run background work ([`install_on_this_thread`]), the kernel pool's threads included;
//! the model calls it ([`reached`]) before every named step of the fused encoder and
//! decoder, and before every parallel task (a block of rows, an attention window) of the
//! encoder's heavy kernels, so a pause starts within a fraction of a millisecond of work.
//! Threads without a hook (the default, and every decode thread) pay one thread-local read.

use std::cell::RefCell;
use std::sync::Arc;

/// What a thread runs at each yield point: typically "wait while prompts decode".
pub type YieldHook = Arc<dyn Fn() + Send + Sync>;

std::thread_local! {
    static HOOK: RefCell<Option<YieldHook>> = const { RefCell::new(None) };
}

/// Makes every later yield point reached on the calling thread run `hook` (replacing any
/// earlier one); `None` removes it.
pub fn install_on_this_thread(hook: Option<YieldHook>) {
    HOOK.with(|slot| *slot.borrow_mut() = hook);
}

/// Runs the calling thread's hook, if it has one. Called by the model between steps.
pub fn reached() {
    // Called under a shared borrow, with no reference-count traffic on the hot path: a
    // hook that itself reaches a yield point borrows again, which shared borrows allow.
    HOOK.with(|slot| {
        if let Some(hook) = slot.borrow().as_ref() {
            hook();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_hook_runs_only_on_the_thread_that_installed_it() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        install_on_this_thread(Some(Arc::new(move || {
            counted.fetch_add(1, Ordering::Relaxed);
        })));
        reached();
        reached();
        std::thread::spawn(reached).join().expect("other thread");
        assert_eq!(calls.load(Ordering::Relaxed), 2);
        install_on_this_thread(None);
        reached();
        assert_eq!(calls.load(Ordering::Relaxed), 2);
    }
}
