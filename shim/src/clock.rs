//! Clocks, through the vDSO: no syscall, async-signal-safe.

fn now(clock: libc::clockid_t) -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: t is a valid out-pointer.
    unsafe { libc::clock_gettime(clock, &mut t) };
    (t.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(t.tv_nsec as u64)
}

/// CLOCK_MONOTONIC in nanoseconds.
pub fn monotonic_ns() -> u64 {
    now(libc::CLOCK_MONOTONIC)
}

/// CLOCK_MONOTONIC_COARSE in milliseconds: the time of the last timer tick (a few ms behind at
/// most), read from the vDSO in a few nanoseconds.
pub fn coarse_ms() -> u64 {
    now(libc::CLOCK_MONOTONIC_COARSE) / 1_000_000
}

/// CLOCK_REALTIME in nanoseconds (file timestamps are on this clock).
pub fn realtime_ns() -> i128 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: t is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut t) };
    i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec)
}

/// CLOCK_REALTIME_COARSE in nanoseconds: the clock the kernel stamps files with (one tick behind
/// CLOCK_REALTIME at most).
pub fn realtime_coarse_ns() -> i128 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: t is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut t) };
    i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec)
}
