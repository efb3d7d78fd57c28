//! DynamoGraphDeployments validated against the CRDs' `openAPIV3Schema` with the `jsonschema`
//! crate, made strict the way `kubectl apply` (server-side field validation "Strict") is: an
//! object schema with `properties` and no `x-kubernetes-preserve-unknown-fields` takes no other
//! field. Plus what JSON Schema cannot say: `x-kubernetes-list-type: map` lists have unique
//! `x-kubernetes-list-map-keys`, `set` lists unique items. (CEL `x-kubernetes-validations` rules
//! are not evaluated.) Draft 7: CRD schemas hold `required: []`, valid there but not in draft 4.

use serde_json::{json, Value};

pub struct Crds(Vec<(String, String, jsonschema::Validator, Value)>);

fn strict(schema: &mut Value) {
    let Some(m) = schema.as_object_mut() else { return };
    let preserve = m.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
    if m.contains_key("properties") && !m.contains_key("additionalProperties") && !preserve {
        m.insert("additionalProperties".into(), json!(false));
    }
    for key in ["properties"] {
        if let Some(Value::Object(props)) = m.get_mut(key) {
            for v in props.values_mut() {
                strict(v);
            }
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(v) = m.get_mut(key) {
            strict(v);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(a)) = m.get_mut(key) {
            a.iter_mut().for_each(strict);
        }
    }
}

/// `x-kubernetes-list-type` checks, walking schema and document together.
fn lists(schema: &Value, doc: &Value, at: &str, errors: &mut Vec<String>) {
    match doc {
        Value::Object(m) => {
            for (k, v) in m {
                let sub = schema
                    .pointer(&format!("/properties/{}", k.replace('~', "~0").replace('/', "~1")))
                    .or_else(|| schema.get("additionalProperties").filter(|s| s.is_object()));
                if let Some(sub) = sub {
                    lists(sub, v, &format!("{at}.{k}"), errors);
                }
            }
        }
        Value::Array(items) => {
            match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("map") => {
                    let keys: Vec<&str> = schema["x-kubernetes-list-map-keys"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    let mut seen = Vec::new();
                    for item in items {
                        let id: Vec<&Value> = keys.iter().map(|k| item.get(*k).unwrap_or(&Value::Null)).collect();
                        if seen.contains(&id) {
                            errors.push(format!("{at}: two entries with {keys:?} = {id:?} (a list-map)"));
                        }
                        seen.push(id);
                    }
                }
                Some("set") => {
                    for (i, item) in items.iter().enumerate() {
                        if items[..i].contains(item) {
                            errors.push(format!("{at}: {item} twice (a set)"));
                        }
                    }
                }
                _ => {}
            }
            if let Some(sub) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    lists(sub, item, &format!("{at}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
}

impl Crds {
    pub fn load() -> Crds {
        let dir = super::fixture("crds");
        let mut out = Vec::new();
        for file in
            ["nvidia.com_dynamographdeployments.yaml", "upstream-main-2a6da14/nvidia.com_dynamographdeployments.yaml"]
        {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            let crd = &super::docs(&text)[0];
            assert_eq!(crd["spec"]["names"]["kind"], "DynamoGraphDeployment", "{file}");
            for v in crd["spec"]["versions"].as_array().unwrap() {
                let mut schema = v["schema"]["openAPIV3Schema"].clone();
                strict(&mut schema);
                let validator = jsonschema::options()
                    .with_draft(jsonschema::Draft::Draft7)
                    .build(&schema)
                    .unwrap_or_else(|e| panic!("{file} {}: {e}", v["name"]));
                out.push((file.to_string(), v["name"].as_str().unwrap().to_string(), validator, schema));
            }
        }
        Crds(out)
    }

    /// Checks a DGD against every fixture CRD that serves its version.
    pub fn validate(&self, doc: &Value) -> Result<(), String> {
        let version = doc["apiVersion"].as_str().and_then(|a| a.strip_prefix("nvidia.com/")).unwrap_or("");
        let matching: Vec<_> = self.0.iter().filter(|(_, v, _, _)| v == version).collect();
        if matching.is_empty() {
            return Err(format!("no fixture CRD serves nvidia.com/{version}"));
        }
        let mut errors = Vec::new();
        for (file, v, validator, schema) in matching {
            for e in validator.iter_errors(doc) {
                errors.push(format!("{file} {v}: {}: {e}", e.instance_path()));
            }
            let mut l = Vec::new();
            lists(schema, doc, "", &mut l);
            errors.extend(l.into_iter().map(|e| format!("{file} {v}: {e}")));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}
