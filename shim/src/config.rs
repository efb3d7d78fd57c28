//! Configuration from the environment, read once (in the constructor, or by the first hook if it
//! runs earlier) and immutable afterwards. Bad values fall back to defaults; the warning about
//! each is kept and printed only when the process first calls CUDA.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU8, Ordering};

use crate::envp;
use crate::scenario::{self, Scenario};
use crate::xids;

pub const DEFAULT_TOGGLE: &str = "/host-fault/cuda_fault_enabled";
pub const DEFAULT_POLL_MS: u32 = 10;
const MAX_POLL_MS: u64 = 3_600_000;
const PATH_CAP: usize = 4096;
const WARN_VALUE: usize = 48;
const MAX_WARNINGS: usize = 10;

pub struct Config {
    /// `CUDA_FAULT_INJECTION_ENABLED`: the state while no toggle file exists.
    pub env_enabled: bool,
    /// `CUDA_XID_TYPE`, as an index into `xids::XIDS`.
    pub env_xid: usize,
    toggle: [u8; PATH_CAP],
    toggle_len: usize,
    /// `CUDA_FAULT_POLL_MS`: longest time between toggle-file checks; 0 checks on every call.
    pub poll_ms: u32,
    /// `CUDA_FAULT_LOG` != `0`.
    pub log: bool,
    /// `CUDA_FAULT_DEVICES`, `_AFTER_CALLS`, `_AFTER_MS`, `_MODE`, `_STICKY`.
    pub scenario: Scenario,
    warnings: [Warning; MAX_WARNINGS],
    nwarnings: usize,
}

#[derive(Clone, Copy)]
struct Warning {
    var: &'static str,
    value: [u8; WARN_VALUE],
    len: usize,
    truncated: bool,
    problem: &'static str,
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
        Config {
            env_enabled: false,
            env_xid: xids::DEFAULT_XID_INDEX,
            toggle,
            toggle_len: d.len(),
            poll_ms: DEFAULT_POLL_MS,
            log: true,
            scenario: Scenario { devices: None, after_calls: 0, after_ms: 0, hang: false, sticky: false },
            warnings: [Warning { var: "", value: [0; WARN_VALUE], len: 0, truncated: false, problem: "" };
                MAX_WARNINGS],
            nwarnings: 0,
        }
    }

    /// The toggle file path, NUL-terminated for syscalls.
    pub fn toggle_cstr(&self) -> &core::ffi::CStr {
        core::ffi::CStr::from_bytes_until_nul(&self.toggle[..=self.toggle_len]).unwrap_or(c"")
    }

    /// The toggle file path for messages.
    pub fn toggle_path(&self) -> &str {
        core::str::from_utf8(&self.toggle[..self.toggle_len]).unwrap_or("(non-UTF-8 path)")
    }

    fn warn(&mut self, var: &'static str, value: &[u8], problem: &'static str) {
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
            match v {
                b"1" => c.env_enabled = true,
                b"" | b"0" => {}
                _ if v.eq_ignore_ascii_case(b"true") => c.env_enabled = true,
                _ if v.eq_ignore_ascii_case(b"false") => {}
                _ => c.warn("CUDA_FAULT_INJECTION_ENABLED", v, "is not 1, true, 0 or false; faults stay off"),
            }
        }
        if let Some(v) = envp::var("CUDA_XID_TYPE") {
            match envp::parse_u64(v).and_then(xids::index_of) {
                Some(i) => c.env_xid = i,
                None => c.warn("CUDA_XID_TYPE", v, "is not a supported XID"),
            }
        }
        if let Some(v) = envp::var("CUDA_FAULT_TOGGLE_FILE") {
            if v.is_empty() || v.len() >= PATH_CAP || v.contains(&0) {
                c.warn("CUDA_FAULT_TOGGLE_FILE", v, "is not a usable path; using /host-fault/cuda_fault_enabled");
            } else {
                c.toggle = [0; PATH_CAP];
                c.toggle[..v.len()].copy_from_slice(v);
                c.toggle_len = v.len();
            }
        }
        if let Some(v) = envp::var("CUDA_FAULT_POLL_MS") {
            match envp::parse_u64(v) {
                Some(ms) if ms <= MAX_POLL_MS => c.poll_ms = ms as u32,
                _ => c.warn("CUDA_FAULT_POLL_MS", v, "is not a number of milliseconds (0..=3600000); using 10"),
            }
        }
        if envp::var("CUDA_FAULT_LOG") == Some(b"0") {
            c.log = false;
        }
        if let Some(v) = envp::var("CUDA_FAULT_DEVICES") {
            match scenario::parse_devices(v) {
                Some(d) => c.scenario.devices = Some(d),
                None => c.warn("CUDA_FAULT_DEVICES", v, "is not a list of ordinals 0..63 or GPU-/MIG- UUIDs (at most 8); every device faults"),
            }
        }
        if let Some(v) = envp::var("CUDA_FAULT_AFTER_CALLS") {
            match envp::parse_u64(v) {
                Some(n) => c.scenario.after_calls = n,
                None => c.warn("CUDA_FAULT_AFTER_CALLS", v, "is not a number; faults start at once"),
            }
        }
        if let Some(v) = envp::var("CUDA_FAULT_AFTER_MS") {
            match envp::parse_u64(v) {
                Some(n) => c.scenario.after_ms = n,
                None => c.warn("CUDA_FAULT_AFTER_MS", v, "is not a number of milliseconds; faults start at once"),
            }
        }
        if let Some(v) = envp::var("CUDA_FAULT_MODE") {
            match scenario::parse_mode(v) {
                Some(h) => c.scenario.hang = h,
                None => c.warn("CUDA_FAULT_MODE", v, "is not error or hang; using error"),
            }
        }
        if let Some(v) = envp::var("CUDA_FAULT_STICKY") {
            match scenario::parse_bool(v) {
                Some(b) => c.scenario.sticky = b,
                None => c.warn("CUDA_FAULT_STICKY", v, "is not 1, true, 0 or false; not sticky"),
            }
        }
        c
    }

    /// Prints the warnings collected while reading the environment.
    pub fn print_warnings(&self) {
        for w in &self.warnings[..self.nwarnings] {
            let value = core::str::from_utf8(&w.value[..w.len]).unwrap_or("(not UTF-8)");
            let more = if w.truncated { "..." } else { "" };
            if w.var == "CUDA_XID_TYPE" {
                say!(
                    "{}='{}{}' {} (supported: {}); simulating XID {}",
                    w.var,
                    value,
                    more,
                    w.problem,
                    xids::SUPPORTED,
                    xids::XIDS[self.env_xid].xid
                );
            } else {
                say!("{}='{}{}' {}", w.var, value, more, w.problem);
            }
        }
    }
}

struct Global(UnsafeCell<Config>);
// SAFETY: written once by the thread that wins STATE 0 -> 1, read only after STATE == READY.
unsafe impl Sync for Global {}

static CONFIG: Global = Global(UnsafeCell::new(Config::defaults()));
static STATE: AtomicU8 = AtomicU8::new(0);
const BUSY: u8 = 1;
const READY: u8 = 2;

/// Reads the environment if nobody has yet. Cheap after the first call.
pub fn ensure() {
    if STATE.load(Ordering::Acquire) == READY {
        return;
    }
    match STATE.compare_exchange(0, BUSY, Ordering::Acquire, Ordering::Acquire) {
        Ok(_) => {
            // SAFETY: only this thread passed the 0 -> BUSY transition; readers wait for READY.
            unsafe { *CONFIG.0.get() = Config::from_env() };
            crate::state::register_fork_handler();
            STATE.store(READY, Ordering::Release);
        }
        Err(_) => {
            while STATE.load(Ordering::Acquire) != READY {
                core::hint::spin_loop();
                // SAFETY: sched_yield has no preconditions.
                unsafe { libc::sched_yield() };
            }
        }
    }
}

/// The configuration (reading it first if needed).
pub fn get() -> &'static Config {
    ensure();
    // SAFETY: READY was observed with Acquire; the config is never written again.
    unsafe { &*CONFIG.0.get() }
}
