//! Readiness: a hold pod is Ready only once it has written the node's toggle file, and only while
//! that file is still the one it wrote. The hold process writes a marker (`--ready-file`, in an
//! emptyDir) naming the file it wrote (device, inode, content) after the write; the readiness
//! probe, an exec of `cuda-fault hold --check` (the image has no shell), compares the toggle file
//! with it. So `kubectl rollout status daemonset/cuda-fault-hold` and `cuda-fault fault apply
//! --wait` return once every targeted node has the fault.

use std::fs;
use std::io::Read;
use std::path::Path;

use super::held::Held;
use crate::exit::Failure;
use crate::fsops;

/// The largest marker read.
const MAX_MARKER: u64 = 4096;

/// Writes the marker for `held` (atomically; mode 0644).
pub fn mark(ready: &Path, held: &Held) -> Result<(), Failure> {
    let mut text = format!("{} {}\n", held.dev, held.ino).into_bytes();
    text.extend_from_slice(&held.content);
    fsops::write_atomic(ready, &text, 0o644)
}

/// Removes a marker left by an earlier run of this container (the emptyDir outlives restarts).
pub fn unmark(ready: &Path) -> Result<(), Failure> {
    fsops::remove(ready).map(|_| ())
}

/// Whether the toggle file is the one the marker names: Ok with what is held, Err with why not.
pub fn check(ready: &Path, toggle: &Path) -> Result<String, String> {
    let mut bytes = Vec::new();
    let file = fs::File::open(ready).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!("not ready: {} does not exist yet (the toggle file is not written)", ready.display())
        }
        _ => format!("not ready: cannot read {}: {}", ready.display(), crate::exit::plain(&e)),
    })?;
    file.take(MAX_MARKER + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("not ready: cannot read {}: {e}", ready.display()))?;
    let malformed = || format!("not ready: {} is not a marker of cuda-fault hold", ready.display());
    let nl = bytes.iter().position(|&b| b == b'\n').ok_or_else(malformed)?;
    let head = std::str::from_utf8(&bytes[..nl]).map_err(|_| malformed())?;
    let (dev, ino) = head.split_once(' ').ok_or_else(malformed)?;
    let (dev, ino): (u64, u64) = (dev.parse().map_err(|_| malformed())?, ino.parse().map_err(|_| malformed())?);
    let held = Held { path: toggle.to_path_buf(), dev, ino, content: bytes[nl + 1..].to_vec() };
    if held.still_ours() {
        Ok(format!("ready: {} holds {:?}", toggle.display(), String::from_utf8_lossy(&held.content).trim_end()))
    } else {
        Err(format!(
            "not ready: {} is no longer the file this pod wrote ({:?}): removed or rewritten by someone else",
            toggle.display(),
            String::from_utf8_lossy(&held.content).trim_end()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_while_the_toggle_file_is_the_one_written() {
        let d = tempfile::tempdir().unwrap();
        let (toggle, ready) = (d.path().join("toggle"), d.path().join("run/ready"));
        let e = check(&ready, &toggle).unwrap_err();
        assert!(
            e.starts_with("not ready: ") && e.ends_with("does not exist yet (the toggle file is not written)"),
            "{e}"
        );
        let held = Held::write(&toggle, &toggle_grammar::parse(b"1 79").unwrap()).unwrap();
        mark(&ready, &held).unwrap();
        assert_eq!(check(&ready, &toggle).unwrap(), format!("ready: {} holds \"1 79\"", toggle.display()));
        // `cuda-fault node N disable` rewrites it: no longer this pod's fault.
        fsops::write_atomic(&toggle, b"0\n", 0o644).unwrap();
        assert!(check(&ready, &toggle).unwrap_err().contains("is no longer the file this pod wrote (\"1 79\")"));
        fs::remove_file(&toggle).unwrap();
        assert!(check(&ready, &toggle).is_err());
        fs::write(&ready, "garbage").unwrap();
        assert!(check(&ready, &toggle).unwrap_err().contains("is not a marker"));
        unmark(&ready).unwrap();
        assert!(!ready.exists());
    }
}
