//! `fault apply` builds exactly what `kubectl apply -k` applies: every `kustomize/xidNN`, the
//! scenario example and the NVSentinel example (kmsg), rendered with the real kubectl (required:
//! without it these tests fail and say so). Choosing nodes by name or selector changes only how
//! the pod template selects nodes.

use std::path::{Path, PathBuf};
use std::process::Command;

use cuda_fault::cluster::fault_manifests::{build, FaultSpec, Manifests, Targets};
use cuda_fault::cluster::selector::Selector;
use cuda_fault::kmsg::Pci;
use cuda_fault::toggle::{Keys, Line};
use serde::Deserialize;
use serde_json::{json, Value};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `kubectl kustomize DIR`: its ConfigMap and DaemonSet.
fn kustomize(dir: &str) -> Manifests {
    let out = Command::new("kubectl").args(["kustomize"]).arg(repo().join(dir)).output().unwrap_or_else(|e| {
        panic!("kubectl is required for these tests ({e}); install kubectl (v1.32 has kustomize v5.5)")
    });
    assert!(out.status.success(), "kubectl kustomize {dir}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<Value> =
        serde_norway::Deserializer::from_str(&text).map(|d| Value::deserialize(d).unwrap()).collect();
    let find =
        |kind: &str| docs.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("{dir}: no {kind}")).clone();
    assert_eq!(docs.len(), 2, "{dir}");
    Manifests { configmap: find("ConfigMap"), daemonset: find("DaemonSet") }
}

fn labelled() -> Targets {
    Targets::Selector(Selector::parse("cuda-fault/target=true").unwrap())
}

fn spec(xid: u64, keys: Keys, kmsg: bool) -> FaultSpec {
    FaultSpec {
        namespace: "cuda-fault".into(),
        image: cuda_fault::layout::DEFAULT_IMAGE.into(),
        xid,
        keys,
        kmsg,
        pci: None,
        targets: labelled(),
    }
}

fn keys(line: &str) -> Keys {
    match toggle_grammar::parse(line.as_bytes()).unwrap() {
        Line::On { keys, .. } => keys,
        Line::Off => unreachable!(),
    }
}

#[test]
fn every_xid_overlay_is_what_fault_apply_applies() {
    for row in xid_table::table() {
        let x = u64::from(row.xid);
        assert_eq!(build(&spec(x, Keys::default(), false)), kustomize(&format!("kustomize/xid{x}")), "XID {x}");
    }
}

#[test]
fn the_scenario_and_nvsentinel_examples_are_what_fault_apply_applies() {
    let scenario = spec(48, keys("1 devices=1 after_ms=5000 sticky=1"), false);
    assert_eq!(build(&scenario), kustomize("kustomize/examples/scenario"));
    let nvsentinel = spec(79, Keys::default(), true);
    let m = build(&nvsentinel);
    assert_eq!(m, kustomize("kustomize/examples/nvsentinel"));
    let hold = &m.daemonset["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(hold["securityContext"]["privileged"], true);
    assert!(hold["securityContext"].get("capabilities").is_none());
    assert!(hold["volumeMounts"].as_array().unwrap().contains(&json!({"name": "kmsg", "mountPath": "/dev/kmsg"})));
}

#[test]
fn nodes_by_name_change_only_the_node_selection() {
    let base = build(&spec(79, Keys::default(), false));
    let mut by_name = spec(79, Keys::default(), false);
    by_name.targets = Targets::Nodes(vec!["gpu-node-1".into()]);
    by_name.pci = Some(Pci::parse_list("0000:3b:00.0").unwrap());
    by_name.kmsg = true;
    let m = build(&by_name);
    let mut ds = m.daemonset.clone();
    let pod = ds["spec"]["template"]["spec"].as_object_mut().unwrap();
    assert_eq!(
        pod.remove("affinity").unwrap(),
        json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms":
            [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["gpu-node-1"]}]}]}}})
    );
    let mut want = build(&spec(79, Keys::default(), true)).daemonset;
    want["spec"]["template"]["spec"].as_object_mut().unwrap().remove("nodeSelector");
    // The ConfigMap's name follows its content (pci is in it).
    want["spec"]["template"]["spec"]["volumes"][1]["configMap"]["name"] = m.configmap["metadata"]["name"].clone();
    assert_eq!(ds, want);
    assert_eq!(m.configmap["data"], json!({"xid": "79", "kmsg": "1", "pci": "0000:3b:00.0"}));
    assert_ne!(m.configmap["metadata"]["name"], base.configmap["metadata"]["name"]);
}
