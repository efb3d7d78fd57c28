//! The fault state: the gate word the trampolines test, the active XID and on-period, and the
//! per-period counters. [`apply`] publishes a decision; it runs only under the toggle checker's
//! lock (see `lifecycle`), so there is one writer.
//!
//! While faults are off the gate is zero (after the first call), so a call costs one load and a
//! predicted branch.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use toggle_grammar::Scope;

use crate::decision::{Decision, Source};
use crate::gate;
use crate::latch::{self, Latch};
use crate::plan::{self, Plan};
use crate::{birth, clock, config, xids};

unsafe extern "C" {
    /// Defined in slots.s (starts as `gate::INITIAL`).
    static cf_gate: AtomicU32;
}

pub fn gate() -> &'static AtomicU32 {
    // SAFETY: cf_gate is a 4-byte aligned word in .data, valid for the life of the process.
    unsafe { &cf_gate }
}

const ON_BIT: u32 = 1 << 31;
/// With ON_BIT: the fault is on, but this process started after it was switched on and its
/// scope is `process`: only the GPU's own state (NVML's ECC answers) shows here.
const CLEAN_BIT: u32 = 1 << 30;
/// The active fault: `ON_BIT | [CLEAN_BIT] | xid index`, or 0.
static ACTIVE: AtomicU32 = AtomicU32::new(0);
/// Incremented each time faults turn on: each function logs its first fault once per period,
/// and the per-period counters below restart.
static PERIOD: AtomicU32 = AtomicU32::new(0);
/// Set once the process has made its first CUDA call: from then on messages may be printed.
static ANNOUNCED: AtomicBool = AtomicBool::new(false);
/// When the current on-period began (CLOCK_MONOTONIC, ns), for `after_ms`.
static ON_SINCE_NS: AtomicU64 = AtomicU64::new(0);
/// Calls that would have faulted in the current on-period, for `after_calls`.
static CANDIDATES: AtomicU64 = AtomicU64::new(0);
/// Faults injected in the current on-period, for `count`.
static INJECTED: AtomicU64 = AtomicU64::new(0);
/// The on-period whose `count` ran out (0: none).
static EXHAUSTED: AtomicU32 = AtomicU32::new(0);
/// `period << 32 | n`: n threads hold an injected runtime error of that on-period that
/// `cudaGetLastError` has not read yet. The gate stays open for them after `count` runs out.
static UNREAD: AtomicU64 = AtomicU64::new(0);
static LATCH_NOTED: AtomicBool = AtomicBool::new(false);
/// The seed of this process's draws when the scenario names none (0: not drawn yet).
static PROCESS_SEED: AtomicU64 = AtomicU64::new(0);

/// The active fault of a call.
#[derive(Clone, Copy)]
pub struct Active {
    /// An index into `xids::XIDS`.
    pub xid: usize,
    pub period: u32,
    /// This process runs clean (`scope=process`): only NVML's ECC answers change.
    pub clean: bool,
}

/// The active fault, if faults are on (and `count` has not run out, unless a fault is latched).
pub fn active() -> Option<Active> {
    let a = ACTIVE.load(Ordering::Acquire);
    if a & ON_BIT == 0 {
        return None;
    }
    let period = PERIOD.load(Ordering::Acquire);
    let live = EXHAUSTED.load(Ordering::Acquire) != period || latch::held();
    live.then_some(Active { xid: (a & !(ON_BIT | CLEAN_BIT)) as usize, period, clean: a & CLEAN_BIT != 0 })
}

/// The on-period while the toggle says on for this process, whether or not `count` ran out.
pub fn on_period() -> Option<u32> {
    let a = ACTIVE.load(Ordering::Acquire);
    (a & ON_BIT != 0 && a & CLEAN_BIT == 0).then(|| PERIOD.load(Ordering::Acquire))
}

/// The XID in force for this process while the toggle says on (or a latch holds it).
pub fn faulting_xid() -> Option<usize> {
    let a = ACTIVE.load(Ordering::Acquire);
    (a & ON_BIT != 0 && a & CLEAN_BIT == 0).then_some((a & !ON_BIT) as usize)
}

/// From now on messages may be printed (the first CUDA call).
pub fn announce() -> bool {
    !ANNOUNCED.swap(true, Ordering::AcqRel)
}

pub fn announced() -> bool {
    ANNOUNCED.load(Ordering::Acquire)
}

/// Whole milliseconds since faults turned on.
pub fn on_for_ms() -> u64 {
    clock::monotonic_ns().saturating_sub(ON_SINCE_NS.load(Ordering::Acquire)) / 1_000_000
}

/// Counts one would-be fault; returns how many came before it in this on-period.
pub fn count_candidate() -> u64 {
    CANDIDATES.fetch_add(1, Ordering::AcqRel)
}

/// Takes one of the `limit` faults of on-period `period`; false when none is left.
pub fn take_fault(limit: u64, period: u32) -> bool {
    let n = INJECTED.fetch_add(1, Ordering::AcqRel);
    if n < limit {
        if n + 1 == limit && EXHAUSTED.swap(period, Ordering::AcqRel) != period && announced() {
            say!("count={limit} reached: no more faults until the toggle changes");
        }
        return true;
    }
    false
}

/// One more (`up`) or one fewer thread holds an unread injected runtime error of `period`.
pub fn unread(period: u32, up: bool) {
    let _ = UNREAD.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
        let (p, n) = ((v >> 32) as u32, v & 0xffff_ffff);
        match (p == period, up) {
            (true, true) => Some(v + 1),
            (true, false) => Some(u64::from(period) << 32 | n.saturating_sub(1)),
            (false, true) => Some(u64::from(period) << 32 | 1),
            (false, false) => None, // an older period's: forgotten when the period ended
        }
    });
}

fn unread_in(period: u32) -> u64 {
    let v = UNREAD.load(Ordering::Acquire);
    if (v >> 32) as u32 == period {
        v & 0xffff_ffff
    } else {
        0
    }
}

/// A seed for this process, drawn once from the kernel's random pool.
fn process_seed() -> u64 {
    let mut s = PROCESS_SEED.load(Ordering::Acquire);
    if s == 0 {
        let mut buf = [0u8; 8];
        // SAFETY: getrandom writes at most 8 bytes into buf; GRND_NONBLOCK never waits.
        let n = unsafe { libc::syscall(libc::SYS_getrandom, buf.as_mut_ptr(), 8usize, libc::GRND_NONBLOCK) };
        s = if n == 8 {
            u64::from_le_bytes(buf)
        } else {
            clock::monotonic_ns() ^ (u64::from(std::process::id()) << 32)
        };
        s = s.max(1);
        PROCESS_SEED.store(s, Ordering::Release);
    }
    s
}

/// Whether an "on" decision reaches this process: always from the environment; from the toggle
/// file with `scope=process` only if the process started before the file was written.
fn reaches_this_process(d: &Decision) -> bool {
    let row = &xids::XIDS[d.xid];
    let process_scope = d.scenario.scope.map_or(row.process_scope, |s| s == Scope::Process);
    match d.written {
        Some(w) if process_scope => !birth::started_after(w.mtime_ns),
        _ => true,
    }
}

/// Publishes a decision that differs from the last one; prints one line when the state changes
/// after the first CUDA call. Only the toggle checker calls this (one writer).
pub fn apply(d: Decision, source: Source) {
    let held = latch::get();
    if held != Latch::None {
        if announced() && !LATCH_NOTED.swap(true, Ordering::AcqRel) {
            let what =
                if held == Latch::Sticky { "the fault is sticky" } else { "an asynchronous fault broke this process" };
            say!("the toggle changed, but {what}: this process stays faulted until it restarts");
        }
        return;
    }
    let was_on = ACTIVE.load(Ordering::Acquire) != 0;
    if !d.on && !was_on {
        return;
    }
    let row = &xids::XIDS[d.xid];
    let reaches = d.on && reaches_this_process(&d);
    let seed = if reaches && d.scenario.percent.is_some() { process_seed() } else { 0 };
    // A process the fault does not reach still sees the GPU's ECC state through NVML.
    let open = reaches || (d.on && row.ecc.any());
    if d.on && open {
        // A new on-period: the plan first, so no call sees the new XID with an old plan.
        plan::publish(&Plan::of(&d.scenario, seed, row.asynchronous));
        CANDIDATES.store(0, Ordering::Release);
        INJECTED.store(0, Ordering::Release);
        ON_SINCE_NS.store(clock::monotonic_ns(), Ordering::Release);
        let period = PERIOD.fetch_add(1, Ordering::AcqRel) + 1;
        UNREAD.store(u64::from(period) << 32, Ordering::Release);
        let clean = if reaches { 0 } else { CLEAN_BIT };
        ACTIVE.store(ON_BIT | clean | d.xid as u32, Ordering::Release);
        gate().fetch_or(gate::FAULTING, Ordering::AcqRel);
    } else {
        ACTIVE.store(0, Ordering::Release);
        gate().fetch_and(!gate::FAULTING, Ordering::AcqRel);
    }
    if announced() {
        announce_change(&d, source, seed, reaches);
    }
}

/// Closes the gate once `count` ran out and every injected runtime error was read by
/// `cudaGetLastError`, so calls cost nothing again until the toggle changes. Runs under the
/// check lock, like [`apply`].
pub fn settle() {
    let period = PERIOD.load(Ordering::Acquire);
    if EXHAUSTED.load(Ordering::Acquire) == period
        && ACTIVE.load(Ordering::Acquire) != 0
        && !latch::held()
        && unread_in(period) == 0
    {
        gate().fetch_and(!gate::FAULTING, Ordering::AcqRel);
    }
}

/// In a forked child: a new process. Its first CUDA call starts an on-period of its own (a full
/// `count`, fresh draws with a fresh seed unless `seed=` is set), nothing is latched, and for
/// `scope=process` it started at the fork.
pub fn after_fork() {
    PROCESS_SEED.store(0, Ordering::Release);
    UNREAD.store(0, Ordering::Release);
    LATCH_NOTED.store(false, Ordering::Release);
    latch::after_fork();
    birth::after_fork();
}

fn announce_change(d: &Decision, source: Source, seed: u64, reaches: bool) {
    let Some(c) = config::get() else {
        return;
    };
    let row = &xids::XIDS[d.xid];
    let mut scenario = d.scenario;
    if scenario.percent.is_some() && reaches {
        scenario.seed = scenario.seed.or(Some(seed));
    }
    // Say what the fault does here: the XID's surface and scope unless the scenario names them.
    let surface = if row.asynchronous { toggle_grammar::Surface::Async } else { toggle_grammar::Surface::Immediate };
    let scope = if row.process_scope { Scope::Process } else { Scope::Device };
    scenario.surface = scenario.surface.or(Some(surface));
    scenario.scope = scenario.scope.or(Some(scope));
    let unreached = if reaches { "" } else { "; not in this process: it started after the file was written" };
    match (d.on, source) {
        (true, Source::Env) => say!(
            "faults ON: simulating XID {} ({}){} [CUDA_FAULT_INJECTION_ENABLED, no toggle file at {}]",
            row.xid,
            row.description,
            scenario,
            c.toggle_path()
        ),
        (true, Source::File) => say!(
            "faults ON: simulating XID {} ({}){} [toggle file {}{unreached}]",
            row.xid,
            row.description,
            scenario,
            c.toggle_path()
        ),
        (false, Source::Env) => say!("faults OFF [toggle file {} removed; environment says off]", c.toggle_path()),
        (false, Source::File) => say!("faults OFF [toggle file {}]", c.toggle_path()),
    }
}
