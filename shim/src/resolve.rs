//! Finding the real functions behind the shim's exports, and telling which library a function
//! pointer belongs to. Nothing here runs on the fast path: results are cached in the slot table.

use core::ffi::{c_char, c_void, CStr};
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::{objects, Api};

type DlsymFn = unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_void;

unsafe extern "C" {
    /// Defined next to the `dlsym` entry; the real `dlsym` once resolved.
    static cf_real_dlsym: AtomicUsize;
}

#[cfg(target_arch = "x86_64")]
const DLSYM_VERSIONS: [&CStr; 2] = [c"GLIBC_2.34", c"GLIBC_2.2.5"];
#[cfg(target_arch = "aarch64")]
const DLSYM_VERSIONS: [&CStr; 2] = [c"GLIBC_2.34", c"GLIBC_2.17"];

/// The real `dlsym`, which the shim's own export shadows. On glibc it is found with `dlvsym`,
/// which the shim does not interpose, so this never recurses (Rust's std itself calls `dlsym`
/// during start-up, before our constructor); elsewhere, in the C library's symbol table.
pub fn real_dlsym() -> Option<DlsymFn> {
    // SAFETY: cf_real_dlsym is an aligned word in .data.
    let cell = unsafe { &cf_real_dlsym };
    let mut p = cell.load(Ordering::Acquire);
    if p == 0 {
        p = match crate::libc_extra::dlvsym() {
            Some(dlvsym) => DLSYM_VERSIONS
                .iter()
                // SAFETY: NUL-terminated strings; RTLD_NEXT from this library finds libc's dlsym.
                .map(|v| unsafe { dlvsym(libc::RTLD_NEXT, c"dlsym".as_ptr(), v.as_ptr()) } as usize)
                .find(|&f| f != 0)
                .unwrap_or(0),
            None => crate::libc_extra::lookup_loaded(c"dlsym"),
        };
        if p != 0 {
            cell.store(p, Ordering::Release);
        }
    }
    // SAFETY: p is either 0 or the C library's dlsym, which has this signature.
    (p != 0).then(|| unsafe { core::mem::transmute::<usize, DlsymFn>(p) })
}

/// `dlsym(handle, name)` through the real `dlsym`, as 0 when absent.
pub fn lookup(handle: *mut c_void, name: &CStr) -> usize {
    match real_dlsym() {
        // SAFETY: handle comes from the dynamic loader or is a pseudo-handle; name is NUL-terminated.
        Some(d) => unsafe { d(handle, name.as_ptr()) as usize },
        None => 0,
    }
}

fn dladdr(addr: usize) -> Option<libc::Dl_info> {
    // SAFETY: dladdr only reads loader tables; info is a valid out-pointer.
    unsafe {
        let mut info: libc::Dl_info = core::mem::zeroed();
        (libc::dladdr(addr as *const c_void, &mut info) != 0).then_some(info)
    }
}

static OWN_BASE: AtomicUsize = AtomicUsize::new(0);

/// The load address of this library.
fn own_base() -> usize {
    let mut base = OWN_BASE.load(Ordering::Relaxed);
    if base == 0 {
        base = dladdr(is_own as *const () as usize).map_or(0, |i| i.dli_fbase as usize);
        OWN_BASE.store(base, Ordering::Relaxed);
    }
    base
}

/// Whether `addr` lies in this library (one of our own exports or trampolines).
pub fn is_own(addr: usize) -> bool {
    owner(addr) == Owner::Shim
}

/// Which object a function pointer belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// This library (one of our exports or trampolines).
    Shim,
    /// A CUDA library: a runtime by what it defines (see `objects`), the driver and NVML by the
    /// sonames they are always loaded by (they come with the kernel driver and are never bundled).
    Cuda(Api),
    Other,
}

/// Who `addr` belongs to.
pub fn owner(addr: usize) -> Owner {
    let Some(info) = dladdr(addr) else {
        return Owner::Other;
    };
    let own = own_base();
    if own != 0 && info.dli_fbase as usize == own {
        return Owner::Shim;
    }
    let file = if info.dli_fname.is_null() {
        &b""[..]
    } else {
        // SAFETY: dli_fname is a NUL-terminated path owned by the loader while the object is loaded.
        let path = unsafe { CStr::from_ptr(info.dli_fname) }.to_bytes();
        path.rsplit(|&b| b == b'/').next().unwrap_or(path)
    };
    if file.starts_with(b"libcuda.so") {
        Owner::Cuda(Api::Driver)
    } else if file.starts_with(b"libnvidia-ml.so") {
        Owner::Cuda(Api::Nvml)
    } else if in_cuda_runtime(addr) {
        Owner::Cuda(Api::Runtime)
    } else {
        Owner::Other
    }
}

/// Whether `addr` lies in a loaded CUDA runtime, whatever its file is called.
fn in_cuda_runtime(addr: usize) -> bool {
    let own = objects::own();
    let mut runtime = false;
    objects::each(|o| {
        let holds = o.contains(addr);
        runtime = holds && o.is_cuda_runtime(own);
        holds
    });
    runtime
}

/// The real function named `name` in `api`'s library. Tries `RTLD_NEXT` first (the ordinary
/// case: the library is in the global scope after us), then the library itself even when it
/// was loaded into a local scope (a Python extension module `dlopen`ed with `RTLD_LOCAL`).
pub fn find(api: Api, name: &CStr) -> usize {
    let p = lookup(libc::RTLD_NEXT, name);
    if p != 0 && !is_own(p) {
        return p;
    }
    match api {
        Api::Runtime => find_in_runtimes(name),
        Api::Driver => find_in_library(c"libcuda.so.1", name),
        Api::Nvml => find_in_library(c"libnvidia-ml.so.1", name),
    }
}

fn checked(p: usize) -> usize {
    if p != 0 && !is_own(p) {
        p
    } else {
        0
    }
}

/// Looks `name` up in the library with this soname, loading it (locally) if nobody has.
fn find_in_library(soname: &CStr, name: &CStr) -> usize {
    for mode in [libc::RTLD_LAZY | libc::RTLD_NOLOAD, libc::RTLD_LAZY | libc::RTLD_LOCAL] {
        // SAFETY: dlopen of a NUL-terminated soname; the handle is intentionally kept open so
        // the resolved pointer stays valid.
        let h = unsafe { libc::dlopen(soname.as_ptr(), mode) };
        if !h.is_null() {
            return checked(lookup(h, name));
        }
    }
    0
}

/// Looks `name` up in every loaded CUDA runtime, in load order, whatever scope it was loaded
/// into and whatever its file is called (a wheel's `libcudart-<hash>.so.12`).
fn find_in_runtimes(name: &CStr) -> usize {
    const MAX: usize = 8;
    let own = objects::own();
    let mut paths: [*const c_char; MAX] = [core::ptr::null(); MAX];
    let mut n = 0;
    objects::each(|o| {
        if let Some(path) = o.path().filter(|_| o.is_cuda_runtime(own)) {
            paths[n] = path.as_ptr();
            n += 1;
        }
        n == MAX
    });
    // dlopen only after the iteration: dl_iterate_phdr holds the loader's lock.
    for &path in &paths[..n] {
        // SAFETY: path names an object that is loaded (NOLOAD never loads anything new).
        let h = unsafe { libc::dlopen(path, libc::RTLD_LAZY | libc::RTLD_NOLOAD) };
        if h.is_null() {
            continue;
        }
        // The reference NOLOAD took is kept: the pointer cached in the slot must not outlive
        // the runtime if its owner later unloads it.
        let p = checked(lookup(h, name));
        if p != 0 {
            return p;
        }
    }
    0
}
