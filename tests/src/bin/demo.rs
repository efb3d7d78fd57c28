//! The recovery story on one machine: two "nodes" (two directories standing for
//! /var/lib/cuda-fault-test on node A and node B), a PyTorch-shaped worker on the bundled fake
//! CUDA stack with the shim preloaded, a restart loop with back-off like the kubelet's, and the
//! cuda-fault helper writing the toggle. With podman, buildah and cargo-zigbuild installed it runs
//! real containers from the shipped image (init container, read-only non-root worker, node Job);
//! otherwise (or with --processes) plain processes. Run it with ./demo.sh.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cuda_fault_tests::containers::{build_worker, Cluster, Podman};
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

/// `cuda-fault ARGS --file <node>/cuda_fault_enabled`, echoed like a shell session.
fn cuda_fault(node: &Path, args: &[&str]) {
    let file = node.join("cuda_fault_enabled");
    let mut cmd = Command::new(helper());
    cmd.args(args).arg("--file").arg(&file);
    println!("    $ cuda-fault {} --file {}", args.join(" "), file.display());
    let out = cmd.output().expect("run cuda-fault");
    for l in String::from_utf8_lossy(&out.stdout).lines().chain(String::from_utf8_lossy(&out.stderr).lines()) {
        println!("      {l}");
    }
    assert!(out.status.success(), "cuda-fault {args:?} failed");
}

/// The worker as a pod would run it on `node`: shim preloaded, the node's directory as /host-fault.
fn worker_env(node: &Path) -> Vec<(String, String)> {
    vec![
        ("CUDA_FAULT_TOGGLE_FILE".into(), node.join("cuda_fault_enabled").display().to_string()),
        ("CUDA_FAULT_INJECTION_ENABLED".into(), "0".into()),
        ("CUDA_XID_TYPE".into(), "79".into()),
    ]
}

fn run_worker(node: &Path, label: &str) -> Run {
    let env = worker_env(node);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = run(&fixture("workload"), &["3"], &env, true, Duration::from_secs(30));
    show(label, &r);
    r
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
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

fn show_container(label: &str, r: &Run) {
    show(label, r);
}

/// The story in real containers from the shipped image.
fn containers() {
    let root = scratch_dir("demo-containers");
    // The scratch directory (and the podman store inside it) goes when `root` is dropped.
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
    println!("    images ready in {:.1} s: {built} (helper + shim, FROM scratch) and a worker on the fake CUDA stack", t0.elapsed().as_secs_f64());
    let cluster = Cluster::new(&podman, image, worker, &workload);
    let (a, b) = (Cluster::node_dir(&root, "node-a"), Cluster::node_dir(&root, "node-b"));

    say("1. A pod on node A: init container installs the shim into the emptyDir; the worker serves (faults off)");
    let r = cluster.pod(&a);
    show_container("pod@A", &r);
    assert!(r.success());

    say("2. `cuda-fault node A enable --xid 79`: a node Job from the same image writes A's toggle");
    show_container("job@A", &cluster.node_job(&a, &["enable", "--xid", "79"]));

    say("3. The worker crashes; the kubelet restarts it on node A with back-off; it keeps crashing");
    let mut backoff = Duration::from_millis(100);
    for attempt in 1..=3 {
        let r = cluster.pod(&a);
        show_container(&format!("pod@A try {attempt}"), &r);
        assert_eq!(r.status, 1);
        println!("    restart in {} ms (CrashLoopBackOff)", backoff.as_millis());
        std::thread::sleep(backoff);
        backoff *= 2;
    }

    say("4. NVSentinel cordons node A; the scheduler places the pod on node B, where it serves");
    let r = cluster.pod(&b);
    show_container("pod@B", &r);
    assert!(r.success());

    say("5. `cuda-fault node A clean`: the marker is gone; a new pod on A serves again");
    show_container("job@A", &cluster.node_job(&a, &["clean"]));
    let r = cluster.pod(&a);
    show_container("pod@A", &r);
    assert!(r.success());
    println!("\n\x1b[1mdemo complete\x1b[0m (containers)");
}

/// The story with plain processes.
fn plain_processes() {
    let root = scratch_dir("demo");
    let (node_a, node_b) = (root.join("node-a"), root.join("node-b"));
    std::fs::create_dir_all(&node_a).unwrap();
    std::fs::create_dir_all(&node_b).unwrap();
    println!("cuda-fault demo: the XID recovery story on the bundled fake CUDA stack (no GPU, no cluster)");
    println!("node A = {}\nnode B = {}", node_a.display(), node_b.display());

    say("1. The worker runs on node A with the shim loaded in passthrough (faults off)");
    assert!(run_worker(&node_a, "worker@A").success());

    say("2. Simulate XID 79 (GPU fell off the bus) on node A");
    cuda_fault(&node_a, &["enable", "--xid", "79"]);

    say("3. The worker crashes; the kubelet restarts it on node A with back-off; it keeps crashing");
    let mut backoff = Duration::from_millis(100);
    for attempt in 1..=3 {
        let r = run_worker(&node_a, &format!("worker@A try {attempt}"));
        assert_eq!(r.status, 1, "the worker should fail on node A");
        assert!(r.stderr.contains("[XID 79 SIM]"));
        println!("    restart in {} ms (CrashLoopBackOff)", backoff.as_millis());
        std::thread::sleep(backoff);
        backoff *= 2;
    }

    say("4. NVSentinel cordons node A; the scheduler places the worker on node B, where it serves");
    assert!(run_worker(&node_b, "worker@B").success());

    say("5. A fault that arrives while the worker runs: XID 48 on node B, mid-loop");
    let env = worker_env(&node_b);
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("WORKLOAD_FOREVER", "1"));
    let mut child = spawn(&fixture("workload"), &["0", "20"], &env, true);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    for _ in 0..4 {
        line.clear();
        out.read_line(&mut line).unwrap();
        print!("    [worker@B] {line}");
    }
    cuda_fault(&node_b, &["enable", "--xid", "48"]);
    let t0 = Instant::now();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let r = finish(child, Duration::from_secs(30));
    for l in rest.lines().chain(r.stderr.lines()) {
        println!("    [worker@B] {l}");
    }
    println!("    the worker failed {} ms after the toggle was written", t0.elapsed().as_millis());
    assert_eq!(r.status, 1);

    say("6. Clean up both nodes: the markers are gone and workers pass again");
    cuda_fault(&node_a, &["clean"]);
    cuda_fault(&node_b, &["clean"]);
    assert!(run_worker(&node_a, "worker@A").success());
    assert!(!node_a.join("cuda_fault_enabled").exists() && !node_b.join("cuda_fault_enabled").exists());

    let _ = std::fs::remove_dir_all(&root);
    println!("\n\x1b[1mdemo complete\x1b[0m");
}
