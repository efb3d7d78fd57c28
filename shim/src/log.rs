//! Logging without the heap: each line is formatted into a stack buffer (truncated, never an
//! error) and written with raw `write(2)`, whole, so concurrent writers and pod-log scrapers never
//! see lines interleaved.
//!
//! Lines go to the stderr the process started with, or nowhere: the constructor remembers which
//! file fd 2 was, and a line is written only while fd 2 is still that file. A daemon that closes
//! its descriptors and opens a data file that lands on fd 2 never gets the shim's lines in it.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const LINE: usize = 512;

static ENABLED: AtomicBool = AtomicBool::new(true);
/// Whether fd 2 was open when the library loaded, and its (st_dev, st_ino).
static KNOWN: AtomicBool = AtomicBool::new(false);
static DEV: AtomicU64 = AtomicU64::new(0);
static INO: AtomicU64 = AtomicU64::new(0);

/// `CUDA_FAULT_LOG=0` turns every line off.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Release);
}

fn identity(fd: i32) -> Option<(u64, u64)> {
    // SAFETY: fstat writes into a zeroed, properly sized buffer.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // The field types of `struct stat` differ between targets; the casts are not all no-ops.
    #[allow(clippy::unnecessary_cast)]
    // SAFETY: as above.
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some((st.st_dev as u64, st.st_ino as u64))
}

/// Remembers what fd 2 is (the constructor calls this, before `main`).
pub fn remember_stderr() {
    if let Some((dev, ino)) = identity(2) {
        DEV.store(dev, Ordering::Relaxed);
        INO.store(ino, Ordering::Relaxed);
        KNOWN.store(true, Ordering::Release);
    }
}

fn stderr_is_original() -> bool {
    KNOWN.load(Ordering::Acquire) && identity(2) == Some((DEV.load(Ordering::Relaxed), INO.load(Ordering::Relaxed)))
}

struct StackLine {
    buf: [u8; LINE],
    len: usize,
}

impl Write for StackLine {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = LINE - 1 - self.len; // keep one byte for the newline
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Writes one line to the original stderr unless `CUDA_FAULT_LOG=0`.
pub fn emit(args: fmt::Arguments<'_>) {
    if !ENABLED.load(Ordering::Acquire) || !stderr_is_original() {
        return;
    }
    let mut line = StackLine { buf: [0; LINE], len: 0 };
    let _ = line.write_fmt(args);
    line.buf[line.len] = b'\n';
    line.len += 1;
    write_all(2, &line.buf[..line.len]);
}

fn write_all(fd: i32, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: the pointer and length describe a live slice.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            if crate::envp::errno() == libc::EINTR {
                continue;
            }
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

/// `say!("...", args)`: one `[cuda-fault]` line.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::log::emit(format_args!("[cuda-fault] {}", format_args!($($arg)*)))
    };
}
