//! The runtime's per-thread last error. The real runtime records every error a runtime call
//! returns, and `cudaGetLastError`/`cudaPeekAtLastError` report it later: that is how PyTorch
//! notices a failed launch. When a scenario spares those two (`functions=`, `percent=`, …) they
//! still report the fault injected into an earlier call of the thread, also the last fault of a
//! `count` budget: the gate stays open until every thread has read its injected error (or the
//! toggle changes).

use hook_list::flags;

use crate::judge::Verdict;
use crate::period_cell::PeriodCell;
use crate::slots::Meta;
use crate::state;

thread_local! {
    /// The error code of the thread's last injected runtime error in the on-period; 0: none.
    static LAST: PeriodCell<u32> = const { PeriodCell::new(0) };
}

/// Records an injected runtime error, or answers `cudaGetLastError`/`cudaPeekAtLastError` with
/// one when the verdict lets them through.
pub fn track(meta: &Meta, period: u32, verdict: Verdict) -> Verdict {
    let reads = meta.flags & (flags::LAST_ERROR | flags::PEEK_ERROR);
    let held = LAST.with(|l| l.get(period));
    if reads == 0 {
        if let Verdict::Return(code @ 1..) = verdict {
            LAST.with(|l| l.set(period, code));
            if held == 0 {
                state::unread(period, true);
            }
        }
        return verdict;
    }
    if meta.flags & flags::LAST_ERROR != 0 && held != 0 {
        LAST.with(|l| l.set(period, 0));
        state::unread(period, false);
    }
    match verdict {
        Verdict::Forward if held != 0 => Verdict::Return(held),
        v => v,
    }
}
