//! The pod templates an injection targets ("sites"), found in a base's rendered workloads:
//!
//! - `apps/v1` Deployments and StatefulSets whose own metadata carries the label
//!   `cuda-fault/inject: "true"`: every container of the pod template;
//! - `nvidia.com/v1alpha1` DynamoGraphDeployments: every service (whatever its name) whose
//!   `componentType` is a worker type, at `spec.services.<name>.extraPodSpec` (container:
//!   `mainContainer`);
//! - `nvidia.com/v1beta1` DynamoGraphDeployments: every `spec.components[]` entry whose `type`
//!   is a worker type, at `podTemplate.spec` (container: the one named `main`).
//!
//! The generator turns sites into kustomize field paths; the checks walk the same paths in the
//! rendered JSON.

use serde_json::Value;

use crate::{ENV_PRELOAD, INJECT_LABEL, PREFERRED_WEIGHT, WORKER_TYPES};

/// One step of a path into a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A map key.
    Key(String),
    /// The list element whose field `.0` equals `.1` (kustomize `[field=value]`).
    Named(String, String),
    /// A list index (kustomize only).
    Index(usize),
    /// Every list element (kustomize `*`, only).
    Every,
}

pub fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

pub fn named(field: &str, value: &str) -> Seg {
    Seg::Named(field.to_string(), value.to_string())
}

pub fn keys(ks: &[&str]) -> Vec<Seg> {
    ks.iter().map(|k| key(k)).collect()
}

/// A kustomize field path (`spec.template.spec.containers.[name=main].env`). A key that
/// kustomize would split or misread is an error.
pub fn kustomize_path(path: &[Seg]) -> Result<String, String> {
    let ok = |s: &str| !s.is_empty() && !s.contains(['.', '[', ']', '=', '*', ' ', '\\', ':']);
    let mut parts = Vec::new();
    for seg in path {
        parts.push(match seg {
            Seg::Key(k) if ok(k) => k.clone(),
            Seg::Key(k) => {
                return Err(format!(
                    "{k:?} cannot be written as a kustomize field path segment"
                ))
            }
            Seg::Named(f, v) if ok(f) && !v.contains([']', '[']) && !v.is_empty() => {
                format!("[{f}={v}]")
            }
            Seg::Named(f, v) => {
                return Err(format!(
                    "[{f}={v}] cannot be written as a kustomize field path segment"
                ))
            }
            Seg::Index(i) => i.to_string(),
            Seg::Every => "*".into(),
        });
    }
    Ok(parts.join("."))
}

fn matches(elem: &Value, field: &str, value: &str) -> bool {
    match elem.get(field) {
        Some(Value::String(s)) => s == value,
        Some(Value::Number(n)) => n.to_string() == value,
        Some(Value::Bool(b)) => b.to_string() == value,
        _ => false,
    }
}

/// Follows a path (keys and `[field=value]` only; the first matching element).
pub fn get<'a>(v: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    let mut cur = v;
    for seg in path {
        cur = match seg {
            Seg::Key(k) => cur.get(k)?,
            Seg::Named(f, val) => cur.as_array()?.iter().find(|e| matches(e, f, val))?,
            Seg::Index(i) => cur.as_array()?.get(*i)?,
            Seg::Every => return None,
        };
    }
    Some(cur)
}

pub fn get_mut<'a>(v: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    let mut cur = v;
    for seg in path {
        cur = match seg {
            Seg::Key(k) => cur.get_mut(k)?,
            Seg::Named(f, val) => cur
                .as_array_mut()?
                .iter_mut()
                .find(|e| matches(e, f, val))?,
            Seg::Index(i) => cur.as_array_mut()?.get_mut(*i)?,
            Seg::Every => return None,
        };
    }
    Some(cur)
}

pub fn join(a: &[Seg], b: &[Seg]) -> Vec<Seg> {
    a.iter().chain(b).cloned().collect()
}

/// Identifies a resource the way a kustomize selector does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResId {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
}

impl ResId {
    pub fn of(doc: &Value) -> Option<ResId> {
        let s = |p: &str| doc.pointer(p).and_then(Value::as_str).map(str::to_string);
        Some(ResId {
            api_version: s("/apiVersion")?,
            kind: s("/kind")?,
            name: s("/metadata/name")?,
            namespace: s("/metadata/namespace"),
        })
    }

    pub fn group(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or("")
    }

    pub fn version(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map(|(_, v)| v)
            .unwrap_or(&self.api_version)
    }

    pub fn find<'a>(&self, docs: &'a [Value]) -> Option<&'a Value> {
        docs.iter().find(|d| ResId::of(d).as_ref() == Some(self))
    }
}

impl std::fmt::Display for ResId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// Where the container's effective LD_PRELOAD (if any) comes from, which decides how the
/// shim is added to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preload {
    /// None anywhere: the container gets `LD_PRELOAD=/cuda-fault/cuda_intercept.so`.
    Absent,
    /// The env entry at this path (the container's own, or a v1alpha1 service's `envs`, which
    /// the operator uses when the container has none) is prefixed: `/cuda-fault/...so:<theirs>`.
    Prefix { entry: Vec<Seg>, theirs: String },
    /// A graph-wide entry (DGD `spec.envs` / `spec.env`, used when the container has none) is
    /// copied into the container's env, then prefixed there; the other services keep theirs.
    CopyThenPrefix { from: Vec<Seg>, theirs: String },
}

impl Preload {
    pub fn theirs(&self) -> Option<&str> {
        match self {
            Preload::Absent => None,
            Preload::Prefix { theirs, .. } | Preload::CopyThenPrefix { theirs, .. } => Some(theirs),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Container {
    pub name: String,
    /// Path from the resource root to the container object.
    pub path: Vec<Seg>,
    pub preload: Preload,
}

#[derive(Debug, Clone)]
pub struct Site {
    pub res: ResId,
    /// "service VllmDecodeWorker (worker/decode)", "pod template".
    pub what: String,
    /// Path from the resource root to the PodSpec-like object (volumes, initContainers, affinity).
    pub pod: Vec<Seg>,
    pub containers: Vec<Container>,
    /// Fields that must exist for the generated paths to be right (a renamed service or
    /// container, a removed label); the generated components copy each onto itself, so a
    /// stale component fails the build instead of creating a phantom entry.
    pub guards: Vec<Vec<Seg>>,
    /// The base's preferred node-affinity terms (to refuse a weight clash).
    pub preferred_weights: Vec<i64>,
}

fn env_entry<'a>(env: Option<&'a Value>, name: &str) -> Option<&'a Value> {
    env?.as_array()?
        .iter()
        .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
}

/// The value of an LD_PRELOAD entry, or an error for `valueFrom` (kustomize can only edit a
/// literal value).
fn preload_value(entry: &Value, where_: &str) -> Result<String, String> {
    match entry.get("value") {
        Some(Value::String(s)) => Ok(s.clone()),
        None if entry.get("valueFrom").is_some() => Err(format!(
            "{where_}: LD_PRELOAD comes from valueFrom; kustomize cannot prepend the shim to it. \
             Set it as a literal value, or remove it."
        )),
        None => Ok(String::new()),
        Some(other) => Err(format!(
            "{where_}: LD_PRELOAD value {other} is not a string"
        )),
    }
}

fn preferred_weights(pod: &Value) -> Vec<i64> {
    pod.pointer("/affinity/nodeAffinity/preferredDuringSchedulingIgnoredDuringExecution")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| t.get("weight").and_then(Value::as_i64))
                .collect()
        })
        .unwrap_or_default()
}

fn container_preload(
    container_path: &[Seg],
    container: &Value,
    fallbacks: &[(Vec<Seg>, Option<&Value>, bool)],
    where_: &str,
) -> Result<Preload, String> {
    if let Some(e) = env_entry(container.get("env"), ENV_PRELOAD) {
        let theirs = preload_value(e, where_)?;
        return Ok(Preload::Prefix {
            entry: join(container_path, &[key("env"), named("name", ENV_PRELOAD)]),
            theirs,
        });
    }
    for (env_path, env, copy) in fallbacks {
        if let Some(e) = env_entry(*env, ENV_PRELOAD) {
            let theirs = preload_value(e, where_)?;
            let entry = join(env_path, &[named("name", ENV_PRELOAD)]);
            return Ok(if *copy {
                Preload::CopyThenPrefix {
                    from: entry,
                    theirs,
                }
            } else {
                Preload::Prefix { entry, theirs }
            });
        }
    }
    Ok(Preload::Absent)
}

/// Finds every site in a base's rendered objects. An unsupported DGD version, an LD_PRELOAD
/// from valueFrom, or a name kustomize cannot address is an error.
pub fn discover(docs: &[Value]) -> Result<Vec<Site>, String> {
    let mut sites = Vec::new();
    for doc in docs {
        let Some(res) = ResId::of(doc) else { continue };
        match (res.api_version.as_str(), res.kind.as_str()) {
            ("apps/v1", "Deployment" | "StatefulSet") => {
                if doc
                    .pointer("/metadata/labels")
                    .and_then(|l| l.get(INJECT_LABEL))
                    .and_then(Value::as_str)
                    != Some("true")
                {
                    continue;
                }
                let pod = keys(&["spec", "template", "spec"]);
                let pod_v =
                    get(doc, &pod).ok_or_else(|| format!("{res}: no spec.template.spec"))?;
                let mut containers = Vec::new();
                let mut guards = vec![keys(&["metadata", "labels", INJECT_LABEL])];
                for c in pod_v
                    .get("containers")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let name = c
                        .get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| format!("{res}: container without name"))?;
                    let path = join(&pod, &[key("containers"), named("name", name)]);
                    let preload =
                        container_preload(&path, c, &[], &format!("{res} container {name}"))?;
                    guards.push(join(&path, &[key("name")]));
                    containers.push(Container {
                        name: name.into(),
                        path,
                        preload,
                    });
                }
                if containers.is_empty() {
                    return Err(format!(
                        "{res} is labelled {INJECT_LABEL}=true but has no containers"
                    ));
                }
                sites.push(Site {
                    what: "pod template".into(),
                    preferred_weights: preferred_weights(pod_v),
                    res,
                    pod,
                    containers,
                    guards,
                });
            }
            ("nvidia.com/v1alpha1", "DynamoGraphDeployment") => {
                let services = doc.pointer("/spec/services").and_then(Value::as_object);
                for (name, svc) in services.into_iter().flatten() {
                    let ctype = svc
                        .get("componentType")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    if !WORKER_TYPES.contains(&ctype) {
                        continue;
                    }
                    let base = keys(&["spec", "services", name]);
                    let pod = join(&base, &[key("extraPodSpec")]);
                    let path = join(&pod, &[key("mainContainer")]);
                    let empty = Value::Null;
                    let pod_v = get(doc, &pod).unwrap_or(&empty);
                    let main = pod_v.get("mainContainer").unwrap_or(&empty);
                    let where_ = format!("{res} service {name}");
                    let fallbacks = [
                        (join(&base, &[key("envs")]), svc.get("envs"), false),
                        (keys(&["spec", "envs"]), doc.pointer("/spec/envs"), true),
                    ];
                    let preload = container_preload(&path, main, &fallbacks, &where_)?;
                    let sub = svc.get("subComponentType").and_then(Value::as_str);
                    let guard = join(&base, &[key("componentType")]);
                    kustomize_path(&path).map_err(|e| format!("{where_}: {e}"))?;
                    sites.push(Site {
                        what: match sub {
                            Some(s) => format!("service {name} ({ctype}/{s})"),
                            None => format!("service {name} ({ctype})"),
                        },
                        preferred_weights: preferred_weights(pod_v),
                        res: res.clone(),
                        pod,
                        containers: vec![Container {
                            name: "mainContainer".into(),
                            path,
                            preload,
                        }],
                        guards: vec![guard],
                    });
                }
            }
            ("nvidia.com/v1beta1", "DynamoGraphDeployment") => {
                let comps = doc.pointer("/spec/components").and_then(Value::as_array);
                for comp in comps.into_iter().flatten() {
                    let ctype = comp.get("type").and_then(Value::as_str).unwrap_or("");
                    if !WORKER_TYPES.contains(&ctype) {
                        continue;
                    }
                    let name = comp
                        .get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| format!("{res}: component without name"))?;
                    let base = vec![key("spec"), key("components"), named("name", name)];
                    let pod = join(&base, &keys(&["podTemplate", "spec"]));
                    let path = join(&pod, &[key("containers"), named("name", "main")]);
                    let empty = Value::Null;
                    let pod_v = get(doc, &pod).unwrap_or(&empty);
                    let main = get(doc, &path).unwrap_or(&empty);
                    let where_ = format!("{res} component {name}");
                    let fallbacks = [(keys(&["spec", "env"]), doc.pointer("/spec/env"), true)];
                    let preload = container_preload(&path, main, &fallbacks, &where_)?;
                    kustomize_path(&path).map_err(|e| format!("{where_}: {e}"))?;
                    sites.push(Site {
                        what: format!("component {name} ({ctype})"),
                        preferred_weights: preferred_weights(pod_v),
                        res: res.clone(),
                        pod,
                        containers: vec![Container {
                            name: "main".into(),
                            path,
                            preload,
                        }],
                        guards: vec![join(&base, &[key("name")])],
                    });
                }
            }
            (api, "DynamoGraphDeployment") => return Err(format!(
                "{res}: DynamoGraphDeployment {api} is not supported (v1alpha1 and v1beta1 are)"
            )),
            _ => {}
        }
    }
    Ok(sites)
}

/// Refuses sites that already have a preferred node-affinity term of the pin's weight
/// (kustomize would replace it).
pub fn check_preferred_weights(sites: &[Site]) -> Result<(), String> {
    for s in sites {
        if s.preferred_weights.contains(&PREFERRED_WEIGHT) {
            return Err(format!(
                "{} {}: already has a preferred node-affinity term of weight {PREFERRED_WEIGHT}, which \
                 pin-node-preferred would replace (kustomize finds list entries by a field value). Change \
                 that term's weight.",
                s.res, s.what
            ));
        }
    }
    Ok(())
}
