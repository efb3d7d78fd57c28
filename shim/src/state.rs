//! The fault state and the gate word that the trampolines test.
//!
//! Life of a process: the gate starts with `START` set, so the first intercepted call enters the
//! slow path and runs [`touch`]: it prints pending configuration warnings, checks the toggle file,
//! and starts the poller thread (or, with `CUDA_FAULT_POLL_MS=0`, sets `EVERY_CALL` so each call
//! checks the file). From then on the gate is non-zero only while faults are on, so a call with
//! faults off costs one load and one branch. A process that never calls CUDA never gets past
//! the constructor: no thread, no file access, no output.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};

use crate::scenario::{self, Scenario};
use crate::{config, toggle, xids};

unsafe extern "C" {
    /// Defined in slots.s (starts as `gate::START`).
    static cf_gate: AtomicU32;
}

pub mod gate {
    /// Faults are on: every call is decided by the slow path.
    pub const FAULTING: u32 = 1;
    /// The process (or a forked child) has not made its first CUDA call yet. Must match slots.s.
    pub const START: u32 = 2;
    /// `CUDA_FAULT_POLL_MS=0`: check the toggle file on every call.
    pub const EVERY_CALL: u32 = 4;
}

pub fn gate() -> &'static AtomicU32 {
    // SAFETY: cf_gate is a 4-byte aligned word in .data, valid for the life of the process.
    unsafe { &cf_gate }
}

/// What a toggle check or the environment decided.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub on: bool,
    pub xid: usize,
    pub scenario: Scenario,
}

/// Where a decision came from, for the one line printed at each change.
#[derive(Clone, Copy)]
pub enum Source {
    Env,
    File,
}

const ON_BIT: u32 = 1 << 31;
/// The active fault: `ON_BIT | xid index`, or 0.
static ACTIVE: AtomicU32 = AtomicU32::new(0);
/// Incremented each time faults turn on: each function logs its first fault once per period.
static PERIOD: AtomicU32 = AtomicU32::new(0);
/// Set once the process has made its first CUDA call: from then on messages may be printed.
static ANNOUNCED: AtomicBool = AtomicBool::new(false);
/// First-call work: 0 not started, 1 running, 2 done (reset in a forked child).
static STARTED: AtomicU8 = AtomicU8::new(0);
/// When the current on-period began (CLOCK_MONOTONIC, ms), for `after_ms`.
static ON_SINCE_MS: AtomicU64 = AtomicU64::new(0);
/// Calls that would have faulted in the current on-period, for `after_calls`.
static CALLS: AtomicU64 = AtomicU64::new(0);
/// A sticky fault was injected: the process stays faulted whatever the toggle says.
static LATCHED: AtomicBool = AtomicBool::new(false);
static LATCH_NOTED: AtomicBool = AtomicBool::new(false);

pub fn monotonic_ms() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: t is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1000 + t.tv_nsec as u64 / 1_000_000
}

/// Milliseconds since faults turned on.
pub fn on_for_ms() -> u64 {
    monotonic_ms().saturating_sub(ON_SINCE_MS.load(Ordering::Acquire))
}

/// Counts one would-be fault; returns how many came before it in this on-period.
pub fn count_call() -> u64 {
    CALLS.fetch_add(1, Ordering::AcqRel)
}

/// Latches a sticky fault (the first injected error of a sticky scenario).
pub fn latch() {
    LATCHED.store(true, Ordering::Release);
}

/// The active fault, if faults are on: (xid index, on-period number).
pub fn active() -> Option<(usize, u32)> {
    let a = ACTIVE.load(Ordering::Acquire);
    (a & ON_BIT != 0).then(|| ((a & !ON_BIT) as usize, PERIOD.load(Ordering::Relaxed)))
}

/// Publishes a decision; prints one line when the state changes after the first CUDA call.
pub fn apply(d: Decision, source: Source) {
    let new = if d.on { ON_BIT | d.xid as u32 } else { 0 };
    let old = ACTIVE.load(Ordering::Acquire);
    if LATCHED.load(Ordering::Acquire) {
        if new != old && ANNOUNCED.load(Ordering::Acquire) && !LATCH_NOTED.swap(true, Ordering::AcqRel) {
            say!("the toggle changed, but the fault is sticky: this process stays faulted until it restarts");
        }
        return;
    }
    let scenario_changed = d.on && scenario::current() != d.scenario;
    if old == new && !scenario_changed {
        return;
    }
    if d.on {
        // A new on-period: the scenario first, so no call sees the new XID with an old scenario.
        scenario::publish(&d.scenario);
        CALLS.store(0, Ordering::Release);
        ON_SINCE_MS.store(monotonic_ms(), Ordering::Release);
        PERIOD.fetch_add(1, Ordering::AcqRel);
    }
    ACTIVE.store(new, Ordering::Release);
    if d.on {
        gate().fetch_or(gate::FAULTING, Ordering::AcqRel);
    } else {
        gate().fetch_and(!gate::FAULTING, Ordering::AcqRel);
    }
    if !ANNOUNCED.load(Ordering::Acquire) {
        return;
    }
    let c = config::get();
    let row = &xids::XIDS[d.xid];
    match (d.on, source) {
        (true, Source::Env) => say!(
            "faults ON: simulating XID {} ({}){} [CUDA_FAULT_INJECTION_ENABLED, no toggle file at {}]",
            row.xid,
            row.description,
            d.scenario,
            c.toggle_path()
        ),
        (true, Source::File) => say!(
            "faults ON: simulating XID {} ({}){} [toggle file {}]",
            row.xid,
            row.description,
            d.scenario,
            c.toggle_path()
        ),
        (false, Source::Env) => say!("faults OFF [toggle file {} removed; environment says off]", c.toggle_path()),
        (false, Source::File) => say!("faults OFF [toggle file {}]", c.toggle_path()),
    }
}

/// The first intercepted call of the process: see the module comment. Concurrent first calls
/// wait for the one doing the work, so none of them acts on a state not yet read.
pub fn touch() {
    match STARTED.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            let c = config::get();
            if !ANNOUNCED.swap(true, Ordering::AcqRel) {
                c.print_warnings();
            }
            toggle::check();
            if c.poll_ms == 0 {
                gate().fetch_or(gate::EVERY_CALL, Ordering::AcqRel);
            } else if !crate::state::poller::start(c.poll_ms) {
                // No thread: fall back to checking on every call rather than never.
                gate().fetch_or(gate::EVERY_CALL, Ordering::AcqRel);
            }
            gate().fetch_and(!gate::START, Ordering::AcqRel);
            STARTED.store(2, Ordering::Release);
        }
        Err(_) => {
            while STARTED.load(Ordering::Acquire) == 1 {
                // SAFETY: sched_yield has no preconditions.
                unsafe { libc::sched_yield() };
            }
        }
    }
}

/// After `fork`, the child has no poller thread: make its first CUDA call start one.
pub fn register_fork_handler() {
    extern "C" fn child() {
        STARTED.store(0, Ordering::Release);
        toggle::reset_after_fork();
        gate().fetch_or(gate::START, Ordering::AcqRel);
    }
    // SAFETY: registering a handler has no preconditions; `child` only touches atomics.
    unsafe { libc::pthread_atfork(None, None, Some(child)) };
}

pub mod poller {
    //! A background thread that checks the toggle file every poll interval, so the hot path
    //! never needs a clock or a syscall. It blocks every signal (signals meant for the
    //! application must not land on it) and holds no lock the application could wait on.

    use core::ffi::c_void;
    use core::mem::MaybeUninit;
    use core::sync::atomic::{AtomicU32, Ordering};

    static INTERVAL_MS: AtomicU32 = AtomicU32::new(0);

    extern "C" fn run(_: *mut c_void) -> *mut c_void {
        let name = c"cuda-fault-poll";
        // SAFETY: naming the current thread with a NUL-terminated string of < 16 bytes.
        unsafe { libc::pthread_setname_np(libc::pthread_self(), name.as_ptr()) };
        loop {
            let ms = INTERVAL_MS.load(Ordering::Relaxed) as i64;
            let ts = libc::timespec { tv_sec: ms / 1000, tv_nsec: (ms % 1000) * 1_000_000 };
            // SAFETY: ts is valid; an interrupted sleep just checks early.
            unsafe { libc::nanosleep(&ts, core::ptr::null_mut()) };
            let _ = std::panic::catch_unwind(crate::toggle::check);
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
