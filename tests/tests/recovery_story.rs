//! The recovery story on one machine, with real containers (podman + runc, no daemon), told with
//! the lifecycle of the Kubernetes layer: two "nodes" (host directories standing for
//! /var/lib/cuda-fault-test on node A and B); every pod start runs the image's init container
//! (`install` into a fresh volume, the emptyDir) and then the worker, injected once in
//! passthrough (read-only, non-root, LD_PRELOAD from the volume, its node's directory read-only
//! at /host-fault); the fault is a hold pod of the fault DaemonSet (the image's `cuda-fault
//! hold`, uid 0, the node's directory read-write), stopped with SIGTERM as the kubelet does; a
//! fake Kubernetes API server in this process answers what the hold pod asks when it stops.
//!
//! apply the fault on A → the running worker on A fails within a second, without a restart →
//! restarted on A it keeps crashing → the hold pod is evicted (its DaemonSet still there): the
//! fault stays on, and its replacement holds it → A is cordoned, the worker serves on B → the
//! fault resource is deleted: A's marker is gone and A serves again. Then the imperative
//! `cuda-fault node A enable` made after a hold pod's write is never removed by it, and
//! `cuda-fault node A clean` ends the story.
//!
//! The fault as commands: `cuda-fault fault apply --wait` returns once the hold pod's readiness
//! probe (run in its container) passes, which it does only after the toggle file is written; with
//! kmsg the node's kernel log (a file bind-mounted as /dev/kmsg) gets the driver's Xid line, a
//! simulated monitor reads it and cordons A, and the work moves to B; `fault delete --wait`
//! returns once the pod stopped, naming a node whose file someone else rewrote.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cuda_fault_tests::containers::{build_worker, config_map_dir, Cluster, Hold, Podman, HOLD_ARGS, PROBE};
use cuda_fault_tests::fake_api::{objects, FakeApi};
use cuda_fault_tests::{finish, fixture, helper_path, image_archive, monitor, scratch_dir, shipped, Run};
use serde_json::{json, Value};

fn assert_serves(r: &Run, when: &str) {
    assert_eq!(r.status, 0, "{when}:\n{}", r.describe());
    assert_eq!(
        r.lines(),
        ["devices 2", "step 0 ok", "step 1 ok", "step 2 ok", "workload ok"],
        "{when}:\n{}",
        r.describe()
    );
}

fn assert_fails_79(r: &Run, when: &str) {
    assert_eq!(r.status, 1, "{when}:\n{}", r.describe());
    assert!(r.has_line("FAIL cudaGetDeviceCount cudaErrorNoDevice 100"), "{when}:\n{}", r.describe());
    assert!(
        r.stderr.lines().any(|l| l == "[XID 79 SIM] cudaGetDeviceCount -> cudaErrorNoDevice (100)"),
        "{}",
        r.describe()
    );
}

const HOLDING_79: &str = "holding \"1 79\" in /host-fault/cuda_fault_enabled until this pod stops: faults on: XID 79 \
                          (GPU_HAS_FALLEN_OFF_THE_BUS); keys not set here come from the pod's CUDA_FAULT_* variables";

/// What a replacing hold pod says when the node's file already holds its line.
const KEPT: &str = "kept: the file already held this fault (a previous hold pod's), so it was not rewritten: running \
                    processes see no new fault";

/// A replacing hold pod stopped after its DaemonSet was deleted: it had kept the file it found and
/// removes it now.
fn assert_kept_then_removed(r: &Run) {
    assert_eq!(
        r.lines(),
        [
            KEPT,
            "SIGTERM: removed /host-fault/cuda_fault_enabled: the fault resource (DaemonSet cuda-fault/cuda-fault-hold) was \
             deleted"
        ],
        "{}",
        r.describe()
    );
}

/// The fault resource as the fake API shows it: the DaemonSet (this uid) and the two nodes.
fn apply(api: &FakeApi, uid: &str) {
    api.set(objects::DAEMONSET_PATH, &objects::daemonset(uid));
    for node in ["node-a", "node-b"] {
        api.set(&objects::node_path(node), &objects::node(node, true));
    }
}

/// A hold pod of the DaemonSet with `uid` on node A.
fn hold_on_a(
    cluster: &Cluster,
    api: &FakeApi,
    a: &Path,
    pod: &str,
    uid: &str,
    config: &Path,
    kubeconfig: &Path,
) -> Hold {
    api.set(&objects::pod_path(pod), &objects::hold_pod(pod, "node-a", uid));
    let hold = cluster.hold(a, "node-a", pod, config, kubeconfig);
    assert_eq!(hold.started, HOLDING_79);
    hold
}

/// The shipped image and a worker image in `podman`, and the pods that run them.
fn story_cluster<'a>(scratch: &Path, podman: &'a Podman, tag: &str) -> Cluster<'a> {
    let (built, archive) = image_archive();
    podman.ok(&["load", "--input", &archive.display().to_string()]);
    let image = format!("localhost/cuda-fault-{tag}-{}:x86_64", std::process::id());
    podman.ok(&["tag", &built, &image]);
    let worker = format!("localhost/cuda-fault-{tag}-worker-{}:latest", std::process::id());
    let workload = fixture("workload");
    // The worker image gets the glibc files the shim needs, never the shim: that comes from the
    // init container's volume.
    build_worker(podman, &scratch.join("worker"), &worker, &workload, &shipped("x86_64").shim);
    Cluster::new(podman, image, worker, &workload)
}

#[test]
fn the_fault_is_applied_and_deleted_around_running_workers_and_the_story_recovers() {
    let scratch = scratch_dir("story");
    let podman = Podman::new(&scratch.join("podman"));
    let cluster = story_cluster(&scratch, &podman, "story");
    let (a, b) = (Cluster::node_dir(&scratch, "node-a"), Cluster::node_dir(&scratch, "node-b"));
    let marker = a.join("cuda_fault_enabled");
    let api = FakeApi::start();
    let kubeconfig = api.kubeconfig(&scratch);
    std::fs::create_dir_all(scratch.join("fault")).unwrap();
    let config = config_map_dir(&scratch.join("fault"), &[("xid", "79")]);

    // Injected once, in passthrough: the shim is loaded, faults are off.
    assert_serves(&cluster.pod(&a), "passthrough on node A");

    // A worker runs on A; the fault is applied (the hold pod starts): it fails mid-run.
    let (volume, args) = cluster.pod_args(&a, &["WORKLOAD_FOREVER=1"], &["0", "5"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = podman.command(&args).spawn().expect("start the worker");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("step 5 ok") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the worker on A ended early");
    }
    apply(&api, "uid-1");
    let hold1 = hold_on_a(&cluster, &api, &a, "cuda-fault-hold-a1", "uid-1", &config, &kubeconfig);
    let written = Instant::now();
    let fail = loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the worker on A ended without a failure line");
        if line.starts_with("FAIL ") {
            break line.trim().to_string();
        }
    };
    let reaction = written.elapsed();
    let r = finish(child, Duration::from_secs(60));
    eprintln!("the running worker on A failed {} ms after the hold pod wrote the fault", reaction.as_millis());
    assert!(fail.ends_with(" cudaErrorNoDevice 100"), "{fail}");
    assert_eq!(r.status, 1, "{}", r.describe());
    assert!(reaction < Duration::from_secs(1), "took {reaction:?}");
    podman.ok(&["volume", "rm", &volume]);

    // The kubelet restarts the worker on A with back-off: it fails every time.
    let mut backoff = Duration::from_millis(50);
    for attempt in 1..=2 {
        assert_fails_79(&cluster.pod(&a), &format!("restart {attempt} on node A"));
        std::thread::sleep(backoff);
        backoff *= 2;
    }

    // The hold pod is evicted (NVSentinel drains A) while the fault resource exists: the fault
    // stays on, and the replacement pod holds it again.
    let r = cluster.stop(hold1);
    assert_eq!(r.status, 0, "{}", r.describe());
    assert_eq!(
        r.stdout.trim_end(),
        "SIGTERM: kept /host-fault/cuda_fault_enabled: DaemonSet cuda-fault/cuda-fault-hold still targets node node-a, so the \
         fault stays on (this pod was evicted, drained, updated or restarted; its replacement holds the file as it is)"
    );
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "1 79\n");
    assert_fails_79(&cluster.pod(&a), "a restart on A after the eviction");
    let hold2 = hold_on_a(&cluster, &api, &a, "cuda-fault-hold-a2", "uid-1", &config, &kubeconfig);

    // A is cordoned; the scheduler places the worker on B, where it serves.
    assert_serves(&cluster.pod(&b), "rescheduled on node B");

    // `kubectl delete -k kustomize/xid79`: the DaemonSet is gone, its pod stops and removes the
    // marker it wrote; A serves again.
    api.remove(objects::DAEMONSET_PATH);
    assert_kept_then_removed(&cluster.stop(hold2));
    assert!(std::fs::read_dir(&a).unwrap().next().is_none(), "node A's directory is not empty");
    assert_serves(&cluster.pod(&a), "node A after the fault was deleted");
    api.set(&objects::node_path("node-a"), &objects::node("node-a", false)); // uncordoned

    // The fault applied again, then `cuda-fault node A enable --xid 48` by hand: deleting the
    // fault resource leaves that write alone; `cuda-fault node A clean` removes it.
    apply(&api, "uid-2");
    let hold3 = hold_on_a(&cluster, &api, &a, "cuda-fault-hold-a3", "uid-2", &config, &kubeconfig);
    let r = cluster.node_job(&a, &["enable", "--xid", "48"]);
    assert!(r.stdout.starts_with("wrote \"1 48\""), "{}", r.describe());
    api.remove(objects::DAEMONSET_PATH);
    let r = cluster.stop(hold3);
    assert!(
        r.stdout.starts_with("SIGTERM: kept /host-fault/cuda_fault_enabled: it was rewritten since this pod wrote it"),
        "{}",
        r.describe()
    );
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "1 48\n");
    cluster.node_job(&a, &["clean"]);
    assert!(std::fs::read_dir(&a).unwrap().next().is_none(), "node A's directory is not empty");
    assert_serves(&cluster.pod(&a), "node A after clean");

    // Each stop asked the API about the pod, its DaemonSet and (while it existed) the node.
    let asked = api.requests();
    for path in
        [objects::pod_path("cuda-fault-hold-a2"), objects::DAEMONSET_PATH.to_string(), objects::node_path("node-a")]
    {
        assert!(asked.contains(&format!("GET {path}")), "{path} never asked: {asked:?}");
    }
}

/// Reads a running worker's stdout until a line starting with `prefix`; that line.
fn read_until(out: &mut impl BufRead, prefix: &str, who: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "{who} ended before printing {prefix:?}");
        if line.starts_with(prefix) {
            return line.trim_end().to_string();
        }
    }
}

/// The other recovery: an application-level XID (31, an MMU fault: `async`, `process` in the
/// table). The running worker's launches still succeed and the error surfaces at its next
/// synchronize; the kubelet restarts it in place on the same node, where it serves, because a
/// process started after the fault met it runs clean. The hold pod evicted and replaced keeps the
/// file as it is, so the restarted worker is not faulted again; deleting the fault removes it.
#[test]
fn an_application_xid_fails_at_the_sync_and_a_restart_in_place_recovers() {
    let scratch = scratch_dir("story-31");
    let podman = Podman::new(&scratch.join("podman"));
    let cluster = story_cluster(&scratch, &podman, "story31");
    let a = Cluster::node_dir(&scratch, "node-a");
    let marker = a.join("cuda_fault_enabled");
    let api = FakeApi::start();
    let kubeconfig = api.kubeconfig(&scratch);
    std::fs::create_dir_all(scratch.join("fault")).unwrap();
    let config = config_map_dir(&scratch.join("fault"), &[("xid", "31")]);
    let hold_on_a = |pod: &str| {
        api.set(&objects::pod_path(pod), &objects::hold_pod(pod, "node-a", "uid-31"));
        let hold = cluster.hold(&a, "node-a", pod, &config, &kubeconfig);
        assert!(hold.started.starts_with("holding \"1 31\" in /host-fault/cuda_fault_enabled"), "{}", hold.started);
        hold
    };

    // A worker runs on A; `kubectl apply -k kustomize/xid31`: its launch check passes, its next
    // synchronize fails with the MMU fault's error, and it exits.
    let (volume, args) = cluster.pod_args(&a, &["WORKLOAD_FOREVER=1"], &["0", "5"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = podman.command(&args).spawn().expect("start the worker");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    read_until(&mut out, "step 3 ok", "the worker on A");
    apply(&api, "uid-31");
    let hold1 = hold_on_a("cuda-fault-hold-a1");
    let fail = read_until(&mut out, "FAIL ", "the worker on A");
    let r = finish(child, Duration::from_secs(60));
    assert_eq!(fail, "FAIL cudaStreamSynchronize cudaErrorIllegalAddress 700", "{}", r.describe());
    assert_eq!(r.status, 1, "{}", r.describe());
    assert!(
        r.stderr.lines().any(|l| l == "[XID 31 SIM] cudaStreamSynchronize -> cudaErrorIllegalAddress (700)"),
        "{}",
        r.describe()
    );
    podman.ok(&["volume", "rm", &volume]);

    // The kubelet restarts it in place: on the same node, with the fault still on, it serves.
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "1 31\n");
    assert_serves(&cluster.pod(&a), "restarted in place on node A, the fault still on");

    // A worker runs while the hold pod is evicted and replaced (the DaemonSet is still there):
    // the replacement keeps the file, so the worker never sees a new fault.
    // 2000 steps of 5 ms: it outlasts the swap of hold pods, checked below.
    let (volume, args) = cluster.pod_args(&a, &[], &["2000", "5"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = podman.command(&args).spawn().expect("start the worker");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    read_until(&mut out, "step 3 ok", "the restarted worker on A");
    let r = cluster.stop(hold1);
    assert!(r.stdout.starts_with("SIGTERM: kept /host-fault/cuda_fault_enabled: DaemonSet"), "{}", r.describe());
    let before = std::fs::metadata(&marker).unwrap();
    let hold2 = hold_on_a("cuda-fault-hold-a2");
    let after = std::fs::metadata(&marker).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((after.ino(), after.mtime_nsec()), (before.ino(), before.mtime_nsec()), "the file was rewritten");
    assert!(child.try_wait().unwrap().is_none(), "the worker ended before the replacement hold pod started");
    let rest = read_until(&mut out, "workload ok", "the restarted worker on A");
    let r = finish(child, Duration::from_secs(60));
    assert_eq!((rest.as_str(), r.status), ("workload ok", 0), "{}", r.describe());
    podman.ok(&["volume", "rm", &volume]);

    // `kubectl delete -k kustomize/xid31`: the replacement removes the file it adopted.
    api.remove(objects::DAEMONSET_PATH);
    assert_kept_then_removed(&cluster.stop(hold2));
    assert!(std::fs::read_dir(&a).unwrap().next().is_none(), "node A's directory is not empty");
}

/// `cuda-fault hold` as a plain process (the helper build.rs builds), stopped with SIGTERM.
fn hold_process(file: &Path, config: &Path, env: &[(&str, &str)]) -> Hold {
    let mut cmd = Command::new(helper_path());
    cmd.args(["hold", "--file"]).arg(file).arg("--config").arg(config).env_clear().envs(env.iter().copied());
    Hold::start(cmd, "hold")
}

fn sigterm(hold: Hold) -> Run {
    let status = Command::new("kill").args(["-TERM", &hold.pid().to_string()]).status().expect("run kill");
    assert!(status.success());
    hold.wait()
}

#[test]
fn a_hold_process_asks_the_api_on_sigterm_and_keeps_the_fault_without_an_answer() {
    let scratch = scratch_dir("hold");
    let api = FakeApi::start();
    let kubeconfig = api.kubeconfig(&scratch);
    let kubeconfig = kubeconfig.to_str().unwrap();
    std::fs::create_dir_all(scratch.join("fault")).unwrap();
    let config = config_map_dir(&scratch.join("fault"), &[("xid", "48"), ("devices", "1")]);
    let file = scratch.join("node/cuda_fault_enabled");
    let pod_env =
        [("KUBECONFIG", kubeconfig), ("POD_NAME", "h1"), ("POD_NAMESPACE", "cuda-fault"), ("NODE_NAME", "node-a")];
    api.set(&objects::pod_path("h1"), &objects::hold_pod("h1", "node-a", "u1"));
    api.set(&objects::node_path("node-a"), &objects::node("node-a", true));
    api.set(objects::DAEMONSET_PATH, &objects::daemonset("u1"));

    // Still targeted: kept.
    let h = hold_process(&file, &config, &pod_env);
    assert!(h.started.starts_with("holding \"1 48 devices=1\" in "), "{}", h.started);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "1 48 devices=1\n");
    let r = sigterm(h);
    assert_eq!(r.status, 0, "{}", r.describe());
    assert!(r.stdout.starts_with("SIGTERM: kept "), "{}", r.describe());
    assert!(file.exists());

    // The node no longer labelled for the fault: removed.
    api.set(&objects::node_path("node-a"), &objects::node("node-a", false));
    let r = sigterm(hold_process(&file, &config, &pod_env));
    assert!(
        r.stdout.ends_with("DaemonSet cuda-fault/cuda-fault-hold no longer selects node node-a\n"),
        "{}",
        r.describe()
    );
    assert!(!file.exists());

    // No API to ask (its server gone, or not run from the DaemonSet): kept, with the way out.
    std::fs::create_dir_all(scratch.join("dead")).unwrap();
    let dead = FakeApi::start().kubeconfig(&scratch.join("dead"));
    let dead = dead.to_str().unwrap();
    let r = sigterm(hold_process(
        &file,
        &config,
        &[("KUBECONFIG", dead), ("POD_NAME", "h1"), ("POD_NAMESPACE", "cuda-fault"), ("NODE_NAME", "node-a")],
    ));
    assert!(r.stdout.starts_with("SIGTERM: kept "), "{}", r.describe());
    assert!(
        r.stdout.contains(
            "cannot ask the Kubernetes API (cannot reach the Kubernetes API server (get pods in namespace cuda-fault)"
        ),
        "{}",
        r.describe()
    );
    assert!(r.stdout.trim_end().ends_with("clean the node by hand: cuda-fault node node-a clean"), "{}", r.describe());
    assert!(file.exists());
    let r = sigterm(hold_process(&file, &config, &[]));
    assert!(r.stdout.contains("POD_NAME and POD_NAMESPACE are not set"), "{}", r.describe());

    // A configuration the shim would not accept: exit 2, one line, nothing written.
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir_all(scratch.join("bad")).unwrap();
    let bad = config_map_dir(&scratch.join("bad"), &[("xid", "79"), ("mode", "slow")]);
    let out =
        Command::new(helper_path()).args(["hold", "--file"]).arg(&file).arg("--config").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with(&format!("cuda-fault: --config {}: mode", bad.display())), "{err}");
    assert!(!file.exists());
}

/// The hold container runs as kustomize/fault/daemonset.yaml says, and is probed as it says.
#[test]
fn the_hold_container_runs_and_is_probed_as_the_daemonset_says() {
    let yaml = include_str!("../../kustomize/fault/daemonset.yaml");
    let flat: String = yaml.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains(&format!("args: [{}]", HOLD_ARGS.join(", "))),
        "kustomize/fault/daemonset.yaml's args changed"
    );
    let probe = PROBE.join(", ");
    assert!(flat.contains(&format!("command: [{probe}]")), "kustomize/fault/daemonset.yaml's readiness probe changed");
}

const DS: &str = objects::DAEMONSET_PATH;
const PODS: &str = "/api/v1/namespaces/cuda-fault/pods";

/// Polls `f` until it gives a value (at most two minutes): waiting for a marker, not a time.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `cuda-fault ARGS` against the fake API server, running.
fn cli(kubeconfig: &Path, args: &[&str]) -> Child {
    Command::new(helper_path())
        .args(args)
        .env_clear()
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cuda-fault")
}

/// The DaemonSet controller and the kubelet, played by the test.
struct Controller<'a> {
    cluster: &'a Cluster<'a>,
    api: &'a FakeApi,
    kubeconfig: &'a Path,
    /// Node A's directory.
    node: &'a Path,
    /// Where the ConfigMaps' volumes are made.
    scratch: &'a Path,
}

/// Once `fault apply` has applied the DaemonSet, start its hold pod on node A with the ConfigMap
/// it names (and `kmsg` as the node's /dev/kmsg).
fn start_hold_pod(c: &Controller, applying: &mut Child, pod: &str, kmsg: &Path) -> Hold {
    let (cluster, api, kubeconfig, a) = (c.cluster, c.api, c.kubeconfig, c.node);
    let dir = c.scratch.join(pod);
    let ds = wait_for("the applied DaemonSet", || {
        if let Some(status) = applying.try_wait().unwrap() {
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(applying.stderr.as_mut().unwrap(), &mut err);
            panic!("cuda-fault fault apply ended ({status}) before applying: {err}\nrequests: {:?}", api.requests());
        }
        api.get(DS)
    });
    let ds: Value = serde_json::from_str(&ds).unwrap();
    let volumes = ds["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
    let cm_name =
        volumes.iter().find(|v| v["name"] == "fault").unwrap()["configMap"]["name"].as_str().unwrap().to_string();
    let cm: Value =
        serde_json::from_str(&api.get(&format!("/api/v1/namespaces/cuda-fault/configmaps/{cm_name}")).unwrap())
            .unwrap();
    let entries: Vec<(String, String)> =
        cm["data"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect();
    let entries: Vec<(&str, &str)> = entries.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    std::fs::create_dir_all(&dir).unwrap();
    let config = config_map_dir(&dir, &entries);
    assert_eq!(
        ds["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchFields"][0]["values"],
        json!(["node-a"])
    );
    let uid = ds["metadata"]["uid"].as_str().unwrap();
    api.set(&objects::pod_path(pod), &objects::hold_pod(pod, "node-a", uid));
    cluster.hold_with(a, "node-a", pod, &config, kubeconfig, Some(kmsg))
}

/// The controller's view once the kubelet saw the pod Ready: the DaemonSet's status, its pods.
fn report_ready(api: &FakeApi, pod: &str) {
    let mut ds: Value = serde_json::from_str(&api.get(DS).unwrap()).unwrap();
    ds["status"] = json!({"observedGeneration": ds["metadata"]["generation"], "desiredNumberScheduled": 1, "updatedNumberScheduled": 1,
                          "numberAvailable": 1, "numberReady": 1, "currentNumberScheduled": 1, "numberMisscheduled": 0});
    api.set(DS, &ds.to_string());
    let p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "namespace": "cuda-fault", "labels": {"app.kubernetes.io/name": "cuda-fault-hold"}},
                   "spec": {"nodeName": "node-a", "containers": [{"name": "hold"}]},
                   "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
    api.set(PODS, &json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [p]}).to_string());
}

fn json_of(r: &Run) -> Value {
    assert_eq!(r.status, 0, "{}", r.describe());
    assert_eq!(r.stdout.lines().count(), 1, "{}", r.describe());
    serde_json::from_str(&r.stdout).unwrap()
}

/// `fault apply --wait` returns once the hold pod on the node is Ready, which its readiness probe
/// (the image's helper, run in the container) says only after the toggle file is written; with
/// kmsg the node's kernel log (a file standing for /dev/kmsg) gets the driver's line, and when
/// the device cannot be written the pod says so in one line and holds the toggle fault anyway.
/// `fault delete --wait` returns once the pod has stopped, and names the node whose file was
/// rewritten by someone else (which the probe also reported: not ready).
#[test]
fn fault_commands_follow_the_hold_pods_readiness_and_the_kernel_log_xid_in_containers() {
    let scratch = scratch_dir("fault-cmds");
    let podman = Podman::new(&scratch.join("podman"));
    let cluster = story_cluster(&scratch, &podman, "fault-cmds");
    let (a, b) = (Cluster::node_dir(&scratch, "node-a"), Cluster::node_dir(&scratch, "node-b"));
    let marker = a.join("cuda_fault_enabled");
    let api = FakeApi::start();
    let kubeconfig = api.kubeconfig(&scratch);
    api.set(&objects::node_path("node-a"), &objects::node("node-a", false));
    let ctl = Controller { cluster: &cluster, api: &api, kubeconfig: &kubeconfig, node: &a, scratch: &scratch };
    let apply_args = [
        "fault",
        "apply",
        "--xid",
        "79",
        "--node",
        "node-a",
        "--kmsg",
        "--pci",
        "0000:3b:00.0",
        "--wait",
        "--timeout",
        "120",
        "--json",
    ];
    use std::os::unix::fs::PermissionsExt;

    // 1. The fault with the kernel-log XID; the node's /dev/kmsg a writable file.
    let kmsg = scratch.join("kmsg-node-a");
    std::fs::write(&kmsg, "").unwrap();
    std::fs::set_permissions(&kmsg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut applying = cli(&kubeconfig, &apply_args);
    let hold = start_hold_pod(&ctl, &mut applying, "cuda-fault-hold-a1", &kmsg);
    let ready = wait_for("the hold pod's readiness probe to pass", || {
        Some(cluster.probe("cuda-fault-hold-a1")).filter(|r| r.status == 0)
    });
    assert_eq!(ready.stdout.trim_end(), "ready: /host-fault/cuda_fault_enabled holds \"1 79\"");
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "1 79\n", "Ready only once the toggle file is written");
    assert_eq!(
        std::fs::read(&kmsg).unwrap(),
        b"<3>cuda-fault: NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.\n"
    );
    report_ready(&api, "cuda-fault-hold-a1");
    let status = json_of(&finish(applying, Duration::from_secs(60)));
    assert_eq!(
        status,
        json!({"present": true, "namespace": "cuda-fault", "xid": 79, "line": "1 79", "nodes": ["node-a"], "selector": null,
               "kmsg": true, "desired": 1, "ready": 1,
               "pods": [{"node": "node-a", "pod": "cuda-fault-hold-a1", "ready": true, "phase": "Running", "reason": null}],
               "configmap": status["configmap"].clone()})
    );
    // The node-level half: a monitor reads A's kernel log as journald hands it over, sees the XID
    // and cordons A; the scheduler places new work on B, where it serves, while A's workers fail.
    let seen = monitor::cordon_on_xid(&kmsg, &api, "node-a");
    assert_eq!(seen, Some(monitor::KernelXid { pci: "0000:3b:00".into(), xid: 79 }));
    api.set(&objects::node_path("node-b"), &objects::node("node-b", false));
    assert_eq!(monitor::schedulable(&api, &["node-a", "node-b"]), Some("node-b"));
    assert_fails_79(&cluster.pod(&a), "node A with the fault");
    assert_serves(&cluster.pod(&b), "node B, where the work moved");

    // 2. Deleted: the hold pod (stopped as the kubelet stops it) removes its file and records so.
    let deleting = cli(&kubeconfig, &["fault", "delete", "--wait", "--json"]);
    wait_for("the DaemonSet's deletion", || api.get(DS).is_none().then_some(()));
    let r = cluster.stop(hold);
    assert_eq!(
        r.lines(),
        [
            "kmsg: logged XID 79 for 1 GPU(s) (0000:3b:00) in /dev/kmsg: NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', \
             name=<unknown>, GPU has fallen off the bus.",
            "SIGTERM: removed /host-fault/cuda_fault_enabled: the fault resource (DaemonSet cuda-fault/cuda-fault-hold) was deleted"
        ],
        "{}",
        r.describe()
    );
    api.set(PODS, r#"{"apiVersion":"v1","kind":"PodList","metadata":{},"items":[]}"#);
    assert_eq!(json_of(&finish(deleting, Duration::from_secs(60))), json!({"deleted": true, "remaining": []}));
    assert!(std::fs::read_dir(&a).unwrap().next().is_none(), "node A's directory is not empty");
    assert!(api
        .get(&format!("/api/v1/namespaces/cuda-fault/configmaps/{}", status["configmap"].as_str().unwrap()))
        .is_none());
    assert_serves(&cluster.pod(&a), "node A after the fault was deleted");

    // 3. Again, with a /dev/kmsg the pod cannot write: one line, and the toggle fault holds.
    let read_only = scratch.join("kmsg-read-only");
    std::fs::write(&read_only, "").unwrap();
    std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o444)).unwrap();
    let mut applying = cli(&kubeconfig, &apply_args);
    let hold = start_hold_pod(&ctl, &mut applying, "cuda-fault-hold-a2", &read_only);
    wait_for("the hold pod's readiness probe to pass", || {
        Some(cluster.probe("cuda-fault-hold-a2")).filter(|r| r.status == 0)
    });
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "1 79\n");
    assert_eq!(std::fs::read(&read_only).unwrap(), b"");
    report_ready(&api, "cuda-fault-hold-a2");
    json_of(&finish(applying, Duration::from_secs(60)));
    assert_fails_79(&cluster.pod(&a), "node A with the fault, kmsg refused");

    // 4. `cuda-fault node A enable --xid 48` by hand: the pod is no longer Ready (the fault on the
    // node is not the resource's), and deleting the resource leaves that write and says so.
    cluster.node_job(&a, &["enable", "--xid", "48"]);
    let r = cluster.probe("cuda-fault-hold-a2");
    assert_eq!(r.status, 1, "{}", r.describe());
    assert!(
        r.stderr.contains("not ready: /host-fault/cuda_fault_enabled is no longer the file this pod wrote (\"1 79\")"),
        "{}",
        r.describe()
    );
    let deleting = cli(&kubeconfig, &["fault", "delete", "--wait", "--json"]);
    wait_for("the DaemonSet's deletion", || api.get(DS).is_none().then_some(()));
    let r = cluster.stop(hold);
    let refusal: Vec<&str> = r.stderr.lines().filter(|l| l.starts_with("cuda-fault: kmsg: ")).collect();
    assert_eq!(refusal.len(), 1, "{}", r.describe());
    assert!(
        refusal[0]
            .starts_with("cuda-fault: kmsg: no kernel-log line written: cannot open /dev/kmsg: permission denied")
            && refusal[0].ends_with("; the toggle fault is applied"),
        "{}",
        refusal[0]
    );
    assert!(
        r.stdout.starts_with("SIGTERM: kept /host-fault/cuda_fault_enabled: it was rewritten since this pod wrote it"),
        "{}",
        r.describe()
    );
    api.set(PODS, r#"{"apiVersion":"v1","kind":"PodList","metadata":{},"items":[]}"#);
    let deleted = json_of(&finish(deleting, Duration::from_secs(60)));
    assert_eq!(deleted["deleted"], true);
    let remaining = deleted["remaining"].as_array().unwrap();
    assert_eq!(
        (remaining.len(), &remaining[0]["node"], &remaining[0]["pod"]),
        (1, &json!("node-a"), &json!("cuda-fault-hold-a2"))
    );
    assert!(remaining[0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("kept /host-fault/cuda_fault_enabled: it was rewritten since this pod wrote it"));
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "1 48\n");
    cluster.node_job(&a, &["clean"]);
    assert!(std::fs::read_dir(&a).unwrap().next().is_none(), "node A's directory is not empty");
}

/// The Python API's `cuda_fault.cluster.Fault` in the container story: `__enter__` returns the
/// fault's status once the hold pod's readiness probe (run in its container) passed, and
/// `__exit__` returns once the pod stopped and removed the file. The time from `__enter__` to
/// Ready is printed (README's figure).
#[test]
fn the_python_fault_context_manager_waits_for_ready_and_for_the_removal() {
    use std::io::Write;
    let scratch = scratch_dir("python-fault");
    let podman = Podman::new(&scratch.join("podman"));
    let cluster = story_cluster(&scratch, &podman, "pyfault");
    let a = Cluster::node_dir(&scratch, "node-a");
    let marker = a.join("cuda_fault_enabled");
    let api = FakeApi::start();
    let kubeconfig = api.kubeconfig(&scratch);
    api.set(&objects::node_path("node-a"), &objects::node("node-a", false));
    let ctl = Controller { cluster: &cluster, api: &api, kubeconfig: &kubeconfig, node: &a, scratch: &scratch };
    let kmsg = scratch.join("kmsg-node-a");
    std::fs::write(&kmsg, "").unwrap();
    let script = r#"
import json, sys, time
from cuda_fault.cluster import Fault
t0 = time.monotonic()
with Fault(79, nodes=["node-a"], kubeconfig=sys.argv[1], wait_timeout=120) as status:
    print(json.dumps({"ms": (time.monotonic() - t0) * 1000, "in_effect": status.in_effect,
                      "line": status.line, "pods": [[p.node, p.pod, p.ready] for p in status.pods]}), flush=True)
    sys.stdin.readline()
print("exited", flush=True)
"#;
    let root = cuda_fault_tests::workspace_root();
    let mut python = Command::new("python3")
        .args(["-c", script])
        .arg(&kubeconfig)
        .env("PYTHONPATH", root.join("python"))
        .env("CUDA_FAULT_BINARY", helper_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python3");
    let hold = start_hold_pod(&ctl, &mut python, "cuda-fault-hold-py", &kmsg);
    wait_for("the hold pod's readiness probe to pass", || {
        Some(cluster.probe("cuda-fault-hold-py")).filter(|r| r.status == 0)
    });
    report_ready(&api, "cuda-fault-hold-py");
    let mut out = BufReader::new(python.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let entered: Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    assert_eq!(
        (&entered["in_effect"], &entered["line"], &entered["pods"]),
        (&json!(true), &json!("1 79"), &json!([["node-a", "cuda-fault-hold-py", true]]))
    );
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "1 79\n");
    eprintln!(
        "Fault.__enter__ returned {:.0} ms after it was called: every hold pod Ready",
        entered["ms"].as_f64().unwrap()
    );

    // Leaving the block deletes the fault and waits for the hold pod to stop.
    python.stdin.as_mut().unwrap().write_all(b"\n").unwrap();
    wait_for("the DaemonSet's deletion", || api.get(DS).is_none().then_some(()));
    let r = cluster.stop(hold);
    assert!(r.stdout.starts_with("SIGTERM: removed /host-fault/cuda_fault_enabled"), "{}", r.describe());
    api.set(PODS, r#"{"apiVersion":"v1","kind":"PodList","metadata":{},"items":[]}"#);
    python.stdout = Some(out.into_inner());
    let r = finish(python, Duration::from_secs(60));
    assert_eq!((r.status, r.stdout.trim()), (0, "exited"), "{}", r.describe());
    assert!(!marker.exists());
}
