//! The toggle file a hold pod wrote, and its removal that never takes anyone else's file.
//!
//! "Its own" is the same device and inode and the same bytes: anyone else's write (an atomic
//! rename) makes a new inode. Checking and then unlinking the path would remove a file written
//! between the two, so the removal renames the path aside first (to a name of its own, which no
//! writer touches), checks the file it moved and unlinks it only if it is its own; otherwise it
//! renames it back with `RENAME_NOREPLACE`, so a write that landed meanwhile stays.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{renameat_with, RenameFlags, CWD};

use super::stop::Decision;
use crate::exit::Failure;
use crate::fsops;
use crate::local::TOGGLE_MODE;
use crate::toggle::{self, Line};

/// The toggle file this process wrote: where, which file (device and inode), and what.
#[derive(Debug)]
pub struct Held {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    pub content: Vec<u8>,
}

/// Where a removal stands, for tests that write in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The path was checked to hold this pod's file; nothing moved yet.
    Checked,
    /// The file was renamed aside; the path is free.
    SetAside,
}

/// What [`Held::remove_if_ours`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    Removed,
    /// The path holds another writer's file (left where it is).
    NotOurs,
    /// Nothing at the path.
    Gone,
}

fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE).map_err(io::Error::from)
}

impl Held {
    /// Writes `line` to `path` atomically and remembers the file.
    pub fn write(path: &Path, line: &Line) -> Result<Held, Failure> {
        let content = toggle::render(line).into_bytes();
        fsops::write_atomic(path, &content, TOGGLE_MODE)?;
        let meta = fs::symlink_metadata(path).map_err(|e| Failure::io("read", path, &e))?;
        Ok(Held { path: path.to_path_buf(), dev: meta.dev(), ino: meta.ino(), content })
    }

    /// Like [`Held::write`], but a regular file at `path` that already holds exactly this line
    /// (the previous hold pod's, when this one replaces an evicted or restarted one) is kept as it
    /// is and adopted. The shim takes every write as a new on-period: rewriting would re-arm
    /// `count` and `after_*` and, under `scope=process`, fault again the processes that restarted
    /// clean since the first write. The second value says whether this call wrote the file.
    pub fn write_or_keep(path: &Path, line: &Line) -> Result<(Held, bool), Failure> {
        let content = toggle::render(line).into_bytes();
        if let Some(kept) = Held::adopt(path, &content) {
            return Ok((kept, false));
        }
        Held::write(path, line).map(|h| (h, true))
    }

    /// The file at `path` when it is a regular file holding exactly `content`, read through one
    /// descriptor (no symlink followed, never blocking), so the identity and the bytes are of the
    /// same file.
    fn adopt(path: &Path, content: &[u8]) -> Option<Held> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .ok()?;
        let meta = file.metadata().ok()?;
        if !meta.is_file() || meta.len() != content.len() as u64 {
            return None;
        }
        let mut found = Vec::with_capacity(content.len());
        file.take(content.len() as u64 + 1).read_to_end(&mut found).ok()?;
        (found == content).then(|| Held { path: path.to_path_buf(), dev: meta.dev(), ino: meta.ino(), content: found })
    }

    /// Whether `at` is the file written here: the same file, unchanged.
    pub fn is_ours(&self, at: &Path) -> bool {
        match fs::symlink_metadata(at) {
            Ok(m) if m.is_file() && m.dev() == self.dev && m.ino() == self.ino => {
                fs::read(at).is_ok_and(|c| c == self.content)
            }
            _ => false,
        }
    }

    /// Whether the path still holds the file written here.
    pub fn still_ours(&self) -> bool {
        self.is_ours(&self.path)
    }

    /// A name beside the file that no writer uses; `clean` removes it if a removal was killed
    /// half-way (it starts as cuda-fault's temporary files do).
    fn aside(&self) -> PathBuf {
        let name = self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        self.path.with_file_name(format!(".{name}.tmp.hold-aside.{}.{nanos}", std::process::id()))
    }

    /// Removes the file if it is still the one written here, atomically with respect to the
    /// check; `between` runs at each [`Stage`] (tests write there).
    pub fn remove_if_ours_with(&self, between: &mut dyn FnMut(Stage)) -> Result<Removal, Failure> {
        if !self.still_ours() {
            return Ok(if fs::symlink_metadata(&self.path).is_ok() { Removal::NotOurs } else { Removal::Gone });
        }
        between(Stage::Checked);
        let aside = self.aside();
        match rename_noreplace(&self.path, &aside) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Removal::Gone),
            Err(e) => return Err(Failure::io("remove", &self.path, &e)),
        }
        between(Stage::SetAside);
        if self.is_ours(&aside) {
            fs::remove_file(&aside).map_err(|e| Failure::io("remove", &aside, &e))?;
            fsops::sync_dir(self.path.parent().unwrap_or(Path::new(".")));
            return Ok(Removal::Removed);
        }
        // Another write landed between the check and the rename: put it back, unless an even
        // later one is at the path already (then that one wins, as the last write always does).
        match rename_noreplace(&aside, &self.path) {
            Ok(()) => Ok(Removal::NotOurs),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let _ = fs::remove_file(&aside);
                Ok(Removal::NotOurs)
            }
            Err(e) => Err(Failure::new(
                crate::exit::IO_ERROR,
                format!(
                    "cannot move another writer's toggle file back from {} to {}: {}; move it back by hand",
                    aside.display(),
                    self.path.display(),
                    crate::exit::plain(&e)
                ),
            )),
        }
    }

    /// [`Held::remove_if_ours_with`] with nothing in between.
    pub fn remove_if_ours(&self) -> Result<Removal, Failure> {
        self.remove_if_ours_with(&mut |_| {})
    }

    /// Acts on the API's answer; returns the line to print.
    pub fn finish(&self, decision: &Decision, node: &str) -> Result<String, Failure> {
        self.finish_off(decision, node).map(|(line, _)| line)
    }

    /// [`Held::finish`], and whether the node's fault is off now (the file removed, or gone).
    pub fn finish_off(&self, decision: &Decision, node: &str) -> Result<(String, bool), Failure> {
        let p = self.path.display();
        Ok(match decision {
            Decision::Remove(why) => match self.remove_if_ours()? {
                Removal::Removed => (format!("removed {p}: {why}"), true),
                Removal::NotOurs => (
                    format!("kept {p}: it was rewritten since this pod wrote it, so it is not this pod's to remove ({why})"),
                    false,
                ),
                Removal::Gone => (format!("{p} is already gone ({why})"), true),
            },
            Decision::Keep(why) => (format!("kept {p}: {why}"), false),
            Decision::Unknown(why) => (
                format!(
                    "kept {p}: cannot ask the Kubernetes API ({why}); if the fault resource was deleted, clean the node by hand: cuda-fault node {node} clean"
                ),
                false,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(p: &Path) -> Held {
        Held::write(p, &toggle_grammar::parse(b"1 79").unwrap()).unwrap()
    }

    #[test]
    fn only_the_file_written_here_is_removed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("toggle");
        let h = held(&p);
        assert!(h.still_ours());
        let kept = h.finish(&Decision::Keep("still targeted".into()), "n1").unwrap();
        assert_eq!(kept, format!("kept {}: still targeted", p.display()));
        assert!(p.exists());
        let unknown = h.finish(&Decision::Unknown("unreachable".into()), "n1").unwrap();
        assert!(unknown.ends_with("clean the node by hand: cuda-fault node n1 clean"), "{unknown}");
        assert!(p.exists());
        // Someone else wrote the file since (the same content, a new inode): not ours.
        fsops::write_atomic(&p, b"1 79\n", 0o644).unwrap();
        let other = h.finish(&Decision::Remove("deleted".into()), "n1").unwrap();
        assert!(other.contains("it was rewritten since this pod wrote it"), "{other}");
        assert!(p.exists());
        // Ours: removed, and nothing else is left in the directory.
        let h = held(&p);
        assert_eq!(
            h.finish(&Decision::Remove("deleted".into()), "n1").unwrap(),
            format!("removed {}: deleted", p.display())
        );
        assert!(!p.exists());
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
        assert_eq!(h.remove_if_ours().unwrap(), Removal::Gone);
    }

    /// A replacing hold pod keeps a file that holds exactly its line (same inode, same mtime: the
    /// shim sees no new write) and adopts it as its own; anything else is written afresh, and a
    /// symbolic link is never followed, even to such a file.
    #[test]
    fn a_file_that_already_holds_the_line_is_kept_not_rewritten() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("toggle");
        let line = toggle_grammar::parse(b"1 79").unwrap();
        let (first, wrote) = Held::write_or_keep(&p, &line).unwrap();
        assert!(wrote);
        let before = fs::metadata(&p).unwrap();
        let (second, wrote) = Held::write_or_keep(&p, &line).unwrap();
        let after = fs::metadata(&p).unwrap();
        assert!(!wrote);
        assert_eq!((second.dev, second.ino, &second.content), (first.dev, first.ino, &first.content));
        assert_eq!(
            (after.ino(), after.mtime(), after.mtime_nsec()),
            (before.ino(), before.mtime(), before.mtime_nsec())
        );
        assert!(second.still_ours());
        assert_eq!(second.remove_if_ours().unwrap(), Removal::Removed);
        for other in [&b"1 48\n"[..], b"1 79", b"1 79\n\n", b"0\n", b""] {
            fsops::write_atomic(&p, other, 0o644).unwrap();
            let (h, wrote) = Held::write_or_keep(&p, &line).unwrap();
            assert!(wrote, "{other:?} is not the line");
            assert_eq!(fs::read(&p).unwrap(), b"1 79\n");
            assert!(h.still_ours());
        }
        let target = d.path().join("elsewhere");
        fs::write(&target, b"1 79\n").unwrap();
        fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink(&target, &p).unwrap();
        assert!(Held::write_or_keep(&p, &line).is_err(), "a symlink is neither adopted nor replaced");
        assert!(fs::symlink_metadata(&p).unwrap().file_type().is_symlink());
    }

    /// A write that lands inside the removal is never removed: before the file is set aside
    /// (the set-aside file is then the other writer's, and goes back), after it (the path is
    /// free, the write lands there), and both (the later write wins).
    #[test]
    fn a_write_inside_the_removal_is_kept() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("toggle");
        let write = |s: &str| fsops::write_atomic(&p, s.as_bytes(), 0o644).unwrap();

        let h = held(&p);
        let r = h
            .remove_if_ours_with(&mut |s| {
                if s == Stage::Checked {
                    write("1 95\n")
                }
            })
            .unwrap();
        assert_eq!((r, fs::read_to_string(&p).unwrap()), (Removal::NotOurs, "1 95\n".into()));

        let h = held(&p);
        let r = h
            .remove_if_ours_with(&mut |s| {
                if s == Stage::SetAside {
                    write("1 95\n")
                }
            })
            .unwrap();
        assert_eq!((r, fs::read_to_string(&p).unwrap()), (Removal::Removed, "1 95\n".into()));

        let h = held(&p);
        let r = h
            .remove_if_ours_with(&mut |s| match s {
                Stage::Checked => write("1 95\n"),
                Stage::SetAside => write("1 48\n"),
            })
            .unwrap();
        assert_eq!((r, fs::read_to_string(&p).unwrap()), (Removal::NotOurs, "1 48\n".into()));
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1, "no set-aside file is left behind");
    }
}
