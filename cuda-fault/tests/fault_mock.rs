//! `cuda-fault fault apply|status|delete` against kube's mock API (tower-test): the exact calls,
//! the server-side apply bodies (those of `kustomize/`, compared with kubectl in
//! `fault_manifests.rs`), `--wait` following the DaemonSet's rollout, the refusals, and what
//! `delete --wait` reads from the Events the hold pods recorded. Every request is checked against
//! the declared RBAC.

use std::time::Duration;

use clap::Parser;
use cuda_fault::cluster::fault_manifests::{self, FaultSpec, Targets};
use cuda_fault::cluster::RBAC;
use cuda_fault::{run_fault, Cli, Command, FaultPlan};
use serde_json::{json, Value};

mod support;
use support::*;

const DS: &str = "/apis/apps/v1/namespaces/cuda-fault/daemonsets/cuda-fault-hold";
const CMS: &str = "/api/v1/namespaces/cuda-fault/configmaps";
const PODS: &str = "/api/v1/namespaces/cuda-fault/pods";
const EVENTS: &str = "/api/v1/namespaces/cuda-fault/events";
const CM79: &str = "cuda-fault-fault-557kf466gt";

fn plan(args: &[&str]) -> FaultPlan {
    let mut all = vec!["cuda-fault", "fault"];
    all.extend(args);
    let Command::Fault(f) = Cli::try_parse_from(all).unwrap().command else { unreachable!() };
    let mut p = f.plan().unwrap();
    if let FaultPlan::Apply { wait: Some(w), .. } | FaultPlan::Delete { wait: Some(w), .. } = &mut p {
        w.poll = Duration::from_millis(5);
    }
    p
}

/// Runs `plan` against `serve`: (exit code, stdout, stderr).
async fn run<F, Fut>(plan: FaultPlan, serve: F) -> (u8, String, String)
where
    F: FnOnce(Server) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    with_server(
        RBAC,
        NS,
        |client| async move {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let code = match run_fault(&client, &plan, &mut out, &mut err).await {
                Ok(()) => 0,
                Err(f) => {
                    err.extend_from_slice(format!("cuda-fault: {}\n", f.message).as_bytes());
                    f.code
                }
            };
            (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
        },
        serve,
    )
    .await
}

fn not_found(c: Call, what: &str) {
    c.status(404, "NotFound", &format!("{what} not found"));
}

/// The DaemonSet as the API server returns it after `fault apply`: the applied body, a
/// generation, the field manager, and `status`.
fn served(applied: &Value, generation: i64, status: Value) -> Value {
    let mut ds = applied.clone();
    ds["metadata"]["generation"] = json!(generation);
    ds["metadata"]["uid"] = json!("uid-1");
    ds["metadata"]["managedFields"] = json!([{"manager": "cuda-fault", "operation": "Apply", "apiVersion": "apps/v1"}]);
    ds["status"] = status;
    ds
}

fn ds_status(observed: i64, desired: i64, updated: i64, available: i64) -> Value {
    json!({"observedGeneration": observed, "desiredNumberScheduled": desired, "updatedNumberScheduled": updated,
           "numberAvailable": available, "numberReady": available, "currentNumberScheduled": desired, "numberMisscheduled": 0})
}

fn hold(name: &str, node: &str, phase: &str, ready: bool, extra: Value) -> Value {
    let mut status =
        json!({"phase": phase, "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            status[k] = v;
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS,
           "labels": {"app.kubernetes.io/name": "cuda-fault-hold"}}, "spec": {"nodeName": node, "containers": [{"name": "hold"}]},
           "status": status})
}

fn spec79(nodes: &[&str]) -> FaultSpec {
    FaultSpec {
        namespace: NS.into(),
        image: cuda_fault::layout::DEFAULT_IMAGE.into(),
        xid: 79,
        keys: Default::default(),
        kmsg: false,
        pci: None,
        targets: Targets::Nodes(nodes.iter().map(|s| s.to_string()).collect()),
    }
}

fn assert_applied(c: &Call) {
    assert_eq!(c.content_type, "application/apply-patch+yaml");
    assert!(c.uri.contains("fieldManager=cuda-fault") && c.uri.contains("force=true"), "{}", c.uri);
}

#[tokio::test]
async fn apply_wait_applies_the_kustomize_objects_and_returns_once_every_node_is_ready() {
    let want = fault_manifests::build(&spec79(&["gpu-1"]));
    let (w_cm, w_ds) = (want.configmap.clone(), want.daemonset.clone());
    let (code, out, err) =
        run(plan(&["apply", "--xid", "79", "--node", "gpu-1", "--wait", "--json"]), |mut s| async move {
            s.expect("GET", "/api/v1/nodes/gpu-1").await.json(200, node_json("gpu-1", false, true));
            not_found(s.expect("GET", DS).await, "daemonsets.apps \"cuda-fault-hold\"");
            let c = s.expect_path("PATCH", &format!("{CMS}/{CM79}")).await;
            assert_applied(&c);
            assert_eq!(c.body, w_cm);
            let body = c.body.clone();
            c.json(201, body);
            let c = s.expect_path("PATCH", DS).await;
            assert_applied(&c);
            assert_eq!(c.body, w_ds);
            let applied = c.body.clone();
            c.json(201, served(&applied, 1, json!({})));
            // The controller has not seen it yet; then its pod is scheduled, not ready; then ready.
            s.expect("GET", DS).await.json(200, served(&applied, 1, ds_status(0, 0, 0, 0)));
            s.expect("GET", DS).await.json(200, served(&applied, 1, ds_status(1, 1, 1, 0)));
            s.expect("GET", DS).await.json(200, served(&applied, 1, ds_status(1, 1, 1, 1)));
            // The status printed: the DaemonSet, its ConfigMap and its pods.
            s.expect("GET", DS).await.json(200, served(&applied, 1, ds_status(1, 1, 1, 1)));
            s.expect("GET", &format!("{CMS}/{CM79}")).await.json(200, w_cm);
            let c = s.expect_path("GET", PODS).await;
            assert!(c.uri.contains("labelSelector=app.kubernetes.io%2Fname%3Dcuda-fault-hold"), "{}", c.uri);
            c.json(200, pod_list(json!([hold("cuda-fault-hold-x1", "gpu-1", "Running", true, json!({}))])));
        })
        .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!({"present": true, "namespace": "cuda-fault", "xid": 79, "line": "1 79", "nodes": ["gpu-1"], "selector": null,
               "kmsg": false, "desired": 1, "ready": 1,
               "pods": [{"node": "gpu-1", "pod": "cuda-fault-hold-x1", "ready": true, "phase": "Running", "reason": null}],
               "configmap": CM79})
    );
    assert!(out.ends_with("}\n") && out.lines().count() == 1, "{out:?}");
    assert_eq!(err, "", "with --json, nothing but a failure goes to stderr");
}

#[tokio::test]
async fn a_fault_someone_else_applied_is_refused_and_left_alone() {
    let (code, out, err) = run(plan(&["apply", "--xid", "48", "--node", "gpu-1"]), |mut s| async move {
        s.expect("GET", "/api/v1/nodes/gpu-1").await.json(200, node_json("gpu-1", false, true));
        let mut ds = fault_manifests::build(&spec79(&["gpu-1"])).daemonset;
        ds["metadata"]["managedFields"] =
            json!([{"manager": "kubectl-client-side-apply", "operation": "Update"}, {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status"}]);
        s.expect("GET", DS).await.json(200, ds);
    })
    .await;
    assert_eq!((code, out.as_str()), (2, ""));
    assert_eq!(
        err.trim_end(),
        "cuda-fault: DaemonSet cuda-fault/cuda-fault-hold exists and was not applied by cuda-fault fault apply (its fields belong to \
         kubectl-client-side-apply); delete that fault first (kubectl delete -k on its overlay, or cuda-fault fault delete), then apply"
    );
}

#[tokio::test]
async fn missing_targets_are_refused_before_anything_is_applied() {
    let (code, _, err) = run(plan(&["apply", "--xid", "79", "--node", "gpu-9"]), |mut s| async move {
        not_found(s.expect("GET", "/api/v1/nodes/gpu-9").await, "nodes \"gpu-9\"");
    })
    .await;
    assert_eq!((code, err.trim_end()), (69, "cuda-fault: node gpu-9 not found (kubectl get nodes)"));
    let (code, _, err) = run(plan(&["apply", "--xid", "79", "-l", "pool in (gpu-a,gpu-b)"]), |mut s| async move {
        let c = s.expect_path("GET", "/api/v1/nodes").await;
        assert!(c.uri.contains("labelSelector=pool+in+%28gpu-a%2Cgpu-b%29"), "{}", c.uri);
        c.json(200, json!({"apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": []}));
    })
    .await;
    assert_eq!(code, 69);
    assert!(err.starts_with("cuda-fault: no node matches -l pool in (gpu-a,gpu-b); label the nodes"), "{err}");
}

#[tokio::test]
async fn apply_wait_times_out_naming_each_node_and_why() {
    let want = fault_manifests::build(&spec79(&["gpu-1", "gpu-2"]));
    let mut p = plan(&["apply", "--xid", "79", "--node", "gpu-1,gpu-2", "--wait", "--timeout", "1"]);
    if let FaultPlan::Apply { wait: Some(w), .. } = &mut p {
        w.poll = Duration::from_millis(300);
    }
    let (code, out, err) = run(p, |mut s| async move {
        for n in ["gpu-1", "gpu-2"] {
            s.expect("GET", &format!("/api/v1/nodes/{n}")).await.json(200, node_json(n, false, true));
        }
        not_found(s.expect("GET", DS).await, "daemonsets.apps \"cuda-fault-hold\"");
        let c = s.expect_path("PATCH", &format!("{CMS}/{CM79}")).await;
        let b = c.body.clone();
        c.json(200, b);
        let c = s.expect_path("PATCH", DS).await;
        let applied = c.body.clone();
        c.json(200, served(&applied, 1, json!({})));
        let crashing = json!({"containerStatuses": [{"name": "hold", "ready": false, "restartCount": 3, "image": "x", "imageID": "",
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}},
            "lastState": {"terminated": {"exitCode": 2, "message": "cuda-fault: --config /etc/cuda-fault/fault: mode: 'slow' is not error or hang\n"}}}]});
        let cm_path = format!("{CMS}/{CM79}");
        loop {
            let c = s.next().await;
            if c.method == "GET" && c.uri == DS {
                c.json(200, served(&applied, 1, ds_status(1, 2, 2, 1)));
                continue;
            }
            // The status read after the timeout: the DaemonSet (above), its ConfigMap, its pods.
            assert_eq!((c.method.as_str(), c.uri.as_str()), ("GET", cm_path.as_str()));
            c.json(200, want.configmap.clone());
            s.expect_path("GET", PODS).await.json(
                200,
                pod_list(json!([hold("h-1", "gpu-1", "Running", true, json!({})), hold("h-2", "gpu-2", "Running", false, crashing)])),
            );
            break;
        }
    })
    .await;
    assert_eq!((code, out.as_str()), (75, ""), "{err}");
    assert!(
        err.starts_with(
            "applied \"1 79\" (DaemonSet cuda-fault/cuda-fault-hold, ConfigMap cuda-fault-fault-557kf466gt)\n"
        ),
        "{err}"
    );
    assert_eq!(
        err.lines().last().unwrap(),
        "cuda-fault: timed out after 1s waiting for the fault on every targeted node (1 of 2 ready): node gpu-2: pod h-2: \
         CrashLoopBackOff: back-off 40s restarting failed container; check the nodes or raise --timeout"
    );
}

#[tokio::test]
async fn status_of_no_fault_and_of_a_kustomize_fault() {
    let (code, out, _) = run(plan(&["status", "--json"]), |mut s| async move {
        not_found(s.expect("GET", DS).await, "daemonsets.apps \"cuda-fault-hold\"");
    })
    .await;
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "{\"present\":false,\"namespace\":null,\"xid\":null,\"line\":null,\"nodes\":null,\"selector\":null,\"kmsg\":null,\
         \"desired\":null,\"ready\":null,\"pods\":[],\"configmap\":null}\n"
    );
    // What `kubectl apply -k kustomize/examples/nvsentinel` made (nodes by label, kmsg on).
    let spec = FaultSpec {
        kmsg: true,
        targets: Targets::Selector(cuda_fault::cluster::selector::Selector::parse("cuda-fault/target=true").unwrap()),
        ..spec79(&[])
    };
    let m = fault_manifests::build(&spec);
    let cm_name = m.configmap["metadata"]["name"].as_str().unwrap().to_string();
    let (code, out, _) = run(plan(&["status"]), |mut s| async move {
        s.expect("GET", DS).await.json(200, served(&m.daemonset, 3, ds_status(3, 2, 2, 1)));
        s.expect("GET", &format!("{CMS}/{cm_name}")).await.json(200, m.configmap);
        s.expect_path("GET", PODS).await.json(
            200,
            pod_list(json!([
                hold("h-b", "gpu-b", "Pending", false, json!({})),
                hold("h-a", "gpu-a", "Running", true, json!({}))
            ])),
        );
    })
    .await;
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "fault:     \"1 79\" in namespace cuda-fault\n\
         xid:       XID 79 (GPU_HAS_FALLEN_OFF_THE_BUS)\n\
         targets:   nodes labelled cuda-fault/target=true\n\
         kmsg:      on (the driver's Xid line in each node's kernel log)\n\
         ready:     1 of 2 node(s)\n  \
         gpu-a h-a Running ready\n  \
         gpu-b h-b Pending not ready (Pending)\n"
    );
}

#[tokio::test]
async fn delete_wait_reports_each_node_that_kept_its_toggle_file() {
    let m = fault_manifests::build(&spec79(&["gpu-1", "gpu-2", "gpu-3"]));
    let (code, out, err) = run(plan(&["delete", "--wait", "--json"]), |mut s| async move {
        s.expect("GET", DS).await.json(200, served(&m.daemonset, 1, ds_status(1, 3, 3, 3)));
        s.expect_path("GET", PODS).await.json(
            200,
            pod_list(json!([
                hold("h-1", "gpu-1", "Running", true, json!({})),
                hold("h-2", "gpu-2", "Running", true, json!({})),
                hold("h-3", "gpu-3", "Running", true, json!({})),
                hold("h-4", "gpu-4", "Pending", false, json!({})),
                // Crash-looping on its configuration: it never wrote a file, and records nothing.
                hold("h-5", "gpu-5", "Running", false, json!({"containerStatuses": [{"name": "hold", "ready": false, "restartCount": 4,
                    "image": "x", "imageID": "", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]})),
            ])),
        );
        let c = s.expect_path("DELETE", DS).await;
        assert_eq!(c.body["propagationPolicy"], "Background");
        c.json(200, deleted());
        let c = s.expect_path("GET", CMS).await;
        assert!(c.uri.contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dcuda-fault%2Capp.kubernetes.io%2Fname%3Dcuda-fault-fault"), "{}", c.uri);
        c.json(200, json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {}, "items": [
            {"metadata": {"name": CM79}}, {"metadata": {"name": "cuda-fault-fault-562848df4g"}}]}));
        for name in [CM79, "cuda-fault-fault-562848df4g"] {
            s.expect_path("DELETE", &format!("{CMS}/{name}")).await.json(200, deleted());
        }
        // The pods stop one after another.
        s.expect_path("GET", PODS).await.json(200, pod_list(json!([hold("h-2", "gpu-2", "Running", true, json!({}))])));
        s.expect_path("GET", PODS).await.json(200, pod_list(json!([])));
        let event = |pod: &str, reason: &str, message: &str| {
            json!({"metadata": {"name": format!("{pod}.1"), "namespace": NS}, "involvedObject": {"kind": "Pod", "name": pod, "namespace": NS},
                   "reason": reason, "message": message, "source": {"component": "cuda-fault-hold"}})
        };
        s.expect_path("GET", EVENTS).await.json(200, json!({"apiVersion": "v1", "kind": "EventList", "metadata": {}, "items": [
            event("h-1", "CudaFaultToggleRemoved", "removed /host-fault/cuda_fault_enabled: the fault resource was deleted"),
            event("h-2", "CudaFaultToggleKept", "kept /host-fault/cuda_fault_enabled: it was rewritten since this pod wrote it"),
            event("h-2", "Killing", "Stopping container hold"),
        ]}));
    })
    .await;
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v,
        json!({"deleted": true, "remaining": [
            {"node": "gpu-2", "pod": "h-2", "reason": "kept /host-fault/cuda_fault_enabled: it was rewritten since this pod wrote it"},
            {"node": "gpu-3", "pod": "h-3", "reason": "pod h-3 recorded nothing when it stopped (it could not reach the API, or was killed first); if the node still has the fault: cuda-fault node gpu-3 clean"},
        ]})
    );
    assert_eq!(err, "");
}

#[tokio::test]
async fn delete_without_a_fault_deletes_nothing() {
    let (code, out, _) = run(plan(&["delete", "--json"]), |mut s| async move {
        not_found(s.expect("GET", DS).await, "daemonsets.apps \"cuda-fault-hold\"");
        s.expect_path("GET", CMS)
            .await
            .json(200, json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {}, "items": []}));
    })
    .await;
    assert_eq!((code, out.as_str()), (0, "{\"deleted\":false,\"remaining\":[]}\n"));
}
