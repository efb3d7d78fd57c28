//! The real flow on a real cluster: never part of a normal test run. It runs only when a person
//! asks for it by name, with `--ignored`, and names the node it may fault:
//!
//! ```text
//! kubectl apply -k manifests/rbac/
//! CUDA_FAULT_REAL_CLUSTER_NODE=<node> CUDA_FAULT_IMAGE=<image with /cuda-fault> \
//!   cargo test -p cuda-fault --test real_cluster -- --ignored --nocapture
//! ```
//!
//! It uses the current kubeconfig context, writes only that node's
//! /var/lib/cuda-fault-test/cuda_fault_enabled and removes it at the end. Asked to run without
//! the variable, it fails instead of picking a node.

use std::time::{Duration, Instant};

use assert_cmd::Command;
use predicates::prelude::*;

const BIN: &str = env!("CARGO_BIN_EXE_cuda-fault");

fn cf(args: &[&str]) -> assert_cmd::assert::Assert {
    let mut c = Command::new(BIN);
    c.args(args).timeout(Duration::from_secs(400));
    let a = c.assert();
    let o = a.get_output();
    eprintln!(
        "$ cuda-fault {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    a
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// The node a person named for this run.
fn named_node() -> String {
    match std::env::var("CUDA_FAULT_REAL_CLUSTER_NODE") {
        Ok(n) if !n.is_empty() => n,
        _ => panic!("this test faults a real node: name it with CUDA_FAULT_REAL_CLUSTER_NODE=<node>"),
    }
}

fn jobs_left(node: &str) -> usize {
    runtime().block_on(async {
        use k8s_openapi::api::batch::v1::Job;
        let client = cuda_fault::cluster::connect().await.expect("connect");
        let ns = std::env::var("CUDA_FAULT_TEST_NAMESPACE").unwrap_or_else(|_| "cuda-fault".into());
        let lp = kube::api::ListParams::default().labels(&format!(
            "app.kubernetes.io/managed-by=cuda-fault,cuda-fault/node={}",
            cuda_fault::cluster::node_label_value(node)
        ));
        kube::Api::<Job>::namespaced(client, &ns).list(&lp).await.expect("list jobs").items.len()
    })
}

#[test]
#[ignore = "reaches a live cluster: run with --ignored and CUDA_FAULT_REAL_CLUSTER_NODE=<node>"]
fn real_cluster_enable_status_disable_clean() {
    let node = named_node();
    let ns = std::env::var("CUDA_FAULT_TEST_NAMESPACE").unwrap_or_else(|_| "cuda-fault".into());
    let n = node.as_str();
    let base = ["--namespace", ns.as_str(), "--timeout", "300"];
    let with = |args: &[&'static str]| -> Vec<String> {
        args.iter().map(|s| s.to_string()).chain(base.iter().map(|s| s.to_string())).collect()
    };
    let run = |args: Vec<String>| {
        let mut full = vec!["node".to_string(), n.to_string()];
        full.extend(args);
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        cf(&refs)
    };

    run(with(&["enable", "--xid", "48", "--after", "5s"]))
        .success()
        .stdout(predicate::str::contains("wrote \"1 48 after_ms=5000\" to /host-fault/cuda_fault_enabled"));
    run(with(&["status"]))
        .success()
        .stdout(predicate::str::contains("state:       on").and(predicate::str::contains("XID 48 (GPU_ECC_DBE)")));
    run(with(&["disable"])).success().stdout(predicate::str::contains("wrote \"0\""));
    run(with(&["clean"])).success().stdout(predicate::str::contains("absent: env decides"));
    run(with(&["status"])).success().stdout(predicate::str::contains("absent: env decides"));

    // --all with a selector that matches only the test node.
    let selector = format!("kubernetes.io/hostname={n}");
    cf(&["node", "--all", "--selector", &selector, "clean", "--namespace", &ns, "--timeout", "300"])
        .success()
        .stdout(predicate::str::contains(format!("== node {n} ==")));

    cf(&["node", "cuda-fault-no-such-node", "clean", "--namespace", &ns])
        .code(69)
        .stderr(predicate::str::contains("node cuda-fault-no-such-node not found"));

    let start = Instant::now();
    while jobs_left(n) > 0 {
        assert!(start.elapsed() < Duration::from_secs(60), "cuda-fault left Jobs behind");
        std::thread::sleep(Duration::from_secs(2));
    }
}
