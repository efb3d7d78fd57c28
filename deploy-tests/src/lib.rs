//! Renders the kustomize overlays under `kustomize/` with `kubectl kustomize` and validates what
//! comes out; also generates the parts of `kustomize/` that derive from data (the per-XID
//! components and overlays, from the XID table; the target components, from the base's
//! workloads). See `kustomize/README.md`.
//!
//! - [`kubectl`]: runs `kubectl kustomize` (a missing kubectl is a test failure, never a skip).
//! - [`schema`]: a small OpenAPI v3 structural-schema validator for DynamoGraphDeployments.
//! - [`k8s`]: validates Deployments, StatefulSets and Services against `k8s-openapi` types.
//! - [`sites`]: finds the pod templates to inject into (the opt-in label, worker services).
//! - [`gen`]: writes the generated files; `cargo run -p deploy-tests --bin gen-overlays`.
//! - [`check`]: asserts an overlay's output carries the injection exactly once and that
//!   everything else is the user's workload, unchanged.

#![deny(unsafe_code)]

pub mod check;
pub mod gen;
pub mod k8s;
pub mod kubectl;
pub mod paths;
pub mod schema;
pub mod sites;
pub mod yaml;

/// The label on a Deployment or StatefulSet (its own metadata, not the pod template's) that
/// opts it in. Only the value "true" opts in.
pub const INJECT_LABEL: &str = "cuda-fault/inject";
/// The shim inside the emptyDir, as LD_PRELOAD names it.
pub const PRELOAD: &str = "/cuda-fault/cuda_intercept.so";
pub const INIT_CONTAINER: &str = "cuda-fault-install";
pub const LIB_VOLUME: &str = "cuda-fault-lib";
pub const LIB_MOUNT: &str = "/cuda-fault";
pub const MARKER_VOLUME: &str = "cuda-fault-marker";
pub const MARKER_HOST_PATH: &str = "/var/lib/cuda-fault-test";
pub const MARKER_MOUNT: &str = "/host-fault";
pub const ENV_PRELOAD: &str = "LD_PRELOAD";
pub const ENV_ENABLED: &str = "CUDA_FAULT_INJECTION_ENABLED";
pub const ENV_XID: &str = "CUDA_XID_TYPE";
/// The default image; users change it with `kustomize edit set image`.
pub const IMAGE: &str = "ghcr.io/cuda-fault/cuda-fault:0.1.0";
pub const IMAGE_NAME: &str = "ghcr.io/cuda-fault/cuda-fault";
/// DGD service `componentType`s (v1alpha1) and component `type`s (v1beta1) that run GPU
/// workers and get the injection. Frontends, planners and routers do not.
pub const WORKER_TYPES: &[&str] = &["worker", "prefill", "decode"];
/// The weight of the preferred node-pinning term; kustomize finds the term by it.
pub const PREFERRED_WEIGHT: i64 = 99;
/// Node field the pins match on (the node's name, as `cuda-fault node NAME` takes it).
pub const PIN_FIELD: &str = "metadata.name";
