//! The live injection (`cuda-fault inject`): the generator's rules ([`crate::inject`]) applied to
//! ONE object read from the API server, instead of a rendered stream, as one JSON patch that the
//! API server applies atomically or not at all.
//!
//! The patch is the generator's operations (their `test` pins hold what the rules relied on, so a
//! change made between the read and the write fails the patch) between two guards of our own:
//! first `test`s that the object is the one read (its uid) and carries no injection record yet,
//! last an `add` of the record ([`record`], the annotation [`ANNOTATION`]): the exact list of what
//! was added. [`removal`] takes exactly that away again, guarded the same way.
//!
//! The ConfigMaps and Secrets that an injected container's `envFrom` names decide the user's
//! `LD_PRELOAD`; [`sources`] says which of them the rules consult (found by the rules themselves,
//! run once against empty stand-ins), so the caller fetches exactly those and passes them to
//! [`plan`].

pub mod record;
pub mod removal;

use serde_json::{json, Value};

use crate::error::{refuse, Error};
use crate::inject;
use crate::layout::INIT_CONTAINER;
use crate::patch::Op;
use crate::ptr::Ptr;
use crate::stream::{Object, ObjectId};
use crate::Options;

pub use record::Record;

/// The annotation that holds the record of a live injection.
pub const ANNOTATION: &str = "cuda-fault/injection";

/// A ConfigMap or Secret (in the object's namespace) whose keys decide an injected container's
/// `LD_PRELOAD`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SourceRef {
    /// `ConfigMap` or `Secret`.
    pub kind: &'static str,
    pub name: String,
}

/// The planned live injection of one object.
#[derive(Debug)]
pub struct Injection {
    /// The whole JSON patch: our guards, the generator's operations, the record.
    pub ops: Vec<Op>,
    pub record: Record,
    /// One line per injected container (as the generator's header says it).
    pub injected: Vec<String>,
    /// One line per container, service or component left alone.
    pub left_alone: Vec<String>,
    /// The object as the patch leaves it.
    pub result: Value,
}

/// The pointer to the record in the object's annotations.
pub fn annotation_ptr() -> Ptr {
    Ptr::keys(&["metadata", "annotations"]).key(ANNOTATION)
}

/// The record annotation's text, if the object has one.
pub fn record_text(object: &Value) -> Option<&str> {
    annotation_ptr().get(object).and_then(Value::as_str)
}

fn describe(object: &Value) -> String {
    ObjectId::of(object).map(|id| id.to_string()).unwrap_or_else(|_| "the object".into())
}

/// Refuses an object that already carries an injection: ours (the record) or the kustomize
/// Component's (our init container without a record).
fn not_injected(object: &Value) -> Result<(), Error> {
    let what = describe(object);
    if record_text(object).is_some() {
        refuse!(
            "{what} is already injected (annotation {ANNOTATION}); remove it first with cuda-fault inject --remove"
        );
    }
    if has_init_container(object.get("spec").unwrap_or(&Value::Null)) {
        refuse!(
            "{what} already carries the cuda-fault injection (init container {INIT_CONTAINER}) but no record of cuda-fault inject: it came from the kustomize Component; remove that by applying your base again"
        );
    }
    Ok(())
}

/// Whether any `initContainers` list under `v` holds ours.
fn has_init_container(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.iter().any(|(k, v)| {
            (k == "initContainers"
                && v.as_array()
                    .is_some_and(|l| l.iter().any(|c| c.get("name").and_then(Value::as_str) == Some(INIT_CONTAINER))))
                || has_init_container(v)
        }),
        Value::Array(a) => a.iter().any(has_init_container),
        _ => false,
    }
}

/// Every ConfigMap and Secret an `envFrom` list or a DGD's `envFromSecret` names anywhere in the
/// object (more than the rules consult: sidecars' too).
fn referenced(v: &Value, out: &mut Vec<SourceRef>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("envFrom", Value::Array(list)) => {
                        for e in list {
                            for (field, kind) in [("configMapRef", "ConfigMap"), ("secretRef", "Secret")] {
                                if let Some(name) = e.get(field).and_then(|r| r.get("name")).and_then(Value::as_str) {
                                    out.push(SourceRef { kind, name: name.to_string() });
                                }
                            }
                        }
                    }
                    ("envFromSecret", Value::String(name)) => {
                        out.push(SourceRef { kind: "Secret", name: name.clone() })
                    }
                    _ => referenced(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| referenced(v, out)),
        _ => {}
    }
}

/// An object of the stream the rules read, named as the API server names it (a Component sees
/// generated names without their hash suffix; a live patch sees the object itself).
fn live_object(doc: Value) -> Result<Object, Error> {
    let mut id = ObjectId::of(&doc)?;
    id.component_name = id.name.clone();
    Ok(Object { id, doc })
}

fn outcome(objects: &[Object], opts: &Options) -> Result<crate::outcome::Outcome, Error> {
    match inject::object(objects, 0, opts)? {
        Some(o) => Ok(o),
        None => refuse!(
            "{} is not a kind cuda-fault injects into (Deployment, StatefulSet, DaemonSet, DynamoGraphDeployment)",
            objects[0].id
        ),
    }
}

/// The ConfigMaps and Secrets whose content the rules need for `object`: those an injected
/// container's environment comes from, unless `--envfrom-without-ld-preload` names them.
pub fn sources(object: &Value, opts: &Options) -> Result<Vec<SourceRef>, Error> {
    not_injected(object)?;
    let target = live_object(object.clone())?;
    let mut refs = Vec::new();
    referenced(object.get("spec").unwrap_or(&Value::Null), &mut refs);
    refs.retain(|r| !opts.envfrom_without_ld_preload.contains(&r.name));
    refs.sort();
    refs.dedup();
    let mut objects = vec![target];
    for r in &refs {
        // An empty stand-in: the rules record each source they consult (`source_pins`).
        let mut meta = json!({"name": r.name});
        if let Some(ns) = &objects[0].id.namespace {
            meta["namespace"] = json!(ns);
        }
        objects.push(live_object(json!({"apiVersion": "v1", "kind": r.kind, "metadata": meta}))?);
    }
    let out = outcome(&objects, opts)?;
    let mut needed: Vec<SourceRef> = out.source_pins.iter().map(|p| refs[p.object - 1].clone()).collect();
    needed.sort();
    needed.dedup();
    Ok(needed)
}

/// Plans the injection into `object` as read from the API server; `sources` are the ConfigMaps
/// and Secrets [`sources`] asked for, as read from it (a missing one is left out).
pub fn plan(object: &Value, sources: &[Value], opts: &Options) -> Result<Injection, Error> {
    not_injected(object)?;
    if let Some(xid) = opts.faults_from_start {
        if xid_table::find(xid).is_none() {
            refuse!("--faults-from-start {xid}: unknown XID; supported: {}", xid_table::supported_list());
        }
    }
    let mut objects = vec![live_object(object.clone())?];
    for s in sources {
        objects.push(live_object(s.clone())?);
    }
    let what = objects[0].id.to_string();
    let out = outcome(&objects, opts)?;
    for name in &opts.containers {
        if !out.named.contains(name) {
            refuse!("--container {name} matches no container of {what}");
        }
    }
    if !out.injected {
        refuse!("{what} has nothing to inject into: no container uses a GPU and no DynamoGraphDeployment service or component is a worker; name containers with --container NAME");
    }
    let record = Record::new(object, &out.result, opts);
    let text = record.to_text();
    let mut ops = guards(object);
    ops.extend(out.ops);
    let mut result = out.result;
    let annotations = Ptr::keys(&["metadata", "annotations"]);
    match annotations.get(object) {
        Some(_) => {
            ops.push(Op::add(&annotation_ptr(), json!(text)));
            result["metadata"]["annotations"][ANNOTATION] = json!(text);
        }
        None => {
            ops.push(Op::add(&annotations, json!({ ANNOTATION: text })));
            result["metadata"]["annotations"] = json!({ ANNOTATION: text });
        }
    }
    Ok(Injection { ops, record, injected: out.injected_lines, left_alone: out.left_alone, result })
}

/// The object is still the one read (same uid), and carries no record yet: a second injection
/// racing this one fails here.
fn guards(object: &Value) -> Vec<Op> {
    let mut ops = Vec::new();
    let uid = Ptr::keys(&["metadata", "uid"]);
    if let Some(u) = uid.get(object) {
        ops.push(Op::test(&uid, u.clone()));
    }
    // A `test` for `null` holds where the key is absent but its parent exists (the API server's
    // JSON patch), so the absent annotation is tested, or else the absent annotations map.
    let annotations = Ptr::keys(&["metadata", "annotations"]);
    match annotations.get(object) {
        Some(_) => ops.push(Op::test(&annotation_ptr(), Value::Null)),
        None => ops.push(Op::test(&annotations, Value::Null)),
    }
    ops
}

#[cfg(test)]
mod tests;
