//! Logging without the heap: each line is formatted into a stack buffer (truncated, never an
//! error) and written to fd 2 with raw `write(2)`. Lines are whole, so concurrent writers and
//! pod-log scrapers never see them interleaved.

use core::fmt::{self, Write};

const LINE: usize = 512;

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

/// Writes one line to stderr unless `CUDA_FAULT_LOG=0`.
pub fn emit(args: fmt::Arguments<'_>) {
    if !crate::config::get().log {
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

/// `say!("...", args)`: one `[cuda-fault]` line on stderr.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::log::emit(format_args!("[cuda-fault] {}", format_args!($($arg)*)))
    };
}
