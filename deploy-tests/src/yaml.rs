//! YAML in, `serde_json::Value` out.

use serde::Deserialize;
use serde_json::Value;

/// Parses a multi-document YAML stream; empty documents are dropped.
pub fn parse_docs(text: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let v = Value::deserialize(doc).map_err(|e| format!("YAML document {}: {e}", i + 1))?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// Reads and parses a YAML file.
pub fn read_docs(path: &std::path::Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_docs(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// `apiVersion kind namespace/name` of a manifest, for messages and matching.
pub fn id(doc: &Value) -> String {
    let s = |p: &str| {
        doc.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let ns = s("/metadata/namespace");
    let name = s("/metadata/name");
    let name = if ns.is_empty() {
        name
    } else {
        format!("{ns}/{name}")
    };
    format!("{} {} {}", s("/apiVersion"), s("/kind"), name)
}

/// The first difference between two values, as `path: left vs right`, or None when equal.
pub fn diff(a: &Value, b: &Value) -> Option<String> {
    fn go(a: &Value, b: &Value, path: &str) -> Option<String> {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for (k, va) in x {
                    let p = format!("{path}.{k}");
                    match y.get(k) {
                        Some(vb) => {
                            if let Some(d) = go(va, vb, &p) {
                                return Some(d);
                            }
                        }
                        None => return Some(format!("{p}: only on the left ({va})")),
                    }
                }
                y.keys()
                    .find(|k| !x.contains_key(*k))
                    .map(|k| format!("{path}.{k}: only on the right ({})", y[k]))
            }
            (Value::Array(x), Value::Array(y)) => {
                for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                    if let Some(d) = go(va, vb, &format!("{path}[{i}]")) {
                        return Some(d);
                    }
                }
                (x.len() != y.len()).then(|| format!("{path}: {} vs {} elements", x.len(), y.len()))
            }
            _ => (a != b).then(|| format!("{path}: {a} vs {b}")),
        }
    }
    go(a, b, "")
}
