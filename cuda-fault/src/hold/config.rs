//! What a hold pod holds: the fault ConfigMap mounted at `--config` (one file per key), or the
//! same from the command line. `xid` and the toggle keys make the line (through the shim's own
//! grammar); `kmsg` and `pci` ask for the kernel-log XID.

use std::fs;
use std::io::Read;
use std::path::Path;

use crate::exit::Failure;
use crate::kmsg::Pci;
use crate::toggle::{self, Key, Keys, Line};

/// The configuration key for the XID; every other file is named as a toggle key or one below.
pub const XID_KEY: &str = "xid";
/// `kmsg=1`: write the driver's Xid line to the node's kernel log too.
pub const KMSG_KEY: &str = "kmsg";
/// `pci=0000:3b:00.0,...`: the GPUs the kernel-log line names (default: sysfs and `devices`).
pub const PCI_KEY: &str = "pci";
/// The largest value file read from `--config`.
const MAX_VALUE: u64 = 4096;

/// A hold pod's whole fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub line: Line,
    /// Write the kernel-log XID line.
    pub kmsg: bool,
    /// The GPUs to name in it, when given.
    pub pci: Option<Vec<Pci>>,
}

impl Fault {
    /// The XID the kernel-log line names: the line's, or the table's default.
    pub fn xid(&self) -> u64 {
        match self.line {
            Line::On { xid: Some(x), .. } => x,
            _ => u64::from(xid_table::DEFAULT_XID),
        }
    }

    /// The `devices` key of the line.
    pub fn devices(&self) -> Option<toggle::Devices> {
        match self.line {
            Line::On { keys, .. } => keys.devices,
            Line::Off => None,
        }
    }
}

fn bad(dir: &Path, what: String) -> Failure {
    Failure::usage(format!("--config {}: {what}", dir.display()))
}

/// `kmsg`'s value: the toggle grammar's booleans.
pub fn parse_kmsg(v: &str) -> Result<bool, String> {
    toggle_grammar::boolean(v.as_bytes()).map_err(|_| format!("'{}' is not 1, 0, true or false", v.escape_debug()))
}

/// The fault of a configuration: `xid`, toggle keys, `kmsg` and `pci`, each from its own value.
pub fn fault_from_entries(dir: &Path, entries: &[(String, String)]) -> Result<Fault, Failure> {
    let mut xid = None;
    let mut keys = Keys::default();
    let (mut kmsg, mut pci) = (false, None);
    for (name, value) in entries {
        match name.as_str() {
            XID_KEY => {
                xid = Some(crate::commands::flags::parse_xid(value).map_err(|e| bad(dir, format!("xid: {e}")))?);
            }
            KMSG_KEY => kmsg = parse_kmsg(value).map_err(|e| bad(dir, format!("kmsg: {e}")))?,
            PCI_KEY => pci = Some(Pci::parse_list(value).map_err(|e| bad(dir, format!("pci: {e}")))?),
            _ => {
                let Some(key) = Key::from_name(name.as_bytes()) else {
                    let known: Vec<&str> = Key::ALL.iter().map(|k| k.name()).collect();
                    return Err(bad(
                        dir,
                        format!(
                            "unknown key '{}' (expected {XID_KEY}, a toggle key: {}, or {KMSG_KEY}, {PCI_KEY})",
                            name.escape_debug(),
                            known.join(", ")
                        ),
                    ));
                };
                keys.set(key, value.as_bytes()).map_err(|e| bad(dir, e.to_string()))?;
            }
        }
    }
    let line = toggle::on(xid, keys).map_err(|e| bad(dir, e))?;
    Ok(Fault { line, kmsg, pci })
}

/// The "on" line of a configuration (its `kmsg` and `pci` keys are checked, not part of it).
pub fn line_from_entries(dir: &Path, entries: &[(String, String)]) -> Result<Line, Failure> {
    fault_from_entries(dir, entries).map(|f| f.line)
}

/// Reads a mounted ConfigMap: one file per key; entries whose names start with a dot (the
/// volume's `..data` machinery) are skipped; values are trimmed.
pub fn entries_from_dir(dir: &Path) -> Result<Vec<(String, String)>, Failure> {
    let read_dir = fs::read_dir(dir).map_err(|e| Failure::io("read", dir, &e))?;
    let mut entries = Vec::new();
    for entry in read_dir {
        let entry = entry.map_err(|e| Failure::io("read", dir, &e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let meta = fs::metadata(&path).map_err(|e| Failure::io("read", &path, &e))?;
        if !meta.is_file() {
            return Err(bad(dir, format!("{} is not a file", name.escape_debug())));
        }
        let mut bytes = Vec::new();
        let file = fs::File::open(&path).map_err(|e| Failure::io("read", &path, &e))?;
        file.take(MAX_VALUE + 1).read_to_end(&mut bytes).map_err(|e| Failure::io("read", &path, &e))?;
        if bytes.len() as u64 > MAX_VALUE {
            return Err(bad(dir, format!("{} is longer than {MAX_VALUE} bytes", name.escape_debug())));
        }
        let text = String::from_utf8(bytes).map_err(|_| bad(dir, format!("{} is not text", name.escape_debug())))?;
        entries.push((name, text.trim().to_string()));
    }
    entries.sort();
    Ok(entries)
}

/// The fault of a mounted ConfigMap.
pub fn fault_from_dir(dir: &Path) -> Result<Fault, Failure> {
    fault_from_entries(dir, &entries_from_dir(dir)?)
}

/// The line of a mounted ConfigMap.
pub fn line_from_dir(dir: &Path) -> Result<Line, Failure> {
    fault_from_dir(dir).map(|f| f.line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit;

    fn entries(e: &[(&str, &str)]) -> Vec<(String, String)> {
        e.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn configuration_keys_make_the_line_through_the_grammar() {
        let d = Path::new("/etc/cuda-fault/fault");
        let line =
            line_from_entries(d, &entries(&[("after_ms", "5000"), ("devices", "1"), ("sticky", "1"), ("xid", "48")]))
                .unwrap();
        assert_eq!(toggle::render(&line), "1 48 devices=1 after_ms=5000 sticky=1\n");
        assert_eq!(toggle::render(&line_from_entries(d, &[]).unwrap()), "1\n");
        let e = line_from_entries(d, &entries(&[("xid", "77")])).unwrap_err();
        assert_eq!(e.code, exit::USAGE);
        assert!(
            e.message.starts_with("--config /etc/cuda-fault/fault: xid: unknown XID 77; supported: 13, "),
            "{}",
            e.message
        );
        let e = line_from_entries(d, &entries(&[("mode", "slow")])).unwrap_err();
        assert!(e.message.starts_with("--config /etc/cuda-fault/fault: mode"), "{}", e.message);
        let e = line_from_entries(d, &entries(&[("after", "5s")])).unwrap_err();
        assert!(
            e.message.contains("unknown key 'after' (expected xid, a toggle key: devices, after_calls, after_ms, mode"),
            "{}",
            e.message
        );
        assert!(!e.message.contains('\n'));
        let e = line_from_entries(d, &entries(&[("a\nnamespace: x", "1")])).unwrap_err();
        assert!(!e.message.contains('\n'), "{}", e.message);
    }

    #[test]
    fn kmsg_and_pci_are_read_and_checked() {
        let d = Path::new("/c");
        let f = fault_from_entries(d, &entries(&[("xid", "79"), ("kmsg", "1"), ("pci", "0000:3b:00.0,0000:86:00.0")]))
            .unwrap();
        assert!(f.kmsg);
        assert_eq!(f.pci.as_ref().map(Vec::len), Some(2));
        assert_eq!(toggle::render(&f.line), "1 79\n", "neither is part of the toggle line");
        assert_eq!(f.xid(), 79);
        let off = fault_from_entries(d, &entries(&[("kmsg", "false")])).unwrap();
        assert!(!off.kmsg);
        assert_eq!(off.xid(), u64::from(xid_table::DEFAULT_XID));
        let e = fault_from_entries(d, &entries(&[("kmsg", "yes")])).unwrap_err();
        assert_eq!(e.message, "--config /c: kmsg: 'yes' is not 1, 0, true or false");
        let e = fault_from_entries(d, &entries(&[("pci", "0000:3b:00.0\nx")])).unwrap_err();
        assert!(e.message.starts_with("--config /c: pci: '0000:3b:00.0\\nx' is not a PCI bus ID"), "{}", e.message);
    }

    #[test]
    fn a_mounted_config_map_is_read_without_its_dot_entries() {
        let d = tempfile::tempdir().unwrap();
        // What the kubelet makes of a ConfigMap volume: a timestamped directory, ..data
        // pointing at it, and one symlink per key.
        let stamp = d.path().join("..2026_01_01_00_00_00.000000001");
        fs::create_dir(&stamp).unwrap();
        fs::write(stamp.join("xid"), "79").unwrap();
        fs::write(stamp.join("count"), "3\n").unwrap();
        std::os::unix::fs::symlink(&stamp, d.path().join("..data")).unwrap();
        for key in ["xid", "count"] {
            std::os::unix::fs::symlink(format!("..data/{key}"), d.path().join(key)).unwrap();
        }
        assert_eq!(toggle::render(&line_from_dir(d.path()).unwrap()), "1 79 count=3\n");
        fs::create_dir(d.path().join("sub")).unwrap();
        assert!(line_from_dir(d.path()).unwrap_err().message.ends_with("sub is not a file"));
    }
}
