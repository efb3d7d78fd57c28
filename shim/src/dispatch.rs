//! The slow path: every trampoline comes here when the gate is open (faults on, first call of
//! the process, or per-call toggle checks). It decides between forwarding the call untouched and
//! returning a code in its place (see `judge` for how).

use core::sync::atomic::Ordering;

use hook_list::flags;

use crate::arch::Regs;
use crate::judge::{self, Verdict};
use crate::{gate, last_error, lifecycle, nesting, slots, state, Api};

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
    // Fail open: a bug in the shim must not become an error the application sees.
    match std::panic::catch_unwind(|| decide(slot, regs, ret)).unwrap_or_else(|_| forward_or_missing(slot)) {
        Verdict::Forward => FORWARD,
        Verdict::Return(code) => RETURN | u64::from(code),
    }
}

fn forward_or_missing(slot: usize) -> Verdict {
    if slots::ensure_real(slot) {
        Verdict::Forward
    } else {
        Verdict::Return(slots::meta(slot).map_or(999, |m| missing(m.api)))
    }
}

fn decide(slot: usize, regs: &Regs, ret: usize) -> Verdict {
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
        return Verdict::Return(999); // unreachable: trampolines only exist for published slots
    };
    if !slots::ensure_real(slot) {
        if slots::first_fault_in(slot, u32::MAX) {
            say!("cannot find the real {}; it returns {}", meta.name, missing(meta.api));
        }
        return Verdict::Return(missing(meta.api));
    }
    if meta.flags & flags::EXEMPT != 0 {
        return Verdict::Forward;
    }
    let Some(active) = state::active() else {
        // `count` ran out: a runtime error injected before still reaches cudaGetLastError.
        if meta.flags & (flags::LAST_ERROR | flags::PEEK_ERROR) != 0 {
            if let Some(period) = state::on_period() {
                return last_error::track(&meta, period, Verdict::Forward);
            }
        }
        return Verdict::Forward;
    };
    if meta.api == Api::Driver && nesting::part_of_passed_runtime_call(active.period, ret) {
        return Verdict::Forward;
    }
    let judged = judge::judge(slot, regs, &meta, active);
    if meta.api == Api::Runtime {
        let passed = judged.selected && judged.verdict == Verdict::Forward;
        nesting::runtime_call(active.period, passed, slot);
        return last_error::track(&meta, active.period, judged.verdict);
    }
    judged.verdict
}
