//! The CUDA functions cuda-fault knows by name, from the one list `hooks.list`, as static tables:
//! the shim's build script generates its exported trampolines from [`HOOKS`]; the shim classifies
//! driver entry points handed out at run time with [`function`]; the toggle grammar resolves the
//! names and families of `functions=` with [`function_named`] and [`FAMILIES`].
//!
//! A function's identity is its base name (no `_vN`, `_ptsz`, `_ptds` suffix, see
//! [`names::base_name`]) within its API: `cuMemAlloc_v2` and a `cuMemAlloc` handed out by
//! `cuGetProcAddress` are one function.

#![no_std]
#![deny(unsafe_code)]

mod api;
pub mod flags;
pub mod names;

pub use api::Api;

/// The index of a function in [`FUNCTIONS`].
pub type FunctionId = u16;

/// One line of hooks.list.
#[derive(Debug)]
pub struct Hook {
    /// The exact ABI name (`cuMemAlloc_v2`).
    pub name: &'static str,
    pub api: Api,
    /// This line's own flags.
    pub flags: flags::Flags,
    /// The function (base name) it belongs to.
    pub function: FunctionId,
}

/// One function: a base name and the union of its listed versions' flags.
#[derive(Debug)]
pub struct Function {
    /// The base name (`cuMemAlloc`).
    pub name: &'static str,
    pub api: Api,
    pub flags: flags::Flags,
}

/// A family of functions that `functions=` names as `@name`: every function with `flag`.
#[derive(Debug)]
pub struct Family {
    /// Without the `@`.
    pub name: &'static str,
    pub flag: flags::Flags,
}

/// The families, in the order they are written back.
pub static FAMILIES: [Family; 4] = [
    Family { name: "launch", flag: flags::LAUNCH },
    Family { name: "memcpy", flag: flags::MEMCPY },
    Family { name: "sync", flag: flags::SYNC },
    Family { name: "alloc", flag: flags::ALLOC },
];

include!(concat!(env!("OUT_DIR"), "/list.rs"));

/// The function with this API and base name.
pub fn function(api: Api, base: &[u8]) -> Option<FunctionId> {
    let id = *FUNCTION_BY_NAME.get(core::str::from_utf8(base).ok()?)?;
    (FUNCTIONS[usize::from(id)].api == api).then_some(id)
}

/// The function a name written in a toggle file means: a name listed in hooks.list, or the base
/// name of one (`cuMemAlloc_v2` and `cuMemAlloc` alike; `cuMemAlloc_v9` is neither).
pub fn function_named(name: &[u8]) -> Option<FunctionId> {
    let api = names::api_of(name)?;
    let id = function(api, names::base_name(name))?;
    let listed = FUNCTIONS[id as usize].name.as_bytes() == name || HOOKS.iter().any(|h| h.name.as_bytes() == name);
    listed.then_some(id)
}

/// The family named `name` (without the `@`).
pub fn family_named(name: &[u8]) -> Option<usize> {
    FAMILIES.iter().position(|f| f.name.as_bytes() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_sorted_indices_and_hooks_point_at_their_base() {
        for (i, f) in FUNCTIONS.iter().enumerate() {
            assert_eq!(function(f.api, f.name.as_bytes()), Some(i as FunctionId));
        }
        for h in &HOOKS {
            let f = &FUNCTIONS[h.function as usize];
            assert_eq!((f.api, f.name.as_bytes()), (h.api, names::base_name(h.name.as_bytes())));
            assert_eq!(f.flags & h.flags, h.flags, "{}", h.name);
        }
        assert!(FUNCTIONS.len() <= FUNCTION_WORDS * 64);
    }

    #[test]
    fn names_resolve_as_the_toggle_grammar_needs() {
        let alloc = function_named(b"cuMemAlloc_v2").unwrap();
        assert_eq!(function_named(b"cuMemAlloc"), Some(alloc));
        assert_eq!(function_named(b"cuMemAlloc_v9"), None);
        assert_eq!(function_named(b"cuLaunchKernel_ptsz"), function_named(b"cuLaunchKernel"));
        assert_eq!(function_named(b"cudaMalloc").map(|i| FUNCTIONS[i as usize].api), Some(Api::Runtime));
        assert_eq!(function_named(b"cudnnCreate"), None);
        assert_eq!(function_named(b""), None);
        assert_eq!(family_named(b"launch"), Some(0));
        assert_eq!(family_named(b"@launch"), None);
        let launch = function_named(b"cudaLaunchKernel").unwrap();
        assert_ne!(FUNCTIONS[launch as usize].flags & flags::LAUNCH, 0);
        assert_eq!(FUNCTIONS[alloc as usize].flags & flags::LAUNCH, 0);
    }

    #[test]
    fn device_arguments_round_trip() {
        for n in 0..=flags::MAX_DEV_ARG {
            assert_eq!(flags::device_arg(flags::dev_arg(n) | flags::SYNC | flags::INIT), Some(n as usize));
        }
        assert_eq!(flags::device_arg(flags::SYNC | flags::LAUNCH), None);
    }
}
