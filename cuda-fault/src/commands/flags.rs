//! The flags shared by several commands: the toggle file, the scenario (each value read with the
//! toggle grammar, so a flag accepts exactly what the shim accepts) and timeouts.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::exit::Failure;
use crate::toggle::{self, Devices, Functions, Key, Keys, Line, Mode, Percent, Scope, Surface, DEFAULT_FILE, FILE_ENV};

#[derive(Debug, Args)]
pub struct FileArg {
    /// The toggle file
    #[arg(long, value_name = "PATH", env = FILE_ENV, default_value = DEFAULT_FILE, value_parser = non_empty_path)]
    pub file: PathBuf,
}

fn non_empty_path(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("the path is empty".into());
    }
    Ok(PathBuf::from(s))
}

/// A value parser that reads one toggle key with the shared grammar, so a flag accepts exactly
/// what the shim accepts in the file.
fn key<T: 'static>(
    key: Key,
    get: fn(&Keys) -> Option<T>,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static {
    move |s: &str| {
        let mut keys = Keys::default();
        keys.set(key, s.as_bytes()).map_err(|e| e.detail().to_string())?;
        Ok(get(&keys).expect("set"))
    }
}

/// `--xid`: a number that the XID table has.
fn xid(s: &str) -> Result<u64, String> {
    let supported = xid_table::supported_list();
    let x = toggle_grammar::number(s.as_bytes()).map_err(|e| format!("{}; supported: {supported}", e.detail()))?;
    toggle::lookup(x).map(|_| x).ok_or_else(|| format!("unknown XID {x}; supported: {supported}"))
}

/// An XID the table has (for `hold`'s configuration, as for `--xid`).
pub fn parse_xid(s: &str) -> Result<u64, String> {
    xid(s)
}

/// `--after`: `500ms`, `5s`, `2m`, `1h30m` (humantime), or a bare number of milliseconds.
fn after(s: &str) -> Result<u64, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return toggle_grammar::number(s.as_bytes()).map_err(|e| e.detail().to_string());
    }
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{e} (expected e.g. 500ms, 5s, 2m or a number of milliseconds)"))?;
    u64::try_from(d.as_millis()).map_err(|_| "too long".to_string())
}

/// Scenario flags of `enable` (and of a node's `enable`), each checked by the toggle grammar.
#[derive(Debug, Args, Default, Clone, PartialEq, Eq)]
pub struct EnableFlags {
    /// XID to simulate (see `cuda-fault xids`); default: the pod's CUDA_XID_TYPE
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = xid)]
    pub xid: Option<u64>,
    /// Only these devices: comma-separated ordinals (0..63) and GPU-/MIG- UUIDs (at most 8)
    #[arg(long, value_name = "LIST", allow_hyphen_values = true, value_parser = key(Key::Devices, |k| k.devices))]
    pub devices: Option<Devices>,
    /// Let the first N calls that would fault pass
    #[arg(long = "after-calls", value_name = "N", allow_hyphen_values = true, value_parser = key(Key::AfterCalls, |k| k.after_calls))]
    pub after_calls: Option<u64>,
    /// Start faulting this long after turning on: 500ms, 5s, 2m, or a number of milliseconds
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = after)]
    pub after: Option<u64>,
    /// error: calls return the XID's error; hang: synchronizing calls block
    #[arg(long, value_name = "error|hang", allow_hyphen_values = true, value_parser = key(Key::Mode, |k| k.mode))]
    pub mode: Option<Mode>,
    /// Once a call has faulted, the process stays faulted (--sticky=false writes sticky=0)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = key(Key::Sticky, |k| k.sticky))]
    pub sticky: Option<bool>,
    /// immediate: every call fails at once; async: launches succeed and the error surfaces at the
    /// next synchronizing call (default: the XID's, see `cuda-fault xids`)
    #[arg(long, value_name = "immediate|async", allow_hyphen_values = true, value_parser = key(Key::Surface, |k| k.surface))]
    pub surface: Option<Surface>,
    /// process: processes started after this write run clean; device: every process fails
    /// (default: the XID's, see `cuda-fault xids`)
    #[arg(long, value_name = "process|device", allow_hyphen_values = true, value_parser = key(Key::Scope, |k| k.scope))]
    pub scope: Option<Scope>,
    /// Only this share of the calls that would fault do: 0 < P <= 100, e.g. 5 or 0.1
    #[arg(long, value_name = "P", allow_hyphen_values = true, value_parser = key(Key::Percent, |k| k.percent))]
    pub percent: Option<Percent>,
    /// At most N faults, then the fault ends by itself
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = key(Key::Count, |k| k.count))]
    pub count: Option<u64>,
    /// Only these functions fault: names from hooks.list and @launch, @memcpy, @sync, @alloc
    #[arg(long, value_name = "LIST", allow_hyphen_values = true, value_parser = key(Key::Functions, |k| k.functions))]
    pub functions: Option<Functions>,
    /// Seed of --percent's draws (default: a fresh one per process, printed by the shim)
    #[arg(long, value_name = "S", allow_hyphen_values = true, value_parser = key(Key::Seed, |k| k.seed))]
    pub seed: Option<u64>,
}

impl EnableFlags {
    /// The "on" line these flags make; exit 2 when it would be longer than the shim reads.
    pub fn line(&self) -> Result<Line, Failure> {
        let keys = Keys {
            devices: self.devices,
            after_calls: self.after_calls,
            after_ms: self.after,
            mode: self.mode,
            sticky: self.sticky,
            surface: self.surface,
            scope: self.scope,
            percent: self.percent,
            count: self.count,
            functions: self.functions,
            seed: self.seed,
        };
        toggle::on(self.xid, keys).map_err(Failure::usage)
    }

    /// The flags that make `line` (an "on" line): the command a node's Job runs.
    pub fn args_for(line: &Line) -> Vec<String> {
        let Line::On { xid, keys } = line else {
            return Vec::new();
        };
        let mut a = Vec::new();
        let mut push = |flag: &str, value: String| a.extend([flag.to_string(), value]);
        if let Some(x) = xid {
            push("--xid", x.to_string());
        }
        if let Some(d) = &keys.devices {
            push("--devices", d.to_string());
        }
        if let Some(n) = keys.after_calls {
            push("--after-calls", n.to_string());
        }
        if let Some(ms) = keys.after_ms {
            push("--after", format!("{ms}ms"));
        }
        if let Some(m) = keys.mode {
            push("--mode", m.word().to_string());
        }
        if let Some(x) = keys.surface {
            push("--surface", x.word().to_string());
        }
        if let Some(x) = keys.scope {
            push("--scope", x.word().to_string());
        }
        if let Some(p) = keys.percent {
            push("--percent", p.to_string());
        }
        if let Some(n) = keys.count {
            push("--count", n.to_string());
        }
        if let Some(f) = &keys.functions {
            push("--functions", f.to_string());
        }
        if let Some(s) = keys.seed {
            push("--seed", s.to_string());
        }
        if let Some(s) = keys.sticky {
            a.push(format!("--sticky={s}"));
        }
        a
    }
}

/// `--timeout`: seconds, or a duration (`90s`, `2m`); 1 s to 24 h.
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse::<u64>().map(Duration::from_secs).map_err(|_| "too large".to_string())?
    } else {
        humantime::parse_duration(s).map_err(|e| format!("{e} (expected seconds, e.g. 120, 90s or 2m)"))?
    };
    if d < Duration::from_secs(1) || d > Duration::from_secs(86_400) {
        return Err("expected 1 s to 24 h".into());
    }
    Ok(d)
}
