//! Per-function flags: the words of hooks.list's third column, as bits.

/// A set of flags.
pub type Flags = u32;

/// On a fault, also write 0 through the first argument (a device-count out-pointer).
pub const COUNT: Flags = 1;
/// A synchronizing call: blocks in hang mode; where an asynchronous fault surfaces; the family
/// `@sync`.
pub const SYNC: Flags = 1 << 1;
/// A pure lookup: never faulted, never wrapped, not exported.
pub const EXEMPT: Flags = 1 << 2;
/// A launch: the family `@launch`; work whose fault surfaces later (`surface=async`).
pub const LAUNCH: Flags = 1 << 3;
/// A memory copy: the family `@memcpy`.
pub const MEMCPY: Flags = 1 << 4;
/// A memory allocation: the family `@alloc`.
pub const ALLOC: Flags = 1 << 5;
/// `cudaGetLastError`: returns the thread's last runtime error and clears it.
pub const LAST_ERROR: Flags = 1 << 6;
/// `cudaPeekAtLastError`: returns the thread's last runtime error and keeps it.
pub const PEEK_ERROR: Flags = 1 << 7;
/// Bits 8..11: 1 + the index of the argument holding the device ordinal, or 0.
const DEV_SHIFT: u32 = 8;
/// The highest argument index `dev=N` may name.
pub const MAX_DEV_ARG: u32 = 5;
/// Device enumeration (`cuInit`, `nvmlInit*`): fails only for an XID that loses the device.
pub const INIT: Flags = 1 << 12;
/// Stream-ordered work other than a launch (asynchronous copies and memsets): returns at once,
/// so an asynchronous fault in it surfaces later.
pub const ASYNC: Flags = 1 << 13;
/// A stream or event query: where an asynchronous fault surfaces, but never blocks.
pub const QUERY: Flags = 1 << 14;
/// `nvmlDeviceGetTotalEccErrors(device, errorType, counterType, unsigned long long *count)`:
/// an ECC XID adds its uncorrected error.
pub const ECC_TOTAL: Flags = 1 << 15;
/// `nvmlDeviceGetRetiredPagesPendingStatus(device, nvmlEnableState_t *isPending)`.
pub const RETIRED_PENDING: Flags = 1 << 16;
/// `nvmlDeviceGetRemappedRows(device, unsigned *corr, unsigned *unc, unsigned *pending,
/// unsigned *failure)`.
pub const REMAPPED_ROWS: Flags = 1 << 17;
/// The functions whose answer an ECC XID changes (the shim calls the real one, then adds the
/// XID's ECC state to what it wrote).
pub const ECC_ANSWERS: Flags = ECC_TOTAL | RETIRED_PENDING | REMAPPED_ROWS;

/// The flag words of hooks.list and their bits (`dev=N` aside).
pub const WORDS: [(&str, Flags); 14] = [
    ("count", COUNT),
    ("sync", SYNC),
    ("exempt", EXEMPT),
    ("launch", LAUNCH),
    ("memcpy", MEMCPY),
    ("alloc", ALLOC),
    ("lasterror", LAST_ERROR),
    ("peekerror", PEEK_ERROR),
    ("init", INIT),
    ("async", ASYNC),
    ("query", QUERY),
    ("ecctotal", ECC_TOTAL),
    ("retiredpending", RETIRED_PENDING),
    ("remappedrows", REMAPPED_ROWS),
];

/// The flag for "argument `index` is the device ordinal".
pub const fn dev_arg(index: u32) -> Flags {
    (index + 1) << DEV_SHIFT
}

/// The index of the device-ordinal argument, if the function has one.
pub const fn device_arg(flags: Flags) -> Option<usize> {
    match (flags >> DEV_SHIFT) & 0xf {
        0 => None,
        n => Some((n - 1) as usize),
    }
}
