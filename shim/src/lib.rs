//! `libcuda_intercept.so`: preloaded into a CUDA process, it makes CUDA runtime, driver and NVML
//! calls fail with the errors a real XID failure produces, and forwards them untouched otherwise.
//!
//! How calls reach the shim:
//! - runtime, driver and NVML functions exported under their ABI names (`hooks.list`), for code
//!   that links against libcudart, libcuda or libnvidia-ml;
//! - `cuGetProcAddress[_v2]`, through which the CUDA runtime (shared or static), NCCL and PyTorch
//!   fetch every driver entry point: each pointer handed out is replaced by a trampoline bound to it;
//! - `dlsym`, through which the runtime bootstraps and Triton, TensorRT-LLM and pynvml find the
//!   driver and NVML.
//!
//! Every interposed function is a trampoline of three instructions (gate test, indirect jump) that
//! preserves all argument registers, so no per-function signature exists anywhere. While the gate
//! is closed a call costs one load and a predicted branch; when faults are on, or on the first call
//! of the process, the trampoline enters one common slow path (`dispatch`).
//!
//! Rules for code in this crate: nothing on the fast path but atomics; no allocation, lock or
//! std I/O in any hook; every Rust entry point catches panics and fails open; nothing is printed
//! before the process makes its first CUDA call.

#![deny(unsafe_op_in_unsafe_fn)]
// The unit-test build exports nothing (no_mangle is off under cfg(test), so the test binary
// never interposes its own dlsym): the entry points and what only they reach are unused there.
#![cfg_attr(test, allow(dead_code, non_snake_case))]

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("cuda-fault supports x86_64 and aarch64");

#[cfg_attr(target_arch = "x86_64", path = "arch/x86_64.rs")]
#[cfg_attr(target_arch = "aarch64", path = "arch/aarch64.rs")]
mod arch;

#[macro_use]
mod log;
mod config;
mod device;
mod dispatch;
mod dlsym;
mod envp;
mod gpa;
mod names;
mod resolve;
mod scenario;
mod slots;
mod state;
mod toggle;
mod xids;

// SAFETY: slots.s only defines data and code with hidden visibility, used through the symbols
// declared in `slots` and the generated trampolines.
core::arch::global_asm!(include_str!(concat!(env!("OUT_DIR"), "/slots.s")));

/// The CUDA API families the shim interposes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Api {
    Runtime = 0,
    Driver = 1,
    Nvml = 2,
}

/// Per-function flags from `hooks.list`.
pub mod flags {
    /// On a fault, also write 0 through the first argument (a device-count out-pointer).
    pub const COUNT: u8 = 1;
    /// A synchronizing call (blocks in hang mode).
    pub const SYNC: u8 = 2;
    /// A pure lookup: never faulted, never wrapped.
    pub const EXEMPT: u8 = 4;
    /// Bits 4..7: 1 + the index of the argument holding the device ordinal, or 0.
    const DEV_SHIFT: u8 = 4;

    pub const fn dev_arg(index: u8) -> u8 {
        (index + 1) << DEV_SHIFT
    }

    /// The index of the device-ordinal argument, if the function has one.
    pub fn device_arg(flags: u8) -> Option<usize> {
        match flags >> DEV_SHIFT {
            0 => None,
            n => Some(usize::from(n - 1)),
        }
    }
}

/// One exported function: its name, family and flags.
pub struct Hook {
    pub name: &'static str,
    pub cname: &'static core::ffi::CStr,
    pub api: Api,
    pub flags: u8,
}

mod generated {
    use crate::{flags, Api, Hook};
    include!(concat!(env!("OUT_DIR"), "/hooks.rs"));
}

/// The process-wide constructor: reads the environment once, before `main`. Hooks that run
/// earlier (another library's constructor) initialise the configuration themselves.
#[cfg(not(test))]
#[used]
#[unsafe(link_section = ".init_array")]
static CONSTRUCTOR: extern "C" fn() = {
    extern "C" fn construct() {
        let _ = std::panic::catch_unwind(config::ensure);
    }
    construct
};
