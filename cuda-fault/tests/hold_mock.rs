//! What a stopped hold pod decides, against kube's mock API (tower-test): every branch of
//! `cluster::hold::decide`, each request checked against the hold pods' RBAC (`HOLD_RBAC`).

use cuda_fault::cluster::hold::{decide, Decision, PodRef};
use cuda_fault::cluster::HOLD_RBAC;
use serde_json::{json, Value};

mod support;
use support::*;

const POD: &str = "/api/v1/namespaces/cuda-fault/pods/cuda-fault-hold-x2x9k";
const DS: &str = "/apis/apps/v1/namespaces/cuda-fault/daemonsets/cuda-fault-hold";
const NODE: &str = "/api/v1/nodes/gpu-1";
const UID: &str = "0b5f0c3e-1111-2222-3333-444455556666";

fn me() -> PodRef {
    PodRef { namespace: "cuda-fault".into(), name: "cuda-fault-hold-x2x9k".into(), node: Some("gpu-1".into()) }
}

fn hold_pod() -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "cuda-fault-hold-x2x9k", "namespace": "cuda-fault",
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "cuda-fault-hold",
                                             "uid": UID, "controller": true}]},
           "spec": {"nodeName": "gpu-1", "containers": [{"name": "hold"}]}})
}

fn daemonset(uid: &str, pod_spec: Value, deleting: bool) -> Value {
    let mut meta = json!({"name": "cuda-fault-hold", "namespace": "cuda-fault", "uid": uid});
    if deleting {
        meta["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    }
    json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta,
           "spec": {"selector": {"matchLabels": {"a": "b"}},
                    "template": {"metadata": {"labels": {"a": "b"}}, "spec": pod_spec}}})
}

fn targeting() -> Value {
    json!({"nodeSelector": {"cuda-fault/target": "true"}, "containers": [{"name": "hold"}]})
}

fn node() -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "gpu-1", "labels": {"cuda-fault/target": "true"}}})
}

async fn decision<F, Fut>(serve: F) -> Decision
where
    F: FnOnce(Server) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    with_server(HOLD_RBAC, "cuda-fault", |client| async move { decide(&client, &me()).await }, serve).await
}

#[tokio::test]
async fn a_daemonset_that_still_targets_the_node_keeps_the_fault() {
    let d = decision(|mut s| async move {
        s.expect("GET", POD).await.json(200, hold_pod());
        s.expect("GET", DS).await.json(200, daemonset(UID, targeting(), false));
        s.expect("GET", NODE).await.json(200, node());
    })
    .await;
    let Decision::Keep(why) = d else { panic!("{d:?}") };
    assert!(
        why.starts_with("DaemonSet cuda-fault/cuda-fault-hold still targets node gpu-1, so the fault stays on"),
        "{why}"
    );
}

#[tokio::test]
async fn a_deleted_daemonset_removes_the_fault() {
    let d = decision(|mut s| async move {
        s.expect("GET", POD).await.json(200, hold_pod());
        s.expect("GET", DS).await.status(404, "NotFound", "daemonsets.apps \"cuda-fault-hold\" not found");
    })
    .await;
    assert_eq!(d, Decision::Remove("the fault resource (DaemonSet cuda-fault/cuda-fault-hold) was deleted".into()));

    let d = decision(|mut s| async move {
        s.expect("GET", POD).await.json(200, hold_pod());
        s.expect("GET", DS).await.json(200, daemonset(UID, targeting(), true));
    })
    .await;
    assert_eq!(
        d,
        Decision::Remove("the fault resource (DaemonSet cuda-fault/cuda-fault-hold) is being deleted".into())
    );

    // Deleted and applied again (say, another XID): this pod's DaemonSet is gone all the same.
    let d = decision(|mut s| async move {
        s.expect("GET", POD).await.json(200, hold_pod());
        s.expect("GET", DS).await.json(200, daemonset("another-uid", targeting(), false));
    })
    .await;
    assert!(matches!(&d, Decision::Remove(w) if w.contains("one of the same name was created since")), "{d:?}");
}

#[tokio::test]
async fn a_node_no_longer_selected_or_gone_removes_the_fault() {
    // The label was taken off the node.
    let d = decision(|mut s| async move {
        s.expect("GET", POD).await.json(200, hold_pod());
        s.expect("GET", DS).await.json(200, daemonset(UID, targeting(), false));
        s.expect("GET", NODE)
            .await
            .json(200, json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "gpu-1"}}));
    })
    .await;
    assert_eq!(d, Decision::Remove("DaemonSet cuda-fault/cuda-fault-hold no longer selects node gpu-1".into()));
    // The DaemonSet was re-pinned to another node by name.
    let by_name = json!({"containers": [{"name": "hold"}], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
        {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["gpu-2"]}]}]}}}});
    let d = decision(|mut s| async move {
        s.expect("GET", POD).await.json(200, hold_pod());
        s.expect("GET", DS).await.json(200, daemonset(UID, by_name, false));
        s.expect("GET", NODE).await.json(200, node());
    })
    .await;
    assert!(matches!(&d, Decision::Remove(w) if w.ends_with("no longer selects node gpu-1")), "{d:?}");
    let d = decision(|mut s| async move {
        s.expect("GET", POD).await.json(200, hold_pod());
        s.expect("GET", DS).await.json(200, daemonset(UID, targeting(), false));
        s.expect("GET", NODE).await.status(404, "NotFound", "nodes \"gpu-1\" not found");
    })
    .await;
    assert_eq!(d, Decision::Remove("node gpu-1 no longer exists".into()));
}

#[tokio::test]
async fn no_answer_keeps_the_fault() {
    let d = decision(|mut s| async move {
        s.expect("GET", POD).await.status(404, "NotFound", "pods \"cuda-fault-hold-x2x9k\" not found");
    })
    .await;
    assert_eq!(d, Decision::Unknown("pod cuda-fault/cuda-fault-hold-x2x9k not found".into()));
    let d = decision(|mut s| async move {
        let mut p = hold_pod();
        p["metadata"]["ownerReferences"] = json!([]);
        s.expect("GET", POD).await.json(200, p);
    })
    .await;
    assert_eq!(d, Decision::Unknown("pod cuda-fault/cuda-fault-hold-x2x9k has no DaemonSet owner".into()));
    let d = decision(|mut s| async move {
        s.expect("GET", POD).await.status(
            403,
            "Forbidden",
            "pods is forbidden: User \"system:serviceaccount:cuda-fault:default\" cannot get",
        );
    })
    .await;
    assert!(
        matches!(&d, Decision::Unknown(w) if w.starts_with("forbidden: system:serviceaccount:cuda-fault:default cannot get pods in namespace cuda-fault")),
        "{d:?}"
    );
    let d = decision(|mut s| async move {
        s.expect("GET", POD).await.json(200, hold_pod());
        s.expect("GET", DS).await.json(200, daemonset(UID, targeting(), false));
        s.expect("GET", NODE).await.status(403, "Forbidden", "nodes is forbidden");
    })
    .await;
    assert!(matches!(&d, Decision::Unknown(w) if w.starts_with("forbidden: cannot get nodes")), "{d:?}");
    let d = decision(|mut s| async move { s.refuse_connection().await }).await;
    assert!(
        matches!(&d, Decision::Unknown(w) if w.starts_with("cannot reach the Kubernetes API server (get pods in namespace cuda-fault)")),
        "{d:?}"
    );
}

#[tokio::test]
async fn a_stopped_hold_pod_records_what_it_did_as_an_event_on_itself() {
    use cuda_fault::hold::stop::{record, Report};
    let r = with_server(
        HOLD_RBAC,
        "cuda-fault",
        |client| async move {
            record(
                &client,
                &me(),
                &Report { removed: false, message: "kept /host-fault/cuda_fault_enabled: why".into() },
            )
            .await
        },
        |mut s| async move {
            let c = s.expect("POST", "/api/v1/namespaces/cuda-fault/events?").await;
            let b = c.body.clone();
            assert_eq!(b["metadata"]["generateName"], "cuda-fault-hold-x2x9k.");
            assert_eq!(
                b["involvedObject"],
                json!({"apiVersion": "v1", "kind": "Pod", "namespace": "cuda-fault", "name": "cuda-fault-hold-x2x9k"})
            );
            assert_eq!(
                (&b["reason"], &b["type"], &b["message"]),
                (&json!("CudaFaultToggleKept"), &json!("Warning"), &json!("kept /host-fault/cuda_fault_enabled: why"))
            );
            assert_eq!(b["source"], json!({"component": "cuda-fault-hold", "host": "gpu-1"}));
            assert!(b["firstTimestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{b}");
            c.json(201, b);
        },
    )
    .await;
    assert!(r.is_ok(), "{r:?}");
    let r = with_server(
        HOLD_RBAC,
        "cuda-fault",
        |client| async move { record(&client, &me(), &Report { removed: true, message: "removed".into() }).await },
        |mut s| async move {
            s.expect("POST", "/api/v1/namespaces/cuda-fault/events?").await.status(
                403,
                "Forbidden",
                "events is forbidden",
            );
        },
    )
    .await;
    assert!(r.unwrap_err().message.starts_with("forbidden: cannot create events in namespace cuda-fault"));
}
