//! Every API call the helper makes, as RBAC rules. `manifests/rbac/` grants exactly these (a test
//! checks both directions) and the mock tests check that no call falls outside them.

/// Where a rule is granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// A ClusterRole: cluster-scoped resources, or namespaced ones in any namespace.
    Cluster,
    /// A Role in the tool's namespace (`cuda-fault`).
    ToolNamespace,
}

/// (API group, resource, verb, scope).
pub type Rule = (&'static str, &'static str, &'static str, Scope);

/// The `cuda-fault` ServiceAccount and the `cuda-fault-operators` group: `node`, `verify` and
/// `fault`.
pub const RBAC: &[Rule] = &[
    // `node`: check NODE; `--all --selector`.
    ("", "nodes", "get", Scope::Cluster),
    ("", "nodes", "list", Scope::Cluster),
    // `verify`: the workload's selector, its pods in any namespace.
    ("", "pods", "list", Scope::Cluster),
    ("apps", "deployments", "get", Scope::Cluster),
    ("apps", "statefulsets", "get", Scope::Cluster),
    ("apps", "daemonsets", "get", Scope::Cluster),
    ("nvidia.com", "dynamographdeployments", "get", Scope::Cluster),
    // The node Job, its pod and log; `verify` also lists the hold pods here.
    ("batch", "jobs", "create", Scope::ToolNamespace),
    ("batch", "jobs", "get", Scope::ToolNamespace),
    ("batch", "jobs", "delete", Scope::ToolNamespace),
    ("", "pods", "list", Scope::ToolNamespace),
    ("", "pods/log", "get", Scope::ToolNamespace),
    // `fault apply`: server-side apply of the hold DaemonSet and its ConfigMap (an apply that
    // creates is authorized as create too); `status` reads them; `delete` deletes them and, with
    // --wait, reads the Events the hold pods recorded as they stopped.
    ("apps", "daemonsets", "create", Scope::ToolNamespace),
    ("apps", "daemonsets", "patch", Scope::ToolNamespace),
    ("apps", "daemonsets", "delete", Scope::ToolNamespace),
    ("", "configmaps", "get", Scope::ToolNamespace),
    ("", "configmaps", "list", Scope::ToolNamespace),
    ("", "configmaps", "create", Scope::ToolNamespace),
    ("", "configmaps", "patch", Scope::ToolNamespace),
    ("", "configmaps", "delete", Scope::ToolNamespace),
    ("", "events", "list", Scope::ToolNamespace),
];

/// `cuda-fault inject`, in a ClusterRole of its own (it writes): the workload's kinds, read and
/// patched; the ConfigMaps and Secrets an injected container's `envFrom` names, read (they decide
/// the user's `LD_PRELOAD`); the pods of `--remove --restart`, listed and deleted. Bound to the
/// same subjects as [`RBAC`].
pub const INJECT_RBAC: &[Rule] = &[
    ("apps", "deployments", "get", Scope::Cluster),
    ("apps", "deployments", "patch", Scope::Cluster),
    ("apps", "statefulsets", "get", Scope::Cluster),
    ("apps", "statefulsets", "patch", Scope::Cluster),
    ("apps", "daemonsets", "get", Scope::Cluster),
    ("apps", "daemonsets", "patch", Scope::Cluster),
    ("nvidia.com", "dynamographdeployments", "get", Scope::Cluster),
    ("nvidia.com", "dynamographdeployments", "patch", Scope::Cluster),
    ("", "configmaps", "get", Scope::Cluster),
    ("", "secrets", "get", Scope::Cluster),
    ("", "pods", "list", Scope::Cluster),
    ("", "pods", "delete", Scope::Cluster),
];

/// The `cuda-fault-hold` ServiceAccount of the fault DaemonSet's pods: what they read when they
/// stop (their own pod, its DaemonSet, their node), and the Event saying what they did.
pub const HOLD_RBAC: &[Rule] = &[
    ("", "nodes", "get", Scope::Cluster),
    ("", "pods", "get", Scope::ToolNamespace),
    ("apps", "daemonsets", "get", Scope::ToolNamespace),
    ("", "events", "create", Scope::ToolNamespace),
];

/// Whether `rules` allow `verb` on `resource` of `group` in `namespace` (None: cluster-scoped),
/// with the Role bound in `tool_namespace` (`cuda-fault`, or what `--namespace` chose).
pub fn allows(
    rules: &[Rule],
    group: &str,
    resource: &str,
    verb: &str,
    namespace: Option<&str>,
    tool_namespace: &str,
) -> bool {
    rules.iter().any(|&(g, r, v, scope)| {
        g == group
            && r == resource
            && v == verb
            && match scope {
                Scope::Cluster => true,
                Scope::ToolNamespace => namespace == Some(tool_namespace),
            }
    })
}
