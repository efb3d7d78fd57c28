//! Whether a call of an active fault faults, and how. A call that would fault goes through the
//! scenario's filters in this order: the function (`functions`), the device (`devices`), the
//! delay (`after_ms`, then `after_calls`), the share (`percent`) and the budget (`count`); the
//! first filter that lets it pass forwards it. Then the fault shows as the XID's surface says:
//!
//! - immediate: the call returns the XID's error (in hang mode a synchronizing call blocks);
//! - async: a launch or other asynchronous work returns success and leaves the fault pending; the
//!   next synchronizing call (or stream/event query) surfaces it, and from then on every call
//!   returns it, as from a broken context. Other calls behave normally until then.
//!
//! A latched process (`latch`) skips the filters that decide *when* to fault (delay, share,
//! budget): the fault already happened.

use hook_list::flags;

use crate::arch::{self, Regs};
use crate::latch::{self, Latch};
use crate::plan::{self, Plan};
use crate::xids::XidRow;
use crate::{device, draw, ecc, hang, slots, state, xids, Api};

/// What the slow path does with a call.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    /// Forward it untouched.
    Forward,
    /// Return this code without reaching the real function (0: the shim answered it).
    Return(u32),
}

/// The verdict, and whether the scenario selected the call (its function and device), so that
/// it was judged at all.
pub struct Judged {
    pub verdict: Verdict,
    pub selected: bool,
}

fn spared() -> Judged {
    Judged { verdict: Verdict::Forward, selected: true }
}

fn untouched() -> Judged {
    Judged { verdict: Verdict::Forward, selected: false }
}

fn fails(code: u32) -> Judged {
    Judged { verdict: Verdict::Return(code), selected: true }
}

/// What kind of call it is for an asynchronous fault.
#[derive(PartialEq, Eq)]
enum Kind {
    /// Launches and asynchronous copies and memsets: they return before the work is done.
    Work,
    /// Synchronizing calls and stream/event queries: where an asynchronous fault surfaces.
    Sync,
    Other,
}

fn kind(meta: &slots::Meta) -> Kind {
    if meta.flags & (flags::LAUNCH | flags::ASYNC) != 0 {
        Kind::Work
    } else if meta.flags & (flags::SYNC | flags::QUERY) != 0 {
        Kind::Sync
    } else {
        Kind::Other
    }
}

pub fn judge(slot: usize, regs: &Regs, meta: &slots::Meta, active: state::Active) -> Judged {
    let row = &xids::XIDS[active.xid];
    if meta.flags & flags::ECC_ANSWERS != 0 && row.ecc.any() {
        return ecc::answer(slot, regs, meta, row);
    }
    if active.clean {
        return untouched();
    }
    let Some(error) = row.error(meta.api) else {
        return untouched(); // this XID leaves NVML working
    };
    let p = plan::current();
    let on_device = || p.devices.as_ref().is_none_or(|d| !device::asking() && device::hits(d, meta, regs));
    match latch::get() {
        Latch::Broken if meta.api != Api::Nvml => {
            // The context is broken: every call on the device returns the error.
            if !on_device() {
                return spared();
            }
            log_fault(slot, active, row, meta.name, error.name, error.code);
            return fails(error.code);
        }
        Latch::Pending if meta.api != Api::Nvml => return pending(slot, meta, active, row, error.code, on_device),
        _ => {}
    }
    if !p.selects(meta.function) {
        return untouched();
    }
    // Device enumeration fails only when the GPU is gone, unless `functions=` names it.
    if meta.flags & (flags::COUNT | flags::INIT) != 0 && !row.lost && p.functions.is_none() {
        return spared();
    }
    if !on_device() {
        // Judged by its device and let through: the driver calls that carry it out pass too (a
        // cudaSetDevice away from the faulted GPU must not fail in the runtime's cuCtxSetCurrent).
        return spared();
    }
    if p.asynchronous && !p.hang && meta.api != Api::Nvml && kind(meta) != Kind::Work {
        return untouched(); // nothing happened yet
    }
    let sticky = latch::get() == Latch::Sticky;
    if !sticky && !when(&p, active) {
        return spared();
    }
    if p.hang {
        return Judged { verdict: hang::hang(slot, meta, active, &p, sticky), selected: true };
    }
    if !sticky && p.count.is_some_and(|limit| !state::take_fault(limit, active.period)) {
        return spared();
    }
    if p.asynchronous && meta.api != Api::Nvml {
        // The work "runs" and faults on the GPU: the launch itself succeeds.
        if latch::advance(Latch::None, Latch::Pending) && slots::first_fault_in(slot, active.period) {
            crate::log::emit(format_args!(
                "[XID {} SIM] {} -> accepted; the fault surfaces at the next synchronizing call",
                row.xid, meta.name
            ));
        }
        return fails(0);
    }
    if p.sticky {
        latch::advance(Latch::None, Latch::Sticky);
    }
    if meta.flags & flags::COUNT != 0 && row.lost {
        let out = arch::arg(regs, 0) as *mut i32;
        if !out.is_null() {
            // SAFETY: the first argument of a COUNT function is its device-count out-pointer;
            // the real function would have written through it too.
            unsafe { out.write_unaligned(0) };
        }
    }
    log_fault(slot, active, row, meta.name, error.name, error.code);
    fails(error.code)
}

/// The filters that decide when a selected call faults: the delay, then the share.
fn when(p: &Plan, active: state::Active) -> bool {
    if p.after_ms > 0 && state::on_for_ms() < p.after_ms {
        return false;
    }
    if p.after_calls > 0 && state::count_candidate() < p.after_calls {
        return false;
    }
    p.percent.is_none_or(|share| share.hits(draw::next(active.period, p.seed)))
}

/// An asynchronous fault is in flight: more work queues behind it (and returns success), the
/// next synchronizing call on the device surfaces it, other calls behave normally.
fn pending(
    slot: usize,
    meta: &slots::Meta,
    active: state::Active,
    row: &XidRow,
    code: u32,
    on_device: impl Fn() -> bool,
) -> Judged {
    match kind(meta) {
        Kind::Other => untouched(),
        _ if !on_device() => spared(),
        Kind::Work => fails(0),
        Kind::Sync => {
            if latch::advance(Latch::Pending, Latch::Broken) && state::announced() {
                say!("XID {} surfaced at {}: this process's CUDA context is broken; every call returns {} until it restarts", row.xid, meta.name, code);
            }
            let name = row.error(meta.api).map_or("", |e| e.name);
            log_fault(slot, active, row, meta.name, name, code);
            fails(code)
        }
    }
}

fn log_fault(slot: usize, active: state::Active, row: &XidRow, function: &str, name: &str, code: u32) {
    if slots::first_fault_in(slot, active.period) {
        crate::log::emit(format_args!("[XID {} SIM] {} -> {} ({})", row.xid, function, name, code));
    }
}
