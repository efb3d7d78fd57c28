//! What a hold pod of the fault DaemonSet asks the API when it is stopped, to decide whether the
//! fault is over on its node:
//!
//! | the API says | decision |
//! |---|---|
//! | the pod's DaemonSet is gone (404), being deleted, or replaced by a new one of the same name | remove |
//! | the DaemonSet's template no longer selects this node (nodeSelector, required node affinity), or the node is gone | remove |
//! | the DaemonSet still targets this node (eviction, drain, rolling update, node shutdown, restart) | keep |
//! | no answer (unreachable, forbidden, no pod or owner to ask about) | keep, and say how to clean by hand |
//!
//! "Remove" is a permission, not an order: the caller removes the toggle file only if it is still
//! exactly the one this pod wrote.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::Client;

use super::errors::{api_failure, is_not_found, Call};
use super::selects::selects;

/// The hold pod asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    /// `NODE_NAME` from the downward API; the pod's `spec.nodeName` wins when the API answers.
    pub node: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The fault resource was deleted or no longer targets this node: why.
    Remove(String),
    /// The fault resource still targets this node: why.
    Keep(String),
    /// The API gave no answer: why.
    Unknown(String),
}

fn failed(verb: &'static str, resource: &'static str, ns: Option<&str>, e: kube::Error) -> Decision {
    Decision::Unknown(api_failure(&Call { verb, resource, namespace: ns }, e).message)
}

/// Asks the API about `pod`.
pub async fn decide(client: &Client, pod: &PodRef) -> Decision {
    let ns = pod.namespace.as_str();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let own = match pods.get(&pod.name).await {
        Ok(p) => p,
        Err(e) if is_not_found(&e) => return Decision::Unknown(format!("pod {ns}/{} not found", pod.name)),
        Err(e) => return failed("get", "pods", Some(ns), e),
    };
    let owner =
        own.metadata.owner_references.iter().flatten().find(|o| o.kind == "DaemonSet" && o.controller == Some(true));
    let Some(owner) = owner else {
        return Decision::Unknown(format!("pod {ns}/{} has no DaemonSet owner", pod.name));
    };
    let ds_name = format!("DaemonSet {ns}/{}", owner.name);
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), ns);
    let ds = match daemonsets.get(&owner.name).await {
        Ok(d) => d,
        Err(e) if is_not_found(&e) => return Decision::Remove(format!("the fault resource ({ds_name}) was deleted")),
        Err(e) => return failed("get", "daemonsets.apps", Some(ns), e),
    };
    if ds.metadata.uid.as_deref() != Some(owner.uid.as_str()) {
        return Decision::Remove(format!(
            "the fault resource ({ds_name}) was deleted (one of the same name was created since)"
        ));
    }
    if ds.metadata.deletion_timestamp.is_some() {
        return Decision::Remove(format!("the fault resource ({ds_name}) is being deleted"));
    }
    let node_name = own.spec.as_ref().and_then(|s| s.node_name.clone()).or_else(|| pod.node.clone());
    let Some(node_name) = node_name else {
        return Decision::Unknown(format!("pod {ns}/{} names no node", pod.name));
    };
    let nodes: Api<Node> = Api::all(client.clone());
    let node = match nodes.get(&node_name).await {
        Ok(n) => n,
        Err(e) if is_not_found(&e) => return Decision::Remove(format!("node {node_name} no longer exists")),
        Err(e) => return failed("get", "nodes", None, e),
    };
    let template = ds.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    if !template.is_some_and(|t| selects(t, &node)) {
        return Decision::Remove(format!("{ds_name} no longer selects node {node_name}"));
    }
    Decision::Keep(format!(
        "{ds_name} still targets node {node_name}, so the fault stays on (this pod was evicted, drained, updated or restarted; its replacement holds the file as it is)"
    ))
}
