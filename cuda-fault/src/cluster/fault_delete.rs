//! `cuda-fault fault delete [--wait]`: deletes the hold DaemonSet and every fault ConfigMap (those
//! of earlier faults too), whoever applied them. With `--wait` it returns once every hold pod
//! that held the fault is gone, and reads the Event each one recorded when it stopped: a node
//! whose pod kept its toggle file (rewritten by someone else since, or the API unreachable when it
//! stopped) is listed with why, and so is one whose pod recorded nothing.

use std::collections::BTreeSet;
use std::io::Write;
use std::time::Instant;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod};
use kube::api::{Api, DeleteParams, ListParams};
use kube::Client;
use serde::Serialize;

use super::errors::{api_failure, is_not_found, Call};
use super::fault::{get_daemonset, hold_pods, pod_selector, HoldPod, Waiting};
use super::fault_manifests as manifests;
use crate::exit::{self, Failure};
use crate::hold::stop::{COMPONENT, REASON_KEPT, REASON_REMOVED};

/// A node where the fault may still be on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Remaining {
    pub node: String,
    pub pod: String,
    pub reason: String,
}

/// `fault delete --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deleted {
    /// Whether there was anything to delete.
    pub deleted: bool,
    pub remaining: Vec<Remaining>,
}

fn call<'a>(verb: &'static str, resource: &'static str, ns: &'a str) -> Call<'a> {
    Call { verb, resource, namespace: Some(ns) }
}

/// Deletes the fault in `ns`; with `wait`, waits for its hold pods and reads what they did.
pub async fn delete(
    client: &Client,
    ns: &str,
    wait: Option<&Waiting>,
    err: &mut dyn Write,
) -> Result<Deleted, Failure> {
    let name = manifests::daemonset_name();
    let ds = get_daemonset(client, ns).await?;
    // The pods that held the fault: those whose hold process runs (a pending, never-started or
    // crash-looping one wrote nothing, and records nothing).
    let held: Vec<HoldPod> = match &ds {
        Some(ds) => hold_pods(client, ns, ds).await?.into_iter().filter(|p| p.running).collect(),
        None => Vec::new(),
    };
    let mut deleted = false;
    if ds.is_some() {
        let dss: Api<DaemonSet> = Api::namespaced(client.clone(), ns);
        match dss.delete(&name, &DeleteParams::background()).await {
            Ok(_) => {
                deleted = true;
                let _ = writeln!(err, "deleted DaemonSet {ns}/{name}");
            }
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(api_failure(&call("delete", "daemonsets.apps", ns), e)),
        }
    }
    let (generator, _, labels) = manifests::generator();
    let selector = labels
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(","))
        .unwrap_or_default();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let list = cms
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| api_failure(&call("list", "configmaps", ns), e))?;
    for cm in list.items {
        let Some(cm_name) = cm.metadata.name.filter(|n| n.starts_with(&format!("{generator}-")) || *n == generator)
        else {
            continue;
        };
        match cms.delete(&cm_name, &DeleteParams::default()).await {
            Ok(_) => {
                deleted = true;
                let _ = writeln!(err, "deleted ConfigMap {ns}/{cm_name}");
            }
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(api_failure(&call("delete", "configmaps", ns), e)),
        }
    }
    let (Some(w), Some(ds)) = (wait, &ds) else { return Ok(Deleted { deleted, remaining: Vec::new() }) };
    wait_gone(client, ns, &pod_selector(ds), &held, w).await?;
    let remaining = reports(client, ns, &held).await?;
    for r in &remaining {
        let _ = writeln!(err, "warning: node {}: the fault may still be on: {}", r.node, r.reason);
    }
    Ok(Deleted { deleted, remaining })
}

/// Waits until none of `held` (hold pods, labelled `selector`) exists any more.
async fn wait_gone(client: &Client, ns: &str, selector: &str, held: &[HoldPod], w: &Waiting) -> Result<(), Failure> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let names: BTreeSet<&str> = held.iter().map(|p| p.pod.as_str()).collect();
    let start = Instant::now();
    loop {
        let list = pods
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| api_failure(&call("list", "pods", ns), e))?;
        let left: Vec<&str> =
            list.items.iter().filter_map(|p| p.metadata.name.as_deref()).filter(|n| names.contains(n)).collect();
        if left.is_empty() {
            return Ok(());
        }
        let elapsed = start.elapsed();
        if elapsed >= w.timeout {
            let on: Vec<String> = held
                .iter()
                .filter(|p| left.contains(&p.pod.as_str()))
                .map(|p| format!("{} on node {}", p.pod, p.node.as_deref().unwrap_or("?")))
                .collect();
            return Err(Failure::new(
                exit::TIMEOUT,
                format!(
                    "timed out after {}s waiting for the hold pods to stop: {} still there (an unreachable node keeps its pod and its toggle file: cuda-fault node NODE clean once it is back)",
                    w.timeout.as_secs(),
                    on.join(", ")
                ),
            ));
        }
        tokio::time::sleep(w.poll.min(w.timeout - elapsed)).await;
    }
}

/// What each stopped hold pod recorded; the nodes where the fault may remain.
async fn reports(client: &Client, ns: &str, held: &[HoldPod]) -> Result<Vec<Remaining>, Failure> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let list = events.list(&ListParams::default()).await.map_err(|e| api_failure(&call("list", "events", ns), e))?;
    let mut out = Vec::new();
    for p in held {
        let node = p.node.clone().unwrap_or_else(|| "NODE".into());
        let last = list.items.iter().rfind(|e| {
            e.involved_object.name.as_deref() == Some(p.pod.as_str())
                && e.source.as_ref().and_then(|s| s.component.as_deref()) == Some(COMPONENT)
                && matches!(e.reason.as_deref(), Some(REASON_REMOVED | REASON_KEPT))
        });
        match last {
            Some(e) if e.reason.as_deref() == Some(REASON_REMOVED) => {}
            Some(e) => out.push(Remaining { node, pod: p.pod.clone(), reason: e.message.clone().unwrap_or_default() }),
            None => out.push(Remaining {
                reason: format!(
                    "pod {} recorded nothing when it stopped (it could not reach the API, or was killed first); if the node still has the fault: cuda-fault node {node} clean",
                    p.pod
                ),
                node,
                pod: p.pod.clone(),
            }),
        }
    }
    Ok(out)
}
