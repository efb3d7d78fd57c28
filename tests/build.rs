//! Builds everything the integration tests run, into OUT_DIR:
//!
//! - `lib/`: the fake CUDA stack in C (`libcuda.so.1`, `libcudart.so.12`, `libnvidia-ml.so.1`,
//!   each with its linker symlink), `libplugin.so` and `libmalloc_counter.so`;
//! - `bin/`: the test programs, all with a DT_RPATH to `lib/` so that no test needs
//!   LD_LIBRARY_PATH (DT_RPATH rather than DT_RUNPATH because only the executable's DT_RPATH
//!   also covers the dlopen("libcuda.so.1") done inside a runtime library);
//! - the programs linked against NVIDIA's real runtime, when its wheels are installed;
//! - the shim itself, by a nested `cargo build -p cuda-fault-shim` (an integration test cannot
//!   depend on a cdylib).
//!
//! The lib.rs of this crate reads the results through the `cargo:rustc-env` variables set here.

use std::collections::BTreeMap;
use std::env;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

const PIP_HINT: &str = "pip install nvidia-cuda-runtime-cu12 nvidia-cuda-runtime";
/// The file name (and soname) under which a wheel vendors a runtime: auditwheel's hashed form.
const VENDORED_CUDART: &str = "libcudart-1a2b3c4d.so.12";
/// NVIDIA's runtime 12 as a wheel vendors it, in its own directory (patchelf sets the soname).
const VENDORED_REAL_CUDART: &str = "libcudart-5e6f7a8b.so.12";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let fixtures = manifest_dir.join("fixtures");

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=fixtures");
    for entry in fs::read_dir(&fixtures).expect("tests/fixtures") {
        let path = entry.expect("fixtures entry").path();
        println!("cargo:rerun-if-changed={}", path.display());
    }
    for var in ["CC", "CUDA_FAULT_CUDART12_DIR", "CUDA_FAULT_CUDART13_DIR", "CUDA_FAULT_PYTHON"] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let b = Builder::new(&fixtures, &out_dir);
    b.fake_stack();
    b.programs();
    let musl = b.musl_program();
    println!("cargo:rustc-env=CUDA_FAULT_MUSL_PROBE={}", if musl { "1" } else { "" });
    println!("cargo:rerun-if-env-changed=PATH");

    let python = Python::discover();
    let rt12 = real_runtime_dir(&python, "CUDA_FAULT_CUDART12_DIR", "12", "libcudart.so.12");
    let rt13 = real_runtime_dir(&python, "CUDA_FAULT_CUDART13_DIR", "13", "libcudart.so.13");
    if rt12.is_none() || rt13.is_none() {
        println!(
            "cargo:warning=NVIDIA's CUDA runtime wheels not found (12: {}, 13: {}); the tests \
             that run the real runtime will fail until you `{PIP_HINT}`",
            if rt12.is_some() { "found" } else { "missing" },
            if rt13.is_some() { "found" } else { "missing" },
        );
        // Installing the wheels touches site-packages: rebuild then.
        if let Some(purelib) = &python.purelib {
            println!("cargo:rerun-if-changed={}", purelib.display());
        }
    }
    for (dir, name, link, source) in [
        (&rt12, "real_rt12", RealLink::Shared("libcudart.so.12"), RealSource::Probe),
        (&rt12, "real_rt12_static", RealLink::Static, RealSource::Probe),
        (&rt13, "real_rt13", RealLink::Shared("libcudart.so.13"), RealSource::Probe),
        (&rt12, "call_probe_rt12", RealLink::Shared("libcudart.so.12"), RealSource::Calls),
        (&rt12, "call_probe_rt12_static", RealLink::Static, RealSource::Calls),
        (&rt13, "call_probe_rt13", RealLink::Shared("libcudart.so.13"), RealSource::Calls),
    ] {
        match dir {
            Some(dir) => b.real_runtime_program(name, dir, link, source),
            // No stale binary from an earlier build may stand in for a missing runtime.
            None => b.remove_program(name),
        }
    }
    match &rt12 {
        Some(dir) => b.vendored_real_runtime_program(dir),
        None => b.remove_program("real_rt12_vendored"),
    }
    let show = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    println!("cargo:rustc-env=CUDA_FAULT_REAL_CUDART12={}", show(&rt12));
    println!("cargo:rustc-env=CUDA_FAULT_REAL_CUDART13={}", show(&rt13));
    println!("cargo:rustc-env=CUDA_FAULT_PYTHON3={}", show(&python.executable));
    println!("cargo:rustc-env=CUDA_FAULT_FIXTURES_SRC={}", fixtures.display());

    let shim = build_shim(&manifest_dir, &out_dir);
    println!("cargo:rustc-env=CUDA_FAULT_SHIM_SO={}", shim.display());
    let helper = build_helper(&manifest_dir, &out_dir);
    println!("cargo:rustc-env=CUDA_FAULT_HELPER_BIN={}", helper.display());
}

// ------------------------------------------------------------------------------------------
// C fixtures

struct Builder {
    cc: OsString,
    fixtures: PathBuf,
    lib: PathBuf,
    bin: PathBuf,
    /// Outputs older than this (the newest fixture source, or this build script) are rebuilt.
    newest_input: SystemTime,
}

enum RealLink {
    Shared(&'static str),
    Static,
}

/// What a program on NVIDIA's runtime runs.
enum RealSource {
    /// real_rt.c: three calls at start-up.
    Probe,
    /// call_probe.c: the calls a test asks for (declared by fake_cudart.h, the same ABI).
    Calls,
}

impl Builder {
    fn new(fixtures: &Path, out_dir: &Path) -> Builder {
        let lib = out_dir.join("lib");
        let bin = out_dir.join("bin");
        fs::create_dir_all(&lib).expect("create OUT_DIR/lib");
        fs::create_dir_all(&bin).expect("create OUT_DIR/bin");
        let mut newest_input = mtime(&env::current_exe().expect("build script path"));
        for entry in fs::read_dir(fixtures).expect("tests/fixtures") {
            let path = entry.expect("fixtures entry").path();
            newest_input = newest_input.max(mtime(&path));
        }
        Builder {
            cc: env::var_os("CC").unwrap_or_else(|| "cc".into()),
            fixtures: fixtures.to_path_buf(),
            lib,
            bin,
            newest_input,
        }
    }

    fn src(&self, name: &str) -> String {
        self.fixtures.join(name).display().to_string()
    }

    /// Every executable gets a DT_RPATH (not RUNPATH) to the fake libraries: see the header.
    fn rpath(&self, dirs: &[&Path]) -> String {
        let joined: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        format!("-Wl,--disable-new-dtags,-rpath,{}", joined.join(":"))
    }

    /// Compiles unless `out` is newer than every input and was built by the same command.
    fn cc(&self, out: &Path, args: &[String]) {
        self.compile(&self.cc, out, args);
    }

    /// Compiles with `compiler` unless `out` is newer than every input and was built by the same
    /// command.
    fn compile(&self, compiler: &OsStr, out: &Path, args: &[String]) {
        let mut full: Vec<String> = ["-Wall", "-Wextra", "-Werror", "-O2", "-fPIC", "-std=gnu11", "-pthread"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        full.push(format!("-I{}", self.fixtures.display()));
        full.extend(args.iter().cloned());
        full.push("-o".into());
        full.push(out.display().to_string());

        let recipe = format!("{} {}", compiler.to_string_lossy(), full.join(" "));
        let recipe_file = PathBuf::from(format!("{}.cmd", out.display()));
        let fresh = out.exists()
            && mtime(out) >= self.newest_input
            && fs::read_to_string(&recipe_file).ok().as_deref() == Some(recipe.as_str());
        if fresh {
            return;
        }
        let output = Command::new(compiler)
            .args(&full)
            .output()
            .unwrap_or_else(|e| panic!("cannot run the C compiler {compiler:?}: {e}"));
        if !output.status.success() {
            panic!(
                "building {} failed:\n{recipe}\n{}{}",
                out.display(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        fs::write(&recipe_file, recipe).expect("write recipe");
    }

    fn shared_lib(&self, soname: &str, link_name: Option<&str>, args: &[String]) {
        let out = self.lib.join(soname);
        let mut all = vec!["-shared".to_string(), "-fvisibility=hidden".into(), format!("-Wl,-soname,{soname}")];
        all.extend(args.iter().cloned());
        self.cc(&out, &all);
        if let Some(link) = link_name {
            symlink(soname, &self.lib.join(link));
        }
    }

    fn fake_stack(&self) {
        // -fno-ipa-icf: the _ptsz/_ptds variants must keep addresses of their own, so that a test
        // can tell which variant cuGetProcAddress handed out.
        // -Bsymbolic-functions: like the real driver, cuGetProcAddress hands out the driver's own
        // functions even when a preloaded library exports the same names (without it, taking
        // the address of cuInit inside the library would yield the preload's cuInit).
        self.shared_lib(
            "libcuda.so.1",
            Some("libcuda.so"),
            &["-fno-ipa-icf".into(), "-Wl,-Bsymbolic-functions".into(), self.src("fake_cuda.c"), "-ldl".into()],
        );
        self.shared_lib(
            "libcudart.so.12",
            Some("libcudart.so"),
            &[
                format!("-Wl,--version-script={}", self.src("fake_cudart.map")),
                self.src("fake_cudart.c"),
                "-ldl".into(),
            ],
        );
        self.shared_lib("libnvidia-ml.so.1", Some("libnvidia-ml.so"), &[self.src("fake_nvml.c")]);
        // The same fake runtime as a wheel vendors it (auditwheel: a hashed file name and soname),
        // and a library that is no runtime at all but carries the runtime's file name.
        self.shared_lib(
            VENDORED_CUDART,
            None,
            &[
                format!("-Wl,--version-script={}", self.src("fake_cudart.map")),
                self.src("fake_cudart.c"),
                "-ldl".into(),
            ],
        );
        self.shared_lib(
            "libcudart.so.99",
            None,
            &[self.src("decoy.c"), format!("-L{}", self.lib.display()), "-lcuda".into(), self.rpath(&[&self.lib])],
        );
        self.shared_lib(
            "libplugin_vendored.so",
            None,
            &[
                self.src("plugin.c"),
                format!("-L{}", self.lib.display()),
                format!("-l:{VENDORED_CUDART}"),
                self.rpath(&[&self.lib]),
            ],
        );
        self.shared_lib(
            "libplugin.so",
            None,
            &[self.src("plugin.c"), format!("-L{}", self.lib.display()), "-lcudart".into(), self.rpath(&[&self.lib])],
        );
        self.shared_lib("libmalloc_counter.so", None, &[self.src("malloc_counter.c"), "-ldl".into()]);
    }

    fn program(&self, name: &str, args: &[String]) {
        let mut all = args.to_vec();
        all.push(format!("-L{}", self.lib.display()));
        all.push(self.rpath(&[&self.lib]));
        self.cc(&self.bin.join(name), &all);
    }

    fn programs(&self) {
        let s = |n: &str| self.src(n);
        let o = |n: &str| n.to_string();
        self.program("workload", &[s("workload.c"), o("-lcudart")]);
        self.program("workload_ptds", &[o("-DWORKLOAD_PTDS"), s("workload.c"), o("-lcudart")]);
        self.program("plugin_host", &[s("plugin_host.c"), o("-ldl")]);
        self.program("threads", &[s("threads.c"), o("-lcudart")]);
        self.program("fork_probe", &[s("fork_probe.c"), o("-lcudart")]);
        self.program("flip_probe", &[s("flip_probe.c"), o("-lcudart")]);
        self.program("rt_probe", &[s("rt_probe.c"), o("-lcudart")]);
        self.program("triton_like", &[s("triton_like.c"), o("-ldl")]);
        self.program("driver_linked", &[o("-rdynamic"), s("driver_linked.c"), o("-lcuda")]);
        self.program("nvml_probe", &[s("nvml_probe.c"), o("-lnvidia-ml")]);
        self.program("nvml_dlopen_probe", &[o("-DNVML_DLOPEN"), s("nvml_probe.c"), o("-ldl")]);
        self.program("dlsym_probe", &[s("dlsym_probe.c"), o("-ldl")]);
        self.program("gpa_probe", &[o("-rdynamic"), s("gpa_probe.c"), o("-lcuda"), o("-ldl")]);
        self.program("count_probe", &[s("count_probe.c"), o("-lcudart"), o("-lcuda")]);
        self.program("signal_probe", &[s("signal_probe.c"), o("-lcudart")]);
        self.program("fd_probe", &[s("fd_probe.c"), o("-lcudart")]);
        self.program("fork_storm", &[s("fork_storm.c"), o("-lcudart")]);
        self.program("lockstep_probe", &[s("lockstep_probe.c"), o("-lcudart")]);
        self.program("draw_probe", &[s("draw_probe.c"), o("-lcudart")]);
        self.program("call_probe", &[s("call_probe.c"), o("-lcudart"), o("-lcuda")]);
        self.program("draw_probe_vendored", &[s("draw_probe.c"), format!("-l:{VENDORED_CUDART}")]);
        self.program("decoy_probe", &[s("decoy_probe.c"), o("-lcudart"), o("-l:libcudart.so.99")]);
        self.program("rt_dlopen", &[s("rt_dlopen.c"), o("-ldl")]);
    }

    /// A program linked against musl (an Alpine-style tool in a CUDA container), when musl-gcc
    /// (Debian's musl-tools) is installed; the test that runs it names the package otherwise.
    fn musl_program(&self) -> bool {
        let ok = Command::new("musl-gcc").arg("--version").output().is_ok_and(|o| o.status.success());
        if !ok {
            self.remove_program("musl_probe");
            return false;
        }
        let args = [self.src("musl_probe.c"), "-ldl".to_string()];
        self.compile(OsStr::new("musl-gcc"), &self.bin.join("musl_probe"), &args);
        true
    }

    fn remove_program(&self, name: &str) {
        let out = self.bin.join(name);
        remove_if_exists(&out);
        remove_if_exists(&PathBuf::from(format!("{}.cmd", out.display())));
    }

    /// A program on NVIDIA's runtime. Its rpath lists the wheel's lib/ FIRST (so the shared
    /// libcudart.so.N is the real one, not the fake libcudart.so.12 next to the fake driver) and
    /// the fake lib/ second (so the runtime's dlopen("libcuda.so.1") finds the fake driver).
    fn real_runtime_program(&self, name: &str, dir: &Path, link: RealLink, source: RealSource) {
        let include = dir.join("include");
        let real_lib = dir.join("lib");
        let mut args = Vec::new();
        match source {
            RealSource::Probe => {
                if include.join("crt/host_defines.h").exists() {
                    args.push("-DREAL_CUDA_HEADERS".to_string());
                    args.push(format!("-I{}", include.display()));
                }
                args.push(self.src("real_rt.c"));
            }
            RealSource::Calls => {
                args.push("-DREAL_RUNTIME".to_string());
                args.push(self.src("call_probe.c"));
            }
        }
        match link {
            RealLink::Shared(soname) => {
                args.push(format!("-L{}", real_lib.display()));
                args.push(format!("-l:{soname}"));
            }
            RealLink::Static => {
                args.push(real_lib.join("libcudart_static.a").display().to_string());
                args.extend(["-ldl", "-lpthread", "-lrt"].iter().map(|s| s.to_string()));
            }
        }
        args.push(self.rpath(&[&real_lib, &self.lib]));
        self.cc(&self.bin.join(name), &args);
    }
}

impl Builder {
    /// `real_rt12_vendored`: real_rt.c on a copy of NVIDIA's runtime 12 renamed the way auditwheel
    /// vendors it into a wheel (file name and soname `VENDORED_REAL_CUDART`, set with patchelf),
    /// linked by that name. Without patchelf the program is not built, and the test that runs
    /// it names the package.
    fn vendored_real_runtime_program(&self, dir: &Path) {
        let name = "real_rt12_vendored";
        let vendored_dir = self.lib.parent().expect("OUT_DIR").join("real-vendored");
        fs::create_dir_all(&vendored_dir).expect("create OUT_DIR/real-vendored");
        let copy = vendored_dir.join(VENDORED_REAL_CUDART);
        let source = dir.join("lib/libcudart.so.12");
        if !copy.exists() || mtime(&copy) < mtime(&source) {
            let tmp = vendored_dir.join(format!("{VENDORED_REAL_CUDART}.tmp"));
            fs::copy(&source, &tmp).unwrap_or_else(|e| panic!("copy {}: {e}", source.display()));
            let patched = Command::new("patchelf").arg("--set-soname").arg(VENDORED_REAL_CUDART).arg(&tmp).status();
            if !patched.is_ok_and(|s| s.success()) {
                println!("cargo:warning=patchelf is missing or failed: {name} is not built (apt-get install patchelf)");
                remove_if_exists(&tmp);
                self.remove_program(name);
                return;
            }
            fs::rename(&tmp, &copy).expect("put the vendored runtime in place");
        }
        let args = vec![
            self.src("real_rt.c"),
            format!("-L{}", vendored_dir.display()),
            format!("-l:{VENDORED_REAL_CUDART}"),
            self.rpath(&[&vendored_dir, &self.lib]),
        ];
        self.cc(&self.bin.join(name), &args);
    }
}

fn remove_if_exists(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => panic!("remove {}: {e}", path.display()),
    }
}

fn mtime(path: &Path) -> SystemTime {
    fs::metadata(path).and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH)
}

fn symlink(target: &str, link: &Path) {
    match fs::read_link(link) {
        Ok(existing) if existing == Path::new(target) => return,
        Ok(_) => fs::remove_file(link).expect("replace symlink"),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(_) => fs::remove_file(link).expect("replace file with symlink"),
    }
    std::os::unix::fs::symlink(target, link).expect("create symlink");
}

// ------------------------------------------------------------------------------------------
// NVIDIA's runtime wheels

#[derive(Default)]
struct Python {
    executable: Option<PathBuf>,
    purelib: Option<PathBuf>,
    /// "12" / "13" -> candidate directories (each holding lib/ and include/).
    runtimes: BTreeMap<String, Vec<PathBuf>>,
}

/// Asks the interpreter where pip put the `nvidia` namespace package: the CUDA 12 runtime wheel
/// installs nvidia/cuda_runtime/, the CUDA 13 one nvidia/cu13/.
const DISCOVER_PY: &str = r#"
import importlib.util, os, sys, sysconfig
print("exe", sys.executable)
print("purelib", sysconfig.get_paths()["purelib"])
try:
    spec = importlib.util.find_spec("nvidia")
except Exception:
    spec = None
for base in (list(spec.submodule_search_locations) if spec and spec.submodule_search_locations else []):
    for major, sub in (("12", "cuda_runtime"), ("13", "cu13"), ("13", "cuda_runtime")):
        d = os.path.join(base, sub)
        if os.path.exists(os.path.join(d, "lib", "libcudart.so." + major)):
            print(major, d)
"#;

impl Python {
    fn discover() -> Python {
        let python = env::var_os("CUDA_FAULT_PYTHON").unwrap_or_else(|| "python3".into());
        let output = match Command::new(&python).arg("-c").arg(DISCOVER_PY).output() {
            Ok(o) if o.status.success() => o,
            _ => {
                println!("cargo:warning=cannot run {python:?}: pynvml and real-runtime tests will fail");
                return Python::default();
            }
        };
        let mut found = Python::default();
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let Some((key, value)) = line.split_once(' ') else {
                continue;
            };
            match key {
                "exe" => found.executable = Some(PathBuf::from(value)),
                "purelib" => found.purelib = Some(PathBuf::from(value)),
                major => found.runtimes.entry(major.to_string()).or_default().push(PathBuf::from(value)),
            }
        }
        found
    }
}

/// The directory of one real runtime: the override variable when set (empty = pretend it is
/// not installed), else what the interpreter found.
fn real_runtime_dir(python: &Python, var: &str, major: &str, soname: &str) -> Option<PathBuf> {
    if let Some(value) = env::var_os(var) {
        if value.is_empty() {
            return None;
        }
        let dir = PathBuf::from(value);
        if !dir.join("lib").join(soname).exists() {
            panic!("{var}={} has no lib/{soname}", dir.display());
        }
        return Some(dir);
    }
    python.runtimes.get(major).and_then(|dirs| dirs.first().cloned())
}

// ------------------------------------------------------------------------------------------
// The shim

/// The workspace target directory: CARGO_TARGET_DIR, else the ancestor of OUT_DIR above
/// `[<triple>/]<profile>/build/<package>-<hash>/out`.
fn target_dir(out_dir: &Path) -> PathBuf {
    if let Some(dir) = env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let build = out_dir
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))
        .unwrap_or_else(|| panic!("unexpected OUT_DIR layout: {}", out_dir.display()));
    let mut dir = build.parent().and_then(Path::parent).expect("target dir above profile dir");
    if let Ok(target) = env::var("TARGET") {
        if dir.file_name().is_some_and(|n| n == target.as_str()) {
            dir = dir.parent().expect("target dir above triple dir");
        }
    }
    dir.to_path_buf()
}

fn build_shim(manifest_dir: &Path, out_dir: &Path) -> PathBuf {
    nested_build(manifest_dir, out_dir, "cuda-fault-shim", "release", "libcuda_intercept.so")
}

/// The cuda-fault helper binary, for tests that drive the shim through it (debug: quicker to
/// build, and the tests only use its file commands).
fn build_helper(manifest_dir: &Path, out_dir: &Path) -> PathBuf {
    nested_build(manifest_dir, out_dir, "cuda-fault", "debug", "cuda-fault")
}

/// Builds `package` with a nested cargo into its own target directory (the outer cargo holds
/// the lock on the workspace's) and returns the path of `artifact`.
fn nested_build(manifest_dir: &Path, out_dir: &Path, package: &str, profile: &str, artifact: &str) -> PathBuf {
    let workspace = manifest_dir.parent().expect("workspace root");
    // The helper also reads `injection/` and `kustomize/`'s manifests (include_str!).
    for path in [
        "shim",
        "cuda-fault",
        "injection",
        "kustomize",
        "xid-table",
        "hook-list",
        "toggle-grammar",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        // Directories are scanned recursively.
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }

    let shim_target = target_dir(out_dir).join("shim-for-tests");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace).args(["build", "-p", package, "--target-dir"]).arg(&shim_target);
    if profile == "release" {
        cmd.arg("--release");
    }
    let (host, target) = (env::var("HOST").unwrap_or_default(), env::var("TARGET").unwrap_or_default());
    let cross = !target.is_empty() && target != host;
    if cross {
        cmd.args(["--target", &target]);
    }
    // What cargo set for THIS build script would otherwise leak into the nested build (and into
    // the shim's own build script). CARGO_MAKEFLAGS stays: the nested cargo shares the jobserver.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let drop =
            matches!(
                key.as_str(),
                "CARGO_TARGET_DIR"
                    | "CARGO_BUILD_TARGET_DIR"
                    | "RUSTFLAGS"
                    | "CARGO_ENCODED_RUSTFLAGS"
                    | "CARGO_BUILD_RUSTFLAGS"
                    | "RUSTDOCFLAGS"
                    | "CARGO_ENCODED_RUSTDOCFLAGS"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_MANIFEST_LINKS"
                    | "OUT_DIR"
                    | "TARGET"
                    | "HOST"
                    | "PROFILE"
                    | "OPT_LEVEL"
                    | "DEBUG"
                    | "NUM_JOBS"
            ) || ["CARGO_FEATURE_", "CARGO_CFG_", "CARGO_PKG_", "DEP_"].iter().any(|prefix| key.starts_with(prefix));
        if drop {
            cmd.env_remove(&key);
        }
    }
    let output = cmd.output().unwrap_or_else(|e| panic!("cannot run cargo to build {package}: {e}"));
    if !output.status.success() {
        panic!(
            "building {package} (cargo build -p {package} --target-dir {}, {profile}) failed:\n{}{}",
            shim_target.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let mut path = shim_target;
    if cross {
        path.push(&target);
    }
    path.push(profile);
    path.push(artifact);
    if !path.exists() {
        panic!("{package} built but {} is missing", path.display());
    }
    path
}
