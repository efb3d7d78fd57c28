//! Built-in kinds read into their k8s-openapi types and written back: an unknown or misspelled
//! field is dropped on the way and shows as a difference, a wrong type fails to read.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

fn typed<T: DeserializeOwned + Serialize>(doc: &Value) -> Result<(), String> {
    let t: T =
        serde_json::from_value(doc.clone()).map_err(|e| format!("does not read as its k8s-openapi type: {e}"))?;
    let mut back = serde_json::to_value(&t).unwrap();
    // k8s-openapi writes apiVersion/kind into a StatefulSet's volumeClaimTemplates; optional there.
    if let Some(Value::Array(v)) = back.pointer_mut("/spec/volumeClaimTemplates") {
        for t in v {
            t.as_object_mut().map(|m| {
                m.remove("apiVersion");
                m.remove("kind")
            });
        }
    }
    let d = json_patch::diff(doc, &back);
    if d.0.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "changes when read as its k8s-openapi type (unknown field or wrong type?): {}",
            serde_json::to_string(&d).unwrap()
        ))
    }
}

/// Validates one built-in object; a kind without a validator is an error.
pub fn roundtrip(doc: &Value) -> Result<(), String> {
    match (doc["apiVersion"].as_str().unwrap_or(""), doc["kind"].as_str().unwrap_or("")) {
        ("apps/v1", "Deployment") => typed::<Deployment>(doc),
        ("apps/v1", "StatefulSet") => typed::<StatefulSet>(doc),
        ("apps/v1", "DaemonSet") => typed::<DaemonSet>(doc),
        ("apps/v1", "ReplicaSet") => typed::<ReplicaSet>(doc),
        ("batch/v1", "Job") => typed::<Job>(doc),
        ("batch/v1", "CronJob") => typed::<CronJob>(doc),
        ("v1", "Pod") => typed::<Pod>(doc),
        ("v1", "Service") => typed::<Service>(doc),
        ("v1", "ConfigMap") => typed::<ConfigMap>(doc),
        ("v1", "Secret") => typed::<Secret>(doc),
        ("v1", "Namespace") => typed::<Namespace>(doc),
        ("v1", "ServiceAccount") => typed::<ServiceAccount>(doc),
        ("rbac.authorization.k8s.io/v1", "Role") => typed::<Role>(doc),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => typed::<ClusterRole>(doc),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => typed::<RoleBinding>(doc),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => typed::<ClusterRoleBinding>(doc),
        (a, k) => Err(format!("no validator for {a} {k} (add one to tests/support/openapi.rs)")),
    }
}
