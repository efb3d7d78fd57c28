//! The kernel-log XID line against what node health monitors match: NVSentinel's
//! syslog-health-monitor (it reads journald's `MESSAGE` of kernel-transport records), kubernetes'
//! node-problem-detector rules (matched against the kmsg text, anchored at the end: the pattern
//! plus `\z`), gpud's dmesg scan and common dmesg grep checks. The patterns are those of the
//! projects' sources and documented rules, written here as Rust regexes (the same RE2 syntax).
//!
//! Two views of one record: `dmesg` (and node-problem-detector's kmsg watcher) read the record's
//! text; journald takes the leading `cuda-fault:` as the identifier of a record written from
//! user space and keeps the rest as `MESSAGE`, which is exactly the driver's line.

use cuda_fault::kmsg::{self, Pci};
use regex::Regex;

/// The record's text as /dev/kmsg hands it to readers: no `<level>`, no newline.
fn kmsg_text(record: &[u8]) -> String {
    let s = std::str::from_utf8(record).unwrap();
    let s = s.strip_prefix("<3>").expect("the error level");
    s.strip_suffix('\n').expect("one line").to_string()
}

/// journald's split of a user-space kmsg record (`syslog_parse_identifier`): the first word, if
/// it ends in ':', is the identifier; one blank after it is skipped; the rest is `MESSAGE`.
fn journald(text: &str) -> (Option<&str>, &str) {
    let t = text.trim_start_matches([' ', '\t', '\n']);
    let word = t.split([' ', '\t', '\n']).next().unwrap_or("");
    match word.strip_suffix(':') {
        Some(id) if !word.is_empty() => {
            let rest = &t[word.len()..];
            (Some(id), rest.strip_prefix([' ', '\t', '\n']).unwrap_or(rest))
        }
        _ => (None, t),
    }
}

fn re(p: &str) -> Regex {
    Regex::new(p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

#[test]
fn journald_keeps_the_drivers_line_as_the_message() {
    let pci = Pci::parse("0000:3b:00.0").unwrap();
    for row in xid_table::table() {
        let text = kmsg_text(&kmsg::record(&pci, &row));
        let (id, message) = journald(&text);
        assert_eq!(id, Some(kmsg::IDENTIFIER));
        assert_eq!(message, kmsg::line(&pci, &row));
    }
    // What a bare driver line would become, written from user space: its "NVRM:" taken away.
    assert_eq!(journald("NVRM: Xid (PCI:0000:3b:00): 79, x"), (Some("NVRM"), "Xid (PCI:0000:3b:00): 79, x"));
}

#[test]
fn nvsentinel_syslog_health_monitor_reads_the_xid_and_the_bus_id() {
    // pkg/xid/parser/csv.go: the standard XID line, and the NVL5 (XIDs 144-150) form it tries
    // first; pkg/common: the presence check that keeps an Xid line away from the fallen-off-bus
    // handler, whose own pattern is the driver's other message.
    let standard =
        re(r"NVRM: Xid \(PCI:([0-9a-fA-F:.]+)\): (\d+)(?:, pid=(\d+))?(?:, name=([^,]+))?(?:, Ch ([0-9a-fA-F]+))?");
    let nvl5 = re(
        r"NVRM: Xid \(PCI:([^)]+)\): (\d+)(?:, pid=[^,]*)?(?:, name=[^,]*)?, (\w+)\s+(\w+)\s+(\w+)\s+(\w+)\s+Link\s+(-?\d+)\s+\((0x[0-9a-fA-F]+)\s+(0x[0-9a-fA-F]+)",
    );
    let has_xid = re(r"\bXid\b");
    let fallen =
        re(r"(?s)NVRM: The NVIDIA GPU ([0-9a-fA-F:.]+).*?fallen off the bus and is not responding to commands");
    let pci = Pci::parse("0000:86:00.0").unwrap();
    for row in xid_table::table() {
        let text = kmsg_text(&kmsg::record(&pci, &row));
        let (_, message) = journald(&text);
        let c = standard.captures(message).unwrap_or_else(|| panic!("XID {}: {message}", row.xid));
        assert_eq!((&c[1], &c[2]), ("0000:86:00", row.xid.to_string().as_str()), "{message}");
        assert!(!nvl5.is_match(message), "{message}");
        assert!(has_xid.is_match(message) && !fallen.is_match(message), "{message}");
    }
}

#[test]
fn node_problem_detector_rules_match_at_the_end_of_the_kmsg_text() {
    let pci = Pci::parse("0000:3b:00.0").unwrap();
    for row in xid_table::table() {
        let x = row.xid;
        let text = kmsg_text(&kmsg::record(&pci, &row));
        // Rules as users write them for the kmsg monitor; node-problem-detector appends `\z`.
        for rule in [
            "NVRM: Xid.*".to_string(),
            format!(r"NVRM: Xid \(PCI:[^)]+\): {x},.*"),
            format!(r"NVRM: Xid \(PCI:[^)]+\): {x}, pid='.*"),
        ] {
            assert!(re(&format!("{rule}\\z")).is_match(&text), "{rule} on {text}");
        }
        // Another XID's rule does not fire.
        let other = if x == 79 { 48 } else { 79 };
        assert!(!re(&format!(r"NVRM: Xid \(PCI:[^)]+\): {other},.*\z")).is_match(&text));
    }
}

#[test]
fn dmesg_checks_find_the_xid() {
    let pci = Pci::parse("0000:3b:00.0").unwrap();
    for row in xid_table::table() {
        let x = row.xid.to_string();
        // What `dmesg` prints: a timestamp, then the record's text.
        let line = format!("[ 1843.308145] {}", kmsg_text(&kmsg::record(&pci, &row)));
        // gpud's dmesg scan (its README and source), a Python checker, a shell grep -E check.
        let gpud = re(r"NVRM: Xid.*?: (\d+),");
        assert_eq!(&gpud.captures(&line).unwrap()[1], x.as_str(), "{line}");
        let gpud_bus = re(r"NVRM: Xid \(((?:PCI:)?[0-9a-fA-F:]+)\).*?: (\d+),");
        let c = gpud_bus.captures(&line).unwrap();
        assert_eq!((&c[1], &c[2]), ("PCI:0000:3b:00", x.as_str()));
        let python = re(r"NVRM: Xid \(PCI:([^)]+)\): (\d+)");
        assert_eq!(&python.captures(&line).unwrap()[2], x.as_str());
        assert!(re(&format!(r"NVRM: Xid.*: {x}, pid=")).is_match(&line), "{line}");
    }
}
