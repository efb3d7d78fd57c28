//! The helper's Kubernetes side, all through kube-rs:
//!
//! - [`nodes`]: `cuda-fault node NODE|--all …`, this image's `cuda-fault <verb>` in a Job pinned to
//!   a node with the node's toggle directory mounted; it never execs into worker pods, so it works
//!   while they crash-loop;
//! - [`job`] builds that Job, [`run`] creates it, waits, prints its log and deletes it;
//! - [`hold`]: what a stopped hold pod of the fault DaemonSet asks the API before it removes its
//!   toggle file, and [`selects`], whether a pod template still selects a node;
//! - [`fault`], [`fault_delete`]: `cuda-fault fault apply|status|delete`, the fault layer as
//!   commands, from the objects [`fault_manifests`] builds out of `kustomize/`; [`selector`] reads
//!   label selectors;
//! - [`verify`]: which pods carry the injection, on which nodes, and those nodes' toggle state
//!   ([`report`] writes it as text);
//! - [`inject`]: the shim injected into a live workload by one guarded JSON patch (the generator's
//!   rules), and taken away again;
//! - [`errors`] maps kube errors to one-line failures naming what to fix; [`rbac`] lists every
//!   call (the manifests under `manifests/rbac/` grant exactly these).

pub mod errors;
pub mod fault;
pub mod fault_delete;
pub mod fault_manifests;
pub mod hold;
pub mod inject;
pub mod job;
pub mod names;
pub mod nodes;
pub mod rbac;
pub mod report;
pub mod run;
pub mod selector;
pub mod selects;
pub mod verify;

use std::time::Duration;

use kube::Client;

pub use crate::layout::{BINARY, DEFAULT_IMAGE, HOST_DIR};
pub use errors::no_config;
pub use job::{build_job, Verb};
pub use names::{is_dns_label, is_node_name, node_label_value};
pub use nodes::{run_on_node, run_on_selector};
pub use rbac::{Rule, Scope, HOLD_RBAC, INJECT_RBAC, RBAC};

pub const IMAGE_ENV: &str = "CUDA_FAULT_IMAGE";
/// Where the Jobs run and the hold DaemonSet lives (`manifests/rbac/namespace.yaml`).
pub const DEFAULT_NAMESPACE: &str = "cuda-fault";
pub const DEFAULT_TIMEOUT_SECS: u64 = 120;
/// Where the Job mounts [`HOST_DIR`].
pub const MOUNT_DIR: &str = crate::layout::TOGGLE_DIR;
pub const CONTAINER: &str = "cuda-fault";
pub const MANAGED_BY_KEY: &str = "app.kubernetes.io/managed-by";
pub const NAME_KEY: &str = "app.kubernetes.io/name";
pub const NODE_KEY: &str = "cuda-fault/node";
pub const MANAGED_BY: &str = "cuda-fault";
/// The hold pods' `app.kubernetes.io/name` (kustomize/fault/daemonset.yaml).
pub const HOLD_NAME: &str = "cuda-fault-hold";
pub const JOB_TTL_SECS: i32 = 300;
pub const RBAC_HINT: &str = "apply manifests/rbac/ (kubectl apply -k manifests/rbac/)";

/// Settings shared by every node of one invocation.
#[derive(Debug, Clone)]
pub struct Options {
    pub namespace: String,
    pub image: String,
    pub timeout: Duration,
    /// How often the Job is polled.
    pub poll: Duration,
}

impl Options {
    pub fn new(namespace: impl Into<String>, image: impl Into<String>, timeout: Duration) -> Options {
        Options { namespace: namespace.into(), image: image.into(), timeout, poll: Duration::from_secs(1) }
    }

    pub(crate) fn deadline_secs(&self) -> i64 {
        (self.timeout.as_millis().div_ceil(1000) as i64).max(1)
    }
}

/// Connects with the current kubeconfig context, or the in-cluster service account.
pub async fn connect() -> Result<Client, crate::exit::Failure> {
    let config = kube::Config::infer().await.map_err(|e| no_config(&errors::full_chain(&e)))?;
    Client::try_from(config).map_err(|e| no_config(&errors::full_chain(&e)))
}
