//! The kernel-log XID: the line the NVIDIA driver logs when an XID hits a GPU, written by a hold
//! pod into the node's kernel log (`/dev/kmsg`) so that node health monitors (NVSentinel's
//! syslog-health-monitor, node-problem-detector, dmesg checks) see the fault as they see a real
//! one. Opt-in (`kmsg=1`): a monitor's remediation may drain or reboot the node.
//!
//! A record is `<3>cuda-fault: NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>,
//! GPU has fallen off the bus.` and a newline. A process cannot log with the kernel's facility, so
//! journald takes the first word that ends in `:` of a record written from user space as its
//! identifier and strips it from `MESSAGE`: with `cuda-fault:` first, `MESSAGE` is exactly the
//! driver's line (what NVSentinel matches), and `dmesg` shows who wrote it. The text after the
//! XID number is the driver's own, from `xid-table/xids.table`.
//!
//! Which GPUs: the NVIDIA display controllers in sysfs (vendor `0x10de`, class `0x03xxxx`), in
//! PCI order, which is how the driver numbers them, so `devices=1` is the second; or the bus IDs
//! given with `pci=`.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use crate::toggle::Devices;

/// The kernel log device.
pub const DEVICE: &str = "/dev/kmsg";
/// Where sysfs is mounted.
pub const SYSFS: &str = "/sys";
/// The word journald takes as the identifier of the records (see the module's documentation).
pub const IDENTIFIER: &str = "cuda-fault";
/// `<3>`: the error level, as the driver logs Xids.
const LEVEL: u8 = 3;
/// NVIDIA's PCI vendor ID.
const NVIDIA: &str = "0x10de";
/// The most bus IDs `pci=` takes (more than any node has GPUs).
pub const MAX_PCI: usize = 64;

/// A PCI address: domain, bus, device, function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pci {
    pub domain: u32,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl Pci {
    /// `0000:3b:00.0`, `0000:3b:00` or nvidia-smi's `00000000:3B:00.0`: hex, the domain of 4 or 8
    /// digits, the device 00-1f, the function 0-7.
    pub fn parse(s: &str) -> Result<Pci, String> {
        let bad = || format!("'{}' is not a PCI bus ID like 0000:3b:00.0", s.escape_debug());
        let (rest, function) = match s.split_once('.') {
            Some((rest, f)) if f.len() == 1 => {
                (rest, u8::from_str_radix(f, 16).ok().filter(|f| *f < 8).ok_or_else(bad)?)
            }
            Some(_) => return Err(bad()),
            None => (s, 0),
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let [domain, bus, device] = parts.as_slice() else { return Err(bad()) };
        let hex = |p: &str, lens: &[usize]| {
            (lens.contains(&p.len()) && p.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| u32::from_str_radix(p, 16).ok())
                .flatten()
        };
        let domain = hex(domain, &[4, 8]).ok_or_else(bad)?;
        let bus = hex(bus, &[2]).ok_or_else(bad)? as u8;
        let device = hex(device, &[2]).filter(|d| *d < 0x20).ok_or_else(bad)? as u8;
        Ok(Pci { domain, bus, device, function })
    }

    /// A comma list, as `pci=` takes it.
    pub fn parse_list(s: &str) -> Result<Vec<Pci>, String> {
        let mut out = Vec::new();
        for item in s.split(',') {
            let pci = Pci::parse(item.trim())?;
            if !out.contains(&pci) {
                out.push(pci);
            }
        }
        if out.len() > MAX_PCI {
            return Err(format!("more than {MAX_PCI} bus IDs"));
        }
        Ok(out)
    }

    /// [`Pci::parse_list`] as one command-line value.
    pub fn parse_flag(s: &str) -> Result<PciList, String> {
        Pci::parse_list(s).map(PciList)
    }

    /// How the driver names the GPU in an Xid line: domain, bus and device, no function.
    pub fn driver(&self) -> String {
        format!("{:04x}:{:02x}:{:02x}", self.domain, self.bus, self.device)
    }
}

/// The bus IDs of one `--pci` flag (a newtype, so the command line takes the list as one value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciList(pub Vec<Pci>);

impl fmt::Display for Pci {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:02x}:{:02x}.{:x}", self.domain, self.bus, self.device, self.function)
    }
}

/// The driver's line for `row` on `pci` (what journald's `MESSAGE` holds).
pub fn line(pci: &Pci, row: &xid_table::Xid<'_>) -> String {
    format!("NVRM: Xid (PCI:{}): {}, pid='<unknown>', name=<unknown>, {}", pci.driver(), row.xid, row.kmsg)
}

/// The bytes written to the kernel log for `row` on `pci`: one record.
pub fn record(pci: &Pci, row: &xid_table::Xid<'_>) -> Vec<u8> {
    format!("<{LEVEL}>{IDENTIFIER}: {}\n", line(pci, row)).into_bytes()
}

/// The NVIDIA GPUs under `sysfs` (display controllers of vendor 0x10de), in PCI order.
pub fn gpus(sysfs: &Path) -> Result<Vec<Pci>, String> {
    let dir = sysfs.join("bus/pci/devices");
    let entries =
        fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {}", dir.display(), crate::exit::plain(&e)))?;
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(pci) = Pci::parse(&name) else { continue };
        let read = |f: &str| fs::read_to_string(entry.path().join(f)).map(|s| s.trim().to_ascii_lowercase());
        let display = read("class").is_ok_and(|c| c.starts_with("0x03"));
        if display && read("vendor").is_ok_and(|v| v == NVIDIA) {
            out.push(pci);
        }
    }
    out.sort();
    Ok(out)
}

/// The GPUs to log for: the bus IDs given, or the sysfs GPUs that `devices` names (every one
/// without it). Err: why no line can be written for some of them.
pub fn targets(sysfs: &Path, devices: Option<&Devices>, given: Option<&[Pci]>) -> Result<Vec<Pci>, String> {
    if let Some(given) = given {
        return Ok(given.to_vec());
    }
    if devices.is_some_and(|d| !d.uuids().is_empty()) {
        return Err("devices= names GPU UUIDs, which sysfs does not map to PCI bus IDs; set pci= to the bus IDs".into());
    }
    let found = gpus(sysfs)?;
    if found.is_empty() {
        return Err(format!(
            "no NVIDIA GPU in {} (vendor {NVIDIA}, a display class); set pci= to the bus IDs",
            sysfs.join("bus/pci/devices").display()
        ));
    }
    let Some(devices) = devices else { return Ok(found) };
    let missing: Vec<String> =
        (0..64).filter(|&i| devices.has_ordinal(i) && i as usize >= found.len()).map(|i| i.to_string()).collect();
    if !missing.is_empty() {
        let have: Vec<String> = found.iter().map(Pci::to_string).collect();
        return Err(format!(
            "devices= names ordinal {} but this node has {} NVIDIA GPU(s): {}",
            missing.join(","),
            found.len(),
            have.join(", ")
        ));
    }
    Ok(found.into_iter().enumerate().filter(|(i, _)| devices.has_ordinal(*i as i64)).map(|(_, p)| p).collect())
}

/// Writes `records` to `device`, one `write` each, each through its own open file: the kernel
/// rate-limits every open `/dev/kmsg` to a burst of 10 records and drops the rest silently.
/// Only a character device or (for tests) a regular file is written; the file is never created.
pub fn write(device: &Path, records: &[Vec<u8>]) -> Result<(), String> {
    let d = device.display();
    for record in records {
        let mut file = OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
            .open(device)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENOENT) => format!(
                    "{d} does not exist in this container: mount the node's {DEVICE} (kustomize/kmsg does)"
                ),
                Some(libc::EPERM | libc::EACCES) => format!(
                    "cannot open {d}: {} (a container may open the device only when privileged, as kustomize/kmsg sets; \
                     or the node sets kernel.printk_devkmsg=off)",
                    crate::exit::plain(&e)
                ),
                _ => format!("cannot open {d}: {}", crate::exit::plain(&e)),
            })?;
        let meta = file.metadata().map_err(|e| format!("cannot read {d}: {}", crate::exit::plain(&e)))?;
        if !(meta.file_type().is_char_device() || meta.is_file()) {
            return Err(format!("{d} is {}, not the kernel log device", crate::fsops::kind_of(meta.file_type())));
        }
        let n = file.write(record).map_err(|e| format!("cannot write {d}: {}", crate::exit::plain(&e)))?;
        if n != record.len() {
            return Err(format!("{d} took {n} of {} bytes", record.len()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_ids_parse_strictly_and_print_as_the_driver_does() {
        let p = Pci::parse("0000:3b:00.0").unwrap();
        assert_eq!((p.driver(), p.to_string()), ("0000:3b:00".into(), "0000:3b:00.0".into()));
        assert_eq!(Pci::parse("00000000:3B:00.0").unwrap(), p, "nvidia-smi's form");
        assert_eq!(Pci::parse("0000:3b:00").unwrap(), p);
        assert_eq!(Pci::parse("0001:86:1f.7").unwrap().driver(), "0001:86:1f");
        for bad in [
            "",
            "3b:00.0",
            "0000:3b:20.0",
            "0000:3b:00.8",
            "0000:3b:0.0",
            "000:3b:00.0",
            "0000:3b:00.0\n",
            "0000:3g:00.0",
            "0000:3b:00.0.0",
            "0000:3b:00:00",
        ] {
            assert!(Pci::parse(bad).is_err(), "{bad:?}");
        }
        let e = Pci::parse("0000:3b:00\nnamespace: x").unwrap_err();
        assert!(!e.contains('\n') && e.contains("\\n"), "{e}");
        assert_eq!(Pci::parse_list("0000:3b:00.0, 0000:86:00.0,0000:3b:00").unwrap().len(), 2);
        let many: Vec<String> = (0..65).map(|i| format!("0000:{i:02x}:00.0")).collect();
        assert!(Pci::parse_list(&many.join(",")).unwrap_err().contains("more than 64"));
    }

    #[test]
    fn the_record_is_the_drivers_line_behind_our_identifier() {
        let row = xid_table::find(79).unwrap();
        let p = Pci::parse("0000:3b:00.0").unwrap();
        assert_eq!(
            record(&p, &row),
            b"<3>cuda-fault: NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.\n"
        );
        for row in xid_table::table() {
            let r = record(&p, &row);
            assert!(
                r.ends_with(b"\n") && r[..r.len() - 1].iter().all(|b| b.is_ascii_graphic() || *b == b' '),
                "{}",
                row.xid
            );
        }
    }

    fn fake_sysfs(root: &Path, devices: &[(&str, &str, &str)]) {
        for (bdf, vendor, class) in devices {
            let d = root.join("bus/pci/devices").join(bdf);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("vendor"), format!("{vendor}\n")).unwrap();
            fs::write(d.join("class"), format!("{class}\n")).unwrap();
        }
    }

    #[test]
    fn sysfs_gpus_in_pci_order_mapped_to_ordinals() {
        let d = tempfile::tempdir().unwrap();
        fake_sysfs(
            d.path(),
            &[
                ("0000:86:00.0", "0x10de", "0x030200"), // 3D controller
                ("0000:3b:00.0", "0x10de", "0x030000"), // VGA
                ("0000:3b:00.1", "0x10de", "0x040300"), // its audio function
                ("0000:c1:00.0", "0x10de", "0x068000"), // an NVSwitch bridge
                ("0000:05:00.0", "0x8086", "0x030000"), // another vendor's display
                ("0001:01:00.0", "0x10DE", "0x030200"),
            ],
        );
        let all = gpus(d.path()).unwrap();
        let names: Vec<String> = all.iter().map(Pci::to_string).collect();
        assert_eq!(names, ["0000:3b:00.0", "0000:86:00.0", "0001:01:00.0"]);
        assert_eq!(targets(d.path(), None, None).unwrap(), all);
        let one = Devices::parse(b"1").unwrap();
        assert_eq!(targets(d.path(), Some(&one), None).unwrap(), [all[1]]);
        let e = targets(d.path(), Some(&Devices::parse(b"0,5").unwrap()), None).unwrap_err();
        assert_eq!(
            e,
            "devices= names ordinal 5 but this node has 3 NVIDIA GPU(s): 0000:3b:00.0, 0000:86:00.0, 0001:01:00.0"
        );
        let uuid = Devices::parse(b"GPU-8f2c1a3e-1111-2222-3333-444455556666").unwrap();
        assert!(targets(d.path(), Some(&uuid), None).unwrap_err().contains("set pci="));
        let given = [Pci::parse("0000:aa:00.0").unwrap()];
        assert_eq!(targets(d.path(), Some(&uuid), Some(&given)).unwrap(), given, "pci= wins");
        let empty = tempfile::tempdir().unwrap();
        fake_sysfs(empty.path(), &[("0000:05:00.0", "0x8086", "0x030000")]);
        assert!(targets(empty.path(), None, None).unwrap_err().starts_with("no NVIDIA GPU in "));
    }

    #[test]
    fn writes_one_record_per_line_and_refuses_what_is_not_the_device() {
        let d = tempfile::tempdir().unwrap();
        let dev = d.path().join("kmsg");
        let missing = write(&dev, &[b"x\n".to_vec()]).unwrap_err();
        assert!(
            missing.ends_with("does not exist in this container: mount the node's /dev/kmsg (kustomize/kmsg does)"),
            "{missing}"
        );
        assert!(!dev.exists(), "never created");
        fs::write(&dev, b"").unwrap();
        write(&dev, &[b"a\n".to_vec(), b"b\n".to_vec()]).unwrap();
        assert_eq!(fs::read(&dev).unwrap(), b"a\nb\n");
        let dir = d.path().join("dir");
        fs::create_dir(&dir).unwrap();
        assert!(write(&dir, &[b"x\n".to_vec()]).is_err());
        // A FIFO without a reader: refused at once, never blocking.
        let fifo = d.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        assert!(write(&fifo, &[b"x\n".to_vec()]).is_err());
    }
}
