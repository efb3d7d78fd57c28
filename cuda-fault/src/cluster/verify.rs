//! `cuda-fault verify`: which pods of a namespace (or of one workload) carry the injection, read
//! from their spec and status (the shim-install init container finished with exit 0, the
//! containers whose LD_PRELOAD names the shim first, the /cuda-fault and /host-fault mounts), on
//! which nodes, and each such node's toggle file (`cuda-fault status --json` in a read-only node
//! Job) and hold pod. A pod that does not carry it says why: an overlay that patches
//! `LD_PRELOAD` after the injection leaves the mounts in place and the shim unloaded.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::Client;
use serde::Serialize;
use serde_json::Value;

use super::errors::{api_failure, is_not_found, Call};
use super::run::run_job;
use super::{Options, Verb, HOLD_NAME, NAME_KEY};
use crate::exit::{self, Failure};
use crate::layout::{ENV_PRELOAD, INIT_CONTAINER, PRELOAD, SHIM_DIR, TOGGLE_DIR};

/// The label the Dynamo operator puts on every pod of a DynamoGraphDeployment.
pub const DGD_POD_LABEL: &str = "nvidia.com/dynamo-graph-deployment-name";

/// A workload whose pods `verify` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Workload {
    Deployment(String),
    StatefulSet(String),
    DaemonSet(String),
    DynamoGraphDeployment(String),
}

impl Workload {
    /// `KIND/NAME`: deployment (deploy), statefulset (sts), daemonset (ds),
    /// dynamographdeployment (dgd), any case.
    pub fn parse(s: &str) -> Result<Workload, String> {
        let (kind, name) =
            s.split_once('/').ok_or_else(|| format!("'{s}': expected KIND/NAME, e.g. deployment/vllm"))?;
        if !super::is_node_name(name) {
            return Err(format!("'{name}' is not a Kubernetes object name"));
        }
        let name = name.to_string();
        Ok(match kind.to_ascii_lowercase().as_str() {
            "deployment" | "deployments" | "deploy" => Workload::Deployment(name),
            "statefulset" | "statefulsets" | "sts" => Workload::StatefulSet(name),
            "daemonset" | "daemonsets" | "ds" => Workload::DaemonSet(name),
            "dynamographdeployment" | "dynamographdeployments" | "dgd" => Workload::DynamoGraphDeployment(name),
            other => {
                return Err(format!(
                    "unsupported kind '{other}' (deployment, statefulset, daemonset, dynamographdeployment)"
                ))
            }
        })
    }
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Workload::Deployment(n) => write!(f, "Deployment {n}"),
            Workload::StatefulSet(n) => write!(f, "StatefulSet {n}"),
            Workload::DaemonSet(n) => write!(f, "DaemonSet {n}"),
            Workload::DynamoGraphDeployment(n) => write!(f, "DynamoGraphDeployment {n}"),
        }
    }
}

/// What to verify.
#[derive(Debug, Clone)]
pub struct Plan {
    pub namespace: String,
    pub workload: Option<Workload>,
    pub selector: Option<String>,
    pub node_check: bool,
    /// The node Jobs (namespace, image, timeout).
    pub jobs: Options,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PodReport {
    pub pod: String,
    pub node: Option<String>,
    pub phase: Option<String>,
    /// The shim-install init container: done, running, waiting (reason), failed (exit N),
    /// pending (no status yet) or absent.
    pub shim_install: String,
    /// Containers (and native sidecars) whose LD_PRELOAD names the shim first.
    pub preloaded: Vec<String>,
    /// Containers that mount the shim at /cuda-fault.
    pub shim_mounted: Vec<String>,
    /// Containers that mount the node's toggle directory at /host-fault.
    pub toggle_mounted: Vec<String>,
    /// The init container done and every container that mounts the shim preloading it first.
    pub injected: bool,
    /// Why the pod does not carry the injection; `None` when it does.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NodeReport {
    pub node: String,
    /// `cuda-fault status --json` of the node's toggle file.
    pub toggle: Option<Value>,
    /// Why `toggle` is missing.
    pub error: Option<String>,
    /// The hold pod of the fault DaemonSet there, if any.
    pub hold_pod: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub namespace: String,
    pub workload: Option<String>,
    pub selector: Option<String>,
    pub pods: Vec<PodReport>,
    pub nodes: Vec<NodeReport>,
    pub injected: usize,
}

/// A label selector as the list call takes it.
pub fn label_selector(s: &LabelSelector) -> String {
    let mut parts: Vec<String> = s.match_labels.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
    for e in s.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    parts.join(",")
}

/// The label selector of the workload's pods.
async fn selector_of(client: &Client, ns: &str, w: &Workload) -> Result<String, Failure> {
    let missing = || Failure::new(exit::UNAVAILABLE, format!("{w} not found in namespace {ns}"));
    macro_rules! typed {
        ($t:ty, $name:expr, $res:literal) => {{
            let api: Api<$t> = Api::namespaced(client.clone(), ns);
            match api.get($name).await {
                Ok(o) => o.spec.map(|s| label_selector(&s.selector)).unwrap_or_default(),
                Err(e) if is_not_found(&e) => return Err(missing()),
                Err(e) => return Err(api_failure(&Call { verb: "get", resource: $res, namespace: Some(ns) }, e)),
            }
        }};
    }
    Ok(match w {
        Workload::Deployment(n) => typed!(Deployment, n, "deployments.apps"),
        Workload::StatefulSet(n) => typed!(StatefulSet, n, "statefulsets.apps"),
        Workload::DaemonSet(n) => typed!(DaemonSet, n, "daemonsets.apps"),
        Workload::DynamoGraphDeployment(n) => {
            // v1alpha1 is served by every DGD CRD so far (v1beta1 only by newer ones).
            let ar = ApiResource {
                group: "nvidia.com".into(),
                version: "v1alpha1".into(),
                api_version: "nvidia.com/v1alpha1".into(),
                kind: "DynamoGraphDeployment".into(),
                plural: "dynamographdeployments".into(),
            };
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
            match api.get(n).await {
                Ok(_) => format!("{DGD_POD_LABEL}={n}"),
                Err(e) if is_not_found(&e) => return Err(missing()),
                Err(e) => {
                    return Err(api_failure(
                        &Call { verb: "get", resource: "dynamographdeployments.nvidia.com", namespace: Some(ns) },
                        e,
                    ))
                }
            }
        }
    })
}

/// What a pod's spec and status say about the injection.
pub fn pod_report(pod: &Pod) -> PodReport {
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let init_present =
        spec.and_then(|s| s.init_containers.as_ref()).is_some_and(|c| c.iter().any(|c| c.name == INIT_CONTAINER));
    let init_status = status
        .and_then(|s| s.init_container_statuses.as_ref())
        .and_then(|c| c.iter().find(|c| c.name == INIT_CONTAINER));
    let shim_install = match (init_present, init_status.and_then(|s| s.state.as_ref())) {
        (false, _) => "absent".to_string(),
        (true, None) => "pending".to_string(),
        (true, Some(state)) => match (&state.terminated, &state.running, &state.waiting) {
            (Some(t), _, _) if t.exit_code == 0 => "done".to_string(),
            (Some(t), _, _) => format!("failed (exit {})", t.exit_code),
            (None, Some(_), _) => "running".to_string(),
            (None, None, Some(w)) => format!("waiting ({})", w.reason.as_deref().unwrap_or("no reason")),
            _ => "pending".to_string(),
        },
    };
    let (mut preloaded, mut shim_mounted, mut toggle_mounted) = (vec![], vec![], vec![]);
    // Containers, and native sidecars (init containers that run beside them), which the
    // generator injects alike.
    let sidecars = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default()
        .iter()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    let containers = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    let mut not_first = Vec::new();
    for c in sidecars.chain(containers) {
        // The last entry of a name is the one the kubelet uses.
        let preload = c.env.iter().flatten().rfind(|e| e.name == ENV_PRELOAD).and_then(|e| e.value.as_deref());
        let first = preload.and_then(|v| v.split([':', ' ']).find(|l| !l.is_empty()));
        if first == Some(PRELOAD) {
            preloaded.push(c.name.clone());
        }
        for m in c.volume_mounts.iter().flatten() {
            match m.mount_path.trim_end_matches('/') {
                SHIM_DIR => {
                    shim_mounted.push(c.name.clone());
                    if first != Some(PRELOAD) {
                        not_first.push(format!(
                            "container {}: LD_PRELOAD does not name the shim first ({})",
                            c.name,
                            preload.map_or("unset".to_string(), |v| format!("it is '{v}'"))
                        ));
                    }
                }
                TOGGLE_DIR => toggle_mounted.push(c.name.clone()),
                _ => {}
            }
        }
    }
    let reason = if shim_install == "absent" {
        Some(format!("no {INIT_CONTAINER} init container: not injected"))
    } else if shim_install != "done" {
        Some(format!("the {INIT_CONTAINER} init container is {shim_install}"))
    } else if !not_first.is_empty() {
        // The mounts without the preload: something after the injection set LD_PRELOAD (an
        // overlay's patch listed with the Component, or an edit).
        Some(not_first.join("; "))
    } else if shim_mounted.is_empty() {
        Some(format!("no container mounts the shim at {SHIM_DIR}"))
    } else {
        None
    };
    let injected = reason.is_none();
    PodReport {
        pod: pod.metadata.name.clone().unwrap_or_default(),
        node: spec.and_then(|s| s.node_name.clone()),
        phase: status.and_then(|s| s.phase.clone()),
        shim_install,
        preloaded,
        shim_mounted,
        toggle_mounted,
        injected,
        reason,
    }
}

/// Gathers the report; progress of the node Jobs on `err`.
pub async fn verify(client: &Client, plan: &Plan, err: &mut dyn Write) -> Result<Report, Failure> {
    let ns = plan.namespace.as_str();
    let selector = match (&plan.workload, &plan.selector) {
        (Some(w), _) => Some(selector_of(client, ns, w).await?),
        (None, s) => s.clone(),
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut lp = ListParams::default();
    if let Some(s) = selector.as_deref().filter(|s| !s.is_empty()) {
        lp = lp.labels(s);
    }
    let list = pods.list(&lp).await.map_err(|e| match e {
        kube::Error::Api(s) if s.code == 400 => {
            Failure::usage(format!("invalid selector '{}': {}", selector.as_deref().unwrap_or(""), s.message))
        }
        e => api_failure(&Call { verb: "list", resource: "pods", namespace: Some(ns) }, e),
    })?;
    let reports: Vec<PodReport> = list.items.iter().map(pod_report).collect();
    if reports.is_empty() {
        let what = selector.as_deref().map(|s| format!(" match '{s}'")).unwrap_or_default();
        return Err(Failure::new(exit::UNAVAILABLE, format!("no pods in namespace {ns}{what}")));
    }
    let nodes: BTreeSet<String> = reports.iter().filter(|p| p.injected).filter_map(|p| p.node.clone()).collect();
    let mut node_reports = Vec::new();
    if plan.node_check && !nodes.is_empty() {
        let holds = hold_pods(client, &plan.jobs.namespace, err).await;
        for node in nodes {
            let mut log = Vec::new();
            let (toggle, error) =
                match run_job(client, &node, &Verb::Status { json: true }, &plan.jobs, &mut log, err).await {
                    Ok(()) => match serde_json::from_slice::<Value>(&log) {
                        Ok(v) => (Some(v), None),
                        Err(e) => (None, Some(format!("the status Job printed no JSON ({e})"))),
                    },
                    Err(f) if matches!(f.code, exit::FORBIDDEN | exit::NO_CONFIG) => return Err(f),
                    Err(f) => (None, Some(f.message)),
                };
            let hold_pod = holds.get(&node).cloned();
            node_reports.push(NodeReport { node, toggle, error, hold_pod });
        }
    }
    Ok(Report {
        namespace: ns.to_string(),
        workload: plan.workload.as_ref().map(|w| w.to_string()),
        selector,
        injected: reports.iter().filter(|p| p.injected).count(),
        pods: reports,
        nodes: node_reports,
    })
}

/// The running hold pods of the fault DaemonSet, by node.
async fn hold_pods(client: &Client, ns: &str, err: &mut dyn Write) -> BTreeMap<String, String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    match pods.list(&ListParams::default().labels(&format!("{NAME_KEY}={HOLD_NAME}"))).await {
        Ok(list) => list
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| Some((p.spec?.node_name?, p.metadata.name?)))
            .collect(),
        Err(e) => {
            let f = api_failure(&Call { verb: "list", resource: "pods", namespace: Some(ns) }, e);
            let _ = writeln!(err, "warning: cannot list the hold pods: {f}");
            BTreeMap::new()
        }
    }
}
