//! Exit codes and the one-line failure every command reports.
//!
//! Codes follow `sysexits.h` where one fits and the errno number where the failure is an errno
//! (13 EACCES, 21 EISDIR, 30 EROFS, 40 ELOOP), so scripts can tell the failures apart.

use std::fmt;
use std::io;
use std::path::Path;

/// Success.
pub const OK: u8 = 0;
/// `verify`: a selected pod does not carry the injection.
pub const NOT_INJECTED: u8 = 1;
/// `hold --check`: the hold pod is not ready (its toggle file is not, or no longer, written).
pub const NOT_READY: u8 = 1;
/// Usage error or bad value (clap's own code for usage errors), unknown XID.
pub const USAGE: u8 = 2;
/// Permission denied (EACCES / EPERM).
pub const PERMISSION_DENIED: u8 = 13;
/// The toggle path is a directory (EISDIR).
pub const IS_A_DIRECTORY: u8 = 21;
/// Read-only file system (EROFS).
pub const READ_ONLY: u8 = 30;
/// The target is a symbolic link, which cuda-fault refuses to follow or replace (ELOOP).
pub const SYMLINK: u8 = 40;
/// `install`: the shim library to copy was not found (EX_NOINPUT).
pub const NO_INPUT: u8 = 66;
/// The target exists and is not a regular file (a device node, FIFO or socket), which
/// cuda-fault refuses to replace or remove (EX_CANTCREAT).
pub const NOT_REGULAR: u8 = 73;
/// Cluster: node or namespace not found, or API server unreachable (EX_UNAVAILABLE).
pub const UNAVAILABLE: u8 = 69;
/// Cluster: the Job ran and failed (EX_SOFTWARE).
pub const JOB_FAILED: u8 = 70;
/// Any other I/O error (EX_IOERR).
pub const IO_ERROR: u8 = 74;
/// Cluster: the Job did not finish within --timeout (EX_TEMPFAIL).
pub const TIMEOUT: u8 = 75;
/// Cluster: RBAC forbids a call (EX_NOPERM).
pub const FORBIDDEN: u8 = 77;
/// Cluster: no kubeconfig and not in a cluster (EX_CONFIG).
pub const NO_CONFIG: u8 = 78;
/// Cluster: the object changed between reading it and patching it, so the guarded patch changed
/// nothing (EAGAIN: run the command again).
pub const CHANGED: u8 = 11;

/// The table shown in `--help` and README.
pub const TABLE: &str = "\
Exit codes:
   0  success
   1  verify: a selected pod does not carry the injection; hold --check: not ready
   2  usage error or bad value (unknown XID, bad --after, ...)
  11  inject: the object changed while cuda-fault worked on it; nothing was changed, run it again
  13  permission denied
  21  the toggle path is a directory
  30  read-only file system
  40  the toggle path is a symbolic link (refused, never followed)
  66  install: the shim library was not found
  69  cluster: node, namespace or workload not found, or API server unreachable
  70  cluster: the Job failed
  73  the toggle path is a device node, FIFO or socket (refused, never replaced)
  74  other I/O error
  75  cluster: timed out waiting for the Job or for the fault (--wait)
  77  cluster: forbidden by RBAC (see manifests/rbac/)
  78  cluster: no kubeconfig (set KUBECONFIG or run in-cluster)";

/// A failure: one line for stderr and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Failure { code, message: message.into() }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Failure::new(USAGE, message)
    }

    /// Maps an I/O error on `path` to a code and a clear line; `action` is e.g. "write".
    pub fn io(action: &str, path: &Path, err: &io::Error) -> Self {
        let p = path.display();
        match err.kind() {
            io::ErrorKind::PermissionDenied => Failure::new(
                PERMISSION_DENIED,
                format!("cannot {action} {p}: permission denied (run as root or as the directory's owner)"),
            ),
            io::ErrorKind::ReadOnlyFilesystem => Failure::new(
                READ_ONLY,
                format!("cannot {action} {p}: read-only file system (mount the toggle directory read-write)"),
            ),
            io::ErrorKind::IsADirectory => Failure::new(
                IS_A_DIRECTORY,
                format!("cannot {action} {p}: it is a directory (point --file at a file inside it)"),
            ),
            _ => match err.raw_os_error() {
                // EPERM: e.g. an immutable file, or a sticky directory owned by someone else.
                Some(1) => Failure::new(PERMISSION_DENIED, format!("cannot {action} {p}: operation not permitted")),
                _ => Failure::new(IO_ERROR, format!("cannot {action} {p}: {}", plain(err))),
            },
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The error text without Rust's " (os error N)" suffix, lower-cased first letter.
pub(crate) fn plain(err: &io::Error) -> String {
    let s = err.to_string();
    let s = match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    };
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_lowercase().chain(c).collect(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_maps_to_distinct_codes() {
        let p = Path::new("/x/f");
        let code = |errno| Failure::io("write", p, &io::Error::from_raw_os_error(errno)).code;
        assert_eq!(code(13), PERMISSION_DENIED); // EACCES
        assert_eq!(code(1), PERMISSION_DENIED); // EPERM
        assert_eq!(code(30), READ_ONLY); // EROFS
        assert_eq!(code(21), IS_A_DIRECTORY); // EISDIR
        assert_eq!(code(28), IO_ERROR); // ENOSPC
        let m = Failure::io("write", p, &io::Error::from_raw_os_error(28)).message;
        assert_eq!(m, "cannot write /x/f: no space left on device");
        assert!(!Failure::io("write", p, &io::Error::from_raw_os_error(30)).message.contains('\n'));
    }

    #[test]
    fn table_lists_every_code() {
        for code in [
            OK,
            NOT_INJECTED,
            NOT_READY,
            USAGE,
            PERMISSION_DENIED,
            IS_A_DIRECTORY,
            READ_ONLY,
            SYMLINK,
            NO_INPUT,
            NOT_REGULAR,
            UNAVAILABLE,
            JOB_FAILED,
            IO_ERROR,
            TIMEOUT,
            FORBIDDEN,
            NO_CONFIG,
            CHANGED,
        ] {
            assert!(TABLE.contains(&format!("{code:>4}  ")), "{code} missing from the table");
        }
    }
}
