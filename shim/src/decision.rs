//! What the toggle file or the environment decided: the value the toggle checker hands to
//! `state::apply`.

use toggle_grammar::Scenario;

#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub on: bool,
    /// An index into `xids::XIDS`.
    pub xid: usize,
    pub scenario: Scenario,
}

/// Where a decision came from, for the one line printed at each change.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// No toggle file: `CUDA_FAULT_INJECTION_ENABLED` decides.
    Env,
    File,
}
