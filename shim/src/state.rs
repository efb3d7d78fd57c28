//! The fault state: the gate word the trampolines test, the active XID and on-period, and the
//! per-period counters. [`apply`] publishes a decision; it runs only under the toggle checker's
//! lock (see `lifecycle`), so there is one writer.
//!
//! While faults are off the gate is zero (after the first call), so a call costs one load and a
//! predicted branch.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::decision::{Decision, Source};
use crate::gate;
use crate::plan::{self, Plan};
use crate::{clock, config, xids};

unsafe extern "C" {
    /// Defined in slots.s (starts as `gate::INITIAL`).
    static cf_gate: AtomicU32;
}

pub fn gate() -> &'static AtomicU32 {
    // SAFETY: cf_gate is a 4-byte aligned word in .data, valid for the life of the process.
    unsafe { &cf_gate }
}

const ON_BIT: u32 = 1 << 31;
/// The active fault: `ON_BIT | xid index`, or 0.
static ACTIVE: AtomicU32 = AtomicU32::new(0);
/// Incremented each time faults turn on: each function logs its first fault once per period,
/// and the per-period counters below restart.
static PERIOD: AtomicU32 = AtomicU32::new(0);
/// Set once the process has made its first CUDA call: from then on messages may be printed.
static ANNOUNCED: AtomicBool = AtomicBool::new(false);
/// When the current on-period began (CLOCK_MONOTONIC, ms), for `after_ms`.
static ON_SINCE_MS: AtomicU64 = AtomicU64::new(0);
/// Calls that would have faulted in the current on-period, for `after_calls`.
static CANDIDATES: AtomicU64 = AtomicU64::new(0);
/// Faults injected in the current on-period, for `count`.
static INJECTED: AtomicU64 = AtomicU64::new(0);
/// The on-period whose `count` ran out (0: none).
static EXHAUSTED: AtomicU32 = AtomicU32::new(0);
/// A sticky fault was injected: the process stays faulted whatever the toggle says.
static LATCHED: AtomicBool = AtomicBool::new(false);
static LATCH_NOTED: AtomicBool = AtomicBool::new(false);
/// The seed of this process's draws when the scenario names none (0: not drawn yet).
static PROCESS_SEED: AtomicU64 = AtomicU64::new(0);

/// The active fault of a call.
#[derive(Clone, Copy)]
pub struct Active {
    /// An index into `xids::XIDS`.
    pub xid: usize,
    pub period: u32,
}

/// The active fault, if faults are on (and `count` has not run out).
pub fn active() -> Option<Active> {
    let a = ACTIVE.load(Ordering::Acquire);
    if a & ON_BIT == 0 {
        return None;
    }
    let period = PERIOD.load(Ordering::Acquire);
    (EXHAUSTED.load(Ordering::Acquire) != period).then_some(Active { xid: (a & !ON_BIT) as usize, period })
}

/// From now on messages may be printed (the first CUDA call).
pub fn announce() -> bool {
    !ANNOUNCED.swap(true, Ordering::AcqRel)
}

/// Milliseconds since faults turned on.
pub fn on_for_ms() -> u64 {
    clock::monotonic_ms().saturating_sub(ON_SINCE_MS.load(Ordering::Acquire))
}

/// Counts one would-be fault; returns how many came before it in this on-period.
pub fn count_candidate() -> u64 {
    CANDIDATES.fetch_add(1, Ordering::AcqRel)
}

/// Takes one of the `limit` faults of on-period `period`; false when none is left.
pub fn take_fault(limit: u64, period: u32) -> bool {
    let n = INJECTED.fetch_add(1, Ordering::AcqRel);
    if n < limit {
        if n + 1 == limit && EXHAUSTED.swap(period, Ordering::AcqRel) != period && ANNOUNCED.load(Ordering::Acquire) {
            say!("count={limit} reached: no more faults until the toggle changes");
        }
        return true;
    }
    false
}

/// Latches a sticky fault (the first injected fault of a sticky scenario).
pub fn latch() {
    LATCHED.store(true, Ordering::Release);
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

/// Publishes a decision that differs from the last one; prints one line when the state changes
/// after the first CUDA call. Only the toggle checker calls this (one writer).
pub fn apply(d: Decision, source: Source) {
    if LATCHED.load(Ordering::Acquire) {
        if ANNOUNCED.load(Ordering::Acquire) && !LATCH_NOTED.swap(true, Ordering::AcqRel) {
            say!("the toggle changed, but the fault is sticky: this process stays faulted until it restarts");
        }
        return;
    }
    let was_on = ACTIVE.load(Ordering::Acquire) != 0;
    if !d.on && !was_on {
        return;
    }
    let seed = if d.on && d.scenario.percent.is_some() { process_seed() } else { 0 };
    if d.on {
        // A new on-period: the plan first, so no call sees the new XID with an old plan.
        plan::publish(&Plan::of(&d.scenario, seed));
        CANDIDATES.store(0, Ordering::Release);
        INJECTED.store(0, Ordering::Release);
        ON_SINCE_MS.store(clock::monotonic_ms(), Ordering::Release);
        PERIOD.fetch_add(1, Ordering::AcqRel);
        ACTIVE.store(ON_BIT | d.xid as u32, Ordering::Release);
        gate().fetch_or(gate::FAULTING, Ordering::AcqRel);
    } else {
        ACTIVE.store(0, Ordering::Release);
        gate().fetch_and(!gate::FAULTING, Ordering::AcqRel);
    }
    if ANNOUNCED.load(Ordering::Acquire) {
        announce_change(&d, source, seed);
    }
}

/// Closes the gate once `count` ran out, so calls cost nothing again until the toggle changes.
/// Runs under the check lock, like [`apply`].
pub fn settle() {
    if EXHAUSTED.load(Ordering::Acquire) == PERIOD.load(Ordering::Acquire) && ACTIVE.load(Ordering::Acquire) != 0 {
        gate().fetch_and(!gate::FAULTING, Ordering::AcqRel);
    }
}

fn announce_change(d: &Decision, source: Source, seed: u64) {
    let Some(c) = config::get() else {
        return;
    };
    let row = &xids::XIDS[d.xid];
    let mut scenario = d.scenario;
    if scenario.percent.is_some() {
        scenario.seed = scenario.seed.or(Some(seed));
    }
    match (d.on, source) {
        (true, Source::Env) => say!(
            "faults ON: simulating XID {} ({}){} [CUDA_FAULT_INJECTION_ENABLED, no toggle file at {}]",
            row.xid,
            row.description,
            scenario,
            c.toggle_path()
        ),
        (true, Source::File) => say!(
            "faults ON: simulating XID {} ({}){} [toggle file {}]",
            row.xid,
            row.description,
            scenario,
            c.toggle_path()
        ),
        (false, Source::Env) => say!("faults OFF [toggle file {} removed; environment says off]", c.toggle_path()),
        (false, Source::File) => say!("faults OFF [toggle file {}]", c.toggle_path()),
    }
}
