//! Calls inside calls. An application's runtime call (`cudaLaunchKernel`) reaches the shim twice:
//! at the runtime export, then as the driver calls the CUDA runtime library makes to carry it out
//! (`cuLaunchKernel`). The application's call is the one a scenario judges: a driver call made by
//! the runtime library while the application's runtime call on the same thread was judged and
//! passed is part of that call and passes too. Without this, `percent=10` would fail about 19% of
//! the application's calls (two draws each), and `count`/`after_calls` would count twice.
//!
//! "Made by the runtime library" is told by the call's return address: it lies in the executable
//! segment of a loaded `libcudart.so*`. The statically linked runtime is part of the application,
//! so its driver calls are the application's own.

use core::ffi::{c_int, c_void, CStr};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::period_cell::PeriodCell;

const MAX_RANGES: usize = 8;
static RANGES: [(AtomicUsize, AtomicUsize); MAX_RANGES] =
    [const { (AtomicUsize::new(0), AtomicUsize::new(0)) }; MAX_RANGES];
static REFRESHING: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Whether the thread's last runtime call in the on-period was judged and passed.
    static PASSED: PeriodCell<bool> = const { PeriodCell::new(false) };
}

fn in_runtime(addr: usize) -> bool {
    RANGES.iter().any(|(start, end)| {
        let (s, e) = (start.load(Ordering::Acquire), end.load(Ordering::Acquire));
        s != 0 && (s..e).contains(&addr)
    })
}

/// Records the verdict on a runtime call: `passed` when the scenario selected it (functions,
/// devices) and let it through. `real` is the runtime function it reaches, a libcudart address:
/// when it lies outside the known ranges, a runtime library was loaded since the last look.
pub fn runtime_call(period: u32, passed: bool, real: usize) {
    PASSED.with(|p| p.set(period, passed));
    if passed && real != 0 && !in_runtime(real) {
        refresh();
    }
}

/// Whether a driver call returning to `ret` is part of an application runtime call that passed.
pub fn part_of_passed_runtime_call(period: u32, ret: usize) -> bool {
    PASSED.with(|p| p.get(period)) && in_runtime(ret)
}

/// Re-reads the executable segments of every loaded `libcudart.so*` (one thread at a time).
fn refresh() {
    if REFRESHING.swap(true, Ordering::Acquire) {
        return;
    }
    struct Found {
        ranges: [(usize, usize); MAX_RANGES],
        n: usize,
    }
    unsafe extern "C" fn each(info: *mut libc::dl_phdr_info, _: usize, data: *mut c_void) -> c_int {
        // SAFETY: called by dl_iterate_phdr with a valid info and our Found as data.
        unsafe {
            let found = &mut *(data as *mut Found);
            let info = &*info;
            if info.dlpi_name.is_null() || info.dlpi_phdr.is_null() {
                return 0;
            }
            let path = CStr::from_ptr(info.dlpi_name).to_bytes();
            let file = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
            if !file.starts_with(b"libcudart.so") {
                return 0;
            }
            for ph in core::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) {
                if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 && found.n < MAX_RANGES {
                    let start = info.dlpi_addr as usize + ph.p_vaddr as usize;
                    found.ranges[found.n] = (start, start + ph.p_memsz as usize);
                    found.n += 1;
                }
            }
        }
        0
    }
    let mut found = Found { ranges: [(0, 0); MAX_RANGES], n: 0 };
    // SAFETY: the callback only reads loader-owned program headers.
    unsafe { libc::dl_iterate_phdr(Some(each), (&mut found as *mut Found).cast()) };
    for (i, (start, end)) in RANGES.iter().enumerate() {
        let (s, e) = if i < found.n { found.ranges[i] } else { (0, 0) };
        start.store(0, Ordering::Release);
        end.store(e, Ordering::Release);
        start.store(s, Ordering::Release);
    }
    REFRESHING.store(false, Ordering::Release);
}
