//! Where the injection puts things in a pod, the one definition used by the generator
//! (`cuda-fault-kustomize`), by the live injection and `verify` of the helper (which reads pods by
//! these names), by the node Job and by `hold`. The image holds the helper and the shim side by
//! side in `/usr/local/bin`.

/// The image, tagged with this version.
pub const DEFAULT_IMAGE: &str = concat!("ghcr.io/cuda-fault/cuda-fault:", env!("CARGO_PKG_VERSION"));
/// The helper's path in the (`FROM scratch`) image.
pub const BINARY: &str = "/usr/local/bin/cuda-fault";
/// The shim's file name, beside the helper in the image and in the emptyDir.
pub const LIBRARY_NAME: &str = "cuda_intercept.so";

/// The node directory that holds the toggle file (a hostPath).
pub const HOST_DIR: &str = "/var/lib/cuda-fault-test";
/// Where pods mount [`HOST_DIR`].
pub const TOGGLE_DIR: &str = "/host-fault";
/// The toggle file inside pods (the shim's default).
pub const TOGGLE_FILE: &str = "/host-fault/cuda_fault_enabled";
/// Where workers mount the emptyDir holding the shim.
pub const SHIM_DIR: &str = "/cuda-fault";
/// What `LD_PRELOAD` names (first, before any library of the user's).
pub const PRELOAD: &str = "/cuda-fault/cuda_intercept.so";

/// The init container that copies the shim into the emptyDir.
pub const INIT_CONTAINER: &str = "cuda-fault-shim-install";
/// The emptyDir volume.
pub const SHIM_VOLUME: &str = "cuda-fault-shim";
/// The hostPath volume of [`HOST_DIR`].
pub const TOGGLE_VOLUME: &str = "cuda-fault-toggle";

/// The shim's variables, as the injection sets them.
pub const ENV_PRELOAD: &str = "LD_PRELOAD";
pub const ENV_ENABLED: &str = "CUDA_FAULT_INJECTION_ENABLED";
pub const ENV_XID: &str = "CUDA_XID_TYPE";

/// The non-root user of the image (and of the init container).
pub const IMAGE_UID: i64 = 65532;

/// The scratch key of every patch and the annotation the guards ask for: what a user reads in
/// kustomize's error when the base no longer matches the Component.
pub const STALE: &str = "cuda-fault-targets-are-stale--rerun-cuda-fault-kustomize";

/// DGD service `componentType`s (v1alpha1) and component `type`s (v1beta1) that run GPU workers.
pub const WORKER_TYPES: &[&str] = &["worker", "prefill", "decode"];

/// The weight of the preferred node pin (the most a preferred term can have).
pub const PREFERRED_WEIGHT: i32 = 100;

/// The emptyDir that holds the shim is small: the library is about 1 MB.
pub const SHIM_VOLUME_SIZE: &str = "64Mi";
