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
//! before the process makes its first CUDA call, and nothing anywhere but the stderr the process
//! started with; no hook ever waits for work that its own thread may be in the middle of.

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
mod birth;
mod clock;
mod config;
mod decision;
mod device;
mod dispatch;
mod dlsym;
mod draw;
mod ecc;
mod envp;
mod gate;
mod gpa;
mod hang;
mod judge;
mod last_error;
mod latch;
mod libc_extra;
mod lifecycle;
mod lock;
mod nesting;
mod objects;
mod once;
mod period_cell;
mod plan;
mod resolve;
mod slots;
mod state;
mod toggle;
mod xids;

pub use hook_list::Api;

// SAFETY: slots.s only defines data and code with hidden visibility, used through the symbols
// declared in `slots` and the generated trampolines.
core::arch::global_asm!(include_str!(concat!(env!("OUT_DIR"), "/slots.s")));

/// One exported function of hooks.list.
pub struct Export {
    /// Where its NUL-terminated name starts in `generated::NAMES`, and its length.
    at: u32,
    len: u16,
    pub api: Api,
    pub flags: hook_list::flags::Flags,
    pub function: hook_list::FunctionId,
}

impl Export {
    fn name_with_nul(&self) -> &'static [u8] {
        let at = self.at as usize;
        generated::NAMES.get(at..=at + usize::from(self.len)).unwrap_or(b"?\0")
    }

    pub fn name(&self) -> &'static str {
        let n = self.name_with_nul();
        core::str::from_utf8(&n[..n.len() - 1]).unwrap_or("?")
    }

    pub fn cname(&self) -> &'static core::ffi::CStr {
        core::ffi::CStr::from_bytes_with_nul(self.name_with_nul()).unwrap_or(c"?")
    }
}

mod generated {
    use crate::{Api, Export};
    include!(concat!(env!("OUT_DIR"), "/hooks.rs"));
}

/// The process-wide constructor, before `main`: notes when the process started (for
/// `scope=process`), remembers which file stderr is, reads the environment and registers the
/// fork handler. Hooks that run earlier (another library's
/// constructor) read the configuration themselves.
#[cfg(not(test))]
#[used]
#[unsafe(link_section = ".init_array")]
static CONSTRUCTOR: extern "C" fn() = {
    extern "C" fn construct() {
        let _ = std::panic::catch_unwind(|| {
            birth::note();
            log::remember_stderr();
            config::get();
            lifecycle::register_fork_handler();
        });
    }
    construct
};
