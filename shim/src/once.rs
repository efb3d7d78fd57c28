//! One-time work that any hook may be the first to need (reading the environment, the first-call
//! set-up). A call that finds the work in progress never waits for itself: re-entered on the
//! thread doing it (a signal handler that calls CUDA), it returns at once and the caller forwards
//! its call untouched. Another thread waits for the work, but never longer than [`WAIT_NS`].

use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

const NEW: u8 = 0;
const BUSY: u8 = 1;
const DONE: u8 = 2;
/// How long another thread's work is waited for before the caller forwards instead.
const WAIT_NS: u64 = 1_000_000_000;

pub struct Once {
    state: AtomicU8,
    /// `pthread_self()` of the thread doing the work.
    owner: AtomicUsize,
}

/// The calling thread, as an owner to compare (`pthread_self`, async-signal-safe).
pub fn me() -> usize {
    // SAFETY: pthread_self has no preconditions and is async-signal-safe.
    unsafe { libc::pthread_self() as usize }
}

impl Once {
    pub const fn new() -> Once {
        Once { state: AtomicU8::new(NEW), owner: AtomicUsize::new(0) }
    }

    pub fn is_done(&self) -> bool {
        self.state.load(Ordering::Acquire) == DONE
    }

    /// Runs `work` unless it is done; true when it is done on return. `work` returns false when
    /// it could not be done now; a later call tries again.
    pub fn run(&self, work: impl FnOnce() -> bool) -> bool {
        match self.state.compare_exchange(NEW, BUSY, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                self.owner.store(me(), Ordering::Release);
                let done = work();
                self.state.store(if done { DONE } else { NEW }, Ordering::Release);
                done
            }
            Err(DONE) => true,
            Err(_) => self.wait(),
        }
    }

    fn wait(&self) -> bool {
        if self.owner.load(Ordering::Acquire) == me() {
            return false;
        }
        let start = crate::clock::monotonic_ns();
        loop {
            if self.is_done() {
                return true;
            }
            if self.state.load(Ordering::Acquire) == NEW || crate::clock::monotonic_ns() - start > WAIT_NS {
                return false;
            }
            // SAFETY: sched_yield has no preconditions.
            unsafe { libc::sched_yield() };
        }
    }

    /// In a forked child: work that was in progress in the parent will never finish here.
    pub fn reset_unfinished(&self) {
        if self.state.load(Ordering::Relaxed) == BUSY {
            self.state.store(NEW, Ordering::Release);
        }
    }

    /// In a forked child: do the work again (the first-call set-up: the poller did not survive).
    pub fn reset(&self) {
        self.state.store(NEW, Ordering::Release);
    }
}
