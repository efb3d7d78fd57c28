//! The difference between the user's base and the injected output, as RFC 6902 operations
//! (`json_patch::diff`), must consist of our additions only: each `add` puts one of the injected
//! items (or a new field holding only such items) in place, each `replace` prefixes the user's
//! own LD_PRELOAD with the shim. Anything else (a removal, a changed value, an entry we do not
//! inject) is reported.

use serde_json::{json, Value};

pub const PRELOAD: &str = "/cuda-fault/cuda_intercept.so";

/// What the generator was asked for.
pub struct Expect {
    pub image: String,
    pub toggle: bool,
    pub node: Option<String>,
    pub xid: Option<u32>,
}

impl Default for Expect {
    fn default() -> Expect {
        Expect { image: "ghcr.io/cuda-fault/cuda-fault:0.1.0".into(), toggle: true, node: None, xid: None }
    }
}

impl Expect {
    fn init(&self) -> Value {
        json!({
            "name": "cuda-fault-shim-install",
            "image": self.image,
            "args": ["install", "/cuda-fault"],
            "volumeMounts": [{"name": "cuda-fault-shim", "mountPath": "/cuda-fault"}],
            "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"cpu": "50m", "memory": "32Mi"}},
            "securityContext": {
                "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "readOnlyRootFilesystem": true,
                "allowPrivilegeEscalation": false, "privileged": false, "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"}
            }
        })
    }

    fn volumes(&self) -> Vec<Value> {
        let mut v = vec![json!({"name": "cuda-fault-shim", "emptyDir": {"sizeLimit": "64Mi"}})];
        if self.toggle {
            v.push(json!({"name": "cuda-fault-toggle", "hostPath": {"path": "/var/lib/cuda-fault-test", "type": "DirectoryOrCreate"}}));
        }
        v
    }

    fn mounts(&self) -> Vec<Value> {
        let mut v = vec![json!({"name": "cuda-fault-shim", "mountPath": "/cuda-fault", "readOnly": true})];
        if self.toggle {
            v.push(json!({"name": "cuda-fault-toggle", "mountPath": "/host-fault", "readOnly": true}));
        }
        v
    }

    fn field(&self) -> Option<Value> {
        self.node.as_ref().map(|n| json!({"key": "metadata.name", "operator": "In", "values": [n]}))
    }

    fn env(&self, e: &Value) -> bool {
        let value = e["value"].as_str().unwrap_or("");
        let name = e["name"].as_str().unwrap_or("");
        e.as_object().is_some_and(|m| m.len() == 2)
            && match (name, self.xid) {
                ("LD_PRELOAD", _) => value == PRELOAD || value.starts_with(&format!("{PRELOAD}:")),
                ("CUDA_FAULT_INJECTION_ENABLED", Some(_)) => value == "1",
                ("CUDA_XID_TYPE", Some(x)) => value == x.to_string(),
                _ => false,
            }
    }

    /// An entry of the list `list` that the injection adds.
    fn item(&self, list: &str, v: &Value) -> bool {
        match list {
            "initContainers" => *v == self.init(),
            "volumes" => self.volumes().contains(v),
            "volumeMounts" => self.mounts().contains(v),
            "env" => self.env(v),
            "matchFields" => Some(v) == self.field().as_ref(),
            "nodeSelectorTerms" => self.field().is_some_and(|f| *v == json!({"matchFields": [f]})),
            "preferredDuringSchedulingIgnoredDuringExecution" => {
                self.field().is_some_and(|f| *v == json!({"weight": 100, "preference": {"matchFields": [f]}}))
            }
            // A v1beta1 component's main container, created holding only our env and mounts.
            "containers" => {
                v["name"] == "main"
                    && v.as_object()
                        .is_some_and(|m| m.keys().all(|k| ["name", "env", "volumeMounts"].contains(&k.as_str())))
                    && self.value("env", &v["env"])
                    && self.value("volumeMounts", &v["volumeMounts"])
            }
            _ => false,
        }
    }

    /// A new field `key` holding only injected items.
    fn value(&self, key: &str, v: &Value) -> bool {
        match v {
            Value::Array(items) => !items.is_empty() && items.iter().all(|i| self.item(key, i)),
            Value::Object(m) => !m.is_empty() && m.iter().all(|(k, v)| self.value(k, v)),
            _ => false,
        }
    }

    /// Every operation from `base` to `injected` that is not one of our additions.
    pub fn unexpected(&self, base: &Value, injected: &Value) -> Vec<String> {
        let mut out = Vec::new();
        for op in json_patch::diff(base, injected).0 {
            let ok = match &op {
                json_patch::PatchOperation::Add(a) => {
                    let segs: Vec<String> = a.path.tokens().map(|t| t.decoded().into_owned()).collect();
                    match segs.as_slice() {
                        [.., list, last] if last.parse::<usize>().is_ok() => self.item(list, &a.value),
                        [.., key] => self.value(key, &a.value),
                        [] => false,
                    }
                }
                json_patch::PatchOperation::Replace(r) => {
                    let old = base.pointer(r.path.as_str()).and_then(Value::as_str).unwrap_or("");
                    let entry = r.path.as_str().rsplit_once('/').map(|(p, _)| p).and_then(|p| base.pointer(p));
                    r.path.as_str().ends_with("/value")
                        && entry.is_some_and(|e| e["name"] == "LD_PRELOAD")
                        && r.value == json!(format!("{PRELOAD}:{old}"))
                }
                _ => false,
            };
            if !ok {
                out.push(serde_json::to_string(&op).unwrap());
            }
        }
        out
    }
}
