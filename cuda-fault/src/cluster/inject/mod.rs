//! `cuda-fault inject`: the shim injected into a live workload, and taken away again, without its
//! kustomize sources. The rules are the generator's (`injection::live`); this module reads the
//! object and what its environment comes from, sends the one guarded JSON patch ([`api`]) and,
//! for `--remove --restart`, deletes the pods that still carry the injection.

pub mod api;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, DeleteParams, ListParams};
use kube::Client;
use serde::Serialize;
use serde_json::Value;

use super::errors::{api_failure, is_not_found, Call};
use super::verify::{label_selector, Workload, DGD_POD_LABEL};
use crate::exit::Failure;
use crate::layout::INIT_CONTAINER;
use api::Resource;
use injection::live::{self, ANNOTATION};

/// What to inject, where.
#[derive(Debug, Clone)]
pub struct Plan {
    pub namespace: String,
    pub workload: Workload,
    pub opts: injection::Options,
}

/// What to take away, where.
#[derive(Debug, Clone)]
pub struct RemovePlan {
    pub namespace: String,
    pub workload: Workload,
    pub restart: bool,
}

/// `inject --json`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Injected {
    pub kind: String,
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub namespace: String,
    pub name: String,
    /// One line per injected container.
    pub injected: Vec<String>,
    /// The annotation that records what was added.
    pub annotation: &'static str,
    /// The operations of the JSON patch.
    pub operations: usize,
    /// One line per container, service or component left alone.
    pub left_alone: Vec<String>,
}

/// `inject --remove --json`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Removed {
    pub kind: String,
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    pub namespace: String,
    pub name: String,
    pub removed: Vec<String>,
    /// What stays because it changed since the injection.
    pub kept: Vec<String>,
    /// Pods deleted by `--restart`.
    pub restarted_pods: Vec<String>,
    /// What the record lists but the object no longer had.
    pub gone: Vec<String>,
}

fn name_of(w: &Workload) -> &str {
    match w {
        Workload::Deployment(n)
        | Workload::StatefulSet(n)
        | Workload::DaemonSet(n)
        | Workload::DynamoGraphDeployment(n) => n,
    }
}

fn refusal(e: injection::error::Error) -> Failure {
    Failure::usage(e.0)
}

/// Injects into the workload: one JSON patch, applied whole or not at all.
pub async fn inject(client: &Client, plan: &Plan) -> Result<Injected, Failure> {
    let (ns, name) = (plan.namespace.as_str(), name_of(&plan.workload));
    let r = api::resolve(client, &plan.workload).await?;
    let what = format!("{} {ns}/{name}", r.kind);
    let object = api::get(client, &r, ns, name).await?;
    let mut sources = Vec::new();
    for s in live::sources(&object, &plan.opts).map_err(refusal)? {
        sources.push(api::source(client, ns, &s, &what).await?);
    }
    let injection = live::plan(&object, &sources, &plan.opts).map_err(refusal)?;
    api::patch(client, &r, ns, name, &injection.ops, &what).await?;
    Ok(Injected {
        kind: r.kind.to_string(),
        api_version: r.api_version(),
        namespace: ns.to_string(),
        name: name.to_string(),
        injected: injection.injected,
        annotation: ANNOTATION,
        operations: injection.ops.len(),
        left_alone: injection.left_alone,
    })
}

/// Removes what the injection added, and with `restart` deletes the pods that still carry it.
pub async fn remove(client: &Client, plan: &RemovePlan) -> Result<Removed, Failure> {
    let (ns, name) = (plan.namespace.as_str(), name_of(&plan.workload));
    let r = api::resolve(client, &plan.workload).await?;
    let what = format!("{} {ns}/{name}", r.kind);
    let object = api::get(client, &r, ns, name).await?;
    let removal = live::removal::plan(&object).map_err(refusal)?;
    api::patch(client, &r, ns, name, &removal.ops, &what).await?;
    let restarted_pods = if plan.restart {
        let selector = selector(&r, &object, name)?;
        restart(client, ns, &selector).await.map_err(|f| {
            Failure::new(f.code, format!("removed the injection from {what}, but --restart failed: {}", f.message))
        })?
    } else {
        vec![]
    };
    Ok(Removed {
        kind: r.kind.to_string(),
        api_version: r.api_version(),
        namespace: ns.to_string(),
        name: name.to_string(),
        removed: removal.removed,
        kept: removal.kept,
        restarted_pods,
        gone: removal.gone,
    })
}

/// The label selector of the workload's pods (a DGD's: the operator's label).
fn selector(r: &Resource, object: &Value, name: &str) -> Result<String, Failure> {
    if r.kind == "DynamoGraphDeployment" {
        return Ok(format!("{DGD_POD_LABEL}={name}"));
    }
    let s: LabelSelector =
        object.pointer("/spec/selector").and_then(|s| serde_json::from_value(s.clone()).ok()).unwrap_or_default();
    let s = label_selector(&s);
    if s.is_empty() {
        // An empty selector would select every pod of the namespace.
        return Err(Failure::usage(format!("{} {name} has no pod selector; restart its pods by hand", r.kind)));
    }
    Ok(s)
}

/// Deletes the pods of `selector` that still carry the injection (the init container), so they
/// come back from the workload's clean template; returns their names.
async fn restart(client: &Client, ns: &str, selector: &str) -> Result<Vec<String>, Failure> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| api_failure(&Call { verb: "list", resource: "pods", namespace: Some(ns) }, e))?;
    let mut deleted = Vec::new();
    for pod in list.items {
        let carries = pod
            .spec
            .as_ref()
            .and_then(|s| s.init_containers.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.name == INIT_CONTAINER));
        let Some(name) = pod.metadata.name.clone() else { continue };
        if !carries || pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        match pods.delete(&name, &DeleteParams::default()).await {
            Ok(_) => deleted.push(name),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(api_failure(&Call { verb: "delete", resource: "pods", namespace: Some(ns) }, e)),
        }
    }
    Ok(deleted)
}
