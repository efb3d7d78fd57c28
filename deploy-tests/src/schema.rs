//! A minimal but real validator for Kubernetes structural OpenAPI v3 schemas (the
//! `openAPIV3Schema` of a CRD version), enough to catch what a kustomize mistake produces:
//! unknown or misspelled fields, wrong types (an env value rendered as an integer), missing
//! required fields, duplicate keys in list-maps, values outside an enum.
//!
//! Supported: `type` (object, array, string, integer, number, boolean), `properties`,
//! `required`, `additionalProperties` (schema or bool), `items`, `enum`, `nullable`,
//! `x-kubernetes-preserve-unknown-fields`, `x-kubernetes-int-or-string`,
//! `x-kubernetes-list-type` (map with `x-kubernetes-list-map-keys`, set), `maxItems`,
//! `minItems`, `maxProperties`, `minProperties`, `maxLength`, `minLength`, `minimum`, `maximum`.
//! The root `metadata` is ObjectMeta, which the API server validates itself; it is skipped.
//!
//! Not checked: `pattern`, `format`, `anyOf`/`allOf`/`oneOf`/`not` (validation-only in a
//! structural schema), `x-kubernetes-validations` (CEL rules), defaults.
//!
//! As with `kubectl apply --validate=strict`, a field the schema does not know is an error
//! unless the schema preserves unknown fields there.

use serde_json::{Map, Value};

/// Validates `value` against `schema`; each error names the path, e.g.
/// `spec.services.Worker.extraPodSpec.mainContainer.env[2].value: expected string, found integer 79`.
pub fn validate(schema: &Value, value: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    check(schema, value, "", &mut errs);
    errs
}

fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) if n.is_i64() || n.is_u64() => format!("integer {n}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "array".into(),
        Value::Object(_) => "object".into(),
    }
}

fn at(path: &str) -> &str {
    if path.is_empty() {
        "(root)"
    } else {
        path
    }
}

fn is_integer(v: &Value) -> bool {
    matches!(v, Value::Number(n) if n.is_i64() || n.is_u64())
}

fn flag(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn check(schema: &Value, value: &Value, path: &str, errs: &mut Vec<String>) {
    let Some(s) = schema.as_object() else {
        errs.push(format!("{}: schema is not an object", at(path)));
        return;
    };
    if value.is_null() {
        if !flag(schema, "nullable") {
            errs.push(format!("{}: null is not allowed here", at(path)));
        }
        return;
    }
    if let Some(allowed) = s.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            let list: Vec<String> = allowed.iter().map(|v| v.to_string()).collect();
            errs.push(format!(
                "{}: {} is not one of [{}]",
                at(path),
                kind(value),
                list.join(", ")
            ));
        }
    }
    if flag(schema, "x-kubernetes-int-or-string") {
        if !(is_integer(value) || value.is_string()) {
            errs.push(format!(
                "{}: expected integer or string, found {}",
                at(path),
                kind(value)
            ));
        }
        return;
    }
    match s.get("type").and_then(Value::as_str) {
        Some("object") => match value.as_object() {
            Some(o) => check_object(s, o, path, errs),
            None => errs.push(format!(
                "{}: expected object, found {}",
                at(path),
                kind(value)
            )),
        },
        Some("array") => match value.as_array() {
            Some(a) => check_array(s, a, path, errs),
            None => errs.push(format!(
                "{}: expected array, found {}",
                at(path),
                kind(value)
            )),
        },
        Some("string") => match value.as_str() {
            Some(text) => {
                let n = text.chars().count() as u64;
                if let Some(max) = s.get("maxLength").and_then(Value::as_u64) {
                    if n > max {
                        errs.push(format!("{}: longer than {max} characters", at(path)));
                    }
                }
                if let Some(min) = s.get("minLength").and_then(Value::as_u64) {
                    if n < min {
                        errs.push(format!("{}: shorter than {min} characters", at(path)));
                    }
                }
            }
            None => errs.push(format!(
                "{}: expected string, found {}",
                at(path),
                kind(value)
            )),
        },
        Some("integer") => {
            if is_integer(value) {
                check_range(s, value, path, errs);
            } else {
                errs.push(format!(
                    "{}: expected integer, found {}",
                    at(path),
                    kind(value)
                ));
            }
        }
        Some("number") => {
            if value.is_number() {
                check_range(s, value, path, errs);
            } else {
                errs.push(format!(
                    "{}: expected number, found {}",
                    at(path),
                    kind(value)
                ));
            }
        }
        Some("boolean") => {
            if !value.is_boolean() {
                errs.push(format!(
                    "{}: expected boolean, found {}",
                    at(path),
                    kind(value)
                ));
            }
        }
        Some(other) => errs.push(format!(
            "{}: schema has unsupported type {other:?}",
            at(path)
        )),
        // No type: only legal in a structural schema under preserve-unknown-fields or
        // int-or-string (handled above); anything goes, but known properties are still checked.
        None => {
            if let Some(o) = value.as_object() {
                if s.contains_key("properties") {
                    check_object(s, o, path, errs);
                }
            }
        }
    }
}

fn check_range(s: &Map<String, Value>, value: &Value, path: &str, errs: &mut Vec<String>) {
    let x = value.as_f64().unwrap_or(0.0);
    if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
        if x < min {
            errs.push(format!(
                "{}: {} is below the minimum {min}",
                at(path),
                kind(value)
            ));
        }
    }
    if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
        if x > max {
            errs.push(format!(
                "{}: {} is above the maximum {max}",
                at(path),
                kind(value)
            ));
        }
    }
}

fn check_object(
    s: &Map<String, Value>,
    o: &Map<String, Value>,
    path: &str,
    errs: &mut Vec<String>,
) {
    let props = s.get("properties").and_then(Value::as_object);
    let preserve = s
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    for (k, v) in o {
        let p = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        if path.is_empty() && k == "metadata" {
            // ObjectMeta: validated by the API server, not by the CRD schema.
            if !v.is_object() {
                errs.push(format!("metadata: expected object, found {}", kind(v)));
            }
            continue;
        }
        if let Some(sub) = props.and_then(|p| p.get(k)) {
            check(sub, v, &p, errs);
            continue;
        }
        match s.get("additionalProperties") {
            Some(Value::Bool(true)) => {}
            Some(sub @ Value::Object(_)) => check(sub, v, &p, errs),
            _ if preserve => {}
            _ => {
                let known: Vec<&str> = props
                    .map(|p| p.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                let hint = if known.is_empty() {
                    String::new()
                } else {
                    format!(" (known: {})", known.join(", "))
                };
                errs.push(format!("{p}: unknown field {k:?}{hint}"));
            }
        }
    }
    if let Some(req) = s.get("required").and_then(Value::as_array) {
        for r in req.iter().filter_map(Value::as_str) {
            if !o.contains_key(r) {
                errs.push(format!("{}: missing required field {r:?}", at(path)));
            }
        }
    }
    if let Some(max) = s.get("maxProperties").and_then(Value::as_u64) {
        if o.len() as u64 > max {
            errs.push(format!("{}: more than {max} properties", at(path)));
        }
    }
    if let Some(min) = s.get("minProperties").and_then(Value::as_u64) {
        if (o.len() as u64) < min {
            errs.push(format!("{}: fewer than {min} properties", at(path)));
        }
    }
}

fn check_array(s: &Map<String, Value>, a: &[Value], path: &str, errs: &mut Vec<String>) {
    if let Some(items) = s.get("items") {
        for (i, v) in a.iter().enumerate() {
            check(items, v, &format!("{path}[{i}]"), errs);
        }
    }
    if let Some(max) = s.get("maxItems").and_then(Value::as_u64) {
        if a.len() as u64 > max {
            errs.push(format!("{}: more than {max} items", at(path)));
        }
    }
    if let Some(min) = s.get("minItems").and_then(Value::as_u64) {
        if (a.len() as u64) < min {
            errs.push(format!("{}: fewer than {min} items", at(path)));
        }
    }
    match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("map") => {
            let keys: Vec<&str> = s
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut seen: Vec<Vec<&Value>> = Vec::new();
            for (i, v) in a.iter().enumerate() {
                let tuple: Vec<&Value> = keys
                    .iter()
                    .map(|k| v.get(*k).unwrap_or(&Value::Null))
                    .collect();
                if seen.contains(&tuple) {
                    let shown: Vec<String> = keys
                        .iter()
                        .zip(&tuple)
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    errs.push(format!(
                        "{path}[{i}]: duplicate entry {} in a list-map",
                        shown.join(",")
                    ));
                } else {
                    seen.push(tuple);
                }
            }
        }
        Some("set") => {
            for (i, v) in a.iter().enumerate() {
                if a[..i].contains(v) {
                    errs.push(format!("{path}[{i}]: duplicate value {v} in a set"));
                }
            }
        }
        _ => {}
    }
}

/// The `openAPIV3Schema` of each version a CRD serves, by version name.
pub fn crd_schemas(crd: &Value) -> Vec<(String, Value)> {
    crd.pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("served").and_then(Value::as_bool).unwrap_or(false))
                .filter_map(|v| {
                    let name = v.get("name")?.as_str()?.to_string();
                    let schema = v.pointer("/schema/openAPIV3Schema")?.clone();
                    Some((name, schema))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env_schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
                "spec": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "maxLength": 8},
                        "replicas": {"type": "integer", "minimum": 0},
                        "ratio": {"type": "number"},
                        "enabled": {"type": "boolean"},
                        "mode": {"type": "string", "enum": ["a", "b"]},
                        "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                        "opaque": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "closed": {"type": "object", "additionalProperties": false, "properties": {"x": {"type": "string"}}},
                        "maybe": {"type": "string", "nullable": true},
                        "env": {
                            "type": "array",
                            "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["name"],
                            "items": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {"name": {"type": "string"}, "value": {"type": "string"}}
                            }
                        },
                        "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}
                    }
                }
            }
        })
    }

    fn errs(spec: Value) -> Vec<String> {
        let doc = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "n", "labels": {"a": "b"}}, "spec": spec});
        validate(&env_schema(), &doc)
    }

    #[test]
    fn a_valid_object_passes() {
        let e = errs(json!({
            "name": "ok", "replicas": 2, "ratio": 0.5, "enabled": true, "mode": "a", "port": "http",
            "opaque": {"anything": {"goes": [1, 2]}}, "labels": {"k": "v"}, "closed": {"x": "y"},
            "maybe": null, "env": [{"name": "A", "value": "1"}, {"name": "B"}], "tags": ["x", "y"]
        }));
        assert!(e.is_empty(), "{e:?}");
    }

    #[test]
    fn a_misspelled_field_is_an_error_naming_its_path() {
        let e = errs(json!({"name": "ok", "env": [{"name": "A", "valeu": "1"}]}));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("spec.env[0].valeu: unknown field \"valeu\""),
            "{e:?}"
        );
        assert!(e[0].contains("known: name, value"), "{e:?}");
    }

    #[test]
    fn an_integer_env_value_is_an_error() {
        let e = errs(json!({"name": "ok", "env": [{"name": "CUDA_XID_TYPE", "value": 79}]}));
        assert_eq!(
            e,
            vec!["spec.env[0].value: expected string, found integer 79".to_string()]
        );
    }

    #[test]
    fn wrong_types_are_errors() {
        let e = errs(
            json!({"name": 5, "replicas": "2", "ratio": "x", "enabled": "true", "labels": {"k": 1}}),
        );
        assert_eq!(e.len(), 5, "{e:?}");
        assert!(e
            .iter()
            .any(|m| m.starts_with("spec.name: expected string, found integer 5")));
        assert!(e
            .iter()
            .any(|m| m.starts_with("spec.replicas: expected integer")));
        assert!(e
            .iter()
            .any(|m| m.starts_with("spec.ratio: expected number")));
        assert!(e
            .iter()
            .any(|m| m.starts_with("spec.enabled: expected boolean")));
        assert!(e
            .iter()
            .any(|m| m.starts_with("spec.labels.k: expected string")));
    }

    #[test]
    fn required_enum_bounds_and_null() {
        let e = errs(json!({"mode": "c", "replicas": -1, "maybe": null}));
        assert!(
            e.iter()
                .any(|m| m == "spec: missing required field \"name\""),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("spec.mode: string \"c\" is not one of")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("spec.replicas: integer -1 is below the minimum")),
            "{e:?}"
        );
        let e = errs(json!({"name": "toolongname", "ratio": null}));
        assert!(
            e.iter().any(|m| m.starts_with("spec.name: longer than 8")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m == "spec.ratio: null is not allowed here"),
            "{e:?}"
        );
    }

    #[test]
    fn int_or_string_accepts_both_and_nothing_else() {
        assert!(errs(json!({"name": "a", "port": 8080})).is_empty());
        assert!(errs(json!({"name": "a", "port": "8080"})).is_empty());
        let e = errs(json!({"name": "a", "port": true}));
        assert_eq!(
            e,
            vec!["spec.port: expected integer or string, found boolean true".to_string()]
        );
    }

    #[test]
    fn additional_properties_false_and_preserve_unknown() {
        let e = errs(json!({"name": "a", "closed": {"x": "1", "y": "2"}}));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("spec.closed.y: unknown field"), "{e:?}");
        assert!(errs(json!({"name": "a", "opaque": {"y": [{"z": 1}]}})).is_empty());
    }

    #[test]
    fn list_map_keys_and_sets_must_be_unique() {
        let e = errs(
            json!({"name": "a", "env": [{"name": "A"}, {"name": "B"}, {"name": "A", "value": "x"}], "tags": ["x", "x"]}),
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("spec.env[2]: duplicate entry name=\"A\"")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("spec.tags[1]: duplicate value")),
            "{e:?}"
        );
    }

    #[test]
    fn unknown_top_level_fields_are_errors_but_metadata_is_not_checked() {
        let doc = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"whatever": 1}, "spec": {"name": "a"}, "sepc": {}});
        let e = validate(&env_schema(), &doc);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("sepc: unknown field"), "{e:?}");
    }
}
