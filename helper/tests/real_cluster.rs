//! The real flow on a real cluster. Ignored unless KUBECONFIG is set when the tests are built:
//!
//! ```text
//! kubectl apply -k manifests/rbac/
//! KUBECONFIG=~/.kube/config CUDA_FAULT_IMAGE=<image with /cuda-fault> \
//!   CUDA_FAULT_TEST_NODE=<node> cargo test -p cuda-fault --test real_cluster -- --nocapture
//! ```
//!
//! It writes only the test node's /var/lib/cuda-fault-test/cuda_fault_enabled and removes it at
//! the end. Without CUDA_FAULT_TEST_NODE it picks the first Ready node.

use std::time::{Duration, Instant};

use assert_cmd::Command;
use predicates::prelude::*;

const BIN: &str = env!("CARGO_BIN_EXE_cuda-fault");

fn cf(args: &[&str]) -> assert_cmd::assert::Assert {
    let mut c = Command::new(BIN);
    c.args(args).timeout(Duration::from_secs(400));
    let a = c.assert();
    let o = a.get_output();
    eprintln!("$ cuda-fault {}\n{}{}", args.join(" "), String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    a
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn pick_node() -> String {
    if let Ok(n) = std::env::var("CUDA_FAULT_TEST_NODE") {
        return n;
    }
    runtime().block_on(async {
        use k8s_openapi::api::core::v1::Node;
        let client = cuda_fault::cluster::connect().await.expect("connect");
        let nodes = kube::Api::<Node>::all(client).list(&Default::default()).await.expect("list nodes");
        nodes
            .items
            .into_iter()
            .find(|n| {
                n.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| {
                    cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                })
            })
            .and_then(|n| n.metadata.name)
            .expect("no Ready node")
    })
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
#[cfg_attr(
    not(cuda_fault_kubeconfig),
    ignore = "set KUBECONFIG (and CUDA_FAULT_IMAGE, CUDA_FAULT_TEST_NODE) to run against a real cluster"
)]
fn real_cluster_enable_status_disable_clean() {
    let node = pick_node();
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
