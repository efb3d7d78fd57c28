//! Calls inside calls. An application's runtime call (`cudaLaunchKernel`) reaches the shim twice:
//! at the runtime export, then as the driver calls the CUDA runtime library makes to carry it out
//! (`cuLaunchKernel`). The application's call is the one a scenario judges: a driver call made by
//! a runtime library while the application's runtime call on the same thread was judged and
//! passed is part of that call and passes too. Without this, `percent=10` would fail about 19% of
//! the application's calls (two draws each), and `count`/`after_calls` would count twice.
//!
//! "Made by a runtime library" is told by the call's return address: it lies in the code of a
//! loaded CUDA runtime, known by what it defines whatever its file is called (see `objects`). A
//! library that is no runtime makes its own driver calls, whatever its name. The statically
//! linked runtime is part of the application, so its driver calls are the application's own.

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::objects;
use crate::period_cell::PeriodCell;
use crate::slots;

const MAX_RANGES: usize = 16;
static RANGES: [(AtomicUsize, AtomicUsize); MAX_RANGES] =
    [const { (AtomicUsize::new(0), AtomicUsize::new(0)) }; MAX_RANGES];
static REFRESHING: AtomicBool = AtomicBool::new(false);
/// Per slot: the runtimes were looked for since its real function was found outside them (a
/// library that forwards to the runtime: looking once is enough).
static LOOKED: [AtomicBool; slots::TOTAL] = [const { AtomicBool::new(false) }; slots::TOTAL];

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

/// Records the verdict on a call of runtime `slot`: `passed` when the scenario selected it
/// (functions, devices) and let it through. When the runtime function it reaches lies outside
/// the known runtimes, a runtime was loaded since the last look.
pub fn runtime_call(period: u32, passed: bool, slot: usize) {
    PASSED.with(|p| p.set(period, passed));
    let real = slots::real(slot);
    if passed
        && real != 0
        && !in_runtime(real)
        && slot < slots::TOTAL
        && !LOOKED[slot].load(Ordering::Acquire)
        && refresh()
    {
        LOOKED[slot].store(true, Ordering::Release);
    }
}

/// Whether a driver call returning to `ret` is part of an application runtime call that passed.
pub fn part_of_passed_runtime_call(period: u32, ret: usize) -> bool {
    PASSED.with(|p| p.get(period)) && in_runtime(ret)
}

/// Re-reads the code ranges of every loaded CUDA runtime; false when another thread is at it.
fn refresh() -> bool {
    if REFRESHING.swap(true, Ordering::Acquire) {
        return false;
    }
    let own = objects::own();
    let mut found = [(0usize, 0usize); MAX_RANGES];
    let mut n = 0;
    objects::each(|o| {
        if o.is_cuda_runtime(own) {
            for range in o.code() {
                if n < MAX_RANGES {
                    found[n] = range;
                    n += 1;
                }
            }
        }
        n == MAX_RANGES
    });
    for (i, (start, end)) in RANGES.iter().enumerate() {
        let (s, e) = if i < n { found[i] } else { (0, 0) };
        start.store(0, Ordering::Release);
        end.store(e, Ordering::Release);
        start.store(s, Ordering::Release);
    }
    REFRESHING.store(false, Ordering::Release);
    true
}
