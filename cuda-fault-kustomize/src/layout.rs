//! Names and places of the injection: the pod layout shared with the helper (its `verify` reads
//! pods by these names), and what only the generator uses.

pub use cuda_fault::layout::*;

/// The scratch key of every patch and the annotation the guards ask for: what a user reads in
/// kustomize's error when the base no longer matches the Component.
pub const STALE: &str = "cuda-fault-targets-are-stale--rerun-cuda-fault-kustomize";

/// DGD service `componentType`s (v1alpha1) and component `type`s (v1beta1) that run GPU workers.
pub const WORKER_TYPES: &[&str] = &["worker", "prefill", "decode"];

/// The weight of the preferred node pin (the most a preferred term can have).
pub const PREFERRED_WEIGHT: i32 = 100;

/// The emptyDir that holds the shim is small: the library is about 1 MB.
pub const SHIM_VOLUME_SIZE: &str = "64Mi";
