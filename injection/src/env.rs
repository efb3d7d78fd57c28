//! What the user's container already sets for the variables the injection sets, read the way the
//! runtime will: the container's own `env` first, then lists a DGD merges under it (service
//! `envs`, graph `envs`), then `envFrom` (ConfigMaps and Secrets looked up in the rendered stream,
//! with their `prefix`). A user's `LD_PRELOAD` is kept after the shim; one that comes from
//! `valueFrom` cannot be, and is refused, as is any other variable of ours the user already sets.
//! Everything consulted is pinned, so a later change fails the build instead of being shadowed.

use base64::Engine as _;
use serde_json::Value;

use crate::error::{refuse, Error};
use crate::layout::ENV_PRELOAD;
use crate::patch::Plan;
use crate::ptr::Ptr;
use crate::stream::{Object, ObjectId};

/// Where a container's environment comes from.
pub struct EnvPlace {
    /// The container's own `env` (where the injected entries go); `None` for a container the
    /// injection creates.
    pub own: Option<Ptr>,
    /// Lists merged under it, highest precedence first, with a word for messages.
    pub inherited: Vec<(Ptr, &'static str)>,
    /// `envFrom` sources, in order.
    pub from: Vec<FromRef>,
}

pub enum FromRef {
    /// A Kubernetes `envFrom` list.
    List(Ptr),
    /// A v1alpha1 DGD service's `envFromSecret` (the operator adds it as an `envFrom` Secret).
    DgdSecret(Ptr),
}

/// The rendered stream and what the user told us about references outside it.
pub struct Lookup<'s> {
    pub objects: &'s [Object],
    /// The workload (its namespace is the references').
    pub owner: &'s ObjectId,
    /// `--envfrom-without-ld-preload` names.
    pub assumed_absent: &'s [String],
}

/// A key of a ConfigMap or Secret in the stream that the injection relies on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SourcePin {
    pub object: usize,
    /// `data` or `stringData`.
    pub field: &'static str,
    pub key: String,
}

/// The user's effective `LD_PRELOAD`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Preload {
    /// Its index in the container's own env (the injection replaces the value there).
    pub own_index: Option<usize>,
    /// The value (empty when unset or set to "").
    pub theirs: String,
    /// Where it came from, for the header.
    pub source: Option<String>,
}

/// Reads the environment of the container `what` and pins what it relies on. `ours` are the
/// variables the injection sets (`LD_PRELOAD` first).
pub fn resolve(
    plan: &mut Plan<'_>,
    place: &EnvPlace,
    ours: &[&str],
    lookup: &Lookup<'_>,
    what: &str,
    source_pins: &mut Vec<SourcePin>,
) -> Result<Preload, Error> {
    let others: Vec<&str> = ours.iter().copied().filter(|n| *n != ENV_PRELOAD).collect();
    let mut lists: Vec<(Ptr, &'static str)> = place.own.iter().map(|p| (p.clone(), "env")).collect();
    lists.extend(place.inherited.iter().cloned());
    let mut preload: Option<Preload> = None;
    for (i, (list, label)) in lists.iter().enumerate() {
        if preload.is_some() && others.is_empty() {
            break;
        }
        // The names in the list, in order, are pinned (a variable of ours added later fails the
        // build); the values of the user's other variables may change freely.
        plan.exact_list(list, "name");
        let entries = match list.get(plan.original()) {
            None => continue,
            Some(Value::Array(a)) => a,
            Some(_) => refuse!("{what}: its {label} is not a list"),
        };
        let named = |n: &str| -> Vec<(usize, &Value)> {
            entries.iter().enumerate().filter(|(_, e)| e.get("name").and_then(Value::as_str) == Some(n)).collect()
        };
        for name in &others {
            if !named(name).is_empty() {
                refuse!("{what} already sets {name} in its {label}; remove it there, or leave out --faults-from-start (injecting would override it)");
            }
        }
        if preload.is_some() {
            continue;
        }
        let found = named(ENV_PRELOAD);
        if found.len() > 1 {
            refuse!("{what} sets LD_PRELOAD {} times in its {label}; keep one", found.len());
        }
        if let Some((index, entry)) = found.first() {
            plan.pin(&list.index(*index).key("value"));
            plan.pin(&list.index(*index).key("valueFrom"));
            if entry.get("valueFrom").is_some() {
                refuse!("{what} takes LD_PRELOAD from valueFrom in its {label}, which cannot be prefixed with the shim; set it as a plain value");
            }
            let theirs = match entry.get("value") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(_) => refuse!("{what}: LD_PRELOAD in its {label} is not a string"),
            };
            preload = Some(Preload {
                own_index: (i == 0 && place.own.is_some()).then_some(*index),
                theirs,
                source: Some(format!("its {label}")),
            });
        }
    }
    if preload.is_none() || !others.is_empty() {
        let from = from_sources(plan, place, ours, lookup, what, source_pins)?;
        if preload.is_none() {
            let mut distinct: Vec<&String> = from.iter().map(|(_, v)| v).collect();
            distinct.sort();
            distinct.dedup();
            if distinct.len() > 1 {
                let names: Vec<&str> = from.iter().map(|(s, _)| s.as_str()).collect();
                refuse!(
                    "{what} gets different LD_PRELOAD values from {}; set LD_PRELOAD in the container's env instead",
                    names.join(" and ")
                );
            }
            preload = from.into_iter().last().map(|(source, theirs)| Preload {
                own_index: None,
                theirs,
                source: Some(source),
            });
        }
    }
    let preload = preload.unwrap_or_default();
    if preload.theirs.contains(crate::layout::LIBRARY_NAME) {
        refuse!(
            "{what} already preloads {} ({}); generate from the workload without the injection",
            crate::layout::LIBRARY_NAME,
            preload.theirs
        );
    }
    Ok(preload)
}

/// The `LD_PRELOAD` values the `envFrom` sources set, as (source, value), in order.
fn from_sources(
    plan: &mut Plan<'_>,
    place: &EnvPlace,
    ours: &[&str],
    lookup: &Lookup<'_>,
    what: &str,
    source_pins: &mut Vec<SourcePin>,
) -> Result<Vec<(String, String)>, Error> {
    let mut refs: Vec<(&'static str, String, String)> = Vec::new(); // (kind, name, prefix)
    for r in &place.from {
        match r {
            FromRef::List(p) => {
                // Pinned as the Component sees it: a generated ConfigMap's name without its hash.
                let seen = p.get(plan.original()).cloned().map(|v| component_names(v, lookup));
                plan.pin_as(p, seen);
                let Some(list) = p.get(plan.original()) else { continue };
                let Some(list) = list.as_array() else { refuse!("{what}: its envFrom is not a list") };
                for e in list {
                    let prefix = e.get("prefix").and_then(Value::as_str).unwrap_or("").to_string();
                    for (field, kind) in [("configMapRef", "ConfigMap"), ("secretRef", "Secret")] {
                        if let Some(name) = e.pointer(&format!("/{field}/name")).and_then(Value::as_str) {
                            refs.push((kind, name.to_string(), prefix.clone()));
                        }
                    }
                }
            }
            FromRef::DgdSecret(p) => {
                plan.pin(p);
                if let Some(name) = p.get(plan.original()).and_then(Value::as_str) {
                    refs.push(("Secret", name.to_string(), String::new()));
                }
            }
        }
    }
    let mut values = Vec::new();
    for (kind, name, prefix) in refs {
        // The keys of this source that would become one of our variables.
        let keys: Vec<(&str, &str)> = ours
            .iter()
            .filter_map(|n| n.strip_prefix(prefix.as_str()).filter(|k| !k.is_empty()).map(|k| (*n, k)))
            .collect();
        if keys.is_empty() {
            continue;
        }
        // Kubernetes references carry the generated name; a DGD's envFromSecret the plain one.
        let found = lookup.objects.iter().position(|o| {
            o.id.group.is_empty()
                && o.id.kind == kind
                && (o.id.name == name || o.id.component_name == name)
                && o.id.same_namespace(lookup.owner)
        });
        let Some(index) = found else {
            if lookup.assumed_absent.contains(&name) {
                continue;
            }
            refuse!(
                "{what} takes its environment from {kind} {name} (envFrom), which is not in the input, so it cannot be told whether it sets {}; add it to the base, or pass --envfrom-without-ld-preload {name} if it does not",
                keys.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(" or ")
            );
        };
        let doc = &lookup.objects[index].doc;
        for (var, key) in keys {
            let fields: &[&'static str] = if kind == "Secret" { &["data", "stringData"] } else { &["data"] };
            for field in fields {
                source_pins.push(SourcePin { object: index, field, key: key.to_string() });
            }
            let value = source_value(doc, kind, key).map_err(|e| Error::new(format!("{kind} {name}: {e}")))?;
            let Some(value) = value else { continue };
            let source = format!(
                "{kind} {name} (envFrom{})",
                if prefix.is_empty() { String::new() } else { format!(", prefix {prefix}") }
            );
            if var != ENV_PRELOAD {
                refuse!("{what} gets {var} from {source}; remove it there, or leave out --faults-from-start (injecting would override it)");
            }
            values.push((source, value));
        }
    }
    Ok(values)
}

/// The value a ConfigMap or Secret gives `key` (a Secret's `stringData` wins over its `data`).
fn source_value(doc: &Value, kind: &str, key: &str) -> Result<Option<String>, String> {
    if kind == "Secret" {
        if let Some(v) = doc.pointer("/stringData").and_then(|d| d.get(key)) {
            return v.as_str().map(|s| Some(s.to_string())).ok_or_else(|| format!("stringData.{key} is not a string"));
        }
        let Some(v) = doc.pointer("/data").and_then(|d| d.get(key)) else { return Ok(None) };
        let text = v.as_str().ok_or_else(|| format!("data.{key} is not a string"))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| format!("data.{key} is not base64 ({e})"))?;
        return String::from_utf8(bytes).map(Some).map_err(|_| format!("data.{key} is not UTF-8 text"));
    }
    match doc.pointer("/data").and_then(|d| d.get(key)) {
        None => Ok(None),
        Some(v) => v.as_str().map(|s| Some(s.to_string())).ok_or_else(|| format!("data.{key} is not a string")),
    }
}

/// An `envFrom` list with each generated ConfigMap or Secret named as the Component sees it.
fn component_names(mut list: Value, lookup: &Lookup<'_>) -> Value {
    for entry in list.as_array_mut().into_iter().flatten() {
        for (field, kind) in [("configMapRef", "ConfigMap"), ("secretRef", "Secret")] {
            let Some(name) = entry.pointer_mut(&format!("/{field}/name")) else { continue };
            let found = lookup.objects.iter().find(|o| {
                o.id.group.is_empty()
                    && o.id.kind == kind
                    && Some(o.id.name.as_str()) == name.as_str()
                    && o.id.same_namespace(lookup.owner)
            });
            if let Some(o) = found {
                *name = Value::String(o.id.component_name.clone());
            }
        }
    }
    list
}
