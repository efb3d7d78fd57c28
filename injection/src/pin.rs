//! Pinning injected pods to one node, by the node's `metadata.name` (what `kubectl get nodes`
//! and `cuda-fault node NAME` show; the `kubernetes.io/hostname` label can differ from it).
//!
//! Required: `matchFields [{key: metadata.name, operator: In, values: [NODE]}]` is ANDed into
//! every existing `nodeSelectorTerm` (terms are ORed, so adding a term would not pin); one term is
//! created when there is none. The user's expressions and fields stay. The whole term list is
//! pinned, so a term added later (which would not carry the pin) fails the build.
//! Preferred: one `{weight: 100, preference: {matchFields: [...]}}` term is appended.

use serde_json::{json, Value};

use crate::error::{refuse, Error};
use crate::layout::PREFERRED_WEIGHT;
use crate::patch::Plan;
use crate::ptr::Ptr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Pods run only on the node (they go Pending when it is cordoned)
    Required,
    /// Pods prefer the node and may run elsewhere (so they can be rescheduled off a faulty node)
    Preferred,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePin {
    pub node: String,
    pub mode: Mode,
}

/// Adds the pin to the pod spec at `pod`.
pub fn node(plan: &mut Plan<'_>, pod: &Ptr, pin: &NodePin, what: &str) -> Result<(), Error> {
    let node_name = pod.key("nodeName");
    plan.pin(&node_name);
    if let Some(n) = node_name.get(plan.original()) {
        refuse!(
            "{what} sets nodeName {n}, which bypasses the scheduler: a node pin cannot apply; leave out --pin-node"
        );
    }
    let field = json!({"key": "metadata.name", "operator": "In", "values": [pin.node]});
    let affinity = pod.key("affinity").key("nodeAffinity");
    match pin.mode {
        Mode::Required => {
            let terms = affinity.key("requiredDuringSchedulingIgnoredDuringExecution").key("nodeSelectorTerms");
            plan.pin(&terms);
            let count = match terms.get(plan.original()) {
                None => 0,
                Some(Value::Array(t)) => t.len(),
                Some(_) => refuse!("{what}: {terms} is not a list"),
            };
            if count == 0 {
                plan.append(&terms, json!({"matchFields": [field]}))?;
            }
            for i in 0..count {
                plan.append(&terms.index(i).key("matchFields"), field.clone())?;
            }
        }
        Mode::Preferred => {
            let term = json!({"weight": PREFERRED_WEIGHT, "preference": {"matchFields": [field]}});
            plan.append(&affinity.key("preferredDuringSchedulingIgnoredDuringExecution"), term)?;
        }
    }
    Ok(())
}
