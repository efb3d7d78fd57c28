//! Puts the shipped shim beside the Python package (`python/cuda_fault/cuda_intercept.so`), where
//! maturin packs it into the wheel: built by `manifests/image/build-shim.sh`, the recipe the image
//! uses (cargo-zigbuild for glibc 2.17, patchelf), for the architecture of this build's target.
//!
//! maturin packs the binaries of the crate it builds and the files of the Python package, read
//! after the build; a build script is the one step of a maturin build that can produce a file of
//! another crate (the shim is a cdylib, which no crate can depend on). Only a build with the
//! `wheel` feature (maturin's) does this: workspace builds of this crate build nothing.

use std::env;
use std::path::PathBuf;
use std::process::Command;

/// Variables the nested build keeps; everything cargo or maturin set for this build (target
/// dir, flags, linker of the wheel's target, `CARGO_*` of this crate) would otherwise change it.
const KEEP: &[&str] = &[
    "PATH",
    "HOME",
    "TMPDIR",
    "USER",
    "CARGO",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "RUSTUP_TOOLCHAIN",
    "CARGO_BUILD_JOBS",
    "CARGO_MAKEFLAGS",
    "CARGO_INCREMENTAL",
    "CARGO_NET_OFFLINE",
    "CUDA_FAULT_IMAGE_TARGET_DIR",
    "XDG_CACHE_HOME",
    "ZIG_GLOBAL_CACHE_DIR",
    "ZIG_LOCAL_CACHE_DIR",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if env::var_os("CARGO_FEATURE_WHEEL").is_none() {
        return;
    }
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("workspace root").to_path_buf();
    let dest = manifest_dir.join("cuda_fault").join("cuda_intercept.so");
    for path in ["shim", "hook-list", "toggle-grammar", "xid-table", "Cargo.lock", "manifests/image/build-shim.sh"] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    // Rebuilt when another build (another architecture) replaced it.
    println!("cargo:rerun-if-changed={}", dest.display());
    for var in ["CUDA_FAULT_IMAGE_TARGET_DIR", "PATH"] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("CARGO_CFG_TARGET_ARCH");
    let script = root.join("manifests/image/build-shim.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script).arg(&arch).arg(&dest).current_dir(&root).env_clear();
    for var in KEEP {
        if let Some(value) = env::var_os(var) {
            cmd.env(var, value);
        }
    }
    if env::var_os("CUDA_FAULT_IMAGE_TARGET_DIR").is_none() {
        // Never the target dir this build holds locked; the image build's, whose shim is the same.
        cmd.env("CUDA_FAULT_IMAGE_TARGET_DIR", root.join("target/image-build"));
    }
    let output = cmd.output().unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    if !output.status.success() {
        panic!(
            "{} {arch} {} failed ({}):\n{}{}",
            script.display(),
            dest.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
