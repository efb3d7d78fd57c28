//! NVML's ECC queries while an ECC XID is on (the XID table's ecc column): the shim calls the
//! real function with its exact signature, and when that succeeds adds the XID's state to what
//! it wrote: one more uncorrected error (volatile and aggregate), a retirement or row remap
//! pending, a remap failure. Which functions, and their shapes, are hooks.list's `ecctotal`,
//! `retiredpending` and `remappedrows` flags. This is the GPU's state, not a call's fault: every
//! process sees it while the fault is on, whatever the scope, and it is neither drawn nor counted.

use core::ffi::c_void;

use hook_list::flags;

use crate::arch::{self, Regs};
use crate::judge::{Judged, Verdict};
use crate::xids::XidRow;
use crate::{device, plan, slots};

/// nvmlMemoryErrorType_t's NVML_MEMORY_ERROR_TYPE_UNCORRECTED.
const UNCORRECTED: usize = 1;
/// nvmlEnableState_t's NVML_FEATURE_ENABLED.
const ENABLED: u32 = 1;

type TotalEccErrors = unsafe extern "C" fn(*mut c_void, u32, u32, *mut u64) -> i32;
type RetiredPagesPending = unsafe extern "C" fn(*mut c_void, *mut u32) -> i32;
type RemappedRows = unsafe extern "C" fn(*mut c_void, *mut u32, *mut u32, *mut u32, *mut u32) -> i32;

/// Adds `by` to a counter the real function wrote (NULL: nothing to write).
fn add<T: Copy + core::ops::Add<Output = T>>(p: *mut T, by: T) {
    if !p.is_null() {
        // SAFETY: the real function just wrote through this out-pointer and succeeded.
        unsafe { p.write_unaligned(p.read_unaligned() + by) };
    }
}

fn set(p: *mut u32, v: u32) {
    if !p.is_null() {
        // SAFETY: as in `add`.
        unsafe { p.write_unaligned(v) };
    }
}

pub fn answer(slot: usize, regs: &Regs, meta: &slots::Meta, row: &XidRow) -> Judged {
    let untouched = Judged { verdict: Verdict::Forward, selected: false };
    let p = plan::current();
    if p.devices.as_ref().is_some_and(|d| device::asking() || !device::hits(d, meta, regs)) {
        return untouched;
    }
    let real = slots::real(slot);
    if real == 0 {
        return untouched;
    }
    let a = |i: usize| arch::arg(regs, i);
    let device = a(0) as *mut c_void;
    let e = &row.ecc;
    // SAFETY: hooks.list marks exactly the functions of these signatures with these flags, and
    // `real` is that function; its arguments are the caller's own.
    let rc = unsafe {
        if meta.flags & flags::ECC_TOTAL != 0 {
            let out = a(3) as *mut u64;
            let rc = core::mem::transmute::<usize, TotalEccErrors>(real)(device, a(1) as u32, a(2) as u32, out);
            if rc == 0 && e.uncorrected && a(1) as u32 as usize == UNCORRECTED {
                add(out, 1);
            }
            rc
        } else if meta.flags & flags::RETIRED_PENDING != 0 {
            let out = a(1) as *mut u32;
            let rc = core::mem::transmute::<usize, RetiredPagesPending>(real)(device, out);
            if rc == 0 && e.pending {
                set(out, ENABLED);
            }
            rc
        } else {
            let (corr, unc, pending, failure) =
                (a(1) as *mut u32, a(2) as *mut u32, a(3) as *mut u32, a(4) as *mut u32);
            let rc = core::mem::transmute::<usize, RemappedRows>(real)(device, corr, unc, pending, failure);
            if rc == 0 {
                if e.uncorrected || e.failure {
                    add(unc, 1);
                }
                if e.pending {
                    set(pending, 1);
                }
                if e.failure {
                    set(failure, 1);
                }
            }
            rc
        }
    };
    Judged { verdict: Verdict::Return(rc as u32), selected: true }
}
