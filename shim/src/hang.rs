//! Hang mode: a synchronizing call blocks, like a process stuck behind a GPU that fell off the
//! bus, for as long as faults are on in hang mode; other calls pass (work is queued, never
//! completed). The thread sleeps in `nanosleep`, so the process can be killed normally.
//!
//! A blocked call is released when the toggle goes off (it then goes through: the GPU is back) or
//! when the fault in force stops hanging (`mode=error`: it then returns the XID's error, never
//! success). Running out of `count` releases nothing: exactly `count` calls block. A sticky hang
//! (`sticky=1`) latches the process: the toggle can no longer release it.

use core::sync::atomic::Ordering;

use hook_list::flags;

use crate::judge::Verdict;
use crate::latch::{self, Latch};
use crate::plan::{self, Plan};
use crate::{gate, lifecycle, slots, state, xids};

pub fn hang(slot: usize, meta: &slots::Meta, active: state::Active, p: &Plan, sticky: bool) -> Verdict {
    if meta.flags & flags::SYNC == 0 {
        return Verdict::Forward;
    }
    if !sticky && p.count.is_some_and(|limit| !state::take_fault(limit, active.period)) {
        return Verdict::Forward;
    }
    if p.sticky {
        latch::advance(Latch::None, Latch::Sticky);
    }
    if slots::first_fault_in(slot, active.period) {
        crate::log::emit(format_args!(
            "[XID {} SIM] {} -> hangs (CUDA_FAULT_MODE=hang)",
            xids::XIDS[active.xid].xid,
            meta.name
        ));
    }
    let nap = libc::timespec { tv_sec: 0, tv_nsec: 5_000_000 };
    while state::faulting_xid().is_some() && plan::current().hang {
        if state::gate().load(Ordering::Acquire) & gate::EVERY_CALL != 0 {
            lifecycle::check(false);
        } else {
            // A starved poller must not keep a hung call parked after the toggle went off.
            lifecycle::check_if_late();
        }
        // SAFETY: nap is valid; an interrupted sleep just loops.
        unsafe { libc::nanosleep(&nap, core::ptr::null_mut()) };
    }
    // Still on, but no longer hanging: the call fails as the fault in force says.
    match state::faulting_xid().and_then(|x| xids::XIDS[x].error(meta.api)) {
        Some(e) => Verdict::Return(e.code),
        None => Verdict::Forward,
    }
}
