//! The toggle checker's lock: a futex mutex that is never waited on from the thread holding it
//! (a signal handler re-entering the shim skips the check instead) and never for longer than
//! [`WAIT_NS`]. Waiters sleep in the kernel, so a holder that was preempted gets the CPU back
//! instead of competing with spinning waiters.

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use crate::once::me;

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
const CONTENDED: u32 = 2;
const WAIT_NS: u64 = 1_000_000_000;

pub struct Lock {
    state: AtomicU32,
    owner: AtomicUsize,
}

pub struct Guard<'a>(&'a Lock);

fn futex(word: &AtomicU32, op: i32, val: u32, timeout: *const libc::timespec) {
    // SAFETY: word is a live, aligned u32; FUTEX_WAIT/WAKE_PRIVATE read it and may sleep.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), op, val, timeout) };
}

impl Lock {
    pub const fn new() -> Lock {
        Lock { state: AtomicU32::new(UNLOCKED), owner: AtomicUsize::new(0) }
    }

    /// Takes the lock; with `wait` false only if it is free. None when it cannot be had: held
    /// by this very thread, or by another for longer than the wait allows.
    pub fn acquire(&self, wait: bool) -> Option<Guard<'_>> {
        if self.state.compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            self.owner.store(me(), Ordering::Relaxed);
            return Some(Guard(self));
        }
        if !wait || self.owner.load(Ordering::Relaxed) == me() {
            return None;
        }
        let start = crate::clock::monotonic_ns();
        let nap = libc::timespec { tv_sec: 0, tv_nsec: 10_000_000 };
        loop {
            if self.state.swap(CONTENDED, Ordering::Acquire) == UNLOCKED {
                self.owner.store(me(), Ordering::Relaxed);
                return Some(Guard(self));
            }
            if crate::clock::monotonic_ns() - start > WAIT_NS {
                return None;
            }
            futex(&self.state, libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG, CONTENDED, &nap);
        }
    }

    /// In a forked child: the holder, if any, does not exist there.
    pub fn reset(&self) {
        self.owner.store(0, Ordering::Relaxed);
        self.state.store(UNLOCKED, Ordering::Release);
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.0.owner.store(0, Ordering::Relaxed);
        if self.0.state.swap(UNLOCKED, Ordering::Release) == CONTENDED {
            futex(&self.0.state, libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, 1, core::ptr::null());
        }
    }
}
