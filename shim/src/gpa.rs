//! `cuGetProcAddress` and `cuGetProcAddress_v2`: the door through which the CUDA runtime (shared
//! and static), NCCL, PyTorch and CuPy fetch driver entry points. The real function answers; every
//! pointer it hands out is swapped for a trampoline bound to exactly that pointer, one per
//! (name, requested version, flags), so `cuCtxSynchronize` at 2000 and at 13000 (different
//! signatures) and `cuLaunchKernel` vs its `_ptsz` twin each keep their own target.

use core::ffi::{c_char, c_int, c_void, CStr};
use core::sync::atomic::{AtomicUsize, Ordering};

use hook_list::{flags, names};

use crate::{resolve, slots, Api};

type Gpa = unsafe extern "C" fn(*const c_char, *mut *mut c_void, c_int, u64) -> c_int;
type GpaV2 = unsafe extern "C" fn(*const c_char, *mut *mut c_void, c_int, u64, *mut c_int) -> c_int;

/// The driver's own `cuGetProcAddress` (v1, 4 arguments) and `_v2` (5 arguments).
static REAL: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
const V1: usize = 0;
const V2: usize = 1;
const NAMES: [&CStr; 2] = [c"cuGetProcAddress", c"cuGetProcAddress_v2"];
/// CUDA_ERROR_NOT_FOUND, when no driver is loaded at all.
const NOT_FOUND: c_int = 500;

fn note(which: usize, real: usize) {
    if real != 0 && !resolve::is_own(real) {
        let _ = REAL[which].compare_exchange(0, real, Ordering::AcqRel, Ordering::Acquire);
    }
}

fn real(which: usize) -> usize {
    let p = REAL[which].load(Ordering::Acquire);
    if p != 0 {
        return p;
    }
    note(which, resolve::find(Api::Driver, NAMES[which]));
    REAL[which].load(Ordering::Acquire)
}

fn own(which: usize) -> usize {
    if which == V1 {
        cuGetProcAddress as *const () as usize
    } else {
        cuGetProcAddress_v2 as *const () as usize
    }
}

/// For the `dlsym` policy: a lookup of either name gets our wrapper (remembering what the handle
/// really holds). None when `n` is neither name; 0 when the handle does not have it (so the real
/// `dlsym` reports the failure).
pub fn lookup(handle: *mut c_void, n: &[u8], name: &CStr) -> Option<usize> {
    let which = NAMES.iter().position(|c| c.to_bytes() == n)?;
    if handle != libc::RTLD_NEXT {
        let r = resolve::lookup(handle, name);
        if r == 0 {
            return Some(0);
        }
        note(which, r);
    }
    Some(own(which))
}

/// Replaces a handed-out pointer by its trampoline.
///
/// # Safety
/// `symbol` and `pfn` as passed to cuGetProcAddress, after the real one succeeded.
unsafe fn substitute(symbol: *const c_char, pfn: *mut *mut c_void, version: c_int, cu_flags: u64) {
    if symbol.is_null() || pfn.is_null() {
        return;
    }
    // SAFETY: per the caller's contract.
    let (name, real) = unsafe { (CStr::from_ptr(symbol).to_bytes(), *pfn as usize) };
    if name.is_empty() || real == 0 {
        return;
    }
    if let Some(which) = NAMES.iter().position(|c| c.to_bytes() == name) {
        // cuGetProcAddress asked for at 12000 or later is the 5-argument ABI.
        let which = if which == V2 || version >= 12000 { V2 } else { V1 };
        note(which, real);
        // SAFETY: pfn is valid per the contract.
        unsafe { *pfn = own(which) as *mut c_void };
        return;
    }
    let function = hook_list::function(Api::Driver, names::base_name(name));
    let flags = function.map_or(0, |id| hook_list::FUNCTIONS[usize::from(id)].flags);
    if flags & flags::EXEMPT != 0 || resolve::is_own(real) {
        return;
    }
    let wrapped = slots::wrap(Api::Driver, name, version, cu_flags, real, function);
    // SAFETY: pfn is valid per the contract.
    unsafe { *pfn = wrapped as *mut c_void };
}

/// # Safety
/// The CUDA driver API contract of `cuGetProcAddress`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn cuGetProcAddress(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    cuda_version: c_int,
    cu_flags: u64,
) -> c_int {
    let r = real(V1);
    if r == 0 {
        return NOT_FOUND;
    }
    // SAFETY: r is the driver's cuGetProcAddress; arguments are passed through unchanged.
    let rc = unsafe { core::mem::transmute::<usize, Gpa>(r)(symbol, pfn, cuda_version, cu_flags) };
    if rc == 0 {
        // SAFETY: the real function succeeded with these arguments.
        let _ = std::panic::catch_unwind(|| unsafe { substitute(symbol, pfn, cuda_version, cu_flags) });
    }
    rc
}

/// # Safety
/// The CUDA driver API contract of `cuGetProcAddress_v2`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn cuGetProcAddress_v2(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    cuda_version: c_int,
    cu_flags: u64,
    status: *mut c_int,
) -> c_int {
    let r = real(V2);
    if r == 0 {
        return NOT_FOUND;
    }
    // SAFETY: r is the driver's cuGetProcAddress_v2; arguments are passed through unchanged.
    let rc = unsafe { core::mem::transmute::<usize, GpaV2>(r)(symbol, pfn, cuda_version, cu_flags, status) };
    if rc == 0 {
        // SAFETY: the real function succeeded with these arguments.
        let _ = std::panic::catch_unwind(|| unsafe { substitute(symbol, pfn, cuda_version, cu_flags) });
    }
    rc
}
