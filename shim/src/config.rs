//! Configuration: the environment, read once (in the constructor, or by the first hook if one
//! runs earlier) into an immutable [`Config`]. Bad values fall back to defaults; the warning
//! about each is kept, and printed only when the process first calls CUDA. The scenario
//! variables (`CUDA_FAULT_DEVICES`, …) are read with the toggle grammar, so each accepts exactly
//! what its toggle-file key accepts.

use core::cell::UnsafeCell;

use toggle_grammar::{Key, Keys, Scenario};

use crate::once::Once;
use crate::{envp, xids};

pub const DEFAULT_TOGGLE: &str = "/host-fault/cuda_fault_enabled";
pub const DEFAULT_POLL_MS: u32 = 10;
const MAX_POLL_MS: u64 = 3_600_000;
/// Longest usable toggle path + its NUL (PATH_MAX).
const PATH_CAP: usize = 4096;
const WARN_VALUE: usize = 48;
const MAX_WARNINGS: usize = 16;

pub struct Config {
    /// `CUDA_FAULT_INJECTION_ENABLED`: the state while no toggle file exists.
    pub env_enabled: bool,
    /// `CUDA_XID_TYPE`, as an index into `xids::XIDS`.
    pub env_xid: usize,
    /// `CUDA_FAULT_TOGGLE_FILE`, NUL-terminated; empty when the variable names no usable path
    /// (then no file exists and the environment decides).
    toggle: [u8; PATH_CAP],
    toggle_len: usize,
    /// `CUDA_FAULT_POLL_MS`: longest time between toggle-file checks; 0 checks on every call.
    pub poll_ms: u32,
    /// `CUDA_FAULT_LOG` != `0`.
    pub log: bool,
    /// The scenario variables.
    pub scenario: Scenario,
    warnings: [Warning; MAX_WARNINGS],
    nwarnings: usize,
}

#[derive(Clone, Copy)]
enum Problem {
    Grammar(toggle_grammar::Error),
    Text(&'static str),
}

#[derive(Clone, Copy)]
struct Warning {
    var: &'static str,
    value: [u8; WARN_VALUE],
    len: usize,
    truncated: bool,
    problem: Problem,
}

impl Config {
    const fn defaults() -> Self {
        let mut toggle = [0u8; PATH_CAP];
        let d = DEFAULT_TOGGLE.as_bytes();
        let mut i = 0;
        while i < d.len() {
            toggle[i] = d[i];
            i += 1;
        }
        let blank = Warning { var: "", value: [0; WARN_VALUE], len: 0, truncated: false, problem: Problem::Text("") };
        Config {
            env_enabled: false,
            env_xid: xids::DEFAULT_XID_INDEX,
            toggle,
            toggle_len: d.len(),
            poll_ms: DEFAULT_POLL_MS,
            log: true,
            scenario: Scenario {
                devices: None,
                after_calls: 0,
                after_ms: 0,
                mode: toggle_grammar::Mode::Error,
                sticky: false,
                surface: None,
                scope: None,
                percent: None,
                count: None,
                functions: None,
                seed: None,
            },
            warnings: [blank; MAX_WARNINGS],
            nwarnings: 0,
        }
    }

    /// The toggle file path, NUL-terminated for syscalls; None when there is none.
    pub fn toggle_cstr(&self) -> Option<&core::ffi::CStr> {
        if self.toggle_len == 0 {
            return None;
        }
        core::ffi::CStr::from_bytes_until_nul(&self.toggle[..=self.toggle_len]).ok()
    }

    /// The toggle file path for messages.
    pub fn toggle_path(&self) -> &str {
        if self.toggle_len == 0 {
            return "(none: CUDA_FAULT_TOGGLE_FILE is not usable)";
        }
        core::str::from_utf8(&self.toggle[..self.toggle_len]).unwrap_or("(non-UTF-8 path)")
    }

    fn warn(&mut self, var: &'static str, value: &[u8], problem: Problem) {
        if self.nwarnings == MAX_WARNINGS {
            return;
        }
        let n = value.len().min(WARN_VALUE);
        let w = &mut self.warnings[self.nwarnings];
        *w = Warning { var, value: [0; WARN_VALUE], len: n, truncated: n < value.len(), problem };
        w.value[..n].copy_from_slice(&value[..n]);
        self.nwarnings += 1;
    }

    fn from_env() -> Self {
        let mut c = Config::defaults();
        if let Some(v) = envp::var("CUDA_FAULT_INJECTION_ENABLED") {
            match toggle_grammar::boolean(v) {
                Ok(on) => c.env_enabled = on,
                Err(_) if v.is_empty() => {}
                Err(_) => c.warn(
                    "CUDA_FAULT_INJECTION_ENABLED",
                    v,
                    Problem::Text("is not 1, true, 0 or false; faults stay off"),
                ),
            }
        }
        if let Some(v) = envp::var("CUDA_XID_TYPE") {
            match toggle_grammar::number(v).ok().and_then(xids::index_of) {
                Some(i) => c.env_xid = i,
                None => c.warn("CUDA_XID_TYPE", v, Problem::Text("is not a supported XID")),
            }
        }
        if let Some(v) = envp::var("CUDA_FAULT_TOGGLE_FILE") {
            c.toggle = [0; PATH_CAP];
            if v.is_empty() || v.len() >= PATH_CAP || v.contains(&0) {
                c.toggle_len = 0;
                c.warn(
                    "CUDA_FAULT_TOGGLE_FILE",
                    v,
                    Problem::Text("is not a usable path (empty or longer than 4095 bytes); no toggle file: the environment decides"),
                );
            } else {
                c.toggle[..v.len()].copy_from_slice(v);
                c.toggle_len = v.len();
            }
        }
        if let Some(v) = envp::var("CUDA_FAULT_POLL_MS") {
            match toggle_grammar::number(v) {
                Ok(ms) if ms <= MAX_POLL_MS => c.poll_ms = ms as u32,
                _ => c.warn(
                    "CUDA_FAULT_POLL_MS",
                    v,
                    Problem::Text("is not a number of milliseconds (0..=3600000); using 10"),
                ),
            }
        }
        if envp::var("CUDA_FAULT_LOG") == Some(b"0") {
            c.log = false;
        }
        let mut keys = Keys::default();
        for key in Key::ALL {
            if let Some(v) = envp::var(key.env()) {
                if let Err(e) = keys.set(key, v) {
                    c.warn(key.env(), v, Problem::Grammar(e));
                }
            }
        }
        c.scenario = keys.over(&c.scenario);
        c
    }

    /// Prints the warnings collected while reading the environment.
    pub fn print_warnings(&self) {
        for w in &self.warnings[..self.nwarnings] {
            let value = core::str::from_utf8(&w.value[..w.len]).unwrap_or("(not UTF-8)");
            let more = if w.truncated { "..." } else { "" };
            match w.problem {
                Problem::Grammar(e) => say!("{}: {}; ignored", w.var, e.detail()),
                Problem::Text(t) if w.var == "CUDA_XID_TYPE" => say!(
                    "{}='{}{}' {} (supported: {}); simulating XID {}",
                    w.var,
                    value,
                    more,
                    t,
                    xids::SUPPORTED,
                    xids::XIDS[self.env_xid].xid
                ),
                Problem::Text(t) => say!("{}='{}{}' {}", w.var, value, more, t),
            }
        }
    }
}

struct Global(UnsafeCell<Config>);
// SAFETY: written once by the thread that runs ONCE's work, read only after ONCE is done.
unsafe impl Sync for Global {}

static CONFIG: Global = Global(UnsafeCell::new(Config::defaults()));
static ONCE: Once = Once::new();

/// The configuration, reading the environment first if nobody has; None while another thread
/// reads it for longer than a waiter waits, or when a signal handler interrupted the reading on
/// this thread (the caller forwards its call).
pub fn get() -> Option<&'static Config> {
    let ready = ONCE.is_done()
        || ONCE.run(|| {
            // SAFETY: only the thread running ONCE's work writes, before ONCE is done.
            let c = unsafe { &mut *CONFIG.0.get() };
            *c = Config::from_env();
            crate::log::set_enabled(c.log);
            true
        });
    // SAFETY: ONCE is done: the config is never written again.
    ready.then(|| unsafe { &*CONFIG.0.get() })
}

/// In a forked child: a read the parent had in progress never finishes here.
pub fn after_fork() {
    ONCE.reset_unfinished();
}
