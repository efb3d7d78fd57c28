//! The `dlsym` policy. The CUDA runtime finds the driver with `dlsym(handle, "cuGetProcAddress_v2")`;
//! Triton, TensorRT-LLM, PyTorch's lazy NVRTC and pynvml look driver and NVML functions up the
//! same way. Such lookups get the shim's wrappers; every other lookup is left to the real
//! `dlsym`, reached by a tail jump so that `RTLD_NEXT` still means "after the caller".

use core::ffi::{c_char, c_void, CStr};

use hook_list::{flags, names};

use crate::resolve::Owner;
use crate::{gpa, resolve, slots, Api};

/// Returns a replacement for the lookup, or 0 to let the real `dlsym` answer it.
///
/// # Safety
/// Called by the `dlsym` entry with the caller's arguments.
pub unsafe extern "C" fn cf_dlsym_policy(handle: *mut c_void, symbol: *const c_char, _caller: usize) -> usize {
    // The entry jumps through cf_real_dlsym when we return 0, so make sure it is set; if even
    // dlvsym cannot find it there is nothing sensible left to do.
    if resolve::real_dlsym().is_none() {
        return 0;
    }
    if symbol.is_null() {
        return 0;
    }
    // SAFETY: dlsym's contract: symbol is a NUL-terminated string.
    let name = unsafe { CStr::from_ptr(symbol) };
    std::panic::catch_unwind(|| policy(handle, name)).unwrap_or(0)
}

fn policy(handle: *mut c_void, name: &CStr) -> usize {
    let n = name.to_bytes();
    let Some(api) = names::api_of(n) else {
        return 0;
    };
    if api == Api::Driver {
        if let Some(wrapper) = gpa::lookup(handle, n, name) {
            return wrapper;
        }
    }
    let function = hook_list::function(api, names::base_name(n));
    let listed = function.map(|id| hook_list::FUNCTIONS[usize::from(id)].flags);
    let flags = listed.unwrap_or(0);
    let wrap = match api {
        _ if flags & flags::EXEMPT != 0 => false,
        Api::Driver => true, // every driver entry point returns CUresult
        Api::Runtime => listed.is_some(),
        // nvmlErrorString returns a string: only listed names and the nvmlDevice* family.
        Api::Nvml => listed.is_some() || n.starts_with(b"nvmlDevice"),
    };
    if !wrap {
        return 0;
    }
    let real = if handle == libc::RTLD_NEXT {
        // The caller's "next" cannot be computed on its behalf; for a CUDA name it is the CUDA
        // library's own definition.
        resolve::find(api, name)
    } else {
        resolve::lookup(handle, name)
    };
    if real == 0 {
        return 0; // absent: the real dlsym returns NULL and sets dlerror() for the caller
    }
    match resolve::owner(real) {
        Owner::Shim => real, // already one of our exports (RTLD_DEFAULT finds the preload first)
        Owner::Cuda(lib) if lib == api => slots::wrap(api, n, 0, 0, real, function),
        _ => 0, // some other library defines this name: not ours to touch
    }
}
