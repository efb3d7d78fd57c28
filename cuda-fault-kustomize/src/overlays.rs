//! The fault overlays of this repository, one per row of the XID table: `kustomize/xidNN/` =
//! the fault base (`kustomize/fault/`, the hold DaemonSet) with the fault ConfigMap's `xid`
//! merged in. `cuda-fault-kustomize xid-overlays kustomize/` writes them; a test fails when a
//! file is stale or the set of directories differs from the table.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// The fault ConfigMap (a configMapGenerator in the fault base) and its namespace.
pub const FAULT_CONFIGMAP: &str = "cuda-fault-fault";
pub const FAULT_NAMESPACE: &str = "cuda-fault";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Kustomization {
    api_version: &'static str,
    kind: &'static str,
    resources: Vec<&'static str>,
    config_map_generator: Vec<Generator>,
}

#[derive(Serialize)]
struct Generator {
    name: &'static str,
    // A merge must repeat the namespace, or kustomize finds no ConfigMap to merge into.
    namespace: &'static str,
    behavior: &'static str,
    literals: Vec<String>,
}

/// The overlay of one XID.
pub fn xid_overlay(row: &xid_table::Xid<'_>) -> String {
    let x = row.xid;
    let k = Kustomization {
        api_version: "kustomize.config.k8s.io/v1beta1",
        kind: "Kustomization",
        resources: vec!["../fault"],
        config_map_generator: vec![Generator {
            name: FAULT_CONFIGMAP,
            namespace: FAULT_NAMESPACE,
            behavior: "merge",
            literals: vec![format!("xid={x}")],
        }],
    };
    format!(
        "# XID {x} ({}): {}.\n\
         # Generated from xid-table/xids.table by `cargo run -p cuda-fault-kustomize -- xid-overlays kustomize`; do not edit.\n\
         #   kubectl apply -k kustomize/xid{x}    XID {x} on for every node labelled cuda-fault/target=true, within seconds\n\
         #   kubectl delete -k kustomize/xid{x}   off again: deletes only the hold DaemonSet and its ConfigMap\n{}",
        row.mnemonic,
        row.description,
        serde_norway::to_string(&k).expect("serializable")
    )
}

/// Every overlay file under `dir` (the repository's `kustomize/`), with its content.
pub fn files(dir: &Path) -> Vec<(PathBuf, String)> {
    xid_table::table()
        .iter()
        .map(|row| (dir.join(format!("xid{}", row.xid)).join("kustomization.yaml"), xid_overlay(row)))
        .collect()
}

/// `xidNN` directories under `dir` (NN all digits).
fn xid_dirs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let digits = name.strip_prefix("xid").is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
        if digits && entry.file_type()?.is_dir() {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// What differs from what [`write`] would make, one line each.
pub fn stale(dir: &Path) -> io::Result<Vec<String>> {
    let wanted = files(dir);
    let mut out = Vec::new();
    for (path, text) in &wanted {
        match fs::read_to_string(path) {
            Ok(t) if t == *text => {}
            Ok(_) => out.push(format!("{} differs", path.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => out.push(format!("{} is missing", path.display())),
            Err(e) => return Err(e),
        }
    }
    for d in xid_dirs(dir)? {
        if !wanted.iter().any(|(p, _)| p.parent() == Some(d.as_path())) {
            out.push(format!("{} is not in the XID table", d.display()));
        }
    }
    Ok(out)
}

/// Writes every overlay and removes `xidNN` directories of XIDs no longer in the table.
pub fn write(dir: &Path) -> io::Result<Vec<String>> {
    let wanted = files(dir);
    let mut done = Vec::new();
    for d in xid_dirs(dir)? {
        if !wanted.iter().any(|(p, _)| p.parent() == Some(d.as_path())) {
            fs::remove_dir_all(&d)?;
            done.push(format!("removed {}", d.display()));
        }
    }
    for (path, text) in wanted {
        if fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            fs::create_dir_all(path.parent().expect("a directory"))?;
            fs::write(&path, text)?;
            done.push(format!("wrote {}", path.display()));
        }
    }
    Ok(done)
}
