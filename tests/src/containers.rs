//! Real OCI containers without a daemon, for the tests and the demo: a podman with a store of
//! its own, a worker image assembled FROM scratch from the fake CUDA stack, and the pods of the
//! Kubernetes layer with the security settings their specs carry: the injected worker (init
//! container, shim preloaded, the node's toggle directory read-only), the fault DaemonSet's hold
//! pod (the image's `cuda-fault hold`, asking a fake API server when stopped) and the node Job.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use crate::{finish, fixture, require_tool, Run};

/// The longest one podman command may take.
pub const T: Duration = Duration::from_secs(300);

pub const APT_HINT: &str = "apt-get install buildah podman runc";
/// The mount points of the pod spec.
pub const EMPTYDIR: &str = "/cuda-fault";
pub const HOSTPATH: &str = "/host-fault";
pub const TOGGLE: &str = "/host-fault/cuda_fault_enabled";
/// The init container: read-only root, non-root, no capabilities, no escalation.
pub const LOCKED_DOWN: [&str; 7] =
    ["--read-only", "--user", "65532:65532", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"];
/// The node Job and the hold pod: uid 0 (the hostPath directory is root's) and nothing else.
pub const NODE_JOB: [&str; 7] =
    ["--read-only", "--user", "0:0", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"];
/// Where the hold pod mounts the fault ConfigMap (kustomize/fault/daemonset.yaml).
pub const FAULT_CONFIG: &str = "/etc/cuda-fault/fault";
/// The hold pod's readiness marker, in an emptyDir (kustomize/fault/daemonset.yaml).
pub const READY_DIR: &str = "/run/cuda-fault";
pub const READY_FILE: &str = "/run/cuda-fault/ready";
/// The hold container's arguments, as kustomize/fault/daemonset.yaml gives them.
pub const HOLD_ARGS: [&str; 7] = ["hold", "--file", TOGGLE, "--config", FAULT_CONFIG, "--ready-file", READY_FILE];
/// The hold pod's readiness probe (kustomize/fault/daemonset.yaml): the image's helper.
pub const PROBE: [&str; 7] =
    ["/usr/local/bin/cuda-fault", "hold", "--check", "--ready-file", READY_FILE, "--file", TOGGLE];

/// A podman with a store of its own under `dir`; everything in it is removed on drop.
pub struct Podman {
    dir: PathBuf,
    runroot: PathBuf,
    global: Vec<String>,
    conf: PathBuf,
}

impl Podman {
    pub fn new(dir: &Path) -> Podman {
        for tool in ["podman", "buildah", "runc"] {
            require_tool(tool, APT_HINT);
        }
        // Hermetic: this file is the only containers.conf podman reads. No default ulimits
        // (raising them is refused in unprivileged CI containers). Every run has --network none.
        std::fs::create_dir_all(dir).unwrap();
        let conf = dir.join("containers.conf");
        std::fs::write(&conf, "[containers]\ndefault_ulimits = []\n").unwrap();
        let p = |sub: &str| dir.join(sub).display().to_string();
        // podman refuses a runroot longer than 50 characters: keep it short and apart.
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let runroot = PathBuf::from(format!("/tmp/cfp-{}-{n}", std::process::id()));
        let global = vec![
            "--root".into(),
            p("storage"),
            "--runroot".into(),
            runroot.display().to_string(),
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
        Podman { dir: dir.to_path_buf(), global, conf, runroot }
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let child = self.command(args).spawn().unwrap_or_else(|e| panic!("cannot run podman ({e}): {APT_HINT}"));
        finish(child, T)
    }

    /// `podman ARGS` with this store and piped output, to spawn and read while it runs.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("podman");
        cmd.args(&self.global)
            .args(args)
            .env("CONTAINERS_CONF", &self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// `podman ARGS`, which must succeed.
    pub fn ok(&self, args: &[&str]) -> Run {
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
        let _ = std::fs::remove_dir_all(&self.runroot);
    }
}

/// A worker image FROM scratch: `program`, the fake CUDA libraries and the glibc files `ldd`
/// lists for them and for the shim, each at its absolute host path (the programs find the fake
/// libraries through a DT_RPATH to their absolute directory).
pub fn build_worker(podman: &Podman, context: &Path, tag: &str, program: &Path, shim: &Path) {
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
pub fn walk(root: &Path, dir: &Path, files: &mut BTreeSet<String>, dirs: &mut BTreeSet<String>) {
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

/// Pods on "nodes" (host directories standing for /var/lib/cuda-fault-test), the way the
/// generated Component runs them: every pod start runs the image's init container into a fresh
/// volume, then the worker; the image's helper stands in for the hold pod and the node Job.
pub struct Cluster<'a> {
    podman: &'a Podman,
    image: String,
    worker: String,
    workload: String,
    pods: std::cell::Cell<u32>,
}

impl<'a> Cluster<'a> {
    pub fn new(podman: &'a Podman, image: String, worker: String, workload: &Path) -> Cluster<'a> {
        Cluster { podman, image, worker, workload: workload.display().to_string(), pods: Default::default() }
    }

    /// A node's directory, mode 0755 as the kubelet creates hostPath directories.
    pub fn node_dir(root: &Path, name: &str) -> PathBuf {
        let d = root.join(name);
        std::fs::create_dir_all(&d).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        d
    }

    fn node_mount(node: &Path) -> String {
        format!("{}:{HOSTPATH}", node.display())
    }

    /// The node Job: the image's helper writing the node's toggle directory.
    pub fn node_job(&self, node: &Path, args: &[&str]) -> Run {
        let mount = Self::node_mount(node);
        let mut all = vec!["run", "--rm", "--network", "none"];
        all.extend(NODE_JOB);
        all.extend(["-v", mount.as_str(), self.image.as_str()]);
        all.extend(args);
        all.extend(["--file", TOGGLE]);
        self.podman.ok(&all)
    }

    /// A new pod on `node`: a fresh emptyDir, the init container, then the worker's arguments.
    pub fn pod_args(&self, node: &Path, extra_env: &[&str], workload_args: &[&str]) -> (String, Vec<String>) {
        let n = self.pods.get() + 1;
        self.pods.set(n);
        let volume = format!("story-pod-{}-{n}", std::process::id());
        self.podman.ok(&["volume", "create", &volume]);
        let rw = format!("{volume}:{EMPTYDIR}");
        let mut install = vec!["run", "--rm", "--network", "none"];
        install.extend(LOCKED_DOWN);
        install.extend(["-v", rw.as_str(), self.image.as_str(), "install", EMPTYDIR]);
        self.podman.ok(&install);
        let mut args: Vec<String> =
            ["run", "--rm", "--network", "none", "--read-only", "--user", "1000:1000", "--cap-drop", "ALL"]
                .map(String::from)
                .to_vec();
        args.extend(["--security-opt".into(), "no-new-privileges".into()]);
        // As injected: the shim and the node's toggle directory read-only, LD_PRELOAD and nothing
        // else (faults off until the toggle file says otherwise).
        args.extend([
            "-v".into(),
            format!("{volume}:{EMPTYDIR}:ro"),
            "-v".into(),
            format!("{}:ro", Self::node_mount(node)),
        ]);
        args.extend(["-e".into(), format!("LD_PRELOAD={EMPTYDIR}/cuda_intercept.so")]);
        for e in extra_env {
            args.extend(["-e".into(), e.to_string()]);
        }
        args.push(self.worker.clone());
        args.push(self.workload.clone());
        args.extend(workload_args.iter().map(|a| a.to_string()));
        (volume, args)
    }

    /// Starts a pod on `node` and waits for its worker to exit; the container log is the Run.
    pub fn pod(&self, node: &Path) -> Run {
        let (volume, args) = self.pod_args(node, &[], &["3"]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = self.podman.run(&args);
        self.podman.ok(&["volume", "rm", &volume]);
        r
    }

    /// "Applies" the fault on `node`: a hold pod of the fault DaemonSet, the image's
    /// `cuda-fault hold` as kustomize/fault runs it (uid 0, read-only root, no capabilities, the
    /// node's directory read-write, the fault ConfigMap `config` read-only) with the downward
    /// API's variables and a kubeconfig for the fake API server on the host network. Returns once
    /// it said it holds the file.
    pub fn hold(&self, node: &Path, node_name: &str, pod: &str, config: &Path, kubeconfig: &Path) -> Hold {
        self.hold_with(node, node_name, pod, config, kubeconfig, None)
    }

    /// [`Cluster::hold`], with `kmsg` (a host file standing for the node's /dev/kmsg) mounted at
    /// /dev/kmsg as kustomize/kmsg mounts the device.
    pub fn hold_with(
        &self,
        node: &Path,
        node_name: &str,
        pod: &str,
        config: &Path,
        kubeconfig: &Path,
        kmsg: Option<&Path>,
    ) -> Hold {
        let (mount, conf, kube) = (
            Self::node_mount(node),
            format!("{}:{FAULT_CONFIG}:ro", config.display()),
            format!("{}:/etc/cuda-fault/kubeconfig:ro", kubeconfig.display()),
        );
        let env = [format!("POD_NAME={pod}"), "POD_NAMESPACE=cuda-fault".into(), format!("NODE_NAME={node_name}")];
        let ready = format!("{READY_DIR}:size=1m");
        let kmsg = kmsg.map(|k| format!("{}:/dev/kmsg", k.display()));
        let mut args = vec!["run", "--rm", "--name", pod, "--network", "host"];
        args.extend(NODE_JOB);
        args.extend([
            "-v",
            &mount,
            "-v",
            &conf,
            "-v",
            &kube,
            "--tmpfs",
            &ready,
            "-e",
            "KUBECONFIG=/etc/cuda-fault/kubeconfig",
        ]);
        if let Some(k) = &kmsg {
            args.extend(["-v", k.as_str()]);
        }
        for e in &env {
            args.extend(["-e", e.as_str()]);
        }
        args.push(self.image.as_str());
        args.extend(HOLD_ARGS);
        Hold::start(self.podman.command(&args), pod)
    }

    /// The kubelet's readiness probe of a running hold pod: exit 0 when Ready.
    pub fn probe(&self, pod: &str) -> Run {
        let mut args = vec!["exec", pod];
        args.extend(PROBE);
        self.podman.run(&args)
    }

    /// Stops a hold pod the way the kubelet does (SIGTERM) and waits for it.
    pub fn stop(&self, hold: Hold) -> Run {
        self.podman.ok(&["kill", "--signal", "TERM", &hold.name]);
        hold.wait()
    }
}

/// A running `cuda-fault hold` (a container, or a plain process in the demo).
pub struct Hold {
    /// None once waited for.
    child: Option<Child>,
    out: BufReader<ChildStdout>,
    name: String,
    /// The line it printed when it wrote the file.
    pub started: String,
}

impl Hold {
    /// Spawns `cmd` (stdout piped) and waits for its "holding ..." line.
    pub fn start(mut cmd: Command, name: &str) -> Hold {
        let mut child = cmd.stdout(Stdio::piped()).spawn().expect("start cuda-fault hold");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut started = String::new();
        if out.read_line(&mut started).unwrap_or(0) == 0 || !started.starts_with("holding ") {
            let r = finish(child, T);
            panic!("cuda-fault hold did not start: {started}\n{}", r.describe());
        }
        Hold { child: Some(child), out, name: name.to_string(), started: started.trim_end().to_string() }
    }

    /// Its next line of output (empty at the end).
    pub fn next_line(&mut self) -> String {
        let mut line = String::new();
        let _ = self.out.read_line(&mut line);
        line.trim_end().to_string()
    }

    /// The process id (of `podman run` for a container).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits for it to end; its remaining output is the Run's stdout.
    pub fn wait(mut self) -> Run {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut self.out, &mut rest);
        let mut r = finish(self.child.take().expect("waited for once"), T);
        r.stdout = rest;
        r
    }
}

/// A hold left running by a failed test or demo is killed, not left holding its pipes open.
impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A directory laid out as the kubelet mounts a ConfigMap: a timestamped directory holding the
/// values, `..data` pointing at it, and one symlink per key.
pub fn config_map_dir(dir: &Path, entries: &[(&str, &str)]) -> PathBuf {
    let stamp = dir.join("..2026_01_01_00_00_00.000000001");
    std::fs::create_dir_all(&stamp).unwrap();
    for (key, value) in entries {
        std::fs::write(stamp.join(key), value).unwrap();
        std::os::unix::fs::symlink(format!("..data/{key}"), dir.join(key)).unwrap();
    }
    std::os::unix::fs::symlink(stamp.file_name().unwrap(), dir.join("..data")).unwrap();
    dir.to_path_buf()
}
