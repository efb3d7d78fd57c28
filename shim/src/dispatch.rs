//! The slow path: every trampoline comes here when the gate is open (faults on, first call of
//! the process, or per-call toggle checks). It decides between forwarding the call untouched and
//! returning the simulated XID's error.
//!
//! A call that would fault goes through the scenario's filters in this order: the function
//! (`functions`), the device (`devices`), the delay (`after_ms`, then `after_calls`), the share
//! (`percent`) and the budget (`count`). The first filter that lets it pass forwards it.

use core::sync::atomic::Ordering;

use hook_list::flags;

use crate::arch::{self, Regs};
use crate::state;
use crate::{device, draw, gate, lifecycle, nesting, plan, slots, xids, Api};

/// Returned to the assembly: forward to `cf_real[slot]` with the saved registers.
const FORWARD: u64 = 0;
/// Returned to the assembly, or-ed with a code: return the low 32 bits to the caller.
const RETURN: u64 = 1 << 63;

/// Error returned when the real function does not exist (the program reached our export of a
/// function its CUDA library lacks): cudaErrorSymbolNotFound, CUDA_ERROR_NOT_FOUND,
/// NVML_ERROR_FUNCTION_NOT_FOUND.
fn missing(api: Api) -> u32 {
    match api {
        Api::Runtime | Api::Driver => 500,
        Api::Nvml => 13,
    }
}

/// Called by the assembly slow path with the slot number and the saved argument registers.
///
/// # Safety
/// `regs` points to the saved argument registers of the intercepted call.
pub unsafe extern "C" fn cf_dispatch(slot: u32, regs: *const Regs, ret: usize) -> u64 {
    let slot = slot as usize;
    // SAFETY: the assembly passes a pointer into its own live frame.
    let regs = unsafe { &*regs };
    match std::panic::catch_unwind(|| decide(slot, regs, ret)) {
        Ok(v) => v,
        // Fail open: a bug in the shim must not become an error the application sees.
        Err(_) => forward_or_missing(slot),
    }
}

fn forward_or_missing(slot: usize) -> u64 {
    if slots::ensure_real(slot) {
        FORWARD
    } else {
        RETURN | u64::from(slots::meta(slot).map_or(999, |m| missing(m.api)))
    }
}

fn decide(slot: usize, regs: &Regs, ret: usize) -> u64 {
    let g = state::gate().load(Ordering::Acquire);
    if g & gate::START != 0 && !lifecycle::touch() {
        // The first-call set-up is in progress on this very thread (a signal handler) or took
        // another thread too long: this call cannot know the state yet, so it goes through.
        return forward_or_missing(slot);
    }
    if g & gate::EVERY_CALL != 0 {
        lifecycle::check(true);
    } else {
        lifecycle::check_if_late();
    }
    let Some(meta) = slots::meta(slot) else {
        return RETURN | 999; // unreachable: trampolines only exist for published slots
    };
    if !slots::ensure_real(slot) {
        if slots::first_fault_in(slot, u32::MAX) {
            say!("cannot find the real {}; it returns {}", meta.name, missing(meta.api));
        }
        return RETURN | u64::from(missing(meta.api));
    }
    if meta.flags & flags::EXEMPT != 0 {
        return FORWARD;
    }
    let Some(active) = state::active() else {
        return FORWARD;
    };
    if meta.api == Api::Driver && nesting::part_of_passed_runtime_call(active.period, ret) {
        return FORWARD;
    }
    let (verdict, selected) = judge(slot, regs, &meta, active);
    if meta.api == Api::Runtime {
        nesting::runtime_call(active.period, selected && verdict == FORWARD, slot);
        return last_error::track(&meta, active.period, verdict);
    }
    verdict
}

/// Whether a call of an active fault faults: FORWARD, or RETURN with the error; and whether the
/// scenario selected the call (its function and device), so that it was judged at all.
fn judge(slot: usize, regs: &Regs, meta: &slots::Meta, active: state::Active) -> (u64, bool) {
    let selected = |verdict: u64| (verdict, true);
    let row = &xids::XIDS[active.xid];
    let error = match meta.api {
        Api::Runtime => &row.runtime,
        Api::Driver => &row.driver,
        Api::Nvml => match &row.nvml {
            Some(e) => e,
            None => return (FORWARD, false), // this XID leaves NVML working
        },
    };
    let p = plan::current();
    if !p.selects(meta.function) {
        return (FORWARD, false);
    }
    if let Some(devices) = &p.devices {
        // Calls the CUDA library makes while the shim asks it for a device pass untouched.
        if device::asking() || !device::hits(devices, meta, regs) {
            return (FORWARD, false);
        }
    }
    if p.after_ms > 0 && state::on_for_ms() < p.after_ms {
        return selected(FORWARD);
    }
    if p.after_calls > 0 && state::count_candidate() < p.after_calls {
        return selected(FORWARD);
    }
    if p.percent.is_some_and(|share| !share.hits(draw::next(active.period, p.seed))) {
        return selected(FORWARD);
    }
    if p.hang {
        return selected(hang(slot, meta, active, p.count));
    }
    if p.count.is_some_and(|limit| !state::take_fault(limit, active.period)) {
        return selected(FORWARD);
    }
    if p.sticky {
        state::latch();
    }
    if meta.flags & flags::COUNT != 0 {
        let out = arch::arg(regs, 0) as *mut i32;
        if !out.is_null() {
            // SAFETY: the first argument of a COUNT function is its device-count out-pointer;
            // the real function would have written through it too.
            unsafe { out.write_unaligned(0) };
        }
    }
    if slots::first_fault_in(slot, active.period) {
        crate::log::emit(format_args!("[XID {} SIM] {} -> {} ({})", row.xid, meta.name, error.name, error.code));
    }
    selected(RETURN | u64::from(error.code))
}

mod last_error {
    //! The runtime's per-thread last error. The real runtime records every error a runtime call
    //! returns, and `cudaGetLastError`/`cudaPeekAtLastError` report it later: that is how
    //! PyTorch notices a failed launch. When a scenario spares those two (`functions=`,
    //! `percent=`, …) they still report the fault injected into an earlier call of the thread.

    use hook_list::flags;

    use super::{FORWARD, RETURN};
    use crate::period_cell::PeriodCell;
    use crate::slots::Meta;

    thread_local! {
        /// The error code of the thread's last injected runtime error in the on-period; 0: none.
        static LAST: PeriodCell<u32> = const { PeriodCell::new(0) };
    }

    pub fn track(meta: &Meta, period: u32, verdict: u64) -> u64 {
        let reads = meta.flags & (flags::LAST_ERROR | flags::PEEK_ERROR);
        if reads == 0 {
            if verdict != FORWARD {
                LAST.with(|l| l.set(period, verdict as u32));
            }
            return verdict;
        }
        let code = LAST.with(|l| l.get(period));
        if meta.flags & flags::LAST_ERROR != 0 {
            LAST.with(|l| l.set(period, 0));
        }
        if verdict == FORWARD && code != 0 {
            return RETURN | u64::from(code);
        }
        verdict
    }
}

/// Hang mode: a synchronizing call blocks, like a process stuck behind a GPU that fell off the
/// bus, until the fault is turned off; then it goes through. Other calls pass (work is queued,
/// never completed). The thread sleeps in `nanosleep`, so the process can be killed normally.
fn hang(slot: usize, meta: &slots::Meta, active: state::Active, count: Option<u64>) -> u64 {
    if meta.flags & flags::SYNC == 0 {
        return FORWARD;
    }
    if count.is_some_and(|limit| !state::take_fault(limit, active.period)) {
        return FORWARD;
    }
    if slots::first_fault_in(slot, active.period) {
        crate::log::emit(format_args!(
            "[XID {} SIM] {} -> hangs (CUDA_FAULT_MODE=hang)",
            xids::XIDS[active.xid].xid,
            meta.name
        ));
    }
    let nap = libc::timespec { tv_sec: 0, tv_nsec: 5_000_000 };
    while state::active().is_some_and(|a| a.period == active.period) && plan::current().hang {
        if state::gate().load(Ordering::Acquire) & gate::EVERY_CALL != 0 {
            lifecycle::check(false);
        }
        // SAFETY: nap is valid; an interrupted sleep just loops.
        unsafe { libc::nanosleep(&nap, core::ptr::null_mut()) };
    }
    FORWARD
}
