//! The recovery story on one machine, told with the Kubernetes layer's lifecycle: two "nodes"
//! (two directories standing for /var/lib/cuda-fault-test on node A and node B), a
//! PyTorch-shaped worker on the bundled fake CUDA stack with the shim injected once in
//! passthrough, a restart loop with back-off like the kubelet's, and the fault as a hold pod of
//! the fault DaemonSet (`cuda-fault hold`) that a fake Kubernetes API answers when it is stopped.
//! With podman, buildah and cargo-zigbuild installed it runs real containers from the shipped
//! image; otherwise (or with --processes) plain processes. Run it with ./demo.sh.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use cuda_fault_tests::containers::{build_worker, config_map_dir, Cluster, Hold, Podman};
use cuda_fault_tests::fake_api::{objects, FakeApi};
use cuda_fault_tests::{finish, fixture, run, run_image_build, scratch_dir, shipped, spawn, Run};

const STEP_PAUSE: Duration = Duration::from_millis(400);

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
    if !processes && ["podman", "buildah", "runc", "cargo-zigbuild"].iter().all(|t| on_path(t)) {
        containers();
    } else {
        if !processes {
            println!("(podman, buildah, runc or cargo-zigbuild missing: running the story with plain processes)");
        }
        plain_processes();
    }
}

/// The fake API's view of `kubectl apply -k kustomize/xid79`: the DaemonSet and the two nodes,
/// labelled cuda-fault/target=true.
fn apply_fault(api: &FakeApi) {
    api.set(objects::DAEMONSET_PATH, &objects::daemonset("uid-1"));
    for node in ["node-a", "node-b"] {
        api.set(&objects::node_path(node), &objects::node(node, true));
    }
}

/// Reads a running worker's lines until `until` (printing them); the last line read.
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

/// The story in real containers from the shipped image.
fn containers() {
    let root = scratch_dir("demo-containers");
    println!("cuda-fault demo: the XID recovery story in real containers (podman + runc; no GPU, no cluster)");
    say("0. Build the image (manifests/image/build.sh; cached after the first run) and a worker image");
    let t0 = Instant::now();
    let archive = root.join("cuda-fault.tar");
    let printed = run_image_build("x86_64", &[&archive.display().to_string()], &[]);
    let (built, _) = printed.split_once(' ').expect("build.sh prints IMAGE ARCHIVE");
    let podman = Podman::new(&root.join("podman"));
    podman.ok(&["load", "--input", &archive.display().to_string()]);
    let image = format!("localhost/cuda-fault-demo-{}:x86_64", std::process::id());
    podman.ok(&["tag", built, &image]);
    let worker = format!("localhost/cuda-fault-demo-worker-{}:latest", std::process::id());
    let workload = fixture("workload");
    build_worker(&podman, &root.join("worker"), &worker, &workload, &shipped("x86_64").shim);
    println!(
        "    images ready in {:.1} s: {built} (helper, generator and shim, FROM scratch) and a worker on the fake CUDA stack",
        t0.elapsed().as_secs_f64()
    );
    let cluster = Cluster::new(&podman, image, worker, &workload);
    let (a, b) = (Cluster::node_dir(&root, "node-a"), Cluster::node_dir(&root, "node-b"));
    let api = FakeApi::start();
    let kubeconfig = api.kubeconfig(&root);
    std::fs::create_dir_all(root.join("fault")).unwrap();
    let config = config_map_dir(&root.join("fault"), &[("xid", "79")]);
    let hold_on_a = |pod: &str| {
        api.set(&objects::pod_path(pod), &objects::hold_pod(pod, "node-a", "uid-1"));
        let h = cluster.hold(&a, "node-a", pod, &config, &kubeconfig);
        println!("    [hold@A] {}", h.started);
        h
    };

    say("1. Injected once, in passthrough: init container installs the shim; the worker on node A serves (faults off)");
    let r = cluster.pod(&a);
    show("pod@A", &r);
    assert!(r.success());

    say("2. A worker runs on node A; `kubectl apply -k kustomize/xid79`: the hold pod on A writes the toggle");
    let (volume, args) = cluster.pod_args(&a, &["WORKLOAD_FOREVER=1"], &["0", "5"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = podman.command(&args).spawn().expect("start the worker");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    read_until(&mut out, "pod@A", "step 5 ok");
    apply_fault(&api);
    let hold1 = hold_on_a("cuda-fault-hold-a1");
    let written = Instant::now();
    read_until(&mut out, "pod@A", "FAIL ");
    println!(
        "    the running worker failed {} ms after the fault was applied, without a restart",
        written.elapsed().as_millis()
    );
    let r = finish(child, Duration::from_secs(60));
    show("pod@A", &r);
    podman.ok(&["volume", "rm", &volume]);

    say("3. The kubelet restarts the worker on node A with back-off; it keeps crashing");
    let mut backoff = Duration::from_millis(100);
    for attempt in 1..=2 {
        let r = cluster.pod(&a);
        show(&format!("pod@A try {attempt}"), &r);
        assert_eq!(r.status, 1);
        println!("    restart in {} ms (CrashLoopBackOff)", backoff.as_millis());
        std::thread::sleep(backoff);
        backoff *= 2;
    }

    say("4. NVSentinel drains node A: the hold pod is evicted, but the fault resource still targets A, so the fault stays");
    show("hold@A", &cluster.stop(hold1));
    let hold2 = hold_on_a("cuda-fault-hold-a2");

    say("5. Node A is cordoned; the scheduler places the worker on node B, where it serves");
    let r = cluster.pod(&b);
    show("pod@B", &r);
    assert!(r.success());

    say("6. `kubectl delete -k kustomize/xid79`: the hold pod removes the marker it wrote; node A serves again");
    api.remove(objects::DAEMONSET_PATH);
    show("hold@A", &cluster.stop(hold2));
    let r = cluster.pod(&a);
    show("pod@A", &r);
    assert!(r.success());
    println!("\n\x1b[1mdemo complete\x1b[0m (containers)");
}

/// The worker as a pod would run it on `node`: shim preloaded, the node's directory as /host-fault.
fn worker_env(node: &Path) -> Vec<(String, String)> {
    vec![("CUDA_FAULT_TOGGLE_FILE".into(), node.join("cuda_fault_enabled").display().to_string())]
}

fn run_worker(node: &Path, label: &str) -> Run {
    let env = worker_env(node);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = run(&fixture("workload"), &["3"], &env, true, Duration::from_secs(30));
    show(label, &r);
    r
}

/// `cuda-fault hold` as a process on `node`, as the hold pod `pod` of the fake API.
fn hold(node: &Path, config: &Path, kubeconfig: &Path, pod: &str) -> Hold {
    let mut cmd = Command::new(helper());
    cmd.args(["hold", "--file"]).arg(node.join("cuda_fault_enabled")).arg("--config").arg(config);
    cmd.env("KUBECONFIG", kubeconfig)
        .env("POD_NAME", pod)
        .env("POD_NAMESPACE", "cuda-fault")
        .env("NODE_NAME", "node-a");
    let h = Hold::start(cmd, pod);
    println!("    [hold@A] {}", h.started);
    h
}

fn sigterm(h: Hold) -> Run {
    let status = Command::new("kill").args(["-TERM", &h.pid().to_string()]).status().expect("run kill");
    assert!(status.success());
    h.wait()
}

fn forever(node: &Path) -> Child {
    let env = worker_env(node);
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("WORKLOAD_FOREVER", "1"));
    spawn(&fixture("workload"), &["0", "20"], &env, true)
}

/// The story with plain processes.
fn plain_processes() {
    let root = scratch_dir("demo");
    let (node_a, node_b) = (root.join("node-a"), root.join("node-b"));
    std::fs::create_dir_all(&node_a).unwrap();
    std::fs::create_dir_all(&node_b).unwrap();
    let api = FakeApi::start();
    let kubeconfig = api.kubeconfig(&root);
    std::fs::create_dir_all(root.join("fault")).unwrap();
    let config = config_map_dir(&root.join("fault"), &[("xid", "79")]);
    println!("cuda-fault demo: the XID recovery story on the bundled fake CUDA stack (no GPU, no cluster)");
    println!("node A = {}\nnode B = {}", node_a.display(), node_b.display());

    say("1. The worker runs on node A with the shim loaded in passthrough (faults off)");
    assert!(run_worker(&node_a, "worker@A").success());

    say("2. A worker runs on node A; the fault is applied: the hold process on A writes the toggle");
    let mut child = forever(&node_a);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    read_until(&mut out, "worker@A", "step 3 ok");
    apply_fault(&api);
    api.set(&objects::pod_path("hold-a1"), &objects::hold_pod("hold-a1", "node-a", "uid-1"));
    let h1 = hold(&node_a, &config, &kubeconfig, "hold-a1");
    let written = Instant::now();
    read_until(&mut out, "worker@A", "FAIL ");
    println!("    the running worker failed {} ms after the fault was applied", written.elapsed().as_millis());
    let r = finish(child, Duration::from_secs(30));
    show("worker@A", &r);
    assert_eq!(r.status, 1);

    say("3. The kubelet restarts the worker on node A with back-off; it keeps crashing");
    let mut backoff = Duration::from_millis(100);
    for attempt in 1..=2 {
        let r = run_worker(&node_a, &format!("worker@A try {attempt}"));
        assert_eq!(r.status, 1, "the worker should fail on node A");
        println!("    restart in {} ms (CrashLoopBackOff)", backoff.as_millis());
        std::thread::sleep(backoff);
        backoff *= 2;
    }

    say("4. The hold process is evicted while the fault resource still targets A: the fault stays; a new one holds it");
    show("hold@A", &sigterm(h1));
    api.set(&objects::pod_path("hold-a2"), &objects::hold_pod("hold-a2", "node-a", "uid-1"));
    let h2 = hold(&node_a, &config, &kubeconfig, "hold-a2");

    say("5. Node A is cordoned; the scheduler places the worker on node B, where it serves");
    assert!(run_worker(&node_b, "worker@B").success());

    say("6. The fault resource is deleted: the hold process removes the marker it wrote; node A serves again");
    api.remove(objects::DAEMONSET_PATH);
    show("hold@A", &sigterm(h2));
    assert!(!node_a.join("cuda_fault_enabled").exists());
    assert!(run_worker(&node_a, "worker@A").success());
    println!("\n\x1b[1mdemo complete\x1b[0m");
}
