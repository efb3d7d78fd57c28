//! The life of a process under the shim, and of its forked children.
//!
//! The gate starts with `START` set, so the first intercepted call enters the slow path and runs
//! [`touch`]: it prints pending configuration warnings, checks the toggle file, and starts the
//! poller thread (or, with `CUDA_FAULT_POLL_MS=0`, sets `EVERY_CALL` so each call checks the
//! file). A process that never calls CUDA never gets past the constructor: no thread, no file
//! access, no output. After `fork`, the child's first CUDA call does the same again (the poller
//! thread did not survive the fork).

use core::ffi::c_void;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::once::Once;
use crate::state::{self, gate};
use crate::{clock, config, gate, plan, toggle};

static FIRST: Once = Once::new();

/// The first-call set-up; true once it is done. False when it cannot be had now (re-entered from
/// a signal handler on the thread doing it, or another thread took too long): the caller
/// forwards its call and a later call tries again.
pub fn touch() -> bool {
    FIRST.run(|| {
        // Without the configuration (being read on this very thread, or for too long on another)
        // nothing can be set up yet: the next call tries again.
        let Some(c) = config::get() else {
            return false;
        };
        register_fork_handler();
        if state::announce() {
            c.print_warnings();
        }
        check(true);
        if c.poll_ms == 0 || !poller::start(c.poll_ms) {
            // No poller (or the system refused a thread): check on every call rather than never.
            gate().fetch_or(gate::EVERY_CALL, Ordering::AcqRel);
        }
        gate().fetch_and(!gate::START, Ordering::AcqRel);
        true
    })
}

/// Checks the toggle file now and applies what it says. With `wait`, a check in progress on
/// another thread is waited for (and then this one checks anew), so the caller sees the file as
/// it was when it called.
pub fn check(wait: bool) {
    let Some(c) = config::get() else {
        return;
    };
    if toggle::check(c, wait, state::apply) {
        LAST_CHECK_MS.store(clock::coarse_ms(), Ordering::Release);
    }
    state::settle();
}

/// When the toggle file was last checked (coarse clock, ms).
static LAST_CHECK_MS: AtomicU64 = AtomicU64::new(0);
/// How late the poller may be before a call checks the file itself: the coarse clock's tick and
/// a poller woken a little late stay within it.
const LATE_MS: u64 = 5;

/// For a call on the slow path (faults on): when the last check is older than the poll interval
/// allows, the poller is starved (busy threads outnumber the cores) and this call checks the file
/// itself, so a fault turned off or changed stops being applied within the interval plus
/// [`LATE_MS`]. Never waits: a check in progress elsewhere is as good.
pub fn check_if_late() {
    let Some(c) = config::get() else {
        return;
    };
    if c.poll_ms == 0 {
        return; // checked on every call already
    }
    let last = LAST_CHECK_MS.load(Ordering::Acquire);
    if clock::coarse_ms().saturating_sub(last) > u64::from(c.poll_ms) + LATE_MS {
        check(false);
    }
}

static FORK_HANDLER: AtomicU32 = AtomicU32::new(0);

/// Registers the fork handler (once): the child mends what a thread of the parent may have left
/// half-done, and its first CUDA call starts over.
pub fn register_fork_handler() {
    if FORK_HANDLER.swap(1, Ordering::AcqRel) != 0 {
        return;
    }
    extern "C" fn child() {
        config::after_fork();
        toggle::after_fork();
        plan::after_fork();
        state::after_fork();
        FIRST.reset();
        gate().fetch_or(gate::START, Ordering::AcqRel);
    }
    crate::libc_extra::at_fork_child(child);
}

mod poller {
    //! A background thread that checks the toggle file every poll interval, so the hot path never
    //! needs a clock or a syscall. It blocks every signal (signals meant for the application must
    //! not land on it) and holds no lock the application could wait on.

    use super::*;

    static INTERVAL_MS: AtomicU32 = AtomicU32::new(0);

    extern "C" fn run(_: *mut c_void) -> *mut c_void {
        let name = c"cuda-fault-poll";
        // SAFETY: naming the current thread with a NUL-terminated string of < 16 bytes.
        unsafe { libc::pthread_setname_np(libc::pthread_self(), name.as_ptr()) };
        short_slice();
        loop {
            let ms = i64::from(INTERVAL_MS.load(Ordering::Relaxed));
            let ts = libc::timespec { tv_sec: ms / 1000, tv_nsec: (ms % 1000) * 1_000_000 };
            // SAFETY: ts is valid; an interrupted sleep just checks early.
            unsafe { libc::nanosleep(&ts, core::ptr::null_mut()) };
            let _ = std::panic::catch_unwind(|| check(true));
        }
    }

    /// `struct sched_attr` of sched_setattr(2).
    #[repr(C)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
    }

    /// The shortest time slice the scheduler grants a normal thread (EEVDF, Linux 6.12+).
    const SLICE_NS: u64 = 100_000;

    /// Asks for a short time slice, keeping the thread's policy and nice value. A thread that
    /// sleeps between short checks gets the CPU soon after it wakes even when busy threads
    /// outnumber the cores; with the default slice it waits for its turn among all of them
    /// (tens of ms with 64 busy threads on 2 cores). Older kernels ignore the request; a
    /// refusal changes nothing.
    fn short_slice() {
        let mut attr =
            SchedAttr { size: 0, policy: 0, flags: 0, nice: 0, priority: 0, runtime: 0, deadline: 0, period: 0 };
        let size = core::mem::size_of::<SchedAttr>() as u32;
        // SAFETY: sched_getattr/sched_setattr on the calling thread (0) with a buffer of `size`.
        unsafe {
            if libc::syscall(libc::SYS_sched_getattr, 0, &mut attr as *mut SchedAttr, size, 0) != 0 {
                return;
            }
            if attr.policy != libc::SCHED_OTHER as u32 {
                return; // an inherited real-time or idle policy is the application's choice
            }
            attr.size = size;
            attr.flags = 0;
            attr.runtime = SLICE_NS;
            libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0);
        }
    }

    /// Starts the thread; false if the system refused one.
    pub fn start(interval_ms: u32) -> bool {
        INTERVAL_MS.store(interval_ms, Ordering::Relaxed);
        // SAFETY: standard pthread calls on locally owned, initialised attribute and mask objects.
        unsafe {
            let mut attr = MaybeUninit::<libc::pthread_attr_t>::uninit();
            if libc::pthread_attr_init(attr.as_mut_ptr()) != 0 {
                return false;
            }
            let attr = attr.as_mut_ptr();
            libc::pthread_attr_setdetachstate(attr, libc::PTHREAD_CREATE_DETACHED);
            libc::pthread_attr_setstacksize(attr, 128 * 1024);
            let mut all = MaybeUninit::<libc::sigset_t>::uninit();
            let mut old = MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigfillset(all.as_mut_ptr());
            libc::pthread_sigmask(libc::SIG_SETMASK, all.as_ptr(), old.as_mut_ptr());
            let mut tid = MaybeUninit::<libc::pthread_t>::uninit();
            let rc = libc::pthread_create(tid.as_mut_ptr(), attr, run, core::ptr::null_mut());
            libc::pthread_sigmask(libc::SIG_SETMASK, old.as_ptr(), core::ptr::null_mut());
            libc::pthread_attr_destroy(attr);
            rc == 0
        }
    }
}
