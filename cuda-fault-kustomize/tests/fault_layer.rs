//! The fault layer (kustomize/fault and the per-XID overlays), the one-time setup
//! (manifests/rbac) and the examples, rendered with the real `kubectl kustomize`: what a user
//! applies and deletes, and that the hold pods accept every ConfigMap they render.

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{json, Value};
use support::{find, render, repo};

const STALE: &str = "cuda-fault-targets-are-stale--rerun-cuda-fault-kustomize";

fn kinds(docs: &[Value]) -> BTreeSet<String> {
    docs.iter()
        .map(|d| format!("{}/{}", d["kind"].as_str().unwrap(), d["metadata"]["name"].as_str().unwrap()))
        .collect()
}

/// The toggle line the hold pods build from a rendered fault ConfigMap.
fn hold_line(cm: &Value) -> String {
    let entries: Vec<(String, String)> =
        cm["data"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect();
    let line = cuda_fault::hold::line_from_entries(Path::new("/etc/cuda-fault/fault"), &entries)
        .unwrap_or_else(|f| panic!("the hold pods refuse {cm}: {}", f.message));
    cuda_fault::toggle::render(&line)
}

fn fault_configmap(docs: &[Value]) -> &Value {
    let cms: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "ConfigMap").collect();
    assert_eq!(cms.len(), 1);
    cms[0]
}

#[test]
fn the_xid_overlays_are_current_and_match_the_table() {
    let stale = cuda_fault_kustomize::overlays::stale(&repo().join("kustomize")).unwrap();
    assert!(
        stale.is_empty(),
        "run `cargo run -p cuda-fault-kustomize -- xid-overlays kustomize`:\n{}",
        stale.join("\n")
    );
    let dirs: BTreeSet<String> = std::fs::read_dir(repo().join("kustomize"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("xid"))
        .collect();
    let table: BTreeSet<String> = xid_table::table().iter().map(|r| format!("xid{}", r.xid)).collect();
    assert_eq!(dirs, table);
}

#[test]
fn each_xid_overlay_is_exactly_the_hold_daemonset_and_its_configmap() {
    let mut names = BTreeSet::new();
    for row in xid_table::table() {
        let docs = render(&repo().join(format!("kustomize/xid{}", row.xid)));
        support::validate_all(&docs);
        let cm = fault_configmap(&docs);
        let cm_name = cm["metadata"]["name"].as_str().unwrap().to_string();
        // What `kubectl delete -k` deletes: this and nothing else (no Namespace, no RBAC, no workload).
        assert_eq!(
            kinds(&docs),
            BTreeSet::from(["DaemonSet/cuda-fault-hold".to_string(), format!("ConfigMap/{cm_name}")])
        );
        assert_eq!(cm["data"], json!({"xid": row.xid.to_string()}));
        // What the leftover ConfigMaps of earlier XIDs are deleted by.
        assert_eq!(cm["metadata"]["labels"]["app.kubernetes.io/name"], "cuda-fault-fault");
        assert_eq!(hold_line(cm), format!("1 {}\n", row.xid));
        // The generator's hash suffix reaches the DaemonSet: switching XID rolls the hold pods.
        let ds = find(&docs, "DaemonSet", "cuda-fault-hold");
        assert_eq!(
            ds["spec"]["template"]["spec"]["volumes"][1],
            json!({"name": "fault", "configMap": {"name": cm_name}})
        );
        assert!(cm_name.starts_with("cuda-fault-fault-") && names.insert(cm_name.clone()), "{cm_name}");
    }
}

#[test]
fn the_hold_daemonset_keeps_the_fault_through_taints_and_updates() {
    let docs = render(&repo().join("kustomize/fault"));
    let ds = find(&docs, "DaemonSet", "cuda-fault-hold");
    assert_eq!(ds["metadata"]["namespace"], "cuda-fault");
    assert_eq!(
        ds["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
    );
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["nodeSelector"], json!({"cuda-fault/target": "true"}));
    assert_eq!(pod["tolerations"], json!([{"operator": "Exists"}]));
    assert_eq!(pod["serviceAccountName"], cuda_fault::cluster::HOLD_NAME);
    assert_eq!(pod["terminationGracePeriodSeconds"], 30);
    assert_eq!(
        pod["volumes"][0],
        json!({"name": "toggle", "hostPath": {"path": cuda_fault::layout::HOST_DIR, "type": "DirectoryOrCreate"}})
    );
    let c = &pod["containers"][0];
    assert_eq!(c["image"], cuda_fault::layout::DEFAULT_IMAGE);
    assert_eq!(
        c["args"],
        json!([
            "hold",
            "--file",
            cuda_fault::layout::TOGGLE_FILE,
            "--config",
            "/etc/cuda-fault/fault",
            "--ready-file",
            "/run/cuda-fault/ready"
        ])
    );
    // Ready only once the toggle file is written: the image's helper is the probe (no shell).
    assert_eq!(
        c["readinessProbe"]["exec"]["command"],
        json!([
            cuda_fault::layout::BINARY,
            "hold",
            "--check",
            "--ready-file",
            "/run/cuda-fault/ready",
            "--file",
            cuda_fault::layout::TOGGLE_FILE
        ])
    );
    assert_eq!(c["terminationMessagePolicy"], "FallbackToLogsOnError");
    assert_eq!(pod["volumes"][2], json!({"name": "ready", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}));
    let env: Vec<(&str, &str)> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["valueFrom"]["fieldRef"]["fieldPath"].as_str().unwrap()))
        .collect();
    assert_eq!(
        env,
        [("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace"), ("NODE_NAME", "spec.nodeName")]
    );
    assert_eq!(c["resources"]["requests"], c["resources"]["limits"]);
    assert_eq!(
        c["securityContext"],
        json!({"runAsUser": 0, "runAsNonRoot": false, "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
               "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}})
    );
    assert_eq!(
        c["volumeMounts"],
        json!([{"name": "toggle", "mountPath": "/host-fault"},
               {"name": "fault", "mountPath": "/etc/cuda-fault/fault", "readOnly": true},
               {"name": "ready", "mountPath": "/run/cuda-fault"}])
    );
    // The hold pods' labels are what `verify` looks for.
    assert_eq!(pod.pointer("/containers/0/name"), Some(&json!("hold")));
    assert_eq!(
        ds["spec"]["template"]["metadata"]["labels"][cuda_fault::cluster::NAME_KEY],
        cuda_fault::cluster::HOLD_NAME
    );
}

#[test]
fn the_setup_holds_the_namespace_and_every_role() {
    let docs = render(&repo().join("manifests/rbac"));
    support::validate_all(&docs);
    let ns = find(&docs, "Namespace", "cuda-fault");
    assert_eq!(ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "privileged");
    for kind in ["ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"] {
        find(&docs, kind, "cuda-fault");
        find(&docs, kind, cuda_fault::cluster::HOLD_NAME);
    }
}

#[test]
fn the_examples_render_as_documented() {
    // A scenario in an overlay of the user's: merged keys, a new hash, accepted by the hold pods.
    let docs = render(&repo().join("kustomize/examples/scenario"));
    support::validate_all(&docs);
    let cm = fault_configmap(&docs);
    assert_eq!(hold_line(cm), "1 48 devices=1 after_ms=5000 sticky=1\n");
    let ds = find(&docs, "DaemonSet", "cuda-fault-hold");
    assert_eq!(ds["spec"]["template"]["spec"]["volumes"][1]["configMap"]["name"], cm["metadata"]["name"]);
    // The kernel-log XID for node health monitors: kmsg=1, the node's /dev/kmsg, privileged.
    let docs = render(&repo().join("kustomize/examples/nvsentinel"));
    support::validate_all(&docs);
    let cm = fault_configmap(&docs);
    assert_eq!(cm["data"], json!({"xid": "79", "kmsg": "1"}));
    assert_eq!(hold_line(cm), "1 79\n");
    let ds = find(&docs, "DaemonSet", "cuda-fault-hold");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][3], json!({"name": "kmsg", "hostPath": {"path": "/dev/kmsg", "type": "CharDevice"}}));
    assert_eq!(pod["containers"][0]["securityContext"]["privileged"], true);
    // A node by hostname: the whole nodeSelector replaced.
    let docs = render(&repo().join("kustomize/examples/node-by-hostname"));
    let ds = find(&docs, "DaemonSet", "cuda-fault-hold");
    assert_eq!(ds["spec"]["template"]["spec"]["nodeSelector"], json!({"kubernetes.io/hostname": "gpu-node-1"}));
}

#[test]
fn the_dgd_flow_example_is_current_and_renders_with_the_users_registry() {
    let dir = repo().join("kustomize/examples/dgd-flow");
    let base = support::kustomize(&dir.join("my-app")).unwrap();
    let g = support::generate(&base, &["--envfrom-without-ld-preload", "hf-token-secret"]);
    assert_eq!(g.code, 0, "{}", g.stderr);
    let checked_in = std::fs::read_to_string(dir.join("my-app-cuda-fault/kustomization.yaml")).unwrap();
    assert!(
        checked_in == g.stdout,
        "kustomize/examples/dgd-flow/my-app-cuda-fault is stale; regenerate it:\n  kubectl kustomize kustomize/examples/dgd-flow/my-app | \
         cargo run -q -p cuda-fault-kustomize -- generate --envfrom-without-ld-preload hf-token-secret > kustomize/examples/dgd-flow/my-app-cuda-fault/kustomization.yaml"
    );
    let docs = render(&dir.join("my-app-with-cuda-fault"));
    support::validate_all(&docs);
    let text = support::kustomize(&dir.join("my-app-with-cuda-fault")).unwrap();
    assert_eq!(
        text.matches("image: registry.example.com/cuda-fault:0.1.0").count(),
        2,
        "one init container per worker"
    );
    assert!(!text.contains("ghcr.io/cuda-fault") && !text.contains(STALE));
}
