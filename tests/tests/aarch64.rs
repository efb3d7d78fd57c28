//! The aarch64 image's files really work on aarch64, under qemu-user: the shim that build.sh
//! ships (glibc 2.17, aarch64 trampolines) on the fake CUDA stack cross-compiled exactly as
//! tests/build.rs builds it for the host; and the static aarch64 helper installs the shim the
//! way the init container does.
//!
//! Needs gcc-aarch64-linux-gnu + libc6-dev-arm64-cross (cross compiler and the aarch64 glibc
//! under /usr/aarch64-linux-gnu) and qemu-user; the test fails, never skips, without them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use cuda_fault_tests::{
    finish, fixture_source, immediate_driver_code, require_tool, scratch_dir, shipped, triton_like_launch_line,
    triton_like_under, workload_under, write_atomic, Run,
};

/// qemu-user is slow, and the machine is shared.
const T: Duration = Duration::from_secs(120);
const CC: &str = "aarch64-linux-gnu-gcc";
const SYSROOT: &str = "/usr/aarch64-linux-gnu";
const CROSS_HINT: &str = "apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross";
const QEMU_HINT: &str = "apt-get install qemu-user";

/// The cross-compiled fake stack and programs (`lib/`, `bin/`), built once per process.
struct Cross {
    lib: PathBuf,
    bin: PathBuf,
}

fn cc(args: &[String]) {
    let fixtures = fixture_source("fake_cuda.h").parent().unwrap().to_path_buf();
    let mut full: Vec<String> = ["-Wall", "-Wextra", "-Werror", "-O2", "-fPIC", "-std=gnu11", "-pthread"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    full.push(format!("-I{}", fixtures.display()));
    full.extend(args.iter().cloned());
    let out = Command::new(CC).args(&full).output().unwrap_or_else(|e| panic!("cannot run {CC} ({e}): {CROSS_HINT}"));
    assert!(
        out.status.success(),
        "{CC} {}\n{}{}",
        full.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The same compiler flags, sonames, version script, linker options and DT_RPATH as
/// tests/build.rs uses for the host build.
fn cross() -> &'static Cross {
    static CROSS: OnceLock<Cross> = OnceLock::new();
    CROSS.get_or_init(|| {
        require_tool(CC, CROSS_HINT);
        assert!(Path::new(SYSROOT).join("lib/libc.so.6").exists(), "no aarch64 glibc in {SYSROOT}: {CROSS_HINT}");
        // Lives as long as the test process needs it, in cargo's own scratch space for
        // integration tests (target/tmp), built afresh by each run.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("aarch64-stack");
        let _ = std::fs::remove_dir_all(&dir);
        let (lib, bin) = (dir.join("lib"), dir.join("bin"));
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        let src = |n: &str| fixture_source(n).display().to_string();
        let s = |v: &str| v.to_string();
        let shared = |soname: &str, link: &str, args: &[String]| {
            let mut all = vec![s("-shared"), s("-fvisibility=hidden"), format!("-Wl,-soname,{soname}")];
            all.extend(args.iter().cloned());
            all.extend([s("-o"), lib.join(soname).display().to_string()]);
            cc(&all);
            std::os::unix::fs::symlink(soname, lib.join(link)).unwrap();
        };
        shared(
            "libcuda.so.1",
            "libcuda.so",
            &[s("-fno-ipa-icf"), s("-Wl,-Bsymbolic-functions"), src("fake_cuda.c"), s("-ldl")],
        );
        shared(
            "libcudart.so.12",
            "libcudart.so",
            &[format!("-Wl,--version-script={}", src("fake_cudart.map")), src("fake_cudart.c"), s("-ldl")],
        );
        let rpath = format!("-Wl,--disable-new-dtags,-rpath,{}", lib.display());
        let program = |name: &str, args: &[String]| {
            let mut all = args.to_vec();
            all.extend([format!("-L{}", lib.display()), rpath.clone()]);
            all.extend([s("-o"), bin.join(name).display().to_string()]);
            cc(&all);
        };
        program("workload", &[src("workload.c"), s("-lcudart")]);
        program("triton_like", &[src("triton_like.c"), s("-ldl")]);
        program("driver_linked", &[s("-rdynamic"), src("driver_linked.c"), s("-lcuda")]);
        Cross { lib, bin }
    })
}

/// Runs an aarch64 program under qemu-user. The guest environment is LANG=C plus `env` (and
/// LD_PRELOAD=the shipped aarch64 shim when `preload`), all passed with -E so that none of it
/// reaches qemu's own (x86_64) loader.
fn qemu(program: &Path, args: &[&str], env: &[(&str, &str)], preload: bool) -> Run {
    let qemu = require_tool("qemu-aarch64", QEMU_HINT);
    let mut cmd = Command::new(qemu);
    cmd.env_clear().arg("-L").arg(SYSROOT).args(["-E", "LANG=C"]);
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    for (key, value) in env {
        cmd.arg("-E").arg(format!("{key}={value}"));
    }
    if preload {
        cmd.arg("-E").arg(format!("LD_PRELOAD={}", shipped("aarch64").shim.display()));
    }
    cmd.arg(program).args(args);
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start qemu-aarch64: {e}"));
    finish(child, T)
}

fn toggle_env(toggle: &str) -> Vec<(&str, &str)> {
    vec![("CUDA_FAULT_TOGGLE_FILE", toggle)]
}

fn env_on<'a>(toggle: &'a str, xid: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("CUDA_FAULT_TOGGLE_FILE", toggle), ("CUDA_FAULT_INJECTION_ENABLED", "1"), ("CUDA_XID_TYPE", xid)]
}

/// Same status, stdout and stderr with the shim (faults off) as without it; returns the run.
fn assert_passthrough(program: &str, args: &[&str], toggle: &str) -> Run {
    let path = cross().bin.join(program);
    let bare = qemu(&path, args, &toggle_env(toggle), false);
    let shim = qemu(&path, args, &toggle_env(toggle), true);
    assert_eq!(
        (shim.status, &shim.stdout, &shim.stderr, shim.timed_out),
        (bare.status, &bare.stdout, &bare.stderr, bare.timed_out),
        "aarch64 {program} differs under the shim with faults off:\n{}\nwithout:\n{}",
        shim.describe(),
        bare.describe()
    );
    bare
}

fn assert_runtime_fault(r: &Run, xid: u32) {
    let row = xid_table::find(xid).unwrap();
    let (lines, function) = workload_under(&row);
    assert_eq!(r.status, 1, "{}", r.describe());
    assert_eq!(r.lines(), lines, "{}", r.describe());
    let sim = format!("[XID {xid} SIM] {function} -> {} ({})", row.runtime.name, row.runtime.code);
    assert!(r.stderr.lines().any(|l| l == sim), "missing '{sim}':\n{}", r.describe());
}

#[test]
fn the_cross_built_programs_are_aarch64() {
    let bytes = std::fs::read(cross().bin.join("workload")).unwrap();
    let elf = goblin::elf::Elf::parse(&bytes).unwrap();
    assert_eq!(elf.header.e_machine, goblin::elf::header::EM_AARCH64);
    assert!(elf.libraries.contains(&"libcudart.so.12"), "{:?}", elf.libraries);
    let bytes = std::fs::read(cross().lib.join("libcuda.so.1")).unwrap();
    let elf = goblin::elf::Elf::parse(&bytes).unwrap();
    assert_eq!(elf.header.e_machine, goblin::elf::header::EM_AARCH64);
    assert_eq!(elf.soname, Some("libcuda.so.1"));
}

#[test]
fn runtime_faults_from_env_and_toggle_file_on_aarch64() {
    let dir = scratch_dir("aarch64-runtime");
    let absent = dir.join("absent").display().to_string();
    let bare = assert_passthrough("workload", &["3"], &absent);
    assert!(bare.success(), "{}", bare.describe());
    assert_eq!(
        bare.lines(),
        ["devices 2", "step 0 ok", "step 1 ok", "step 2 ok", "workload ok"],
        "{}",
        bare.describe()
    );
    assert_eq!(bare.stderr, "");

    let workload = cross().bin.join("workload");
    let r = qemu(&workload, &["3"], &env_on(&absent, "48"), true);
    assert_runtime_fault(&r, 48);
    assert!(r.has_line("FAIL cudaSetDevice cudaErrorECCUncorrectable 214"), "{}", r.describe());

    let file = dir.join("cuda_fault_enabled");
    // XID 31 reaches only processes running when it was written, unless its scope is the device.
    write_atomic(&file, b"1 31 scope=device\n");
    let f = file.display().to_string();
    let r = qemu(&workload, &["3"], &toggle_env(&f), true);
    assert_runtime_fault(&r, 31);
    assert!(r.has_line("FAIL cudaStreamSynchronize cudaErrorIllegalAddress 700"), "{}", r.describe());

    // The toggle's 0 beats the environment's 1.
    write_atomic(&file, b"0\n");
    let r = qemu(&workload, &["3"], &env_on(&f, "48"), true);
    assert!(r.success() && r.has_line("workload ok"), "{}", r.describe());
}

#[test]
fn driver_calls_through_dlsym_and_cu_get_proc_address_fail_on_aarch64() {
    let dir = scratch_dir("aarch64-driver");
    let absent = dir.join("absent").display().to_string();

    // dlopen("libcuda.so.1") + dlsym, as Triton does: the shim's dlsym hands out trampolines.
    let bare = assert_passthrough("triton_like", &[], &absent);
    assert_eq!(bare.lines(), ["cuInit 0", "count 2", "ctx 0", "launch 0", "kernel ok"], "{}", bare.describe());
    for xid in [48u32, 79, 31] {
        let row = xid_table::find(xid).unwrap();
        let r = qemu(&cross().bin.join("triton_like"), &[], &env_on(&absent, &xid.to_string()), true);
        assert_eq!(r.lines(), triton_like_under(&row), "XID {xid}:\n{}", r.describe());
        let sim = triton_like_launch_line(&row);
        assert!(r.stderr.lines().any(|l| l == sim), "{}", r.describe());
    }

    // -lcuda, with cuLaunchKernel also fetched through cuGetProcAddress_v2.
    let bare = assert_passthrough("driver_linked", &[], &absent);
    assert!(bare.has_line("data ok"), "{}", bare.describe());
    let row = xid_table::find(48).unwrap();
    let r = qemu(&cross().bin.join("driver_linked"), &[], &env_on(&absent, "48"), true);
    let calls: Vec<&str> = r.lines().into_iter().filter(|l| l.contains(' ') && !l.starts_with("data")).collect();
    assert_eq!(calls.len(), bare.lines().len() - 1, "{}", r.describe());
    for line in calls {
        let (name, code) = line.split_once(' ').unwrap();
        assert_eq!(code, immediate_driver_code(&row, name).to_string(), "{line}:\n{}", r.describe());
    }
    assert!(r.has_line("data bad"), "{}", r.describe());
    assert!(r.has_line("gpa_cuLaunchKernel 214"), "the cuGetProcAddress path:\n{}", r.describe());
    assert!(r.stderr.contains("[XID 48 SIM] cuLaunchKernel_ptsz -> "), "{}", r.describe());
}

#[test]
fn the_static_aarch64_helper_installs_the_shim_like_the_init_container() {
    let files = shipped("aarch64");
    let dir = scratch_dir("aarch64-install");
    let r = qemu(&files.helper, &["install", &dir.display().to_string()], &[], false);
    let dest = dir.join("cuda_intercept.so");
    let size = std::fs::metadata(&files.shim).unwrap().len();
    assert!(r.success(), "{}", r.describe());
    assert_eq!(
        r.lines(),
        [format!("installed {} -> {} ({size} bytes)", files.shim.display(), dest.display())],
        "{}",
        r.describe()
    );
    assert_eq!(std::fs::read(&dest).unwrap(), std::fs::read(&files.shim).unwrap());
}
