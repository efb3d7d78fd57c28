//! The command line's pieces, one module per command group; `lib.rs` assembles them.

pub mod flags;
pub mod node;
pub mod scenario;
pub mod verify;

pub const HOLD_HELP: &str = "\
On SIGTERM or SIGINT it asks the Kubernetes API (in-cluster, or KUBECONFIG) about its pod's
DaemonSet and removes the toggle file only if the DaemonSet was deleted or no longer selects
this node, and only if the file is still the one it wrote. Otherwise (eviction, drain, update,
restart, API unreachable) the file stays. It needs POD_NAME, POD_NAMESPACE (and NODE_NAME) from
the downward API; see kustomize/fault/daemonset.yaml.";
