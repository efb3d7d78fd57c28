//! The commands that work on a local toggle file, `xids` and `install`. No async runtime here.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::exit::{self, Failure};
use crate::fsops::{self, Found};
use crate::toggle::{self, Line, READ_LEN};

/// Mode of the toggle file.
pub const TOGGLE_MODE: u32 = 0o644;
/// Mode of the installed shim library.
pub const LIBRARY_MODE: u32 = 0o755;
/// The shim library's file name, beside the binary in the image and in the install directory.
pub const LIBRARY_NAME: &str = crate::layout::LIBRARY_NAME;

/// Writes `line` to `path` atomically and says so on `out`.
pub fn write_toggle(path: &Path, line: &Line, out: &mut dyn Write) -> Result<(), Failure> {
    let text = toggle::render(line);
    fsops::write_atomic(path, text.as_bytes(), TOGGLE_MODE)?;
    let _ = writeln!(out, "wrote {:?} to {}: {}", text.trim_end(), path.display(), toggle::effect(line));
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

/// `status --json`: a stable object (field order fixed). The key fields are what the file says
/// (null: not set there, so the pod's CUDA_FAULT_* variable or the default applies).
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
    pub mode: Option<&'static str>,
    pub sticky: Option<bool>,
    /// "immediate" or "async"; null: the XID's.
    pub surface: Option<&'static str>,
    /// "process" or "device"; null: the XID's.
    pub scope: Option<&'static str>,
    /// The canonical text, e.g. "0.1".
    pub percent: Option<String>,
    pub count: Option<u64>,
    pub functions: Option<Vec<String>>,
    pub seed: Option<u64>,
    pub raw: Option<String>,
    /// Why the file counts as off although present; null otherwise.
    pub error: Option<String>,
    /// What the shim does.
    pub effect: String,
}

fn list(text: String) -> Vec<String> {
    text.split(',').map(str::to_string).collect()
}

/// Reads the toggle file the way the shim does and says what the shim makes of it.
pub fn status(path: &Path) -> Result<Status, Failure> {
    let file = path.display().to_string();
    let bytes = match fsops::read_like_the_shim(path, READ_LEN)? {
        Found::Absent => {
            return Ok(Status { file, state: "absent", effect: "absent: env decides".into(), ..Status::default() })
        }
        Found::NotRegular(what) => {
            return Ok(Status {
                file,
                present: true,
                state: "invalid",
                error: Some(format!("it is {what}, not a regular file")),
                effect: "malformed: the shim treats it as off".into(),
                ..Status::default()
            })
        }
        Found::Bytes(b) => b,
    };
    let raw = Some(String::from_utf8_lossy(&bytes).into_owned());
    Ok(match toggle_grammar::parse(&bytes) {
        Ok(line) => {
            let effect = toggle::effect(&line);
            match line {
                Line::Off => Status { file, present: true, state: "off", raw, effect, ..Status::default() },
                Line::On { xid, keys } => Status {
                    file,
                    present: true,
                    state: "on",
                    xid,
                    devices: keys.devices.map(|d| list(d.to_string())),
                    after_calls: keys.after_calls,
                    after_ms: keys.after_ms,
                    mode: keys.mode.map(|m| m.word()),
                    sticky: keys.sticky,
                    surface: keys.surface.map(|x| x.word()),
                    scope: keys.scope.map(|x| x.word()),
                    percent: keys.percent.map(|p| p.to_string()),
                    count: keys.count,
                    functions: keys.functions.map(|f| list(f.to_string())),
                    seed: keys.seed,
                    raw,
                    error: None,
                    effect,
                },
            }
        }
        Err(e) => Status {
            file,
            present: true,
            state: "invalid",
            raw,
            error: Some(e.to_string()),
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
            out.push_str(
                "state:       absent: env decides (the shim uses CUDA_FAULT_INJECTION_ENABLED and CUDA_XID_TYPE)\n",
            );
            return out;
        }
        "invalid" => {
            out.push_str(&format!(
                "state:       invalid: {}; the shim treats malformed content as off\n",
                s.error.as_deref().unwrap_or("malformed")
            ));
            if let Some(raw) = &s.raw {
                out.push_str(&format!("raw:         {raw:?}\n"));
            }
            return out;
        }
        state => out.push_str(&format!("state:       {state}\n")),
    }
    if s.state == "on" {
        let unset = "- (the pod's variable, or the default)";
        let show = |v: Option<String>| v.unwrap_or_else(|| unset.to_string());
        let xid = match s.xid {
            Some(x) => toggle::describe_xid(x),
            None => format!("from the pod's CUDA_XID_TYPE (default {})", xid_table::DEFAULT_XID),
        };
        out.push_str(&format!("xid:         {xid}\n"));
        out.push_str(&format!("devices:     {}\n", show(s.devices.as_ref().map(|d| d.join(",")))));
        out.push_str(&format!("functions:   {}\n", show(s.functions.as_ref().map(|f| f.join(",")))));
        out.push_str(&format!("after_calls: {}\n", show(s.after_calls.map(|n| n.to_string()))));
        out.push_str(&format!("after_ms:    {}\n", show(s.after_ms.map(|n| n.to_string()))));
        out.push_str(&format!("percent:     {}\n", show(s.percent.clone())));
        out.push_str(&format!("count:       {}\n", show(s.count.map(|n| n.to_string()))));
        out.push_str(&format!("seed:        {}\n", show(s.seed.map(|n| n.to_string()))));
        out.push_str(&format!("mode:        {}\n", show(s.mode.map(str::to_string))));
        out.push_str(&format!("sticky:      {}\n", show(s.sticky.map(|b| if b { "yes" } else { "no" }.to_string()))));
        out.push_str(&format!("surface:     {}\n", show(s.surface.map(str::to_string))));
        out.push_str(&format!("scope:       {}\n", show(s.scope.map(str::to_string))));
    }
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
    surface: &'static str,
    scope: &'static str,
    lost: bool,
    /// What NVML's ECC queries report: "uncorrected", "pending", "failure".
    ecc: Vec<&'static str>,
    inferred: bool,
    evidence: &'static str,
    /// What the driver logs after `NVRM: Xid (PCI:…): N, pid=…, name=…, ` (the kernel-log XID).
    kmsg: &'static str,
    kmsg_evidence: &'static str,
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
            surface: r.surface.word(),
            scope: r.scope.word(),
            lost: r.lost,
            ecc: xid_table::Ecc::WORDS
                .into_iter()
                .zip([r.ecc.uncorrected, r.ecc.pending, r.ecc.failure])
                .filter_map(|(w, on)| on.then_some(w))
                .collect(),
            inferred: r.inferred(),
            evidence: r.evidence,
            kmsg: r.kmsg,
            kmsg_evidence: r.kmsg_evidence,
            default: r.xid == xid_table::DEFAULT_XID,
        })
        .collect();
    serde_json::to_string_pretty(&rows).expect("serializable") + "\n"
}

/// `xids` as an aligned text table.
pub fn xids_text() -> String {
    let header =
        ["XID", "NAME", "RUNTIME ERROR", "DRIVER ERROR", "NVML ERROR", "STICKY", "SURFACE", "SCOPE", "DESCRIPTION"];
    let mut rows: Vec<[String; 9]> = vec![header.map(String::from)];
    for r in xid_table::table() {
        let mark = if r.xid == xid_table::DEFAULT_XID { "*" } else { "" };
        rows.push([
            format!("{}{mark}", r.xid),
            r.mnemonic.to_string(),
            r.runtime.to_string(),
            r.driver.to_string(),
            r.nvml.map_or_else(|| "-".to_string(), |e| e.to_string()),
            if r.sticky { "yes" } else { "no" }.to_string(),
            r.surface.word().to_string(),
            r.scope.word().to_string(),
            r.description.to_string(),
        ]);
    }
    let mut widths = [0usize; 9];
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
    let exe = std::env::current_exe().map_err(|e| {
        Failure::new(exit::NO_INPUT, format!("cannot locate the cuda-fault binary: {e}; pass --from PATH"))
    })?;
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
