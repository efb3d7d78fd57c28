//! When this process started, for `scope=process`: a process that started after the toggle file
//! was written runs clean. Noted by the constructor (before `main`, one vDSO clock read, no
//! allocation), or by the first CUDA call when a hook runs before the constructor; a forked child
//! is a new process and starts at the fork.
//!
//! The start is read on the coarse clock the kernel stamps files with, and a start in the same
//! tick as the write counts as before it: a process that was running when the file was written
//! always meets the fault; one that started within a tick (a few ms) after the write may too.

use core::sync::atomic::{AtomicI64, Ordering};

use crate::clock;

/// CLOCK_REALTIME_COARSE in ns (the clock of file timestamps) when the process started; 0: not
/// noted.
static STARTED_NS: AtomicI64 = AtomicI64::new(0);

fn now() -> i64 {
    clock::realtime_coarse_ns().clamp(1, i128::from(i64::MAX)) as i64
}

/// Notes the start, unless it is noted already.
pub fn note() {
    let _ = STARTED_NS.compare_exchange(0, now(), Ordering::AcqRel, Ordering::Acquire);
}

/// In a forked child: the child starts now.
pub fn after_fork() {
    STARTED_NS.store(now(), Ordering::Release);
}

/// Whether the process started after a file written at `written_ns` (CLOCK_REALTIME ns).
pub fn started_after(written_ns: i128) -> bool {
    note();
    i128::from(STARTED_NS.load(Ordering::Acquire)) > written_ns
}
