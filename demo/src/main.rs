//! The recovery story on one machine, told with the Kubernetes layer's lifecycle: two "nodes"
//! (two directories standing for /var/lib/cuda-fault-test on node A and node B), a
//! PyTorch-shaped worker on the bundled fake CUDA stack with the shim injected once in
//! passthrough, restarts like the kubelet's, the fault as a hold pod of the fault DaemonSet
//! (`cuda-fault hold`) that a fake Kubernetes API answers when it is stopped, and a node health
//! monitor that reads node A's kernel log (a file standing for /dev/kmsg).
//!
//! It shows both recoveries: XID 31, an application error (the worker fails at a synchronize and
//! a restart in place recovers), and XID 79 with the kernel-log line (the GPU is gone: restarts
//! keep crashing, the monitor cordons the node and the work moves to node B). With podman,
//! buildah and cargo-zigbuild installed it runs real containers from the shipped image;
//! otherwise (or with --processes) plain processes. Run it with ./demo.sh.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use cuda_fault_tests::containers::{build_worker, config_map_dir, Cluster, Hold, Podman};
use cuda_fault_tests::fake_api::{objects, FakeApi};
use cuda_fault_tests::{finish, fixture, monitor, run_image_build, scratch_dir, shipped, spawn, Run};

const STEP_PAUSE: Duration = Duration::from_millis(400);
/// The bus ID the XID 79 fault names for node A's GPU 0 in the kernel log.
const PCI: &str = "0000:3b:00.0";

fn helper() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let h = exe.parent().unwrap().join("cuda-fault");
    assert!(h.exists(), "{} is missing: run ./demo.sh (it builds the helper first)", h.display());
    h
}

fn say(text: &str) {
    println!("\n\x1b[1m==> {text}\x1b[0m");
    std::thread::sleep(STEP_PAUSE);
}

fn show(label: &str, r: &Run) {
    for l in r.stdout.lines().chain(r.stderr.lines()) {
        println!("    [{label}] {l}");
    }
}

fn on_path(tool: &str) -> bool {
    which::which(tool).is_ok()
}

fn main() {
    let processes = std::env::args().any(|a| a == "--processes");
    let root = scratch_dir("demo");
    if !processes && ["podman", "buildah", "runc", "cargo-zigbuild"].iter().all(|t| on_path(t)) {
        println!("cuda-fault demo: both recoveries in real containers (podman + runc; no GPU, no cluster)");
        let podman = Podman::new(&root.join("podman"));
        let cluster = build_images(&root, &podman);
        story(&Containers { cluster, podman: &podman }, &root);
    } else {
        if !processes {
            println!("(podman, buildah, runc or cargo-zigbuild missing: running the story with plain processes)");
        }
        println!("cuda-fault demo: both recoveries on the bundled fake CUDA stack (no GPU, no cluster)");
        story(&Processes, &root);
    }
}

/// What a node can do in this story: run pods (the injected worker) and hold pods.
trait Nodes {
    /// A pod on `node` whose worker runs `args`, started; its stdout is piped. The second value
    /// is what to clean up once it ended.
    fn start_worker(&self, node: &Path, env: &[&str], args: &[&str]) -> (Child, Option<String>);
    /// Cleans up after a worker started by [`Nodes::start_worker`].
    fn worker_ended(&self, leftover: Option<String>);
    /// A hold pod `pod` of the fault DaemonSet on node A, with the fault ConfigMap `config` and
    /// `kmsg` as the node's /dev/kmsg; returns once it holds the file.
    fn hold(&self, node: &Path, pod: &str, config: &Path, kubeconfig: &Path, kmsg: &Path) -> Hold;
    /// Stops a hold pod as the kubelet does (SIGTERM) and waits for it.
    fn stop(&self, hold: Hold) -> Run;
    fn label(&self) -> &'static str;

    /// A pod that runs three steps and exits.
    fn pod(&self, node: &Path, label: &str) -> Run {
        let (child, leftover) = self.start_worker(node, &[], &["3"]);
        let r = finish(child, Duration::from_secs(60));
        self.worker_ended(leftover);
        show(label, &r);
        r
    }
}

struct Containers<'a> {
    cluster: Cluster<'a>,
    podman: &'a Podman,
}

impl Nodes for Containers<'_> {
    fn start_worker(&self, node: &Path, env: &[&str], args: &[&str]) -> (Child, Option<String>) {
        let (volume, args) = self.cluster.pod_args(node, env, args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        (self.podman.command(&args).spawn().expect("start the worker"), Some(volume))
    }

    fn worker_ended(&self, leftover: Option<String>) {
        if let Some(volume) = leftover {
            self.podman.ok(&["volume", "rm", &volume]);
        }
    }

    fn hold(&self, node: &Path, pod: &str, config: &Path, kubeconfig: &Path, kmsg: &Path) -> Hold {
        self.cluster.hold_with(node, "node-a", pod, config, kubeconfig, Some(kmsg))
    }

    fn stop(&self, hold: Hold) -> Run {
        self.cluster.stop(hold)
    }

    fn label(&self) -> &'static str {
        "containers"
    }
}

struct Processes;

impl Nodes for Processes {
    fn start_worker(&self, node: &Path, env: &[&str], args: &[&str]) -> (Child, Option<String>) {
        let toggle = format!("CUDA_FAULT_TOGGLE_FILE={}", node.join("cuda_fault_enabled").display());
        let all: Vec<(&str, &str)> =
            env.iter().copied().chain([toggle.as_str()]).filter_map(|e| e.split_once('=')).collect();
        (spawn(&fixture("workload"), args, &all, true), None)
    }

    fn worker_ended(&self, _: Option<String>) {}

    fn hold(&self, node: &Path, pod: &str, config: &Path, kubeconfig: &Path, kmsg: &Path) -> Hold {
        let mut cmd = Command::new(helper());
        cmd.args(["hold", "--file"]).arg(node.join("cuda_fault_enabled")).arg("--config").arg(config);
        cmd.arg("--kmsg-device").arg(kmsg);
        cmd.env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", pod)
            .env("POD_NAMESPACE", "cuda-fault")
            .env("NODE_NAME", "node-a");
        Hold::start(cmd, pod)
    }

    fn stop(&self, hold: Hold) -> Run {
        let status = Command::new("kill").args(["-TERM", &hold.pid().to_string()]).status().expect("run kill");
        assert!(status.success());
        hold.wait()
    }

    fn label(&self) -> &'static str {
        "processes"
    }
}

/// Builds the shipped image and a worker image on the fake CUDA stack.
fn build_images<'a>(root: &Path, podman: &'a Podman) -> Cluster<'a> {
    say("0. Build the image (manifests/image/build.sh; cached after the first run) and a worker image");
    let t0 = Instant::now();
    let archive = root.join("cuda-fault.tar");
    let printed = run_image_build("x86_64", &[&archive.display().to_string()], &[]);
    let (built, _) = printed.split_once(' ').expect("build.sh prints IMAGE ARCHIVE");
    podman.ok(&["load", "--input", &archive.display().to_string()]);
    let image = format!("localhost/cuda-fault-demo-{}:x86_64", std::process::id());
    podman.ok(&["tag", built, &image]);
    let worker = format!("localhost/cuda-fault-demo-worker-{}:latest", std::process::id());
    let workload = fixture("workload");
    build_worker(podman, &root.join("worker"), &worker, &workload, &shipped("x86_64").shim);
    println!(
        "    images ready in {:.1} s: {built} (helper, generator and shim, FROM scratch) and a worker on the fake CUDA stack",
        t0.elapsed().as_secs_f64()
    );
    Cluster::new(podman, image, worker, &workload)
}

/// Reads a running worker's lines until one starts with `until` (printing them); that line.
fn read_until(out: &mut impl BufRead, label: &str, until: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line).unwrap_or(0) == 0 {
            return String::new();
        }
        print!("    [{label}] {line}");
        if line.starts_with(until) {
            return line.trim_end().to_string();
        }
    }
}

/// The fake API's view of `kubectl apply -k kustomize/xidNN`: the DaemonSet, and node A
/// labelled `cuda-fault/target=true` (node B is not targeted).
fn apply_fault(api: &FakeApi, uid: &str) {
    api.set(objects::DAEMONSET_PATH, &objects::daemonset(uid));
    api.set(&objects::node_path("node-a"), &objects::node("node-a", true));
    api.set(&objects::node_path("node-b"), &objects::node("node-b", false));
}

/// A running worker on `node` that meets the fault as the hold pod `start_hold` starts writes it:
/// prints the worker's lines up to its failure and how long after the write it came. The hold
/// pod, and the worker's failure line.
fn fails_while_running(nodes: &dyn Nodes, node: &Path, start_hold: impl FnOnce() -> Hold) -> (Hold, String) {
    let (mut child, leftover) = nodes.start_worker(node, &["WORKLOAD_FOREVER=1"], &["0", "5"]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    read_until(&mut out, "pod@A", "step 3 ok");
    let hold = start_hold();
    println!("    [hold@A] {}", hold.started);
    let written = Instant::now();
    let fail = read_until(&mut out, "pod@A", "FAIL ");
    println!("    the running worker failed {} ms after the hold pod wrote the fault", written.elapsed().as_millis());
    let r = finish(child, Duration::from_secs(60));
    nodes.worker_ended(leftover);
    show("pod@A", &r);
    assert_eq!(r.status, 1, "the worker should have failed");
    (hold, fail)
}

fn story(nodes: &dyn Nodes, root: &Path) {
    let (a, b) = (Cluster::node_dir(root, "node-a"), Cluster::node_dir(root, "node-b"));
    let api = FakeApi::start();
    let kubeconfig = api.kubeconfig(root);
    let kmsg = root.join("kmsg-node-a");
    std::fs::write(&kmsg, "").unwrap();
    let config = |name: &str, entries: &[(&str, &str)]| {
        std::fs::create_dir_all(root.join(name)).unwrap();
        config_map_dir(&root.join(name), entries)
    };
    let xid31 = config("xid31", &[("xid", "31")]);
    let xid79 = config("xid79", &[("xid", "79"), ("kmsg", "1"), ("pci", PCI)]);
    let hold_on_a = |pod: &str, uid: &str, config: &Path| {
        api.set(&objects::pod_path(pod), &objects::hold_pod(pod, "node-a", uid));
        nodes.hold(&a, pod, config, &kubeconfig, &kmsg)
    };
    println!("node A = {}\nnode B = {}\nnode A's kernel log = {}", a.display(), b.display(), kmsg.display());

    say("1. Injected once, in passthrough: the worker on node A serves (the shim is loaded, faults off)");
    assert!(nodes.pod(&a, "pod@A").success());

    println!("\n\x1b[1mXID 31, an MMU fault: an application error. Restarting the pod in place recovers.\x1b[0m");
    say("2. A worker runs on node A; `kubectl apply -k kustomize/xid31`: its launch check passes, its next synchronize fails");
    apply_fault(&api, "uid-31");
    let (hold, fail) = fails_while_running(nodes, &a, || hold_on_a("cuda-fault-hold-a1", "uid-31", &xid31));
    assert_eq!(fail, "FAIL cudaStreamSynchronize cudaErrorIllegalAddress 700");

    say("3. The kubelet restarts the pod in place on node A: a process started after the fault runs clean, and serves");
    assert!(nodes.pod(&a, "pod@A restarted").success());
    println!("    node monitors treat XID 31 as an application error: node A stays schedulable");

    say("4. `kubectl delete -k kustomize/xid31`: the hold pod removes the marker it wrote");
    api.remove(objects::DAEMONSET_PATH);
    show("hold@A", &nodes.stop(hold));
    assert!(!a.join("cuda_fault_enabled").exists());

    println!("\n\x1b[1mXID 79, the GPU fell off the bus: the node is broken. Cordon it and move the work.\x1b[0m");
    say("5. A worker runs on node A; `kubectl apply -k kustomize/examples/nvsentinel` (XID 79, kmsg=1): the hold pod writes the toggle and the driver's Xid line");
    apply_fault(&api, "uid-79");
    let (hold, fail) = fails_while_running(nodes, &a, || hold_on_a("cuda-fault-hold-a2", "uid-79", &xid79));
    assert!(fail.ends_with(" cudaErrorNoDevice 100"), "{fail}");
    for line in std::fs::read_to_string(&kmsg).unwrap().lines() {
        println!("    [kernel log of A] {line}");
    }

    say("6. The kubelet restarts the pod on node A with back-off; it keeps crashing");
    let mut backoff = Duration::from_millis(100);
    for attempt in 1..=2 {
        let r = nodes.pod(&a, &format!("pod@A try {attempt}"));
        assert_eq!(r.status, 1, "the worker should fail on node A");
        println!("    restart in {} ms (CrashLoopBackOff)", backoff.as_millis());
        std::thread::sleep(backoff);
        backoff *= 2;
    }

    say("7. A node health monitor (NVSentinel's part) reads node A's kernel log, sees the XID and cordons node A");
    let seen = monitor::cordon_on_xid(&kmsg, &api, "node-a").expect("the monitor found no XID in node A's kernel log");
    println!("    [monitor] XID {} on GPU {}: node-a cordoned (spec.unschedulable = true)", seen.xid, seen.pci);
    println!("    the drain evicts the hold pod; the fault resource still targets node A, so the fault stays:");
    show("hold@A", &nodes.stop(hold));
    let mut hold = hold_on_a("cuda-fault-hold-a3", "uid-79", &xid79);
    println!("    [hold@A] {}", hold.started);
    println!("    [hold@A] {}", hold.next_line());

    let target = monitor::schedulable(&api, &["node-a", "node-b"]).expect("a schedulable node");
    say(&format!("8. The scheduler places the pod on {target}, where it serves"));
    assert_eq!(target, "node-b");
    assert!(nodes.pod(&b, "pod@B").success());

    say("9. `kubectl delete -k kustomize/examples/nvsentinel`: the hold pod removes the marker; node A, uncordoned, serves again");
    api.remove(objects::DAEMONSET_PATH);
    show("hold@A", &nodes.stop(hold));
    assert!(!a.join("cuda_fault_enabled").exists());
    api.set(&objects::node_path("node-a"), &objects::node("node-a", false));
    assert!(nodes.pod(&a, "pod@A").success());
    println!("\n\x1b[1mdemo complete\x1b[0m ({})", nodes.label());
}
