//! The gate word every trampoline tests (`cf_gate` in slots.s): zero means "forward at once".
//! Shared with build.rs (through `#[path]`), which writes [`INITIAL`] into slots.s.

/// Faults are on: every call is decided by the slow path.
pub const FAULTING: u32 = 1;
/// The process (or a forked child) has not made its first CUDA call yet.
pub const START: u32 = 2;
/// `CUDA_FAULT_POLL_MS=0`: check the toggle file on every call.
pub const EVERY_CALL: u32 = 4;
/// The gate's value when the library loads: the first call takes the slow path whatever ran
/// before the constructor.
#[allow(dead_code)] // read by build.rs
pub const INITIAL: u32 = START;
