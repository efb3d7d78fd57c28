//! ConfigMaps and Secrets from kustomize generators carry a name suffix that is a hash of their
//! content. `kubectl kustomize ./my-app` prints the suffixed name, but a Component used from an
//! overlay sees the plain name (kustomize appends the suffix at the very end of the top-level
//! build). This module recognises a suffixed name by recomputing kustomize's hash, so patches and
//! pins use the name the Component will see.
//!
//! kustomize (api/hasher) hashes Go's `json.Marshal` of `{kind, name, data[, binaryData]}` for a
//! ConfigMap and `{kind, type, name, data[, stringData]}` for a Secret (an absent field is ""),
//! takes the first 10 hex digits of the SHA-256 and maps 0→g, 1→h, 3→k, a→m, e→t. The `name` it
//! reads is "" in kustomize v5 (it looks up `metadata/name` as one key, which finds nothing; seen
//! with v5.5.0), so both that and the generator's name are tried.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The generator's name of `doc` (without the hash suffix), if its name carries kustomize's hash.
pub fn unsuffixed(doc: &Value) -> Option<String> {
    let kind = doc.get("kind")?.as_str()?;
    let name = doc.pointer("/metadata/name")?.as_str()?;
    let (base, suffix) = name.rsplit_once('-')?;
    if suffix.len() != 10 || base.is_empty() || !matches!(kind, "ConfigMap" | "Secret") {
        return None;
    }
    ["", base].iter().any(|n| hash(doc, n).as_deref() == Some(suffix)).then(|| base.to_string())
}

/// kustomize's hash of `doc` named `name`.
pub fn hash(doc: &Value, name: &str) -> Option<String> {
    let field = |k: &str| doc.get(k).cloned().unwrap_or_else(|| Value::String(String::new()));
    let mut m = Map::new();
    m.insert("kind".into(), field("kind"));
    m.insert("name".into(), Value::String(name.to_string()));
    m.insert("data".into(), field("data"));
    match doc.get("kind")?.as_str()? {
        "ConfigMap" => {
            if let Some(b) = doc.get("binaryData").filter(|b| b.is_object()) {
                m.insert("binaryData".into(), b.clone());
            }
        }
        "Secret" => {
            m.insert("type".into(), field("type"));
            if let Some(s) = doc.get("stringData").filter(|s| s.is_object()) {
                m.insert("stringData".into(), s.clone());
            }
        }
        _ => return None,
    }
    let digest = Sha256::digest(go_json(&Value::Object(m)).as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Some(
        hex[..10]
            .chars()
            .map(|c| match c {
                '0' => 'g',
                '1' => 'h',
                '3' => 'k',
                'a' => 'm',
                'e' => 't',
                c => c,
            })
            .collect(),
    )
}

/// Go's `json.Marshal`: map keys sorted, no spaces, `<`, `>`, `&`, U+2028 and U+2029 escaped.
fn go_json(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Value::Object(keys.into_iter().map(|k| (k.clone(), sorted(&m[k]))).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            v => v.clone(),
        }
    }
    serde_json::to_string(&sorted(v))
        .expect("serializable")
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Names as `kubectl kustomize` (kustomize v5.5.0) printed them for these generators.
    #[test]
    fn kustomize_hashes_are_recognised() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "trainer-env-6tf68d2hfd"},
                        "data": {"EPOCHS": "3", "LD_PRELOAD": "libtcmalloc.so.4"}});
        assert_eq!(unsuffixed(&cm).as_deref(), Some("trainer-env"));
        let mut other = cm.clone();
        other["data"]["EPOCHS"] = json!("4");
        assert_eq!(unsuffixed(&other), None, "the content no longer matches the suffix");
        let a = json!({"kind": "ConfigMap", "metadata": {"name": "a-bdg947hgcc"}, "data": {"k": "v"}});
        assert_eq!(unsuffixed(&a).as_deref(), Some("a"));
        let secret = json!({"kind": "Secret", "type": "Opaque", "metadata": {"name": "tok-dhbk8mgcmb"}, "data": {"HF_TOKEN": "eA=="}});
        assert_eq!(unsuffixed(&secret).as_deref(), Some("tok"));
        let plain = json!({"kind": "ConfigMap", "metadata": {"name": "settings-production"}, "data": {}});
        assert_eq!(unsuffixed(&plain), None);
    }
}
