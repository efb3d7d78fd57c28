//! The rendered stream `kubectl kustomize` prints: YAML documents, each one object.

use std::fmt;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{refuse, Error};

/// What identifies an object for kustomize's selectors.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectId {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub name: String,
    /// As written; `None` counts as `default` for kustomize's selectors.
    pub namespace: Option<String>,
    /// The name a Component sees: without the hash suffix of a kustomize generator.
    pub component_name: String,
}

impl ObjectId {
    pub fn of(doc: &Value) -> Result<ObjectId, Error> {
        let s = |p: &str| doc.pointer(p).and_then(Value::as_str).map(str::to_string);
        let (Some(api_version), Some(kind), Some(name)) = (s("/apiVersion"), s("/kind"), s("/metadata/name")) else {
            refuse!(
                "an object in the input lacks apiVersion, kind or metadata.name; feed the output of kubectl kustomize"
            )
        };
        let (group, version) = match api_version.rsplit_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), api_version),
        };
        let component_name = crate::hashed::unsuffixed(doc).unwrap_or_else(|| name.clone());
        Ok(ObjectId {
            group,
            version,
            kind,
            name,
            namespace: s("/metadata/namespace").filter(|n| !n.is_empty()),
            component_name,
        })
    }

    /// The namespace kustomize compares: an object without one is in `default`.
    pub fn namespace_or_default(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }

    /// Whether `other` names the same object as a reference from a pod in this namespace.
    pub fn same_namespace(&self, other: &ObjectId) -> bool {
        self.namespace_or_default() == other.namespace_or_default()
    }
}

impl fmt::Display for ObjectId {
    /// `Deployment prod/vllm`, `DynamoGraphDeployment vllm-disagg (v1alpha1)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.kind)?;
        if let Some(ns) = &self.namespace {
            write!(f, "{ns}/")?;
        }
        f.write_str(&self.name)?;
        if self.group == "nvidia.com" {
            write!(f, " ({})", self.version)?;
        }
        Ok(())
    }
}

/// One object of the stream.
#[derive(Clone, Debug)]
pub struct Object {
    pub id: ObjectId,
    pub doc: Value,
}

/// Parses every document; empty documents are skipped.
pub fn parse(text: &str) -> Result<Vec<Object>, Error> {
    let mut out = Vec::new();
    for (i, document) in serde_norway::Deserializer::from_str(text).enumerate() {
        let doc = Value::deserialize(document)
            .map_err(|e| Error::new(format!("input document {}: {}", i + 1, one_line(&e.to_string()))))?;
        if doc.is_null() {
            continue;
        }
        if !doc.is_object() {
            refuse!("input document {} is not a mapping; feed the output of kubectl kustomize", i + 1);
        }
        out.push(Object { id: ObjectId::of(&doc)?, doc });
    }
    Ok(out)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_become_objects() {
        let objs = parse("---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a, namespace: p}\n---\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b}\n").unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[0].id.to_string(), "Deployment p/a");
        assert_eq!((objs[1].id.group.as_str(), objs[1].id.version.as_str()), ("", "v1"));
        assert_eq!(objs[1].id.namespace_or_default(), "default");
        assert!(parse("- 1\n").unwrap_err().0.contains("not a mapping"));
        assert!(parse("kind: X\n").unwrap_err().0.contains("lacks apiVersion"));
        assert!(parse("a: [\n").unwrap_err().0.starts_with("input document 1:"));
    }
}
