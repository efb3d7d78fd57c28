//! Per-function flags: the words of hooks.list's third column, as bits.

/// On a fault, also write 0 through the first argument (a device-count out-pointer).
pub const COUNT: u16 = 1;
/// A synchronizing call: blocks in hang mode; the family `@sync`.
pub const SYNC: u16 = 1 << 1;
/// A pure lookup: never faulted, never wrapped, not exported.
pub const EXEMPT: u16 = 1 << 2;
/// A launch: the family `@launch`.
pub const LAUNCH: u16 = 1 << 3;
/// A memory copy: the family `@memcpy`.
pub const MEMCPY: u16 = 1 << 4;
/// A memory allocation: the family `@alloc`.
pub const ALLOC: u16 = 1 << 5;
/// `cudaGetLastError`: returns the thread's last runtime error and clears it.
pub const LAST_ERROR: u16 = 1 << 6;
/// `cudaPeekAtLastError`: returns the thread's last runtime error and keeps it.
pub const PEEK_ERROR: u16 = 1 << 7;
/// Bits 8..11: 1 + the index of the argument holding the device ordinal, or 0.
const DEV_SHIFT: u16 = 8;
/// The highest argument index `dev=N` may name.
pub const MAX_DEV_ARG: u16 = 5;

/// The flag words of hooks.list and their bits (`dev=N` aside).
pub const WORDS: [(&str, u16); 8] = [
    ("count", COUNT),
    ("sync", SYNC),
    ("exempt", EXEMPT),
    ("launch", LAUNCH),
    ("memcpy", MEMCPY),
    ("alloc", ALLOC),
    ("lasterror", LAST_ERROR),
    ("peekerror", PEEK_ERROR),
];

/// The flag for "argument `index` is the device ordinal".
pub const fn dev_arg(index: u16) -> u16 {
    (index + 1) << DEV_SHIFT
}

/// The index of the device-ordinal argument, if the function has one.
pub const fn device_arg(flags: u16) -> Option<usize> {
    match (flags >> DEV_SHIFT) & 0xf {
        0 => None,
        n => Some((n - 1) as usize),
    }
}
