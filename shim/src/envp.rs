//! The process environment, read straight from `environ` (no `getenv`, no allocation), and errno.

use core::ffi::{c_char, CStr};

unsafe extern "C" {
    static environ: *const *const c_char;
}

/// The value of environment variable `name`, if set.
pub fn var(name: &str) -> Option<&'static [u8]> {
    // SAFETY: `environ` is a NULL-terminated array of NUL-terminated strings owned by libc. We only
    // read it during configuration, before the program could sensibly be racing setenv on it.
    unsafe {
        let mut p = environ;
        if p.is_null() {
            return None;
        }
        while !(*p).is_null() {
            let entry = CStr::from_ptr(*p).to_bytes();
            if entry.len() > name.len() && entry.starts_with(name.as_bytes()) && entry[name.len()] == b'=' {
                return Some(&entry[name.len() + 1..]);
            }
            p = p.add(1);
        }
    }
    None
}

/// The calling thread's errno.
pub fn errno() -> i32 {
    // SAFETY: __errno_location always returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}
