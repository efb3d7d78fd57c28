//! The slow path: every trampoline comes here when the gate is open (faults on, first call of
//! the process, or per-call toggle checks). It decides between forwarding the call untouched and
//! returning the simulated XID's error.

use core::sync::atomic::Ordering;

use crate::arch::{self, Regs};
use crate::state::{self, gate};
use crate::{device, flags, scenario, slots, xids, Api};

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
pub unsafe extern "C" fn cf_dispatch(slot: u32, regs: *const Regs) -> u64 {
    let slot = slot as usize;
    // SAFETY: the assembly passes a pointer into its own live frame.
    let regs = unsafe { &*regs };
    match std::panic::catch_unwind(|| decide(slot, regs)) {
        Ok(v) => v,
        // Fail open: a bug in the shim must not become an error the application sees.
        Err(_) => {
            if slots::ensure_real(slot) {
                FORWARD
            } else {
                RETURN | u64::from(slots::meta(slot).map_or(999, |m| missing(m.api)))
            }
        }
    }
}

fn decide(slot: usize, regs: &Regs) -> u64 {
    let g = state::gate().load(Ordering::Acquire);
    if g & gate::START != 0 {
        state::touch();
    }
    if g & gate::EVERY_CALL != 0 {
        crate::toggle::check();
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
    let Some((xid, period)) = state::active() else {
        return FORWARD;
    };
    let row = &xids::XIDS[xid];
    let error = match meta.api {
        Api::Runtime => &row.runtime,
        Api::Driver => &row.driver,
        Api::Nvml => match &row.nvml {
            Some(e) => e,
            None => return FORWARD, // this XID leaves NVML working
        },
    };
    let sc = scenario::current();
    if let Some(devices) = &sc.devices {
        // Calls the CUDA library makes while the shim asks it for a device pass untouched.
        if device::asking() || !device::hits(devices, &meta, regs) {
            return FORWARD;
        }
    }
    if sc.after_ms > 0 && state::on_for_ms() < sc.after_ms {
        return FORWARD;
    }
    if sc.after_calls > 0 && state::count_call() < sc.after_calls {
        return FORWARD;
    }
    if sc.hang {
        return hang(slot, &meta);
    }
    if sc.sticky {
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
    if slots::first_fault_in(slot, period) {
        crate::log::emit(format_args!("[XID {} SIM] {} -> {} ({})", row.xid, meta.name, error.name, error.code));
    }
    RETURN | u64::from(error.code)
}

/// Hang mode: a synchronizing call blocks, like a process stuck behind a GPU that fell off the
/// bus, until the fault is turned off; then it goes through. Other calls pass (work is queued,
/// never completed). The thread sleeps in `nanosleep`, so the process can be killed normally.
fn hang(slot: usize, meta: &slots::Meta) -> u64 {
    if meta.flags & flags::SYNC == 0 {
        return FORWARD;
    }
    if let Some((xid, period)) = state::active() {
        if slots::first_fault_in(slot, period) {
            crate::log::emit(format_args!("[XID {} SIM] {} -> hangs (CUDA_FAULT_MODE=hang)", xids::XIDS[xid].xid, meta.name));
        }
    }
    let nap = libc::timespec { tv_sec: 0, tv_nsec: 5_000_000 };
    while state::active().is_some_and(|_| scenario::current().hang) {
        if state::gate().load(Ordering::Acquire) & gate::EVERY_CALL != 0 {
            crate::toggle::check();
        }
        // SAFETY: nap is valid; an interrupted sleep just loops.
        unsafe { libc::nanosleep(&nap, core::ptr::null_mut()) };
    }
    FORWARD
}
