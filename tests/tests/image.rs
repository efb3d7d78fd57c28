//! The x86_64 image as a Kubernetes pod uses it, with podman standing in for the kubelet:
//! manifests/image/build.sh builds the OCI archive; `podman load` reads it; the image's
//! `install /cuda-fault` (read-only, uid 65532, no capabilities: the init container) fills a
//! named volume (the emptyDir); a worker image assembled FROM scratch from the fake CUDA stack
//! preloads the shim from that volume and reads the toggle in a host directory (the hostPath
//! /host-fault) that the image's own `enable`, `disable` and `clean` write (uid 0, no
//! capabilities: the node Job). The image holds exactly the helper and the shim.
//!
//! Everything runs in a podman store of this test process (its own --root, --runroot, --tmpdir
//! and containers.conf under a scratch directory), removed at the end, also on failure. Needs
//! buildah, podman and runc (apt), cargo-zigbuild (pip) and the rustup targets build.sh uses;
//! fails, never skips, without them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cuda_fault_tests::{finish, fixture, require_tool, run_image_build, scratch_dir, Run};

const T: Duration = Duration::from_secs(300);
const APT_HINT: &str = "apt-get install buildah podman runc";
/// The mount points of the pod spec.
const EMPTYDIR: &str = "/cuda-fault";
const HOSTPATH: &str = "/host-fault";
const TOGGLE: &str = "/host-fault/cuda_fault_enabled";
/// The init container: read-only root, non-root, no capabilities, no escalation.
const LOCKED_DOWN: [&str; 7] =
    ["--read-only", "--user", "65532:65532", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"];
/// The node Job: uid 0 (the hostPath directory is root's) and nothing else.
const NODE_JOB: [&str; 7] = ["--read-only", "--user", "0:0", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"];

/// A podman with a store of its own under `dir`; everything in it is removed on drop.
struct Podman {
    dir: PathBuf,
    global: Vec<String>,
    conf: PathBuf,
}

impl Podman {
    fn new(dir: &Path) -> Podman {
        for tool in ["podman", "buildah", "runc"] {
            require_tool(tool, APT_HINT);
        }
        // Hermetic: this file is the only containers.conf podman reads. No default ulimits
        // (raising them is refused in unprivileged CI containers). Every run has --network none.
        std::fs::create_dir_all(dir).unwrap();
        let conf = dir.join("containers.conf");
        std::fs::write(&conf, "[containers]\ndefault_ulimits = []\n").unwrap();
        let p = |sub: &str| dir.join(sub).display().to_string();
        let global = vec![
            "--root".into(),
            p("storage"),
            "--runroot".into(),
            p("run"),
            "--tmpdir".into(),
            p("tmp"),
            "--storage-driver".into(),
            "vfs".into(),
            "--runtime".into(),
            "runc".into(),
            "--cgroup-manager".into(),
            "cgroupfs".into(),
            "--events-backend".into(),
            "file".into(),
        ];
        Podman { dir: dir.to_path_buf(), global, conf }
    }

    fn run(&self, args: &[&str]) -> Run {
        let child = Command::new("podman")
            .args(&self.global)
            .args(args)
            .env("CONTAINERS_CONF", &self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run podman ({e}): {APT_HINT}"));
        finish(child, T)
    }

    /// `podman ARGS`, which must succeed.
    fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert!(r.success(), "podman {}:\n{}", args.join(" "), r.describe());
        r
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        for args in [
            &["rm", "--all", "--force"][..],
            &["volume", "rm", "--all", "--force"],
            &["image", "unmount", "--all", "--force"],
            &["rmi", "--all", "--force"],
        ] {
            let _ = self.run(args);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A worker image FROM scratch: `program`, the fake CUDA libraries and the glibc files `ldd`
/// lists for them and for the shim, each at its absolute host path (the programs find the fake
/// libraries through a DT_RPATH to their absolute directory).
fn build_worker(podman: &Podman, context: &Path, tag: &str, program: &Path, shim: &Path) {
    let rootfs = context.join("rootfs");
    let mut files: BTreeSet<PathBuf> = BTreeSet::new();
    let mut objects = vec![program.to_path_buf(), shim.to_path_buf()];
    for lib in ["libcudart.so.12", "libcuda.so.1", "libnvidia-ml.so.1"] {
        files.insert(fixture(lib));
        objects.push(fixture(lib));
    }
    for object in &objects {
        let out = Command::new("ldd").arg(object).output().expect("run ldd (libc-bin)");
        assert!(out.status.success(), "ldd {}: {}", object.display(), String::from_utf8_lossy(&out.stderr));
        for word in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if word.starts_with('/') {
                files.insert(PathBuf::from(word));
            }
        }
    }
    files.insert(program.to_path_buf());
    files.remove(shim); // the shim comes from the volume, not the worker image
    for file in &files {
        let dest = rootfs.join(file.strip_prefix("/").unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        // fs::copy follows symlinks and keeps the mode: a plain file at the listed path.
        std::fs::copy(file, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", file.display()));
    }
    std::fs::write(context.join("Containerfile"), "FROM scratch\nCOPY rootfs/ /\n").unwrap();
    let ctx = context.display().to_string();
    podman.ok(&["build", "--quiet", "--pull=never", "--network", "none", "-t", tag, &ctx]);
}

/// Every regular file and symlink in a directory tree, relative to it, with directories apart.
fn walk(root: &Path, dir: &Path, files: &mut BTreeSet<String>, dirs: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let rel = format!("/{}", entry.path().strip_prefix(root).unwrap().display());
        if entry.file_type().unwrap().is_dir() {
            dirs.insert(rel);
            walk(root, &entry.path(), files, dirs);
        } else {
            files.insert(rel);
        }
    }
}

/// Removes a directory when dropped (declared before the Podman, it goes after it).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_image_installs_the_shim_and_its_commands_switch_faults_in_a_worker_pod() {
    let scratch = scratch_dir("image");
    let _remove_scratch = RemoveOnDrop(scratch.clone());
    let podman = Podman::new(&scratch.join("podman"));
    let id = std::process::id();

    // The image, as CI builds it.
    let archive = scratch.join("cuda-fault-x86_64.tar");
    let started = Instant::now();
    let printed = run_image_build("x86_64", &[&archive.display().to_string()], &[]);
    eprintln!("build.sh x86_64: {:.1} s", started.elapsed().as_secs_f64());
    let (built_name, printed_archive) = printed.split_once(' ').expect("build.sh prints IMAGE ARCHIVE");
    assert_eq!(Path::new(printed_archive), archive);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(built_name, format!("ghcr.io/cuda-fault/cuda-fault:{version}"));
    let loaded = podman.ok(&["load", "--input", &archive.display().to_string()]);
    assert!(loaded.stdout.lines().any(|l| l == format!("Loaded image: {built_name}")), "{}", loaded.describe());
    let image = format!("localhost/cuda-fault-image-test-{id}:x86_64");
    podman.ok(&["tag", built_name, &image]);

    let size = podman.ok(&["image", "inspect", "--format", "{{.Size}}", &image]).stdout.trim().to_string();
    eprintln!("image size: {size} bytes");

    // (c) The image: exactly the two files, the helper as entrypoint, uid 65532.
    let inspect = |format: &str| podman.ok(&["image", "inspect", "--format", format, &image]).stdout.trim().to_string();
    assert_eq!(inspect("{{json .Config.Entrypoint}}"), r#"["/usr/local/bin/cuda-fault"]"#);
    assert_eq!(inspect("{{.Config.User}}"), "65532:65532");
    assert_eq!(inspect("{{json .Config.Cmd}}"), "null");
    assert_eq!(inspect("{{.Os}}/{{.Architecture}}"), "linux/amd64");
    let mounted = PathBuf::from(podman.ok(&["image", "mount", &image]).stdout.trim());
    let (mut files, mut dirs) = (BTreeSet::new(), BTreeSet::new());
    walk(&mounted, &mounted, &mut files, &mut dirs);
    let shipped_shim = std::fs::read(mounted.join("usr/local/bin/cuda_intercept.so")).unwrap();
    podman.ok(&["image", "unmount", &image]);
    assert_eq!(
        files,
        BTreeSet::from(["/usr/local/bin/cuda-fault".to_string(), "/usr/local/bin/cuda_intercept.so".to_string()]),
        "the image must hold the helper and the shim and nothing else"
    );
    assert_eq!(dirs, BTreeSet::from(["/usr", "/usr/local", "/usr/local/bin"].map(String::from)));
    // No shell to run.
    let r = podman.run(&["run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", &image, "-c", "true"]);
    assert!(!r.success(), "a shell ran in the image:\n{}", r.describe());

    // (a) The init container fills the emptyDir.
    let volume = format!("cuda-fault-image-test-{id}");
    podman.ok(&["volume", "create", &volume]);
    let mount_rw = format!("{volume}:{EMPTYDIR}");
    let mut install = vec!["run", "--rm", "--network", "none"];
    install.extend(LOCKED_DOWN);
    install.extend(["-v", &mount_rw, &image, "install", EMPTYDIR]);
    let started = Instant::now();
    let r = podman.ok(&install);
    let copy_time = started.elapsed();
    eprintln!("init container (podman run ... install): {:.3} s", copy_time.as_secs_f64());
    assert_eq!(
        r.lines(),
        [format!("installed /usr/local/bin/cuda_intercept.so -> /cuda-fault/cuda_intercept.so ({} bytes)", shipped_shim.len())],
        "{}",
        r.describe()
    );
    let volume_dir = PathBuf::from(podman.ok(&["volume", "inspect", "--format", "{{.Mountpoint}}", &volume]).stdout.trim());
    let installed = volume_dir.join("cuda_intercept.so");
    assert_eq!(std::fs::read(&installed).unwrap(), shipped_shim, "the installed shim differs from the image's");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&installed).unwrap().permissions().mode() & 0o7777, 0o755);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&installed).unwrap().uid(), 65532, "the init container ran as another user");

    // (b) The worker pod: read-only, non-root, the emptyDir read-only, the node's directory.
    let worker = format!("localhost/cuda-fault-worker-test-{id}:latest");
    let workload = fixture("workload");
    build_worker(&podman, &scratch.join("worker"), &worker, &workload, &installed);
    let host_dir = scratch.join("host-fault");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::set_permissions(&host_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let host_toggle = host_dir.join("cuda_fault_enabled");
    let host_mount = format!("{}:{HOSTPATH}", host_dir.display());
    let mount_ro = format!("{volume}:{EMPTYDIR}:ro");
    let preload = format!("LD_PRELOAD={EMPTYDIR}/cuda_intercept.so");
    let workload_path = workload.display().to_string();
    let run_worker = || {
        podman.run(&[
            "run", "--rm", "--network", "none", "--read-only", "--user", "1000:1000", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "-v", &mount_ro, "-v", &host_mount, "-e", &preload, &worker,
            &workload_path, "3",
        ])
    };
    let node_job = |args: &[&str]| {
        let mut all = vec!["run", "--rm", "--network", "none"];
        all.extend(NODE_JOB);
        all.extend(["-v", &host_mount, &image]);
        all.extend(args);
        podman.ok(&all)
    };
    let assert_passes = |r: &Run, when: &str| {
        assert!(r.success() && r.has_line("workload ok"), "{when}: expected a clean run:\n{}", r.describe());
        assert_eq!(r.lines(), ["devices 2", "step 0 ok", "step 1 ok", "step 2 ok", "workload ok"], "{when}");
    };

    // The toggle is absent: faults off, and the shim says nothing.
    let r = run_worker();
    assert_passes(&r, "no toggle file");
    assert_eq!(r.stderr, "", "the shim must be silent with faults off:\n{}", r.describe());

    // The shim really is loaded in the worker (not just present): the same worker with the
    // environment switch on fails.
    let r = podman.run(&[
        "run", "--rm", "--network", "none", "--read-only", "--user", "1000:1000", "-v", &mount_ro,
        "-v", &host_mount, "-e", &preload, "-e", "CUDA_FAULT_INJECTION_ENABLED=1", "-e", "CUDA_XID_TYPE=79",
        &worker, &workload_path, "3",
    ]);
    assert!(r.has_line("FAIL cudaGetDeviceCount cudaErrorNoDevice 100"), "{}", r.describe());

    // The node Job enables XID 48.
    let r = node_job(&["enable", "--xid", "48", "--file", TOGGLE]);
    assert!(r.stdout.starts_with(&format!("wrote \"1 48\" to {TOGGLE}")), "{}", r.describe());
    assert_eq!(std::fs::read_to_string(&host_toggle).unwrap().trim_end(), "1 48");
    let r = run_worker();
    assert_eq!(r.status, 1, "{}", r.describe());
    assert!(r.has_line("FAIL cudaGetDeviceCount cudaErrorECCUncorrectable 214"), "{}", r.describe());
    assert!(
        r.stderr.lines().any(|l| l == "[XID 48 SIM] cudaGetDeviceCount -> cudaErrorECCUncorrectable (214)"),
        "{}",
        r.describe()
    );

    // disable: the file says 0, the worker passes again.
    let r = node_job(&["disable", "--file", TOGGLE]);
    assert!(r.stdout.starts_with(&format!("wrote \"0\" to {TOGGLE}")), "{}", r.describe());
    assert_passes(&run_worker(), "after disable");

    // clean: the file is gone, the worker passes.
    node_job(&["clean", "--file", TOGGLE]);
    assert!(!host_toggle.exists(), "clean left {}", host_toggle.display());
    let leftovers: Vec<_> = std::fs::read_dir(&host_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(leftovers.is_empty(), "files left in the host directory: {leftovers:?}");
    let r = run_worker();
    assert_passes(&r, "after clean");
    assert_eq!(r.stderr, "", "{}", r.describe());
}
