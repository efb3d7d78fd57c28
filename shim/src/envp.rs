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

/// Parses an unsigned decimal number with no sign, blanks or trailing bytes.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(b - b'0');
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_only_plain_decimals() {
        assert_eq!(super::parse_u64(b"79"), Some(79));
        assert_eq!(super::parse_u64(b"0"), Some(0));
        for bad in [&b""[..], b"abc", b"-1", b" 79", b"79 ", b"1e3", b"99999999999999999999"] {
            assert_eq!(super::parse_u64(bad), None, "{bad:?}");
        }
    }
}
