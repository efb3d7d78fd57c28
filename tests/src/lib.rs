//! Test support for the cuda-fault integration tests: where the fake CUDA stack, the test
//! programs, NVIDIA's real runtime and the shim are, and how to run a program under the shim
//! without ever hanging the suite.
//!
//! Everything is built by `build.rs` (C sources in `tests/fixtures/`); see there for the layout.
//! The fake stack and every program are documented at the top of their C file, including the
//! exact lines they print.

pub mod calls;
pub mod containers;
pub mod fake_api;
pub mod monitor;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::Duration;

/// A timeout that no fixture program comes near on a loaded 2-core machine.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// What to do when NVIDIA's runtime wheels are missing.
pub const REAL_CUDART_HINT: &str = "pip install nvidia-cuda-runtime-cu12 nvidia-cuda-runtime";

const OUT_DIR: &str = env!("OUT_DIR");

/// The build output directory of this crate (holds `lib/` and `bin/`).
pub fn out_dir() -> PathBuf {
    PathBuf::from(OUT_DIR)
}

/// The directory of the fake `libcuda.so.1`, `libcudart.so.12`, `libnvidia-ml.so.1` (and their
/// unversioned linker names), `libplugin.so` and `libmalloc_counter.so`.
pub fn fake_lib_dir() -> PathBuf {
    out_dir().join("lib")
}

/// The directory of the test programs.
pub fn bin_dir() -> PathBuf {
    out_dir().join("bin")
}

/// A built program (`bin/`) or library (`lib/`), by file name: `fixture("workload")`,
/// `fixture("libcuda.so.1")`. Panics with a clear message when it was not built.
pub fn fixture(name: &str) -> PathBuf {
    for dir in [bin_dir(), fake_lib_dir()] {
        let path = dir.join(name);
        if path.exists() {
            return path;
        }
    }
    if name.starts_with("real_rt") || name.starts_with("call_probe_rt") {
        panic!(
            "fixture {name} was not built because NVIDIA's CUDA runtime wheels were not found \
             when the tests were built: {REAL_CUDART_HINT}, then rebuild"
        );
    }
    panic!(
        "fixture {name} not found in {} or {} (is it one that tests/build.rs builds?)",
        bin_dir().display(),
        fake_lib_dir().display()
    );
}

/// A source file of `tests/fixtures/` (e.g. `pynvml_probe.py`).
pub fn fixture_source(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CUDA_FAULT_FIXTURES_SRC")).join(name);
    assert!(path.exists(), "no fixture source {}", path.display());
    path
}

/// The shim `libcuda_intercept.so`: `$CUDA_FAULT_SHIM` when set at test time, else the one
/// build.rs built from `shim/` (release profile, target dir `<target>/shim-for-tests`).
pub fn shim_path() -> PathBuf {
    let path = match std::env::var_os("CUDA_FAULT_SHIM") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CUDA_FAULT_SHIM_SO")),
    };
    assert!(path.exists(), "the shim {} does not exist", path.display());
    path
}

fn non_empty(value: &str) -> Option<PathBuf> {
    (!value.is_empty()).then(|| PathBuf::from(value))
}

/// NVIDIA's CUDA 12 runtime (the directory holding `lib/libcudart.so.12` and `include/`), if it
/// was found when the tests were built.
pub fn cudart12_dir() -> Option<PathBuf> {
    non_empty(env!("CUDA_FAULT_REAL_CUDART12"))
}

/// NVIDIA's CUDA 13 runtime (`lib/libcudart.so.13`), if it was found when the tests were built.
pub fn cudart13_dir() -> Option<PathBuf> {
    non_empty(env!("CUDA_FAULT_REAL_CUDART13"))
}

/// The real runtime of CUDA `major` (12 or 13). Panics with the install hint when it is missing:
/// tests that need it fail, they never skip.
pub fn require_real_cudart(major: u32) -> PathBuf {
    let found = match major {
        12 => cudart12_dir(),
        13 => cudart13_dir(),
        _ => panic!("no real CUDA runtime {major} is known; use 12 or 13"),
    };
    found.unwrap_or_else(|| {
        panic!(
            "NVIDIA's CUDA {major} runtime was not found when the tests were built. \
             {REAL_CUDART_HINT} (into the python3 on PATH, or set CUDA_FAULT_PYTHON), \
             or set CUDA_FAULT_CUDART{major}_DIR to a directory with lib/ and include/; \
             then rebuild"
        )
    })
}

/// The Python interpreter that build.rs asked where the NVIDIA wheels are (the one with
/// pynvml): `$CUDA_FAULT_PYTHON` at test time wins.
pub fn python3() -> PathBuf {
    if let Some(p) = std::env::var_os("CUDA_FAULT_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    non_empty(env!("CUDA_FAULT_PYTHON3")).unwrap_or_else(|| {
        panic!("no python3 was found when the tests were built: install it (with `pip install nvidia-ml-py`) or set CUDA_FAULT_PYTHON, then rebuild")
    })
}

/// How a program ended.
#[derive(Debug, Clone)]
pub struct Run {
    /// The exit code; 128 + N when killed by signal N (as a shell reports it).
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
    /// The timeout ran out and the program was killed.
    pub timed_out: bool,
}

impl Run {
    /// Exited 0 within the timeout.
    pub fn success(&self) -> bool {
        self.status == 0 && !self.timed_out
    }

    /// The stdout lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// Whether stdout has exactly this line.
    pub fn has_line(&self, line: &str) -> bool {
        self.stdout.lines().any(|l| l == line)
    }

    /// Everything about the run, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "status {}{}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.status,
            if self.timed_out { " (timed out, killed)" } else { "" },
            self.stdout,
            self.stderr
        )
    }
}

/// The command `run` and `spawn` start: an environment cleared down to PATH, HOME and LANG=C,
/// then `env`, then (when `preload`) LD_PRELOAD with the shim first, followed by any
/// LD_PRELOAD given in `env` (e.g. libmalloc_counter.so).
pub fn command(program: &Path, args: &[&str], env: &[(&str, &str)], preload: bool) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args).env_clear().stdin(Stdio::null());
    for key in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(key) {
            cmd.env(key, value);
        }
    }
    cmd.env("LANG", "C");
    let mut user_preload = None;
    for (key, value) in env {
        if *key == "LD_PRELOAD" {
            user_preload = Some(*value);
        }
        cmd.env(key, value);
    }
    if preload {
        let shim = shim_path().display().to_string();
        let value = match user_preload {
            Some(other) if !other.is_empty() => format!("{shim}:{other}"),
            _ => shim,
        };
        cmd.env("LD_PRELOAD", value);
    }
    cmd
}

/// Runs a program to completion (see [`command`] for its environment), killing it when
/// `timeout` runs out, and captures its output.
pub fn run(program: &Path, args: &[&str], env: &[(&str, &str)], preload: bool, timeout: Duration) -> Run {
    finish(spawn(program, args, env, preload), timeout)
}

/// Starts a program (see [`command`]) with stdout and stderr piped and returns at once, for
/// tests that act while it runs (e.g. read `step K ok` lines, flip a toggle, read on). Take
/// `child.stdout` to read it; hand the child to [`finish`] to end it without hanging. stderr is
/// a pipe too: a caller that keeps the child running for long should drain it (or use
/// [`finish`], which does).
pub fn spawn(program: &Path, args: &[&str], env: &[(&str, &str)], preload: bool) -> Child {
    command(program, args, env, preload)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()))
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Waits for a spawned program for at most `timeout` (killing it then) and collects whatever
/// its pipes still hold (a pipe already taken from the child yields "").
pub fn finish(mut child: Child, timeout: Duration) -> Run {
    use wait_timeout::ChildExt;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let (status, timed_out) = match child.wait_timeout(timeout).expect("wait for child") {
        Some(status) => (status, false),
        None => {
            let _ = child.kill();
            (child.wait().expect("wait for killed child"), true)
        }
    };
    Run {
        status: exit_code(status),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        timed_out,
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Runs `fixtures/pynvml_probe.py` (nvidia-ml-py against the fake libnvidia-ml.so.1) with
/// LD_LIBRARY_PATH set to [`fake_lib_dir`] (ahead of any LD_LIBRARY_PATH given in `env`).
pub fn run_pynvml_probe(env: &[(&str, &str)], preload: bool, timeout: Duration) -> Run {
    run_python_fixture("pynvml_probe.py", env, preload, timeout)
}

/// Runs a Python fixture of `tests/fixtures/` (pynvml against the fake libnvidia-ml.so.1), as
/// [`run_pynvml_probe`] does.
pub fn run_python_fixture(name: &str, env: &[(&str, &str)], preload: bool, timeout: Duration) -> Run {
    let lib = fake_lib_dir().display().to_string();
    let mut library_path = lib;
    let mut all: Vec<(&str, &str)> = Vec::new();
    for (key, value) in env {
        if *key == "LD_LIBRARY_PATH" {
            library_path = format!("{library_path}:{value}");
        } else {
            all.push((key, value));
        }
    }
    all.push(("LD_LIBRARY_PATH", &library_path));
    all.push(("PYTHONDONTWRITEBYTECODE", "1"));
    let script = fixture_source(name).display().to_string();
    run(&python3(), &[&script], &all, preload, timeout)
}

/// A fresh, empty directory for one test, removed when the value is dropped (at the end of the
/// test). Tests put their toggle files here, never under /host-fault. It derefs to its path.
pub struct Scratch(tempfile::TempDir);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}

/// A [`Scratch`] directory named after `tag` (world-readable, so programs run as another user
/// in some tests can reach it).
pub fn scratch_dir(tag: &str) -> Scratch {
    use std::os::unix::fs::PermissionsExt;
    let dir =
        tempfile::Builder::new().prefix(&format!("cuda-fault-test-{tag}-")).tempdir().expect("create scratch dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod scratch dir");
    Scratch(dir)
}

/// Writes `content` to `path` the way the cuda-fault helper does (temporary file + rename), so
/// a reader never sees a partial file.
pub fn write_atomic(path: &Path, content: &[u8]) {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, content).expect("write temp toggle");
    std::fs::rename(&tmp, path).expect("rename toggle into place");
}

/// What `triton_like` (tests/fixtures/triton_like.c) prints while XID `row` is on from the start,
/// as its row says it behaves: the same on x86_64 and on aarch64.
///
/// - immediate, GPU lost: every call fails;
/// - immediate, GPU kept: enumeration works, the context and the launch fail;
/// - async: every call succeeds, but the launch was only accepted: the kernel never ran.
pub fn triton_like_under(row: &xid_table::Xid<'_>) -> Vec<String> {
    let c = row.driver.code;
    let lines: [String; 5] = match (row.surface, row.lost) {
        (xid_table::Surface::Immediate, true) => [
            format!("cuInit {c}"),
            format!("count error {c}"),
            format!("ctx {c}"),
            format!("launch {c}"),
            "kernel not-run".into(),
        ],
        (xid_table::Surface::Immediate, false) => {
            ["cuInit 0".into(), "count 2".into(), format!("ctx {c}"), format!("launch {c}"), "kernel not-run".into()]
        }
        (xid_table::Surface::Async, _) => {
            ["cuInit 0".into(), "count 2".into(), "ctx 0".into(), "launch 0".into(), "kernel not-run".into()]
        }
    };
    lines.to_vec()
}

/// The line the shim prints for `triton_like`'s launch under XID `row` (see [`triton_like_under`]).
pub fn triton_like_launch_line(row: &xid_table::Xid<'_>) -> String {
    match row.surface {
        xid_table::Surface::Immediate => {
            format!("[XID {} SIM] cuLaunchKernel -> {} ({})", row.xid, row.driver.name, row.driver.code)
        }
        xid_table::Surface::Async => {
            format!(
                "[XID {} SIM] cuLaunchKernel -> accepted; the fault surfaces at the next synchronizing call",
                row.xid
            )
        }
    }
}

/// Where `workload` (tests/fixtures/workload.c) stops while XID `row` is on from the start, as its
/// row says it behaves: its stdout lines and the function that failed (the shim prints
/// `[XID n SIM] <function> -> <error> (<code>)` for it).
///
/// - immediate, GPU lost: at the device count;
/// - immediate, GPU kept: the device count answers, cudaSetDevice fails;
/// - async: its first asynchronous work is accepted and the synchronize after it fails.
pub fn workload_under(row: &xid_table::Xid<'_>) -> (Vec<String>, &'static str) {
    let function = match (row.surface, row.lost) {
        (xid_table::Surface::Async, _) => "cudaStreamSynchronize",
        (xid_table::Surface::Immediate, true) => "cudaGetDeviceCount",
        (xid_table::Surface::Immediate, false) => "cudaSetDevice",
    };
    let fail = format!("FAIL {function} {} {}", row.runtime.name, row.runtime.code);
    let lines = if function == "cudaGetDeviceCount" { vec![fail] } else { vec!["devices 2".to_string(), fail] };
    (lines, function)
}

/// What a driver function returns while XID `row` fails every call at once (`surface=immediate`):
/// pure lookups never fail, and device enumeration (cuInit, the device count) fails only when the
/// GPU is lost.
pub fn immediate_driver_code(row: &xid_table::Xid<'_>, function: &str) -> u32 {
    match function {
        "cuDriverGetVersion" | "cuGetProcAddress_v2" => 0,
        "cuInit" | "cuDeviceGetCount" if !row.lost => 0,
        _ => row.driver.code,
    }
}

/// The stderr lines the shim printed.
pub fn shim_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with("[cuda-fault]") || l.starts_with("[XID ")).collect()
}

/// The `cuda-fault` helper binary, built by build.rs (override with `$CUDA_FAULT_HELPER`).
pub fn helper_path() -> PathBuf {
    if let Some(p) = std::env::var_os("CUDA_FAULT_HELPER") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CUDA_FAULT_HELPER_BIN"))
}

// ------------------------------------------------------------------------------------------
// The shipped artifacts (manifests/image/build.sh) and the tools around them

/// The workspace root (above `tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// How long `manifests/image/build.sh` may take: a cold cross build of the shim and the helper
/// is minutes on a loaded 2-core machine.
pub const IMAGE_BUILD_TIMEOUT: Duration = Duration::from_secs(40 * 60);

/// Panics, naming how to install it, unless `tool` is on PATH: tests that need a tool fail
/// without it, they never skip.
pub fn require_tool(tool: &str, install: &str) -> PathBuf {
    which::which(tool).unwrap_or_else(|_| panic!("{tool} is not installed (not on PATH): {install}"))
}

/// Runs `manifests/image/build.sh ARCH [ARGS]` with `env` added, and returns its last stdout
/// line. Its cargo builds use a target directory of their own (`target/image-build`), never
/// the one this test run holds locked. Variables cargo set for this test process are dropped.
pub fn run_image_build(arch: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    require_tool("cargo-zigbuild", "pip install cargo-zigbuild (it brings zig)");
    let script = workspace_root().join("manifests/image/build.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script).arg(arch).args(args).current_dir(workspace_root()).stdin(Stdio::null());
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let cargo_set = matches!(
            key.as_str(),
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_CRATE_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_TARGET_TMPDIR"
                | "CARGO_BIN_NAME"
                | "OUT_DIR"
        ) || key.starts_with("CARGO_PKG_");
        if cargo_set {
            cmd.env_remove(&key);
        }
    }
    for (key, value) in env {
        cmd.env(key, value);
    }
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let r = finish(child, IMAGE_BUILD_TIMEOUT);
    if !r.success() {
        let tail: Vec<&str> = r.stderr.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect();
        panic!(
            "{} {arch} {args:?} failed (status {}{}):\n{}\n--- stdout ---\n{}",
            script.display(),
            r.status,
            if r.timed_out { ", timed out" } else { "" },
            tail.join("\n"),
            r.stdout
        );
    }
    r.stdout.lines().last().unwrap_or_else(|| panic!("{} printed nothing", script.display())).to_string()
}

/// The x86_64 image as build.sh builds it: (the name it printed, its OCI archive). Built once per
/// test process (two builds at once would fight over buildah's store), into a directory of this
/// process.
pub fn image_archive() -> (String, PathBuf) {
    use std::sync::{Mutex, OnceLock};
    static BUILT: OnceLock<Mutex<Option<(String, PathBuf)>>> = OnceLock::new();
    let mut built = BUILT.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = built.as_ref() {
        return found.clone();
    }
    remove_stale_process_dirs("-image");
    let dir = std::env::temp_dir().join(format!("cuda-fault-test-{}-image", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the image directory");
    let archive = dir.join("cuda-fault.tar");
    let printed = run_image_build("x86_64", &[&archive.display().to_string()], &[]);
    let (name, _) = printed.split_once(' ').expect("build.sh prints IMAGE ARCHIVE");
    let found = (name.to_string(), archive);
    *built = Some(found.clone());
    found
}

/// Removes `<tmp>/cuda-fault-test-<pid><tag>*` directories of test processes that have ended.
fn remove_stale_process_dirs(tag: &str) {
    for entry in std::fs::read_dir(std::env::temp_dir()).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("cuda-fault-test-").and_then(|r| r.split_once(tag)).map(|(p, _)| p) {
            if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// The two files the image of `arch` (`x86_64` or `aarch64`) ships, as build.sh builds them.
#[derive(Debug, Clone)]
pub struct Shipped {
    /// `cuda_intercept.so`: the shim, built for glibc 2.17.
    pub shim: PathBuf,
    /// `cuda-fault`: the static musl helper.
    pub helper: PathBuf,
}

/// Builds and stages the shipped files of `arch` with build.sh (`CUDA_FAULT_IMAGE_STAGE_ONLY=1`,
/// no buildah), once per test process and architecture, into a staging directory of this
/// process.
pub fn shipped(arch: &str) -> Shipped {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static STAGED: OnceLock<Mutex<HashMap<String, Shipped>>> = OnceLock::new();
    let mut staged = STAGED.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = staged.get(arch) {
        return found.clone();
    }
    // Staging directories of test processes that have ended are removed.
    let tmp = std::env::temp_dir();
    remove_stale_process_dirs("-stage-");
    let stage = tmp.join(format!("cuda-fault-test-{}-stage-{arch}", std::process::id()));
    let stage_str = stage.display().to_string();
    let printed =
        run_image_build(arch, &[], &[("CUDA_FAULT_IMAGE_STAGE_ONLY", "1"), ("CUDA_FAULT_IMAGE_STAGE_DIR", &stage_str)]);
    assert_eq!(Path::new(&printed), stage, "build.sh printed {printed:?} as the staging directory");
    let found = Shipped { shim: stage.join("cuda_intercept.so"), helper: stage.join("cuda-fault") };
    for file in [&found.shim, &found.helper] {
        assert!(file.is_file(), "build.sh did not stage {}", file.display());
    }
    staged.insert(arch.to_string(), found.clone());
    found
}
