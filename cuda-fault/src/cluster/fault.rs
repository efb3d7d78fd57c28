//! `cuda-fault fault apply|status`: the fault layer as commands. `apply` server-side applies the
//! objects of [`super::fault_manifests`] with its own field manager and, with `--wait`, returns
//! once every targeted node runs a Ready hold pod of the new fault (Ready = its toggle file is
//! written); `status` reports the fault, its targets and its hold pods. `delete` is in
//! [`super::fault_delete`].

use std::io::Write;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::Client;
use serde::Serialize;
use serde_json::Value;

use super::errors::{api_failure, is_not_found, one_line, Call};
use super::fault_manifests::{self as manifests, FaultSpec, Targets, FIELD_MANAGER};
use crate::exit::{self, Failure};
use crate::toggle;

/// A hold pod, as `status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HoldPod {
    pub node: Option<String>,
    pub pod: String,
    pub ready: bool,
    pub phase: Option<String>,
    /// Why it is not ready, when the pod says.
    pub reason: Option<String>,
    /// Its hold container runs (not waiting to start or restart): it may have written the file.
    #[serde(skip)]
    pub running: bool,
}

/// `fault status --json` (and `fault apply --json`): fixed key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct FaultStatus {
    pub present: bool,
    pub namespace: Option<String>,
    pub xid: Option<u64>,
    pub line: Option<String>,
    pub nodes: Option<Vec<String>>,
    pub selector: Option<String>,
    pub kmsg: Option<bool>,
    pub desired: Option<i32>,
    pub ready: Option<i32>,
    pub pods: Vec<HoldPod>,
    /// The ConfigMap the hold pods read.
    pub configmap: Option<String>,
}

/// Where the fault lives and how long to wait.
#[derive(Debug, Clone)]
pub struct Waiting {
    pub timeout: Duration,
    pub poll: Duration,
}

fn call<'a>(verb: &'static str, resource: &'static str, ns: Option<&'a str>) -> Call<'a> {
    Call { verb, resource, namespace: ns }
}

fn pod_reason(p: &Pod) -> Option<String> {
    let status = p.status.as_ref()?;
    for cs in status.container_statuses.iter().flatten() {
        if let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let last = cs
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .and_then(|t| t.message.as_deref())
                .map(|m| format!(": {}", one_line(m)))
                .unwrap_or_default();
            let msg = w.message.as_deref().filter(|m| !m.is_empty()).map(|m| format!(": {}", one_line(m)));
            return Some(format!("{}{}", w.reason.clone().unwrap_or_else(|| "Waiting".into()), msg.unwrap_or(last)));
        }
    }
    for c in status.conditions.iter().flatten() {
        if let (true, Some(why)) = (c.status == "False", c.message.as_deref().filter(|m| !m.is_empty())) {
            return Some(format!("{} {}", c.type_, one_line(why)));
        }
    }
    status.phase.clone()
}

fn hold_pod(p: &Pod) -> HoldPod {
    let ready = p
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let waiting = p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.state.as_ref().is_some_and(|s| s.waiting.is_some())));
    let phase = p.status.as_ref().and_then(|s| s.phase.clone());
    HoldPod {
        running: ready || (phase.as_deref() == Some("Running") && !waiting),
        node: p.spec.as_ref().and_then(|s| s.node_name.clone()),
        pod: p.metadata.name.clone().unwrap_or_default(),
        ready,
        phase,
        reason: if ready { None } else { pod_reason(p) },
    }
}

/// The label selector of the hold pods (the DaemonSet's `matchLabels`).
pub(crate) fn pod_selector(ds: &Value) -> String {
    let labels = ds["spec"]["selector"]["matchLabels"].as_object().cloned().unwrap_or_default();
    labels.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(",")
}

/// The hold pods of `ds`, sorted by node.
pub async fn hold_pods(client: &Client, ns: &str, ds: &Value) -> Result<Vec<HoldPod>, Failure> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(&pod_selector(ds)))
        .await
        .map_err(|e| api_failure(&call("list", "pods", Some(ns)), e))?;
    let mut out: Vec<HoldPod> =
        list.items.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).map(hold_pod).collect();
    out.sort_by(|a, b| (&a.node, &a.pod).cmp(&(&b.node, &b.pod)));
    Ok(out)
}

/// The fault DaemonSet as JSON, None when there is none.
pub async fn get_daemonset(client: &Client, ns: &str) -> Result<Option<Value>, Failure> {
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), ns);
    match api.get(&manifests::daemonset_name()).await {
        Ok(ds) => Ok(Some(serde_json::to_value(ds).expect("serializable"))),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(api_failure(&call("get", "daemonsets.apps", Some(ns)), e)),
    }
}

/// What the fault in `ns` is.
pub async fn status(client: &Client, ns: &str) -> Result<FaultStatus, Failure> {
    let Some(ds) = get_daemonset(client, ns).await? else { return Ok(FaultStatus::default()) };
    let mut s = FaultStatus { present: true, namespace: Some(ns.to_string()), ..FaultStatus::default() };
    (s.nodes, s.selector) = manifests::targets_of(&ds);
    s.desired = ds["status"]["desiredNumberScheduled"].as_i64().map(|n| n as i32);
    s.ready = ds["status"]["numberReady"].as_i64().map(|n| n as i32);
    s.configmap = manifests::configmap_of(&ds);
    if let Some(name) = &s.configmap {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        match api.get(name).await {
            Ok(cm) => {
                let cm = serde_json::to_value(cm).expect("serializable");
                let entries = manifests::entries_of(&cm);
                if let Ok(f) = crate::hold::fault_from_entries(std::path::Path::new(name), &entries) {
                    s.xid = Some(f.xid());
                    s.line = Some(toggle::render(&f.line).trim_end().to_string());
                    s.kmsg = Some(f.kmsg);
                }
            }
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(api_failure(&call("get", "configmaps", Some(ns)), e)),
        }
    }
    s.pods = hold_pods(client, ns, &ds).await?;
    Ok(s)
}

/// The status as text.
pub fn status_text(s: &FaultStatus) -> String {
    if !s.present {
        return "no fault: the hold DaemonSet does not exist\n".into();
    }
    let mut out = format!(
        "fault:     {} in namespace {}\n",
        s.line
            .as_deref()
            .map(|l| format!("{l:?}"))
            .unwrap_or_else(|| "unreadable (its ConfigMap is missing or invalid)".into()),
        s.namespace.as_deref().unwrap_or("")
    );
    if let Some(x) = s.xid {
        out.push_str(&format!("xid:       {}\n", toggle::describe_xid(x)));
    }
    let targets = match (&s.nodes, &s.selector) {
        (Some(n), _) => format!("nodes {}", n.join(", ")),
        (None, Some(sel)) => format!("nodes labelled {sel}"),
        (None, None) => "unknown (the DaemonSet was changed by hand)".into(),
    };
    out.push_str(&format!("targets:   {targets}\n"));
    out.push_str(&format!(
        "kmsg:      {}\n",
        if s.kmsg == Some(true) { "on (the driver's Xid line in each node's kernel log)" } else { "off" }
    ));
    out.push_str(&format!(
        "ready:     {} of {} node(s)\n",
        s.ready.map_or("?".into(), |n| n.to_string()),
        s.desired.map_or("?".into(), |n| n.to_string())
    ));
    for p in &s.pods {
        let why = p.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
        out.push_str(&format!(
            "  {} {} {} {}{why}\n",
            p.node.as_deref().unwrap_or("-"),
            p.pod,
            p.phase.as_deref().unwrap_or("-"),
            if p.ready { "ready" } else { "not ready" }
        ));
    }
    out
}

/// Checks that the targets exist: each node by name, or some node for the selector.
async fn check_targets(client: &Client, targets: &Targets) -> Result<(), Failure> {
    let nodes: Api<Node> = Api::all(client.clone());
    match targets {
        Targets::Nodes(names) => {
            for n in names {
                match nodes.get(n).await {
                    Ok(_) => {}
                    Err(e) if is_not_found(&e) => {
                        return Err(Failure::new(exit::UNAVAILABLE, format!("node {n} not found (kubectl get nodes)")))
                    }
                    Err(e) => return Err(api_failure(&call("get", "nodes", None), e)),
                }
            }
        }
        Targets::Selector(sel) => {
            let s = sel.canonical();
            let list = nodes
                .list(&ListParams::default().labels(&s))
                .await
                .map_err(|e| api_failure(&call("list", "nodes", None), e))?;
            if list.items.is_empty() {
                return Err(Failure::new(
                    exit::UNAVAILABLE,
                    format!(
                        "no node matches -l {s}; label the nodes to fault (kubectl label node NODE ...) or pass --node"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Whether `ds` was applied by `fault apply` (its field manager owns part of it).
fn applied_by_us(ds: &Value) -> bool {
    ds["metadata"]["managedFields"]
        .as_array()
        .is_some_and(|m| m.iter().any(|f| f["manager"] == FIELD_MANAGER && f["operation"] == "Apply"))
}

fn managers(ds: &Value) -> String {
    let mut names: Vec<&str> = ds["metadata"]["managedFields"]
        .as_array()
        .map(|m| m.iter().filter(|f| f["subresource"].is_null()).filter_map(|f| f["manager"].as_str()).collect())
        .unwrap_or_default();
    names.dedup();
    if names.is_empty() {
        "someone else".into()
    } else {
        names.join(", ")
    }
}

/// `fault apply`: checks, applies, and with `wait` waits for every targeted node.
pub async fn apply(
    client: &Client,
    spec: &FaultSpec,
    wait: Option<&Waiting>,
    err: &mut dyn Write,
) -> Result<FaultStatus, Failure> {
    let ns = spec.namespace.as_str();
    check_targets(client, &spec.targets).await?;
    let m = manifests::build(spec);
    let name = manifests::daemonset_name();
    if let Some(existing) = get_daemonset(client, ns).await? {
        if !applied_by_us(&existing) {
            return Err(Failure::usage(format!(
                "DaemonSet {ns}/{name} exists and was not applied by cuda-fault fault apply (its fields belong to {}); \
                 delete that fault first (kubectl delete -k on its overlay, or cuda-fault fault delete), then apply",
                managers(&existing)
            )));
        }
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let cm_name = m.configmap["metadata"]["name"].as_str().expect("named").to_string();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    cms.patch(&cm_name, &params, &Patch::Apply(&m.configmap)).await.map_err(|e| match e {
        kube::Error::Api(s) if s.code == 404 => namespace_missing(ns),
        e => api_failure(&call("patch", "configmaps", Some(ns)), e),
    })?;
    let dss: Api<DaemonSet> = Api::namespaced(client.clone(), ns);
    dss.patch(&name, &params, &Patch::Apply(&m.daemonset))
        .await
        .map_err(|e| api_failure(&call("patch", "daemonsets.apps", Some(ns)), e))?;
    let line = toggle::render(&toggle::Line::On { xid: Some(spec.xid), keys: spec.keys }).trim_end().to_string();
    let _ = writeln!(err, "applied {line:?} (DaemonSet {ns}/{name}, ConfigMap {cm_name})");
    match wait {
        Some(w) => wait_ready(client, ns, w, err).await,
        None => status(client, ns).await,
    }
}

fn namespace_missing(ns: &str) -> Failure {
    Failure::new(
        exit::UNAVAILABLE,
        format!("namespace {ns} not found; create it with kubectl apply -k manifests/rbac/ or pass --namespace"),
    )
}

/// Whether the DaemonSet's rollout is complete, as `kubectl rollout status` judges it: the
/// controller saw this generation, and every node it targets runs an updated, available pod.
fn rolled_out(ds: &Value) -> Option<(i64, bool)> {
    let st = &ds["status"];
    let generation = ds["metadata"]["generation"].as_i64().unwrap_or(0);
    if st["observedGeneration"].as_i64().unwrap_or(-1) < generation {
        return None;
    }
    let desired = st["desiredNumberScheduled"].as_i64().unwrap_or(0);
    let updated = st["updatedNumberScheduled"].as_i64().unwrap_or(0);
    let available = st["numberAvailable"].as_i64().unwrap_or(0);
    Some((desired, updated >= desired && available >= desired))
}

/// Waits until every targeted node has the fault (its hold pod Ready), or the timeout.
pub async fn wait_ready(client: &Client, ns: &str, w: &Waiting, err: &mut dyn Write) -> Result<FaultStatus, Failure> {
    let start = Instant::now();
    loop {
        let Some(ds) = get_daemonset(client, ns).await? else {
            return Err(Failure::new(
                exit::UNAVAILABLE,
                format!("DaemonSet {ns}/{} was deleted while waiting", manifests::daemonset_name()),
            ));
        };
        if let Some((desired, done)) = rolled_out(&ds) {
            if desired == 0 {
                return Err(Failure::new(
                    exit::UNAVAILABLE,
                    format!("the fault targets no node: DaemonSet {ns}/{} schedules no hold pod (check the nodes and their labels)", manifests::daemonset_name()),
                ));
            }
            if done {
                let _ = writeln!(
                    err,
                    "the fault is in effect on {desired} node(s) after {:.1}s",
                    start.elapsed().as_secs_f64()
                );
                return status(client, ns).await;
            }
        }
        let elapsed = start.elapsed();
        if elapsed >= w.timeout {
            let s = status(client, ns).await?;
            let waiting: Vec<String> = s
                .pods
                .iter()
                .filter(|p| !p.ready)
                .map(|p| {
                    format!(
                        "node {}: pod {}: {}",
                        p.node.as_deref().unwrap_or("(not scheduled)"),
                        p.pod,
                        p.reason.as_deref().unwrap_or("not ready")
                    )
                })
                .collect();
            let detail = if waiting.is_empty() { "no hold pod yet".to_string() } else { waiting.join("; ") };
            return Err(Failure::new(
                exit::TIMEOUT,
                format!(
                    "timed out after {}s waiting for the fault on every targeted node ({} of {} ready): {detail}; check the nodes or raise --timeout",
                    w.timeout.as_secs(),
                    s.ready.unwrap_or(0),
                    s.desired.unwrap_or(0)
                ),
            ));
        }
        tokio::time::sleep(w.poll.min(w.timeout - elapsed)).await;
    }
}
