//! The toggle file: what it says, as a [`Decision`]. The syntax is the toggle grammar's; this
//! module only finds and reads the file.
//!
//! A check costs one `stat`; the file is opened and read (at most one byte more than the grammar
//! allows, never blocking) only when its metadata changed, or while its mtime is too recent to
//! trust: a second write within one timestamp tick leaves mtime and size unchanged. Whatever sits
//! at the path (FIFO, directory, device, binary junk, a symlink loop, a file replaced mid-read)
//! yields a decision and at most one warning per change.
//!
//! Each write is a decision of its own: an "on" file carries its identity (inode, size, mtime),
//! so writing the same words again (a new inode or mtime) starts a new on-period.

use core::cell::UnsafeCell;

use toggle_grammar::{Line, READ_LEN};

use crate::config::Config;
use crate::decision::{Decision, Source, Written};
use crate::envp::errno;
use crate::lock::Lock;
use crate::{clock, xids};

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

    fn written(&self) -> Written {
        Written {
            dev: self.dev,
            ino: self.ino,
            size: self.size,
            mtime_ns: i128::from(self.mtime_s) * 1_000_000_000 + i128::from(self.mtime_ns),
        }
    }

    fn is_recent(&self) -> bool {
        let m_ns = i128::from(self.mtime_s) * 1_000_000_000 + i128::from(self.mtime_ns);
        clock::realtime_ns() - m_ns < RACY_NS
    }
}

struct Cache {
    /// `meta` describes the file whose content is already applied.
    known: bool,
    meta: Meta,
    racy: bool,
    /// The metadata of the file last warned about, so a bad file warns once, not every poll.
    warned: Option<Meta>,
    /// The decision last handed on: the same one again (every poll while no file exists) is not.
    applied: Option<Decision>,
}

struct Guarded(UnsafeCell<Cache>);
// SAFETY: only accessed by the thread holding LOCK.
unsafe impl Sync for Guarded {}

static LOCK: Lock = Lock::new();
static CACHE: Guarded = Guarded(UnsafeCell::new(Cache {
    known: false,
    meta: Meta { dev: 0, ino: 0, size: 0, mtime_s: 0, mtime_ns: 0 },
    racy: false,
    warned: None,
    applied: None,
}));

/// Checks the file and hands a changed decision to `apply` (under the lock, so decisions are
/// applied in the order the file was read). With `wait`, waits for a check in progress on another thread,
/// then checks anew. False when no check ran (the lock was held by this thread, or too long).
pub fn check(c: &Config, wait: bool, apply: impl FnOnce(Decision, Source)) -> bool {
    let Some(_guard) = LOCK.acquire(wait) else {
        return false;
    };
    // SAFETY: LOCK is held, so this thread has the cache to itself.
    let cache = unsafe { &mut *CACHE.0.get() };
    if let Some((d, source)) = examine(c, cache) {
        if cache.applied != Some(d) {
            cache.applied = Some(d);
            apply(d, source);
        }
    }
    true
}

/// In a forked child: the lock's holder, if any, is not there; and the child is a new process,
/// so its first check hands on what the file says anew (its own on-period).
pub fn after_fork() {
    LOCK.reset();
    // SAFETY: the child has one thread, and no check runs in it yet.
    let cache = unsafe { &mut *CACHE.0.get() };
    cache.known = false;
    cache.applied = None;
}

fn env_decision(c: &Config) -> Decision {
    Decision { on: c.env_enabled, xid: c.env_xid, scenario: c.scenario, written: None }
}

/// What the file says now, or None when it has not changed since the last look.
fn examine(c: &Config, cache: &mut Cache) -> Option<(Decision, Source)> {
    let Some(path) = c.toggle_cstr() else {
        return Some((env_decision(c), Source::Env));
    };
    // SAFETY: stat writes into a zeroed, properly sized buffer; path is NUL-terminated.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    if unsafe { libc::stat(path.as_ptr(), &mut st) } != 0 {
        let e = errno();
        cache.known = false;
        // No file there (or none can be there): the environment decides.
        if matches!(e, libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG) {
            cache.warned = None;
            return Some((env_decision(c), Source::Env));
        }
        let pseudo = Meta { dev: u64::MAX, ino: e as u64, ..Meta::default() };
        if cache.warned != Some(pseudo) {
            cache.warned = Some(pseudo);
            say!("toggle file {} cannot be read (errno {}); faults off", c.toggle_path(), e);
        }
        return Some((Decision { on: false, ..env_decision(c) }, Source::File));
    }
    let meta = Meta::of(&st);
    if cache.known && cache.meta == meta && !cache.racy {
        return None;
    }
    let mut buf = [0u8; READ_LEN];
    let Some((meta, n)) = read(path, &st, &mut buf) else {
        cache.known = true;
        cache.meta = meta;
        cache.racy = meta.is_recent();
        if cache.warned != Some(meta) {
            cache.warned = Some(meta);
            say!("toggle file {} is not a readable regular file; faults off", c.toggle_path());
        }
        return Some((Decision { on: false, ..env_decision(c) }, Source::File));
    };
    cache.known = true;
    cache.meta = meta;
    cache.racy = meta.is_recent();
    let mut warn = |args: core::fmt::Arguments<'_>| {
        if cache.warned != Some(meta) {
            cache.warned = Some(meta);
            say!("toggle file {} {}", c.toggle_path(), args);
        }
    };
    let decision = match toggle_grammar::parse(&buf[..n]) {
        Ok(Line::On { xid, keys }) => {
            let index = match xid {
                None => c.env_xid,
                Some(x) => xids::index_of(x).unwrap_or_else(|| {
                    warn(format_args!(
                        "names XID {x}, which is not supported (supported: {}); simulating XID {}",
                        xids::SUPPORTED,
                        xids::XIDS[c.env_xid].xid
                    ));
                    c.env_xid
                }),
            };
            Decision { on: true, xid: index, scenario: keys.over(&c.scenario), written: Some(meta.written()) }
        }
        Ok(Line::Off) => Decision { on: false, ..env_decision(c) },
        Err(e) => {
            warn(format_args!("{e}; faults off (write '1', '1 <xid>' or '0')"));
            Decision { on: false, ..env_decision(c) }
        }
    };
    Some((decision, Source::File))
}

/// Opens and reads the first bytes of a regular file without ever blocking; None when the path
/// is not a readable regular file.
fn read(path: &core::ffi::CStr, st: &libc::stat, buf: &mut [u8; READ_LEN]) -> Option<(Meta, usize)> {
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
        let mut total = 0usize;
        let mut ok = regular;
        while ok && total < READ_LEN {
            let n = libc::read(fd, buf[total..].as_mut_ptr().cast(), READ_LEN - total);
            match n {
                0 => break,
                n if n > 0 => total += n as usize,
                _ if errno() == libc::EINTR => {}
                _ => ok = false,
            }
        }
        libc::close(fd);
        ok.then(|| (Meta::of(&fst), total))
    }
}
