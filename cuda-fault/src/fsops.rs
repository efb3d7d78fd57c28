//! Atomic file replacement and removal that never follow a symlink at the target.
//!
//! A write goes to `.<name>.tmp.<random>` in the target's directory, is fsynced and chmodded,
//! then renamed over the target, and the directory is fsynced. A reader (the shim) therefore
//! sees the old file or the new one, never a partial or empty one; concurrent writers each use
//! their own temporary file and the last rename wins.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::exit::{self, Failure};

/// Temporary files older than this are left-overs of a killed writer; `clean` removes them.
pub const STALE_TEMP_AGE: Duration = Duration::from_secs(60);

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn file_name(path: &Path) -> Result<String, Failure> {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Failure::usage(format!("{} does not name a file", path.display())))
}

fn temp_prefix(name: &str) -> String {
    format!(".{name}.tmp.")
}

/// What a file type is, in words.
pub fn kind_of(t: fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "a regular file"
    }
}

/// Refuses anything but a regular file at `path` (cuda-fault replaces and removes only its own
/// toggle files, never a symlink, a device node or a FIFO); `Ok(true)` if a regular file exists.
fn check_target(action: &str, path: &Path) -> Result<bool, Failure> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(Failure::new(
            exit::SYMLINK,
            format!(
                "refusing to {action} {}: it is a symbolic link (cuda-fault never follows one; remove it first)",
                path.display()
            ),
        )),
        Ok(m) if m.is_dir() => Err(Failure::io(action, path, &io::Error::from(io::ErrorKind::IsADirectory))),
        Ok(m) if !m.is_file() => Err(Failure::new(
            exit::NOT_REGULAR,
            format!(
                "refusing to {action} {}: it is {}, not a regular file (cuda-fault only replaces its own toggle files)",
                path.display(),
                kind_of(m.file_type())
            ),
        )),
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Failure::io(action, path, &e)),
    }
}

/// Creates the directory (and parents) with mode 0755 if it is missing.
fn ensure_dir(dir: &Path) -> Result<(), Failure> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new().recursive(true).mode(0o755).create(dir).map_err(|e| Failure::io("create directory", dir, &e))
}

pub(crate) fn sync_dir(dir: &Path) {
    // Best effort: the rename already happened; some file systems reject fsync on a directory.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Atomically replaces `path` with what `fill` writes, with permissions `mode`.
pub fn write_atomic_with(
    path: &Path,
    mode: u32,
    fill: &mut dyn FnMut(&mut File) -> io::Result<()>,
) -> Result<(), Failure> {
    let name = file_name(path)?;
    check_target("write", path)?;
    let dir = parent_of(path);
    ensure_dir(dir)?;
    // A temporary file of a random name beside the target (O_CREAT|O_EXCL: never opens through
    // a symlink, and writers in other PID namespaces never clash), removed if anything fails.
    let mut tmp = tempfile::Builder::new()
        .prefix(&temp_prefix(&name))
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(|e| Failure::io("write", path, &e))?;
    let file = tmp.as_file_mut();
    fill(file).map_err(|e| Failure::io("write", path, &e))?;
    file.flush().map_err(|e| Failure::io("write", path, &e))?;
    // fchmod: the umask must not narrow 0644/0755.
    file.set_permissions(fs::Permissions::from_mode(mode)).map_err(|e| Failure::io("write", path, &e))?;
    file.sync_all().map_err(|e| Failure::io("write", path, &e))?;
    // rename(2) replaces a symlink that appeared meanwhile instead of following it.
    tmp.persist(path).map_err(|e| Failure::io("write", path, &e.error))?;
    sync_dir(dir);
    Ok(())
}

/// Atomically replaces `path` with `contents`.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), Failure> {
    write_atomic_with(path, mode, &mut |f| f.write_all(contents))
}

/// What [`remove`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    pub existed: bool,
    /// Left-over temporary files of killed writers that were removed too.
    pub stale_temps: usize,
}

/// Removes `path` (not following a symlink: one is refused) and stale temporary files beside it.
pub fn remove(path: &Path) -> Result<Removed, Failure> {
    let name = file_name(path)?;
    let existed = check_target("remove", path)?;
    if existed {
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Failure::io("remove", path, &e)),
        }
    }
    let dir = parent_of(path);
    let mut stale_temps = 0;
    if let Ok(entries) = fs::read_dir(dir) {
        let prefix = temp_prefix(&name);
        let now = SystemTime::now();
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().starts_with(&prefix) {
                continue;
            }
            let old = entry
                .metadata()
                .ok()
                .filter(|m| m.is_file())
                .and_then(|m| m.modified().ok())
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age >= STALE_TEMP_AGE);
            if old && fs::remove_file(entry.path()).is_ok() {
                stale_temps += 1;
            }
        }
    }
    if existed || stale_temps > 0 {
        sync_dir(dir);
    }
    Ok(Removed { existed, stale_temps })
}

/// What [`read_like_the_shim`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// No file (or none can be there: a path through a file, a name too long): the shim's
    /// environment decides.
    Absent,
    /// Something that is not a regular file (the kind, in words): the shim treats it as off.
    NotRegular(&'static str),
    /// The first bytes (at most the limit).
    Bytes(Vec<u8>),
}

/// Reads at most `limit` bytes of `path` the way the shim does: following symlinks, never
/// blocking (a FIFO is not opened for reading), regular files only.
pub fn read_like_the_shim(path: &Path, limit: usize) -> Result<Found, Failure> {
    let absent = |e: &io::Error| {
        e.kind() == io::ErrorKind::NotFound || matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::ENAMETOOLONG))
    };
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if absent(&e) => return Ok(Found::Absent),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(Found::NotRegular("a symbolic link loop")),
        Err(e) => return Err(Failure::io("read", path, &e)),
    };
    if !meta.is_file() {
        return Ok(Found::NotRegular(kind_of(meta.file_type())));
    }
    let file = match OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path) {
        Ok(f) => f,
        Err(e) if absent(&e) => return Ok(Found::Absent),
        Err(e) => return Err(Failure::io("read", path, &e)),
    };
    match file.metadata() {
        Ok(m) if m.is_file() => {}
        Ok(m) => return Ok(Found::NotRegular(kind_of(m.file_type()))),
        Err(e) => return Err(Failure::io("read", path, &e)),
    }
    let mut buf = Vec::new();
    file.take(limit as u64).read_to_end(&mut buf).map_err(|e| Failure::io("read", path, &e))?;
    Ok(Found::Bytes(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn writes_replaces_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/dir/toggle");
        write_atomic(&p, b"1\n", 0o644).unwrap();
        write_atomic(&p, b"0\n", 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"0\n");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o7777, 0o644);
        assert_eq!(fs::metadata(p.parent().unwrap()).unwrap().mode() & 0o7777, 0o755);
        assert_eq!(fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn other_writers_temporary_files_are_left_alone() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("toggle");
        for n in 0..5 {
            // Another writer (another process, another PID namespace) is mid-write.
            fs::write(d.path().join(format!(".toggle.tmp.{}.{n}", std::process::id())), "x").unwrap();
        }
        write_atomic(&p, b"1\n", 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"1\n");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 6, "the other writer's files are untouched");
    }

    #[test]
    fn refuses_symlink_and_keeps_its_target() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("real");
        fs::write(&target, "keep").unwrap();
        let link = d.path().join("toggle");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(write_atomic(&link, b"1\n", 0o644).unwrap_err().code, exit::SYMLINK);
        assert_eq!(remove(&link).unwrap_err().code, exit::SYMLINK);
        assert_eq!(fs::read(&target).unwrap(), b"keep");
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    }

    #[test]
    fn remove_cleans_only_stale_temps() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("toggle");
        fs::write(&p, "1\n").unwrap();
        let stale = d.path().join(".toggle.tmp.1.0");
        let fresh = d.path().join(".toggle.tmp.2.0");
        fs::write(&stale, "1").unwrap();
        fs::write(&fresh, "1").unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        File::options().write(true).open(&stale).unwrap().set_modified(old).unwrap();
        assert_eq!(remove(&p).unwrap(), Removed { existed: true, stale_temps: 1 });
        assert!(!p.exists() && !stale.exists() && fresh.exists());
        assert_eq!(remove(&p).unwrap(), Removed { existed: false, stale_temps: 0 });
    }
}
