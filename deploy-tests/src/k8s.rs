//! Validation of rendered objects: built-in kinds against `k8s-openapi` types (deserialize,
//! serialize again, compare: a misspelled or unknown field is dropped on the way and shows up
//! as a difference; a wrong type fails to deserialize), DynamoGraphDeployments against the
//! CRDs' `openAPIV3Schema` (copied under `fixtures/crds/`).

use std::path::PathBuf;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Service;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::{paths, schema, yaml};

fn roundtrip<T: DeserializeOwned + Serialize>(doc: &Value) -> Result<(), String> {
    let typed: T =
        serde_json::from_value(doc.clone()).map_err(|e| format!("does not deserialize: {e}"))?;
    let mut back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    // k8s-openapi writes apiVersion/kind on every nested object that is a resource type
    // (StatefulSet volumeClaimTemplates); they are optional there, so ignore them if the
    // input had none.
    if let (Some(orig), Some(Value::Array(vcts))) = (
        doc.pointer("/spec/volumeClaimTemplates")
            .and_then(Value::as_array),
        back.pointer_mut("/spec/volumeClaimTemplates"),
    ) {
        for (o, b) in orig.iter().zip(vcts.iter_mut()) {
            for k in ["apiVersion", "kind"] {
                if o.get(k).is_none() {
                    b.as_object_mut().map(|m| m.remove(k));
                }
            }
        }
    }
    match yaml::diff(doc, &back) {
        None => Ok(()),
        Some(d) => Err(format!(
            "changes when read as the k8s-openapi type (unknown or misspelled field, or a wrong type?): {d}"
        )),
    }
}

/// The CRD fixtures: (file, parsed CRD).
pub fn crds() -> Vec<(PathBuf, Value)> {
    let dir = paths::fixtures_dir().join("crds");
    [
        "nvidia.com_dynamographdeployments.yaml",
        "upstream-main-2a6da14/nvidia.com_dynamographdeployments.yaml",
    ]
    .iter()
    .map(|f| {
        let p = dir.join(f);
        let mut docs = yaml::read_docs(&p).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(docs.len(), 1, "{}: one CRD expected", p.display());
        (p, docs.remove(0))
    })
    .collect()
}

/// Schemas for DynamoGraphDeployment, by (file, version).
pub struct DgdSchemas(Vec<(String, String, Value)>);

impl DgdSchemas {
    pub fn load() -> Self {
        let mut out = Vec::new();
        for (path, crd) in crds() {
            assert_eq!(
                crd.pointer("/spec/names/kind").and_then(Value::as_str),
                Some("DynamoGraphDeployment")
            );
            assert_eq!(
                crd.pointer("/spec/group").and_then(Value::as_str),
                Some("nvidia.com")
            );
            let file = path
                .strip_prefix(paths::fixtures_dir())
                .unwrap_or(&path)
                .display()
                .to_string();
            for (version, schema) in schema::crd_schemas(&crd) {
                out.push((file.clone(), version, schema));
            }
        }
        DgdSchemas(out)
    }

    /// Validates a DGD against every fixture CRD that serves its version; an error when none does.
    pub fn validate(&self, doc: &Value) -> Result<(), String> {
        let version = doc
            .get("apiVersion")
            .and_then(Value::as_str)
            .and_then(|a| a.strip_prefix("nvidia.com/"));
        let matching: Vec<_> = self
            .0
            .iter()
            .filter(|(_, v, _)| Some(v.as_str()) == version)
            .collect();
        if matching.is_empty() {
            return Err(format!("no fixture CRD serves {}", yaml::id(doc)));
        }
        let mut errs = Vec::new();
        for (file, v, schema) in matching {
            for e in schema::validate(schema, doc) {
                errs.push(format!("{file} ({v}): {e}"));
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("\n  "))
        }
    }
}

/// Validates one rendered object by kind; an object of a kind no validator covers is an error,
/// so nothing in an overlay's output goes unchecked.
pub fn validate(doc: &Value, dgd: &DgdSchemas) -> Result<(), String> {
    let api = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    let r = match (api, kind) {
        ("apps/v1", "Deployment") => roundtrip::<Deployment>(doc),
        ("apps/v1", "StatefulSet") => roundtrip::<StatefulSet>(doc),
        ("v1", "Service") => roundtrip::<Service>(doc),
        (a, "DynamoGraphDeployment") if a.starts_with("nvidia.com/") => dgd.validate(doc),
        _ => Err("no validator for this kind (add one to deploy-tests/src/k8s.rs)".into()),
    };
    r.map_err(|e| format!("{}: {e}", yaml::id(doc)))
}

/// Validates every object; all errors, one per line.
pub fn validate_all(docs: &[Value], dgd: &DgdSchemas) -> Result<(), String> {
    let errs: Vec<String> = docs.iter().filter_map(|d| validate(d, dgd).err()).collect();
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(env_value: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i", "env": [{"name": "X", "value": env_value}]}]}}}
        })
    }

    #[test]
    fn k8s_openapi_roundtrip_catches_unknown_fields_and_wrong_types() {
        assert!(roundtrip::<Deployment>(&deployment(json!("79"))).is_ok());
        let e = roundtrip::<Deployment>(&deployment(json!(79))).unwrap_err();
        assert!(e.contains("invalid type: integer"), "{e}");
        let mut d = deployment(json!("1"));
        d["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = json!([]);
        let e = roundtrip::<Deployment>(&d).unwrap_err();
        assert!(
            e.contains("containers[0].volumeMount: only on the left"),
            "{e}"
        );
    }
}
