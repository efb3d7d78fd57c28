//! The toggle file: `1`, `1 <xid>`, `1 [<xid>] key=value…` or `0` (see README), on a hostPath
//! so it outlives the pod.
//!
//! A check costs one `stat`; the file is opened and read (at most `READ_MAX` bytes, never
//! blocking) only when its metadata changed, or while its mtime is too recent to trust: a second
//! write within one timestamp tick leaves mtime and size unchanged (the "racy git" problem).
//! Whatever sits at the path (FIFO, directory, device, binary junk, a symlink loop, a file
//! replaced by rename mid-read) yields a decision and at most one warning per change.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::envp::{self, errno};
use crate::scenario::Overrides;
use crate::state::{self, Decision, Source};
use crate::{config, xids};

/// The cuda-fault helper refuses to write a longer line (helper/src/toggle.rs MAX_LEN).
const READ_MAX: usize = 1024;
/// A file modified less than this long ago is re-read on every check.
const RACY_NS: i128 = 2_000_000_000;

#[derive(Clone, Copy, PartialEq, Eq, Default)]
struct Meta {
    dev: u64,
    ino: u64,
    size: i64,
    mtime_s: i64,
    mtime_ns: i64,
}

impl Meta {
    // The field types of `struct stat` differ between targets; the casts are not all no-ops.
    #[allow(clippy::unnecessary_cast)]
    fn of(st: &libc::stat) -> Meta {
        Meta {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            size: st.st_size as i64,
            mtime_s: st.st_mtime as i64,
            mtime_ns: st.st_mtime_nsec as i64,
        }
    }
}

struct Cache {
    /// `meta` describes the file whose content is already applied.
    known: bool,
    meta: Meta,
    racy: bool,
    /// The metadata of the file last warned about, so a bad file warns once, not every poll.
    warned: Option<Meta>,
}

struct Guarded(UnsafeCell<Cache>);
// SAFETY: only accessed by the thread holding CHECKING.
unsafe impl Sync for Guarded {}

static CHECKING: AtomicBool = AtomicBool::new(false);
static CACHE: Guarded = Guarded(UnsafeCell::new(Cache { known: false, meta: Meta { dev: 0, ino: 0, size: 0, mtime_s: 0, mtime_ns: 0 }, racy: false, warned: None }));

/// What the file says.
#[derive(Debug, PartialEq, Eq)]
pub enum Content {
    On { xid: Option<u64>, keys: Overrides },
    Off,
    Invalid(&'static str),
}

/// Parses the file's first bytes: first word `1` or `0`, then for `1` an optional XID and
/// scenario keys.
pub fn parse(bytes: &[u8]) -> Content {
    let mut words = bytes.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty());
    let Some(first) = words.next() else {
        return Content::Invalid("is empty");
    };
    match first {
        b"0" => Content::Off,
        b"1" => {
            let mut xid = None;
            let mut keys = Overrides::default();
            for (i, w) in words.enumerate() {
                if w.contains(&b'=') {
                    if let Err(why) = keys.set(w) {
                        return Content::Invalid(why);
                    }
                    continue;
                }
                match envp::parse_u64(w) {
                    Some(n) if i == 0 => xid = Some(n),
                    _ => return Content::Invalid("has words after '1' that are not one XID number"),
                }
            }
            Content::On { xid, keys }
        }
        _ => Content::Invalid("does not start with the word 1 or 0"),
    }
}

/// Checks the file now (unless another thread is checking) and applies what it says.
pub fn check() {
    if CHECKING.swap(true, Ordering::Acquire) {
        return;
    }
    // SAFETY: CHECKING is held, so this thread has the cache to itself.
    let cache = unsafe { &mut *CACHE.0.get() };
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check_locked(cache)));
    CHECKING.store(false, Ordering::Release);
}

/// A forked child inherits CHECKING as it was in the forking thread's parent; release it.
pub fn reset_after_fork() {
    CHECKING.store(false, Ordering::Release);
}

fn env_decision() -> Decision {
    let c = config::get();
    Decision { on: c.env_enabled, xid: c.env_xid, scenario: c.scenario }
}

fn check_locked(cache: &mut Cache) {
    let c = config::get();
    let path = c.toggle_cstr();
    // SAFETY: stat writes into a zeroed, properly sized buffer; path is NUL-terminated.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    if unsafe { libc::stat(path.as_ptr(), &mut st) } != 0 {
        let e = errno();
        if e == libc::ENOENT || e == libc::ENOTDIR {
            cache.known = false;
            cache.warned = None;
            state::apply(env_decision(), Source::Env);
        } else {
            let pseudo = Meta { dev: u64::MAX, ino: e as u64, ..Meta::default() };
            if cache.warned != Some(pseudo) {
                cache.warned = Some(pseudo);
                say!("toggle file {} cannot be read (errno {}); faults off", c.toggle_path(), e);
            }
            cache.known = false;
            state::apply(Decision { on: false, ..env_decision() }, Source::File);
        }
        return;
    }
    let meta = Meta::of(&st);
    if cache.known && cache.meta == meta && !cache.racy {
        return;
    }
    let mut buf = [0u8; READ_MAX];
    let (meta, content) = read(path, &st, &mut buf).unwrap_or((meta, Content::Invalid("is not a readable regular file")));
    cache.known = true;
    cache.meta = meta;
    cache.racy = is_recent(&meta);
    let decision = match content {
        Content::On { xid, keys } => {
            let idx = match xid {
                None => c.env_xid,
                Some(x) => match xids::index_of(x) {
                    Some(i) => i,
                    None => {
                        if cache.warned != Some(meta) {
                            cache.warned = Some(meta);
                            say!(
                                "toggle file {} names XID {}, which is not supported (supported: {}); simulating XID {}",
                                c.toggle_path(),
                                x,
                                xids::SUPPORTED,
                                xids::XIDS[c.env_xid].xid
                            );
                        }
                        c.env_xid
                    }
                },
            };
            Decision { on: true, xid: idx, scenario: keys.over(&c.scenario) }
        }
        Content::Off => Decision { on: false, ..env_decision() },
        Content::Invalid(why) => {
            if cache.warned != Some(meta) {
                cache.warned = Some(meta);
                say!("toggle file {} {}; faults off (write '1', '1 <xid>' or '0')", c.toggle_path(), why);
            }
            Decision { on: false, ..env_decision() }
        }
    };
    state::apply(decision, Source::File);
}

/// Opens and reads the first bytes of a regular file without ever blocking; None when the path
/// is not a readable regular file.
fn read(path: &core::ffi::CStr, st: &libc::stat, buf: &mut [u8; READ_MAX]) -> Option<(Meta, Content)> {
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return None;
    }
    // SAFETY: plain syscalls on a NUL-terminated path and a local buffer; the fd is closed below.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY);
        if fd < 0 {
            return None;
        }
        // Re-check what was opened: the path may have been replaced since the stat.
        let mut fst: libc::stat = core::mem::zeroed();
        let regular = libc::fstat(fd, &mut fst) == 0 && fst.st_mode & libc::S_IFMT == libc::S_IFREG;
        let mut n: isize = -1;
        if regular {
            loop {
                n = libc::read(fd, buf.as_mut_ptr().cast(), READ_MAX);
                if n >= 0 || errno() != libc::EINTR {
                    break;
                }
            }
        }
        libc::close(fd);
        if n < 0 {
            return None;
        }
        Some((Meta::of(&fst), parse(&buf[..n as usize])))
    }
}

fn is_recent(meta: &Meta) -> bool {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: now is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
    let now_ns = i128::from(now.tv_sec) * 1_000_000_000 + i128::from(now.tv_nsec);
    let m_ns = i128::from(meta.mtime_s) * 1_000_000_000 + i128::from(meta.mtime_ns);
    now_ns - m_ns < RACY_NS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let none = Overrides::default();
        assert_eq!(parse(b"1"), Content::On { xid: None, keys: none });
        assert_eq!(parse(b"1\n"), Content::On { xid: None, keys: none });
        assert_eq!(parse(b"  \n1 48\n"), Content::On { xid: Some(48), keys: none });
        assert_eq!(parse(b"1\t79"), Content::On { xid: Some(79), keys: none });
        assert_eq!(parse(b"0\n"), Content::Off);
        assert_eq!(parse(b"0 48"), Content::Off);
        assert_eq!(parse(b"1 999999"), Content::On { xid: Some(999_999), keys: none });
        let Content::On { xid, keys } = parse(b"1 79 devices=1 after_ms=5000\n") else { panic!() };
        assert_eq!((xid, keys.after_ms, keys.devices.map(|d| d.ordinals)), (Some(79), Some(5000), Some(2)));
        let Content::On { xid, keys } = parse(b"1 mode=hang sticky=1") else { panic!() };
        assert_eq!((xid, keys.hang, keys.sticky), (None, Some(true), Some(true)));
    }

    #[test]
    fn everything_else_is_invalid() {
        for bad in [
            &b""[..], b"   \n", b"true", b"yes", b"10", b"1abc", b"2", b"\x00\x01\xff", b"1 48 49", b"1 abc", b"on",
            b"1 devices=", b"1 devices=a", b"1 after_ms=-1", b"1 mode=crash", b"1 sticky=2", b"1 foo=1",
            b"1 mode=hang mode=error", b"1 mode=hang 48", b"1 =", b"1 after_calls=1e3",
        ] {
            assert!(matches!(parse(bad), Content::Invalid(_)), "{bad:?}");
        }
    }
}
