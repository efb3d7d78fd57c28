//! `manifests/rbac/` grants exactly the calls the helper makes (`cluster::RBAC` for `node` and
//! `verify`, `cluster::INJECT_RBAC` for `inject`, `cluster::HOLD_RBAC` for the fault DaemonSet's
//! hold pods; the mock tests check every request against them), binds them to the right
//! subjects, and everything carries the managed-by label.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use cuda_fault::cluster::{
    Rule, Scope, DEFAULT_NAMESPACE, HOLD_NAME, HOLD_RBAC, INJECT_RBAC, MANAGED_BY, MANAGED_BY_KEY, RBAC,
};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../manifests/rbac")
}

fn load<T: DeserializeOwned>(file: &str) -> T {
    let text = fs::read_to_string(dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn managed(meta: &ObjectMeta, file: &str) {
    let labels = meta.labels.clone().unwrap_or_default();
    assert_eq!(labels.get(MANAGED_BY_KEY).map(String::as_str), Some(MANAGED_BY), "{file} lacks the managed-by label");
}

fn rules(rules: &[PolicyRule]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for r in rules {
        for g in r.api_groups.iter().flatten() {
            for res in r.resources.iter().flatten() {
                for v in &r.verbs {
                    out.insert((g.clone(), res.clone(), v.clone()));
                }
            }
        }
    }
    out
}

fn wanted(rules: &[Rule], scope: Scope) -> BTreeSet<(String, String, String)> {
    rules.iter().filter(|r| r.3 == scope).map(|(g, r, v, _)| (g.to_string(), r.to_string(), v.to_string())).collect()
}

#[test]
fn kustomization_lists_every_manifest() {
    let k: Value = load("kustomization.yaml");
    let listed: BTreeSet<String> =
        k["resources"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    let present: BTreeSet<String> = fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(listed, present);
}

#[test]
fn roles_grant_exactly_what_the_code_calls() {
    for (cluster_file, role_file, declared) in
        [("clusterrole.yaml", "role.yaml", RBAC), ("hold-clusterrole.yaml", "hold-role.yaml", HOLD_RBAC)]
    {
        let cr: ClusterRole = load(cluster_file);
        managed(&cr.metadata, cluster_file);
        assert_eq!(rules(cr.rules.as_deref().unwrap_or_default()), wanted(declared, Scope::Cluster), "{cluster_file}");
        let role: Role = load(role_file);
        managed(&role.metadata, role_file);
        assert_eq!(role.metadata.namespace.as_deref(), Some(DEFAULT_NAMESPACE));
        assert_eq!(
            rules(role.rules.as_deref().unwrap_or_default()),
            wanted(declared, Scope::ToolNamespace),
            "{role_file}"
        );
    }
    // Never exec, never write to pods or to workloads; the only DaemonSets and ConfigMaps written
    // are the fault's, in the tool's namespace; the hold pods only read, and record Events.
    for (_, resource, verb, scope) in RBAC.iter().chain(HOLD_RBAC) {
        let read = ["get", "list"].contains(verb);
        assert!(
            *resource != "pods/exec"
                && (!["pods", "deployments", "statefulsets", "dynamographdeployments"].contains(resource) || read)
                && (!["daemonsets", "configmaps", "events"].contains(resource)
                    || read
                    || *scope == Scope::ToolNamespace),
            "{resource} {verb}"
        );
    }
    assert!(HOLD_RBAC.iter().all(|r| r.2 == "get" || (r.1 == "events" && r.2 == "create")));

    // `inject` in a ClusterRole of its own: it patches the workloads it injects into and, for
    // --restart, deletes pods; it never execs, creates or touches anything else.
    let cr: ClusterRole = load("inject-clusterrole.yaml");
    managed(&cr.metadata, "inject-clusterrole.yaml");
    assert_eq!(rules(cr.rules.as_deref().unwrap_or_default()), wanted(INJECT_RBAC, Scope::Cluster));
    assert!(INJECT_RBAC.iter().all(|r| r.3 == Scope::Cluster));
    for (_, resource, verb, _) in INJECT_RBAC {
        let write = !["get", "list"].contains(verb);
        assert!(
            !write
                || (*verb == "patch"
                    && ["deployments", "statefulsets", "daemonsets", "dynamographdeployments"].contains(resource))
                || (*verb == "delete" && *resource == "pods"),
            "{resource} {verb}"
        );
    }
}

#[test]
fn bindings_namespace_and_service_accounts() {
    let crb: ClusterRoleBinding = load("inject-clusterrolebinding.yaml");
    managed(&crb.metadata, "inject-clusterrolebinding.yaml");
    assert_eq!((crb.role_ref.kind.as_str(), crb.role_ref.name.as_str()), ("ClusterRole", "cuda-fault-inject"));
    let plain: ClusterRoleBinding = load("clusterrolebinding.yaml");
    assert_eq!(crb.subjects, plain.subjects, "inject is bound to the same subjects as node and verify");

    for (prefix, role, account) in [("", "cuda-fault", "cuda-fault"), ("hold-", HOLD_NAME, HOLD_NAME)] {
        let crb: ClusterRoleBinding = load(&format!("{prefix}clusterrolebinding.yaml"));
        managed(&crb.metadata, "clusterrolebinding");
        assert_eq!((crb.role_ref.kind.as_str(), crb.role_ref.name.as_str()), ("ClusterRole", role));
        let rb: RoleBinding = load(&format!("{prefix}rolebinding.yaml"));
        managed(&rb.metadata, "rolebinding");
        assert_eq!(rb.metadata.namespace.as_deref(), Some(DEFAULT_NAMESPACE));
        assert_eq!((rb.role_ref.kind.as_str(), rb.role_ref.name.as_str()), ("Role", role));
        for subjects in [crb.subjects.unwrap(), rb.subjects.unwrap()] {
            assert!(subjects.iter().any(|s| s.kind == "ServiceAccount"
                && s.name == account
                && s.namespace.as_deref() == Some(DEFAULT_NAMESPACE)));
        }
        let sa: ServiceAccount = load(&format!("{prefix}serviceaccount.yaml"));
        managed(&sa.metadata, "serviceaccount");
        assert_eq!(sa.metadata.namespace.as_deref(), Some(DEFAULT_NAMESPACE));
        assert_eq!(sa.metadata.name.as_deref(), Some(account));
    }

    let ns: Namespace = load("namespace.yaml");
    managed(&ns.metadata, "namespace.yaml");
    assert_eq!(ns.metadata.name.as_deref(), Some(DEFAULT_NAMESPACE));
    let labels = ns.metadata.labels.unwrap();
    assert_eq!(
        labels.get("pod-security.kubernetes.io/enforce").map(String::as_str),
        Some("privileged"),
        "hostPath and uid 0 need the privileged Pod Security level"
    );
}
