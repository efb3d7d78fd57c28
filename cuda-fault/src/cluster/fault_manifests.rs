//! The fault's objects, built from the same files `kubectl apply -k kustomize/xidNN` renders: the
//! hold DaemonSet (`kustomize/fault/daemonset.yaml`), the fault ConfigMap as the fault base's
//! `configMapGenerator` makes it (its name, namespace, labels, and kustomize's content hash as the
//! name suffix, so a new fault rolls the hold pods), and with `kmsg` the operations of
//! `kustomize/kmsg/daemonset-patch.yaml`. A test renders the overlays with kubectl and compares.
//!
//! Nodes are chosen by name with a required node affinity on `metadata.name` (the node's name, as
//! `kubectl get nodes` shows it), or by a label selector: a `nodeSelector` when it is all
//! equalities (`-l cuda-fault/target=true` is exactly the base's), else a node affinity term.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::selector::Selector;
use crate::hold::{KMSG_KEY, PCI_KEY, XID_KEY};
use crate::kmsg::Pci;
use crate::toggle::{self, Keys, Line};

/// The hold DaemonSet of the fault base.
pub const DAEMONSET_YAML: &str = include_str!("../../../kustomize/fault/daemonset.yaml");
/// The fault base's kustomization (its ConfigMap generator).
pub const FAULT_KUSTOMIZATION_YAML: &str = include_str!("../../../kustomize/fault/kustomization.yaml");
/// What `kustomize/kmsg` does to the DaemonSet.
pub const KMSG_PATCH_YAML: &str = include_str!("../../../kustomize/kmsg/daemonset-patch.yaml");
/// The field manager of `fault apply`'s server-side apply.
pub const FIELD_MANAGER: &str = "cuda-fault";
/// The volume of the DaemonSet that mounts the fault ConfigMap.
const FAULT_VOLUME: &str = "fault";

/// Which nodes hold the fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    Nodes(Vec<String>),
    Selector(Selector),
}

/// Everything a fault is.
#[derive(Debug, Clone)]
pub struct FaultSpec {
    pub namespace: String,
    pub image: String,
    pub xid: u64,
    pub keys: Keys,
    pub kmsg: bool,
    pub pci: Option<Vec<Pci>>,
    pub targets: Targets,
}

/// The two objects, ready for server-side apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifests {
    pub configmap: Value,
    pub daemonset: Value,
}

fn yaml(text: &str) -> Value {
    serde_norway::from_str(text).expect("the repository's fault manifests parse")
}

/// The fault base's ConfigMap generator: (name, namespace, labels).
pub fn generator() -> (String, String, Value) {
    let k = yaml(FAULT_KUSTOMIZATION_YAML);
    let g = &k["configMapGenerator"][0];
    let s = |v: &Value| v.as_str().expect("a string in kustomize/fault/kustomization.yaml").to_string();
    (s(&g["name"]), s(&g["namespace"]), g["options"]["labels"].clone())
}

/// The DaemonSet's name.
pub fn daemonset_name() -> String {
    yaml(DAEMONSET_YAML)["metadata"]["name"].as_str().expect("a name").to_string()
}

/// The ConfigMap's data: `xid`, each toggle key set in its canonical form, `kmsg`, `pci`.
pub fn data(spec: &FaultSpec) -> BTreeMap<String, String> {
    let mut d = BTreeMap::from([(XID_KEY.to_string(), spec.xid.to_string())]);
    let rendered = toggle::render(&Line::On { xid: None, keys: spec.keys });
    for word in rendered.split_whitespace().skip(1) {
        let (k, v) = word.split_once('=').expect("the grammar renders key=value");
        d.insert(k.to_string(), v.to_string());
    }
    if spec.kmsg {
        d.insert(KMSG_KEY.into(), "1".into());
    }
    if let Some(pci) = &spec.pci {
        d.insert(PCI_KEY.into(), pci.iter().map(Pci::to_string).collect::<Vec<_>>().join(","));
    }
    d
}

/// The objects of `spec`.
pub fn build(spec: &FaultSpec) -> Manifests {
    let (base, _, labels) = generator();
    let mut configmap = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"namespace": spec.namespace, "labels": labels},
        "data": data(spec),
    });
    // kustomize v5 hashes the content with an empty name (see injection::hashed).
    let hash = injection::hashed::hash(&configmap, "").expect("a ConfigMap");
    let name = format!("{base}-{hash}");
    configmap["metadata"]["name"] = json!(name);

    let mut ds = yaml(DAEMONSET_YAML);
    ds["metadata"]["namespace"] = json!(spec.namespace);
    let pod = &mut ds["spec"]["template"]["spec"];
    for v in pod["volumes"].as_array_mut().expect("volumes") {
        if v["name"] == FAULT_VOLUME {
            v["configMap"]["name"] = json!(name);
        }
    }
    pod["containers"][0]["image"] = json!(spec.image);
    let spec_map = pod.as_object_mut().expect("a pod spec");
    match &spec.targets {
        Targets::Selector(sel) => match sel.node_selector() {
            Some(map) => {
                spec_map.insert("nodeSelector".into(), json!(map));
            }
            None => {
                spec_map.remove("nodeSelector");
                spec_map.insert("affinity".into(), affinity(json!({"matchExpressions": sel.match_expressions()})));
            }
        },
        Targets::Nodes(nodes) => {
            spec_map.remove("nodeSelector");
            spec_map.insert(
                "affinity".into(),
                affinity(json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": nodes}]})),
            );
        }
    }
    if spec.kmsg {
        let ops: json_patch::Patch = serde_json::from_value(yaml(KMSG_PATCH_YAML)).expect("kustomize/kmsg's patch");
        json_patch::patch(&mut ds, &ops).expect("kustomize/kmsg's patch applies to the DaemonSet");
    }
    Manifests { configmap, daemonset: ds }
}

fn affinity(term: Value) -> Value {
    json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}})
}

/// Which nodes a DaemonSet's pod template targets: (node names, selector), as `status` reports.
pub fn targets_of(ds: &Value) -> (Option<Vec<String>>, Option<String>) {
    let pod = &ds["spec"]["template"]["spec"];
    let terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        .as_array();
    if let Some([term]) = terms.map(Vec::as_slice) {
        if let Some([f]) = term["matchFields"].as_array().map(Vec::as_slice) {
            if f["key"] == "metadata.name" && f["operator"] == "In" && term.get("matchExpressions").is_none() {
                let names =
                    f["values"].as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect());
                return (names, None);
            }
        }
        if let (Some(exprs), None) = (term["matchExpressions"].as_array(), term.get("matchFields")) {
            return (None, Selector::from_match_expressions(exprs).map(|s| s.canonical()));
        }
        return (None, None);
    }
    match pod["nodeSelector"].as_object() {
        Some(m) if terms.is_none() => {
            let map: BTreeMap<String, String> =
                m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect();
            (None, Some(Selector::from_node_selector(&map).canonical()))
        }
        _ => (None, None),
    }
}

/// The name of the ConfigMap a DaemonSet mounts as its fault.
pub fn configmap_of(ds: &Value) -> Option<String> {
    ds["spec"]["template"]["spec"]["volumes"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == FAULT_VOLUME)
        .and_then(|v| v["configMap"]["name"].as_str())
        .map(String::from)
}

/// A ConfigMap's data as the hold pods read it (entries sorted).
pub fn entries_of(cm: &Value) -> Vec<(String, String)> {
    let empty = Map::new();
    let mut e: Vec<(String, String)> = cm["data"]
        .as_object()
        .unwrap_or(&empty)
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().trim().to_string()))
        .collect();
    e.sort();
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(targets: Targets) -> FaultSpec {
        FaultSpec {
            namespace: "cuda-fault".into(),
            image: crate::layout::DEFAULT_IMAGE.into(),
            xid: 79,
            keys: Keys::default(),
            kmsg: false,
            pci: None,
            targets,
        }
    }

    #[test]
    fn nodes_by_name_or_selector_and_back() {
        let m = build(&spec(Targets::Nodes(vec!["gpu-1".into(), "gpu-2".into()])));
        let pod = &m.daemonset["spec"]["template"]["spec"];
        assert!(pod.get("nodeSelector").is_none());
        assert_eq!(targets_of(&m.daemonset), (Some(vec!["gpu-1".into(), "gpu-2".into()]), None));
        let sel = Selector::parse("zone in (a,b)").unwrap();
        let m = build(&spec(Targets::Selector(sel)));
        assert_eq!(targets_of(&m.daemonset), (None, Some("zone in (a,b)".into())));
        let m = build(&spec(Targets::Selector(Selector::parse("cuda-fault/target=true").unwrap())));
        assert_eq!(targets_of(&m.daemonset), (None, Some("cuda-fault/target=true".into())));
        assert_eq!(configmap_of(&m.daemonset), m.configmap["metadata"]["name"].as_str().map(String::from));
        assert_eq!(m.configmap["metadata"]["name"], "cuda-fault-fault-557kf466gt", "kustomize's name for xid=79");
        assert_eq!(entries_of(&m.configmap), [("xid".to_string(), "79".to_string())]);
    }
}
