//! The commands that work on a local toggle file, `xids` and `install`. No async runtime here.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::exit::{self, Failure};
use crate::fsops;
use crate::toggle::{Toggle, MAX_LEN};

/// Mode of the toggle file.
pub const TOGGLE_MODE: u32 = 0o644;
/// Mode of the installed shim library.
pub const LIBRARY_MODE: u32 = 0o755;
/// The shim library's file name, beside the binary in the image and in the install directory.
pub const LIBRARY_NAME: &str = "cuda_intercept.so";

fn describe_xid(x: u64) -> String {
    match crate::toggle::lookup(x) {
        Some(row) => format!("XID {x} ({})", row.mnemonic),
        None => format!(
            "XID {x}, which is not in the XID table: the shim simulates the pod's CUDA_XID_TYPE (default {}) instead",
            xid_table::DEFAULT_XID
        ),
    }
}

/// One sentence on what the shim does with this (valid) toggle.
pub fn effect(t: &Toggle) -> String {
    if !t.on {
        return "faults off".into();
    }
    let mut s = match t.xid {
        Some(x) => format!("faults on: {}", describe_xid(x)),
        None => format!("faults on: XID from the pod's CUDA_XID_TYPE (default {})", xid_table::DEFAULT_XID),
    };
    if let Some(d) = &t.devices {
        s.push_str(&format!(", devices {}", d.join(",")));
    }
    if let Some(n) = t.after_calls {
        s.push_str(&format!(", after {n} passing calls"));
    }
    if let Some(ms) = t.after_ms {
        s.push_str(&format!(", after {ms} ms"));
    }
    if let Some(m) = t.mode {
        s.push_str(&format!(", mode {}", m.as_str()));
    }
    if t.sticky {
        s.push_str(", sticky");
    }
    s
}

/// Writes `toggle` to `path` atomically and says so on `out`.
pub fn write_toggle(path: &Path, toggle: &Toggle, out: &mut dyn Write) -> Result<(), Failure> {
    let text = toggle.render();
    fsops::write_atomic(path, text.as_bytes(), TOGGLE_MODE)?;
    let _ = writeln!(out, "wrote {:?} to {}: {}", text.trim_end(), path.display(), effect(toggle));
    Ok(())
}

/// `clean`: removes the toggle file.
pub fn clean(path: &Path, out: &mut dyn Write) -> Result<(), Failure> {
    let r = fsops::remove(path)?;
    let what = if r.existed {
        format!("removed {}: absent: env decides", path.display())
    } else {
        format!("{} already absent: env decides", path.display())
    };
    let _ = match r.stale_temps {
        0 => writeln!(out, "{what}"),
        n => writeln!(out, "{what} (also removed {n} stale temporary file(s))"),
    };
    Ok(())
}

/// `status --json`: a stable object (field order fixed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Status {
    pub file: String,
    pub present: bool,
    /// "on", "off", "invalid" or "absent".
    pub state: &'static str,
    pub xid: Option<u64>,
    pub devices: Option<Vec<String>>,
    pub after_calls: Option<u64>,
    pub after_ms: Option<u64>,
    /// "error" or "hang" for a valid file ("error" unless the file says hang); null otherwise.
    pub mode: Option<&'static str>,
    pub sticky: Option<bool>,
    pub raw: Option<String>,
    /// Why the file is malformed; null otherwise.
    pub error: Option<String>,
    /// What the shim does.
    pub effect: String,
}

/// Reads and parses the toggle file.
pub fn status(path: &Path) -> Result<Status, Failure> {
    let file = path.display().to_string();
    // Read well past what the shim reads, so `raw` shows an over-long file as it is.
    let Some(bytes) = fsops::read_limited(path, 16 * MAX_LEN)? else {
        return Ok(Status { file, state: "absent", effect: "absent: env decides".into(), ..Status::default() });
    };
    let raw = String::from_utf8_lossy(&bytes).into_owned();
    let parsed = match std::str::from_utf8(&bytes) {
        Ok(text) => Toggle::parse(text).map_err(|m| m.0),
        Err(_) => Err("not UTF-8 text".to_string()),
    };
    Ok(match parsed {
        Ok(t) => Status {
            file,
            present: true,
            state: if t.on { "on" } else { "off" },
            xid: t.xid,
            devices: t.devices.clone(),
            after_calls: t.after_calls,
            after_ms: t.after_ms,
            mode: Some(t.mode.map_or("error", |m| m.as_str())),
            sticky: Some(t.sticky),
            raw: Some(raw),
            error: None,
            effect: effect(&t),
        },
        Err(reason) => Status {
            file,
            present: true,
            state: "invalid",
            raw: Some(raw),
            error: Some(reason),
            effect: "malformed: the shim treats malformed content as off".into(),
            ..Status::default()
        },
    })
}

/// `status` as text.
pub fn status_text(s: &Status) -> String {
    let mut out = format!("file:        {}\n", s.file);
    match s.state {
        "absent" => {
            out.push_str("state:       absent: env decides (the shim uses CUDA_FAULT_INJECTION_ENABLED and CUDA_XID_TYPE)\n");
            return out;
        }
        "invalid" => {
            out.push_str(&format!(
                "state:       invalid: {}; the shim treats malformed content as off\n",
                s.error.as_deref().unwrap_or("malformed")
            ));
            out.push_str(&format!("raw:         {:?}\n", s.raw.as_deref().unwrap_or("")));
            return out;
        }
        state => out.push_str(&format!("state:       {state}\n")),
    }
    let dash = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |n| n.to_string());
    let xid = match s.xid {
        Some(x) => describe_xid(x),
        None if s.state == "on" => format!("from the pod's CUDA_XID_TYPE (default {})", xid_table::DEFAULT_XID),
        None => "-".into(),
    };
    out.push_str(&format!("xid:         {xid}\n"));
    out.push_str(&format!(
        "devices:     {}\n",
        s.devices.as_ref().map_or_else(|| "all".to_string(), |d| d.join(","))
    ));
    out.push_str(&format!("after_calls: {}\n", dash(s.after_calls)));
    out.push_str(&format!("after_ms:    {}\n", dash(s.after_ms)));
    out.push_str(&format!("mode:        {}\n", s.mode.unwrap_or("error")));
    out.push_str(&format!("sticky:      {}\n", if s.sticky == Some(true) { "yes" } else { "no" }));
    out.push_str(&format!("raw:         {:?}\n", s.raw.as_deref().unwrap_or("")));
    out.push_str(&format!("effect:      {}\n", s.effect));
    out
}

#[derive(Serialize)]
struct CodeJson {
    name: &'static str,
    code: u32,
}

#[derive(Serialize)]
struct XidJson {
    xid: u32,
    mnemonic: &'static str,
    description: &'static str,
    runtime: CodeJson,
    driver: CodeJson,
    nvml: Option<CodeJson>,
    sticky: bool,
    inferred: bool,
    evidence: &'static str,
    default: bool,
}

/// `xids --json`.
pub fn xids_json() -> String {
    let rows: Vec<XidJson> = xid_table::table()
        .into_iter()
        .map(|r| XidJson {
            xid: r.xid,
            mnemonic: r.mnemonic,
            description: r.description,
            runtime: CodeJson { name: r.runtime.name, code: r.runtime.code },
            driver: CodeJson { name: r.driver.name, code: r.driver.code },
            nvml: r.nvml.map(|e| CodeJson { name: e.name, code: e.code }),
            sticky: r.sticky,
            inferred: r.inferred(),
            evidence: r.evidence,
            default: r.xid == xid_table::DEFAULT_XID,
        })
        .collect();
    serde_json::to_string_pretty(&rows).expect("serializable") + "\n"
}

/// `xids` as an aligned text table.
pub fn xids_text() -> String {
    let header = ["XID", "NAME", "RUNTIME ERROR", "DRIVER ERROR", "NVML ERROR", "STICKY", "DESCRIPTION"];
    let mut rows: Vec<[String; 7]> = vec![header.map(String::from)];
    for r in xid_table::table() {
        let mark = if r.xid == xid_table::DEFAULT_XID { "*" } else { "" };
        rows.push([
            format!("{}{mark}", r.xid),
            r.mnemonic.to_string(),
            r.runtime.to_string(),
            r.driver.to_string(),
            r.nvml.map_or_else(|| "-".to_string(), |e| e.to_string()),
            if r.sticky { "yes" } else { "no" }.to_string(),
            r.description.to_string(),
        ]);
    }
    let mut widths = [0usize; 7];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push_str("* default XID (used when none or an unknown one is configured); details: cuda-fault xids --json\n");
    out
}

/// The shim library beside the running binary.
pub fn default_library() -> Result<PathBuf, Failure> {
    let exe = std::env::current_exe()
        .map_err(|e| Failure::new(exit::NO_INPUT, format!("cannot locate the cuda-fault binary: {e}; pass --from PATH")))?;
    Ok(exe.parent().unwrap_or(Path::new("/")).join(LIBRARY_NAME))
}

/// `install DIR`: copies the shim library into `DIR/cuda_intercept.so` atomically, mode 0755.
pub fn install(from: &Path, dir: &Path, out: &mut dyn Write) -> Result<(), Failure> {
    let missing = |what: &str| {
        Failure::new(
            exit::NO_INPUT,
            format!("shim library {} {what} (pass --from PATH to the cuda_intercept.so to install)", from.display()),
        )
    };
    let mut src = match fs::File::open(from) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing("not found")),
        Err(e) => return Err(Failure::io("read", from, &e)),
    };
    match src.metadata() {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(missing("is not a regular file")),
        Err(e) => return Err(Failure::io("read", from, &e)),
    }
    let dest = dir.join(LIBRARY_NAME);
    let mut copied = 0u64;
    fsops::write_atomic_with(&dest, LIBRARY_MODE, &mut |f| {
        copied = io::copy(&mut src, f)?;
        Ok(())
    })?;
    let _ = writeln!(out, "installed {} -> {} ({copied} bytes)", from.display(), dest.display());
    Ok(())
}
