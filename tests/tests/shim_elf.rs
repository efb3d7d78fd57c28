//! The shipped library's ELF surface: exactly the intended exports (generated from
//! hook-list/hooks.list), nothing Rust-mangled, and no dependency on any CUDA library, so it loads
//! into processes that have none.

use std::collections::BTreeSet;

use cuda_fault_tests::shim_path;
use goblin::elf::Elf;

/// What hooks.list says the shim exports: every listed name except the exempt ones, plus the
/// hand-written entry points.
fn intended() -> BTreeSet<String> {
    let mut names: BTreeSet<String> = hook_list::HOOKS
        .iter()
        .filter(|h| h.flags & hook_list::flags::EXEMPT == 0)
        .map(|h| h.name.to_string())
        .collect();
    for extra in ["dlsym", "cuGetProcAddress", "cuGetProcAddress_v2"] {
        names.insert(extra.to_string());
    }
    names
}

#[test]
fn exports_exactly_the_listed_functions() {
    let bytes = std::fs::read(shim_path()).unwrap();
    let elf = Elf::parse(&bytes).unwrap();
    let exported: BTreeSet<String> = elf
        .dynsyms
        .iter()
        .filter(|s| s.st_shndx != 0 && s.st_bind() != goblin::elf::sym::STB_LOCAL && s.st_name != 0)
        .map(|s| elf.dynstrtab.get_at(s.st_name).unwrap().to_string())
        .collect();
    let want = intended();
    assert!(want.len() > 200, "hooks.list lists {} functions", want.len());
    let extra: Vec<_> = exported.difference(&want).collect();
    let missing: Vec<_> = want.difference(&exported).collect();
    assert!(extra.is_empty() && missing.is_empty(), "unexpected exports {extra:?}; missing {missing:?}");
    assert!(exported.iter().all(|n| !n.starts_with("_ZN") && !n.starts_with("_R")), "mangled Rust symbols exported");
    assert!(exported.contains("cuLaunchKernel_ptsz") && exported.contains("cudaMemcpy_ptds"));
    assert!(!exported.contains("cuGetErrorString"), "pure lookups are not interposed");
}

#[test]
fn needs_no_cuda_library() {
    let bytes = std::fs::read(shim_path()).unwrap();
    let elf = Elf::parse(&bytes).unwrap();
    for lib in &elf.libraries {
        for cuda in ["libcuda", "libcudart", "libnvidia-ml"] {
            assert!(!lib.starts_with(cuda), "DT_NEEDED {lib}");
        }
    }
    assert!(elf.libraries.iter().any(|l| l.starts_with("libc.so")), "{:?}", elf.libraries);
}

#[test]
fn loads_no_library_but_the_c_library() {
    // Every library the shim needs is opened and mapped by every process it is preloaded into,
    // `sh` and `true` included: the unwinder (libgcc_s) is linked in statically.
    let bytes = std::fs::read(shim_path()).unwrap();
    let elf = Elf::parse(&bytes).unwrap();
    let extra: Vec<&&str> = elf.libraries.iter().filter(|l| **l != "libc.so.6" && !l.starts_with("ld-linux")).collect();
    assert!(extra.is_empty(), "DT_NEEDED beyond the C library: {extra:?} (all: {:?})", elf.libraries);
}

#[test]
fn every_exported_trampoline_starts_on_its_own_32_byte_slot() {
    // The test-and-jump of a trampoline that straddles a cache line costs every call of it.
    let bytes = std::fs::read(shim_path()).unwrap();
    let elf = Elf::parse(&bytes).unwrap();
    let misaligned: Vec<String> = elf
        .dynsyms
        .iter()
        .filter(|s| s.st_shndx != 0 && s.is_function())
        .map(|s| (elf.dynstrtab.get_at(s.st_name).unwrap().to_string(), s.st_value))
        .filter(|(name, addr)| {
            let trampoline = hook_list::HOOKS.iter().any(|h| h.name == name && h.flags & hook_list::flags::EXEMPT == 0);
            trampoline && addr % 32 != 0
        })
        .map(|(name, addr)| format!("{name}@{addr:#x}"))
        .collect();
    assert!(misaligned.is_empty(), "{misaligned:?}");
}
