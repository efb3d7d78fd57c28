//! The seed's recovery story, on one machine, with real containers (podman + runc, no daemon):
//! two "nodes" (two host directories standing for /var/lib/cuda-fault-test on node A and B);
//! every pod start runs the image's init container (`install` into a fresh volume, the
//! emptyDir) and then the worker (read-only, non-root, LD_PRELOAD from the volume, its node's
//! directory at /host-fault); a restart loop with back-off stands in for the kubelet, and the
//! image's own `enable` / `clean` stand in for the node Job of `cuda-fault node N …`.
//!
//! faults on for node A → the worker crashes → restarted on A, it keeps crashing (the marker
//! lives on the node) → A is cordoned → the worker runs on B and completes → the marker on A is
//! cleaned → a new worker on A passes; and a fault turned on while a worker runs on B stops it
//! within moments.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use cuda_fault_tests::containers::{build_worker, Cluster, Podman};
use cuda_fault_tests::{finish, fixture, run_image_build, scratch_dir, shipped, Run};

fn assert_serves(r: &Run, when: &str) {
    assert_eq!(r.status, 0, "{when}:\n{}", r.describe());
    assert_eq!(r.lines(), ["devices 2", "step 0 ok", "step 1 ok", "step 2 ok", "workload ok"], "{when}:\n{}", r.describe());
}

#[test]
fn a_faulty_node_crash_loops_its_worker_until_cordoned_and_recovers_when_cleaned() {
    let scratch = scratch_dir("story");
    // `scratch` (and the podman store inside it) is removed when it goes out of scope.
    let podman = Podman::new(&scratch.join("podman"));
    let archive = scratch.join("cuda-fault.tar");
    let printed = run_image_build("x86_64", &[&archive.display().to_string()], &[]);
    let (built, _) = printed.split_once(' ').expect("build.sh prints IMAGE ARCHIVE");
    podman.ok(&["load", "--input", &archive.display().to_string()]);
    let image = format!("localhost/cuda-fault-story-{}:x86_64", std::process::id());
    podman.ok(&["tag", built, &image]);
    let worker = format!("localhost/cuda-fault-story-worker-{}:latest", std::process::id());
    let workload = fixture("workload");
    // The worker image gets the glibc files the shim needs, never the shim: that comes from the
    // init container's volume.
    build_worker(&podman, &scratch.join("worker"), &worker, &workload, &shipped("x86_64").shim);
    let cluster = Cluster::new(&podman, image, worker, &workload);
    let (node_a, node_b) = (Cluster::node_dir(&scratch, "node-a"), Cluster::node_dir(&scratch, "node-b"));

    // Passthrough: the shim is loaded in every worker, faults off.
    assert_serves(&cluster.pod(&node_a), "passthrough on node A");

    // `cuda-fault node A enable --xid 79`.
    let r = cluster.node_job(&node_a, &["enable", "--xid", "79"]);
    assert!(r.stdout.starts_with("wrote \"1 79\""), "{}", r.describe());

    // The kubelet restarts the crashing worker on A with back-off: it fails every time.
    let mut backoff = Duration::from_millis(50);
    for attempt in 1..=3 {
        let r = cluster.pod(&node_a);
        assert_eq!(r.status, 1, "restart {attempt} on node A:\n{}", r.describe());
        assert!(r.has_line("FAIL cudaGetDeviceCount cudaErrorNoDevice 100"), "{}", r.describe());
        assert!(r.stderr.lines().any(|l| l == "[XID 79 SIM] cudaGetDeviceCount -> cudaErrorNoDevice (100)"), "{}", r.describe());
        std::thread::sleep(backoff);
        backoff *= 2;
    }

    // NVSentinel cordons A; the scheduler places the worker on B, where it serves.
    assert_serves(&cluster.pod(&node_b), "rescheduled on node B");

    // `cuda-fault node A clean`: the marker is gone; a new worker on A passes.
    cluster.node_job(&node_a, &["clean"]);
    assert!(std::fs::read_dir(&node_a).unwrap().next().is_none(), "node A's directory is not empty");
    assert_serves(&cluster.pod(&node_a), "node A after clean");

    // A fault turned on while a worker runs on B: it fails within moments.
    let (volume, args) = cluster.pod_args(&node_b, &["WORKLOAD_FOREVER=1"], &["0", "5"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = podman.command(&args).spawn().expect("start the worker");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("step 5 ok") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the worker on B ended early");
    }
    let job_started = Instant::now();
    cluster.node_job(&node_b, &["enable", "--xid", "48"]);
    let fail = loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the worker on B ended without a failure line");
        if line.starts_with("FAIL ") {
            break line.trim().to_string();
        }
    };
    let reaction = job_started.elapsed();
    let r = finish(child, Duration::from_secs(60));
    eprintln!("worker on B failed {} ms after the node Job started (container start included)", reaction.as_millis());
    assert!(fail.ends_with("cudaErrorECCUncorrectable 214"), "{fail}");
    assert_eq!(r.status, 1, "{}", r.describe());
    assert!(r.stderr.contains("[XID 48 SIM] "), "{}", r.describe());
    // The poll interval is 10 ms; the node Job's own container start dominates. The bound is
    // loose because this is a shared 2-core machine, not a benchmark.
    assert!(reaction < Duration::from_secs(3), "took {reaction:?}");
    podman.ok(&["volume", "rm", &volume]);
    cluster.node_job(&node_b, &["clean"]);
    assert!(std::fs::read_dir(&node_b).unwrap().next().is_none());
}
