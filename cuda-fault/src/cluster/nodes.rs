//! Which nodes a `node` command runs on: one named node (checked first), or every node matching a
//! label selector, one after another.

use std::io::Write;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use kube::Client;

use super::errors::{api_failure, is_not_found, one_line, Call};
use super::run::run_job;
use super::{is_node_name, Options, Verb};
use crate::exit::{self, Failure};

/// Runs `verb` on one node: the whole flow, with progress on `err` and the Job's log on `out`.
pub async fn run_on_node(
    client: &Client,
    node: &str,
    verb: &Verb,
    opts: &Options,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    if !is_node_name(node) {
        return Err(Failure::usage(format!("invalid node name '{node}': expected a DNS-1123 name")));
    }
    let n = get_node(client, node).await?;
    node_notes(&n, node, err);
    run_job(client, node, verb, opts, out, err).await
}

/// GETs a node; "node X not found" when it does not exist.
pub async fn get_node(client: &Client, node: &str) -> Result<Node, Failure> {
    let nodes: Api<Node> = Api::all(client.clone());
    match nodes.get(node).await {
        Ok(n) => Ok(n),
        Err(e) if is_not_found(&e) => Err(Failure::new(
            exit::UNAVAILABLE,
            format!("node {node} not found; check the name with kubectl get nodes"),
        )),
        Err(e) => Err(api_failure(&Call { verb: "get", resource: "nodes", namespace: None }, e)),
    }
}

fn node_notes(n: &Node, node: &str, err: &mut dyn Write) {
    if n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        let _ = writeln!(err, "note: node {node} is cordoned; the Job is pinned with nodeName and runs there anyway");
    }
    let ready = n
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status == "True");
    if ready == Some(false) {
        let _ = writeln!(err, "note: node {node} is NotReady; the Job may not start before the timeout");
    }
}

/// `--all [--selector LABELS]`: runs `verb` on every matching node, one after another. A
/// forbidden, unreachable or misconfigured API stops at once; a node whose Job fails or times out
/// is reported and the others still run. The first failure's code is returned.
pub async fn run_on_selector(
    client: &Client,
    selector: Option<&str>,
    verb: &Verb,
    opts: &Options,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut lp = ListParams::default();
    if let Some(s) = selector {
        lp = lp.labels(s);
    }
    let list = nodes.list(&lp).await.map_err(|e| match e {
        kube::Error::Api(s) if s.code == 400 => {
            Failure::usage(format!("invalid --selector '{}': {}", selector.unwrap_or(""), one_line(&s.message)))
        }
        e => api_failure(&Call { verb: "list", resource: "nodes", namespace: None }, e),
    })?;
    let names: Vec<String> = list.items.iter().filter_map(|n| n.metadata.name.clone()).collect();
    if names.is_empty() {
        let what = selector.map(|s| format!(" match selector '{s}'")).unwrap_or_default();
        return Err(Failure::new(exit::UNAVAILABLE, format!("no nodes{what}")));
    }
    let _ = writeln!(err, "{} node(s): {}", names.len(), names.join(", "));
    let mut failures: Vec<(String, Failure)> = Vec::new();
    for (node, n) in names.iter().zip(&list.items) {
        let _ = writeln!(out, "== node {node} ==");
        node_notes(n, node, err);
        match run_job(client, node, verb, opts, out, err).await {
            Ok(()) => {}
            Err(f) if matches!(f.code, exit::FORBIDDEN | exit::NO_CONFIG | exit::UNAVAILABLE | exit::USAGE) => {
                return Err(f)
            }
            Err(f) => {
                let _ = writeln!(err, "cuda-fault: {f}");
                failures.push((node.clone(), f));
            }
        }
    }
    if let Some((_, first)) = failures.first() {
        let which: Vec<&str> = failures.iter().map(|(n, _)| n.as_str()).collect();
        return Err(Failure::new(
            first.code,
            format!("{} of {} nodes failed: {}", failures.len(), names.len(), which.join(", ")),
        ));
    }
    let _ = writeln!(err, "{} on {} node(s): done", verb.name(), names.len());
    Ok(())
}
