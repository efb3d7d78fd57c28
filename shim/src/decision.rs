//! What the toggle file or the environment decided: the value the toggle checker hands to
//! `state::apply`.

use toggle_grammar::Scenario;

#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub on: bool,
    /// An index into `xids::XIDS`.
    pub xid: usize,
    pub scenario: Scenario,
    /// Which write of the toggle file this is (None: the environment decided). A new write is a
    /// new on-period even when its words are the same.
    pub written: Option<Written>,
}

/// One write of the toggle file: the file's identity and its modification time.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub dev: u64,
    pub ino: u64,
    pub size: i64,
    /// CLOCK_REALTIME ns: processes that started later run clean under `scope=process`.
    pub mtime_ns: i128,
}

/// Where a decision came from, for the one line printed at each change.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// No toggle file: `CUDA_FAULT_INJECTION_ENABLED` decides.
    Env,
    File,
}
