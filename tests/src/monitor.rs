//! A node health monitor, simulated for the recovery story: it reads a node's kernel log (the file
//! a hold container wrote as its `/dev/kmsg`) the way journald hands NVSentinel a record written
//! from user space (the leading identifier taken off, `MESSAGE` kept), finds the driver's
//! `NVRM: Xid (PCI:…): N,` line, and cordons the node in the fake API server, as NVSentinel's
//! fault quarantine does. The scheduler then places new pods only on schedulable nodes.

use std::path::Path;

use crate::fake_api::{objects, FakeApi};

/// An XID a node's kernel log reports: the GPU's bus ID as the driver prints it, and the XID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelXid {
    pub pci: String,
    pub xid: u32,
}

/// journald's `MESSAGE` of a kmsg record's text written from user space: the first word, when it
/// ends in ':', is the identifier and goes, with one blank after it.
pub fn journald_message(text: &str) -> &str {
    let t = text.trim_start();
    match t.split_whitespace().next() {
        Some(w) if w.ends_with(':') => t[w.len()..].strip_prefix(' ').unwrap_or(&t[w.len()..]),
        _ => t,
    }
}

/// The XID of a `MESSAGE` that is the driver's Xid line.
pub fn parse_xid(message: &str) -> Option<KernelXid> {
    let rest = &message[message.find("NVRM: Xid (PCI:")? + "NVRM: Xid (PCI:".len()..];
    let (pci, rest) = rest.split_once("): ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    if !rest[digits.len()..].starts_with(',') {
        return None;
    }
    Some(KernelXid { pci: pci.to_string(), xid: digits.parse().ok()? })
}

/// Every XID in a kernel-log file of `<level>text` records.
pub fn xids(kmsg: &Path) -> Vec<KernelXid> {
    let text = std::fs::read_to_string(kmsg).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once('>').map(|(_, t)| t))
        .filter_map(|t| parse_xid(journald_message(t)))
        .collect()
}

/// Reads `node`'s kernel log; when it reports an XID, cordons the node (`spec.unschedulable`) in
/// `api` and returns what it saw.
pub fn cordon_on_xid(kmsg: &Path, api: &FakeApi, node: &str) -> Option<KernelXid> {
    let seen = xids(kmsg).into_iter().next()?;
    let path = objects::node_path(node);
    let mut n: serde_json::Value = serde_json::from_str(&api.get(&path)?).ok()?;
    n["spec"]["unschedulable"] = serde_json::json!(true);
    api.set(&path, &n.to_string());
    Some(seen)
}

/// The first of `nodes` the fake API shows schedulable (what the scheduler would pick).
pub fn schedulable<'a>(api: &FakeApi, nodes: &[&'a str]) -> Option<&'a str> {
    nodes.iter().copied().find(|n| {
        api.get(&objects::node_path(n))
            .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
            .is_some_and(|v| v["spec"]["unschedulable"] != true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drivers_line_is_found_only_in_the_journald_message() {
        let text =
            "cuda-fault: NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.";
        let m = journald_message(text);
        assert!(m.starts_with("NVRM: Xid"));
        assert_eq!(parse_xid(m), Some(KernelXid { pci: "0000:3b:00".into(), xid: 79 }));
        assert_eq!(parse_xid("NVRM: Xid (PCI:0000:3b:00): 79"), None, "no comma: not the driver's form");
        assert_eq!(parse_xid(journald_message("NVRM: Xid (PCI:0000:3b:00): 79, x")), None, "a bare line loses NVRM:");
    }
}
