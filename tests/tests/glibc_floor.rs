//! The shipped binaries, as manifests/image/build.sh builds them for the image (cargo-zigbuild):
//! the x86_64 and aarch64 shims load on glibc 2.17 (Ubuntu 20.04, UBI 8 and every CUDA base
//! image in use), need no CUDA library, and export one symbol set (both generated from
//! shim/hooks.list); the helpers and the generators (cuda-fault-kustomize) are static (they run
//! in a FROM scratch image).

use std::collections::BTreeSet;

use cuda_fault_tests::{shim_path, shipped};
use goblin::elf::header::{EM_AARCH64, EM_X86_64};
use goblin::elf::program_header::PT_INTERP;
use goblin::elf::Elf;

const ARCHES: [(&str, u16); 2] = [("x86_64", EM_X86_64), ("aarch64", EM_AARCH64)];

/// (library, version name) for every version-needed entry (`.gnu.version_r`).
fn versions_needed(elf: &Elf) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(verneed) = &elf.verneed {
        for need in verneed.iter() {
            let file = elf.dynstrtab.get_at(need.vn_file).unwrap_or("?").to_string();
            for aux in need.iter() {
                let name = elf.dynstrtab.get_at(aux.vna_name).unwrap_or("?").to_string();
                out.push((file.clone(), name));
            }
        }
    }
    out
}

/// `GLIBC_2.2.5` -> [2, 2, 5]; `None` for anything that is not a numbered glibc version.
fn glibc_version(name: &str) -> Option<Vec<u32>> {
    name.strip_prefix("GLIBC_")?.split('.').map(|p| p.parse().ok()).collect()
}

fn exports(elf: &Elf) -> BTreeSet<String> {
    elf.dynsyms
        .iter()
        .filter(|s| s.st_shndx != 0 && s.st_bind() != goblin::elf::sym::STB_LOCAL && s.st_name != 0)
        .map(|s| elf.dynstrtab.get_at(s.st_name).unwrap().to_string())
        .collect()
}

#[test]
fn shipped_shims_need_at_most_glibc_2_17_and_no_cuda_library() {
    for (arch, machine) in ARCHES {
        let shim = shipped(arch).shim;
        let bytes = std::fs::read(&shim).unwrap();
        let elf = Elf::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", shim.display()));
        assert_eq!(elf.header.e_machine, machine, "{} is not an {arch} ELF", shim.display());
        assert!(elf.is_lib && elf.is_64, "{} is not a 64-bit shared object", shim.display());

        let needed = versions_needed(&elf);
        let glibc: Vec<&(String, String)> = needed.iter().filter(|(_, v)| v.starts_with("GLIBC_")).collect();
        // An empty list would mean the parse found nothing, not that the floor holds.
        assert!(!glibc.is_empty(), "{arch}: no GLIBC_ version needed at all? {needed:?}");
        for (lib, version) in &glibc {
            let parsed = glibc_version(version)
                .unwrap_or_else(|| panic!("{arch}: {lib} {version} is not a numbered glibc version (GLIBC_PRIVATE?)"));
            assert!(
                parsed <= vec![2, 17],
                "{arch}: the shim needs {version} from {lib}, newer than the glibc 2.17 floor; all: {needed:?}"
            );
        }

        assert!(elf.libraries.iter().any(|l| l.starts_with("libc.so")), "{arch}: {:?}", elf.libraries);
        for lib in &elf.libraries {
            for cuda in ["libcuda", "libcudart", "libnvidia-ml"] {
                assert!(!lib.starts_with(cuda), "{arch}: DT_NEEDED {lib}");
            }
        }
        assert!(elf.interpreter.is_none(), "{arch}: a shared object with PT_INTERP");
    }
}

#[test]
fn both_architectures_export_the_same_symbols_as_the_tested_shim() {
    let mut sets = Vec::new();
    for (arch, _) in ARCHES {
        let bytes = std::fs::read(shipped(arch).shim).unwrap();
        sets.push((arch, exports(&Elf::parse(&bytes).unwrap())));
    }
    let (x86, arm) = (&sets[0].1, &sets[1].1);
    assert!(x86.len() > 200, "x86_64 exports only {} symbols", x86.len());
    let only_x86: Vec<_> = x86.difference(arm).collect();
    let only_arm: Vec<_> = arm.difference(x86).collect();
    assert!(only_x86.is_empty() && only_arm.is_empty(), "only x86_64: {only_x86:?}; only aarch64: {only_arm:?}");
    // ... and the same as the shim every other test runs (built natively by build.rs).
    let bytes = std::fs::read(shim_path()).unwrap();
    let tested = exports(&Elf::parse(&bytes).unwrap());
    assert_eq!(&tested, x86, "the shipped shim exports differ from the tested one ({})", shim_path().display());
}

#[test]
fn shipped_helpers_and_generators_are_static() {
    for (arch, machine) in ARCHES {
        let helper = shipped(arch).helper;
        let generator = helper.with_file_name("cuda-fault-kustomize");
        for binary in [helper, generator] {
            let bytes = std::fs::read(&binary).unwrap();
            let name = binary.display();
            let elf = Elf::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(elf.header.e_machine, machine, "{name} is not an {arch} ELF");
            assert!(elf.interpreter.is_none(), "{name} has an interpreter {:?}", elf.interpreter);
            assert!(!elf.program_headers.iter().any(|p| p.p_type == PT_INTERP), "{name} has a PT_INTERP header");
            assert!(elf.libraries.is_empty(), "{name} needs {:?}", elf.libraries);
        }
    }
    // The x86_64 ones run here as they would in FROM scratch: nothing to load.
    let helper = shipped("x86_64").helper;
    for binary in [helper.clone(), helper.with_file_name("cuda-fault-kustomize")] {
        let out =
            std::process::Command::new(&binary).arg("--help").env_clear().output().expect("run the static binary");
        assert!(out.status.success(), "{}: {}", binary.display(), String::from_utf8_lossy(&out.stderr));
    }
}
