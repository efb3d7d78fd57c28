//! `manifests/rbac/` grants exactly the calls cuda-fault makes (`cluster::RBAC`, which the mock
//! tests check every request against), and everything carries the managed-by label.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use cuda_fault::cluster::{DEFAULT_NAMESPACE, MANAGED_BY, MANAGED_BY_KEY, RBAC};
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

fn wanted(namespaced: bool) -> BTreeSet<(String, String, String)> {
    RBAC.iter()
        .filter(|r| r.3 == namespaced)
        .map(|(g, r, v, _)| (g.to_string(), r.to_string(), v.to_string()))
        .collect()
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
    let cr: ClusterRole = load("clusterrole.yaml");
    managed(&cr.metadata, "clusterrole.yaml");
    assert_eq!(rules(cr.rules.as_deref().unwrap_or_default()), wanted(false), "ClusterRole");

    let role: Role = load("role.yaml");
    managed(&role.metadata, "role.yaml");
    assert_eq!(role.metadata.namespace.as_deref(), Some(DEFAULT_NAMESPACE));
    assert_eq!(rules(role.rules.as_deref().unwrap_or_default()), wanted(true), "Role");
    // Never exec, never write to pods.
    assert!(!RBAC.iter().any(|r| r.1 == "pods/exec" || (r.1 == "pods" && r.2 != "list")));
}

#[test]
fn bindings_namespace_and_service_account() {
    let crb: ClusterRoleBinding = load("clusterrolebinding.yaml");
    managed(&crb.metadata, "clusterrolebinding.yaml");
    assert_eq!((crb.role_ref.kind.as_str(), crb.role_ref.name.as_str()), ("ClusterRole", "cuda-fault"));
    let rb: RoleBinding = load("rolebinding.yaml");
    managed(&rb.metadata, "rolebinding.yaml");
    assert_eq!(rb.metadata.namespace.as_deref(), Some(DEFAULT_NAMESPACE));
    assert_eq!((rb.role_ref.kind.as_str(), rb.role_ref.name.as_str()), ("Role", "cuda-fault"));
    for subjects in [crb.subjects.unwrap(), rb.subjects.unwrap()] {
        assert!(subjects.iter().any(|s| s.kind == "ServiceAccount"
            && s.name == "cuda-fault"
            && s.namespace.as_deref() == Some(DEFAULT_NAMESPACE)));
    }
    let sa: ServiceAccount = load("serviceaccount.yaml");
    managed(&sa.metadata, "serviceaccount.yaml");
    assert_eq!(sa.metadata.namespace.as_deref(), Some(DEFAULT_NAMESPACE));

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
