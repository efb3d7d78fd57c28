//! What a live injection added, recorded on the object itself (the annotation
//! [`super::ANNOTATION`], JSON): every key the injection created, every list element it appended
//! and every value it replaced (the user's `LD_PRELOAD`, prefixed with the shim), each with its
//! path and exact value. It is read from the difference between the object and the injection's
//! result, which differ only by what the rules add.
//!
//! A path step into a list carries the name of the element there (`[3, "vllm"]`), so that
//! [`super::removal`] finds a container or env entry again after the user reordered the list.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ptr::{Ptr, Seg};
use crate::Options;

/// The record's format; a newer one is refused by an older helper.
pub const VERSION: u32 = 1;

/// One step of a recorded path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Step {
    Key(String),
    /// A list index and the `name` of the element there when recorded.
    Index(usize, Option<String>),
}

/// One thing the injection added.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Added {
    pub path: Vec<Step>,
    /// What the injection put there: a created key's whole value, an appended element, or the
    /// new value of a replaced one.
    pub value: Value,
    /// A replaced value: what was there before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub was: Option<Value>,
}

/// The options the injection ran with (for people reading the annotation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Used {
    pub image: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults_from_start: Option<u32>,
    pub toggle: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub version: u32,
    /// `cuda-fault <version>`.
    pub by: String,
    pub options: Used,
    pub added: Vec<Added>,
}

impl Record {
    /// The record of the injection that turns `original` into `result`.
    pub fn new(original: &Value, result: &Value, opts: &Options) -> Record {
        let mut added = Vec::new();
        diff(original, result, &mut Vec::new(), &mut added);
        Record {
            version: VERSION,
            by: concat!("cuda-fault ", env!("CARGO_PKG_VERSION")).to_string(),
            options: Used {
                image: opts.image.clone(),
                containers: opts.containers.clone(),
                faults_from_start: opts.faults_from_start,
                toggle: opts.toggle,
                pin: opts.pin.as_ref().map(|p| {
                    let mode = if p.mode == crate::pin::Mode::Required { "required" } else { "preferred" };
                    format!("{} ({mode})", p.node)
                }),
            },
            added,
        }
    }

    /// The annotation's text: compact JSON.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("serializable")
    }

    /// Reads an annotation's text.
    pub fn parse(text: &str) -> Result<Record, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
        match v.get("version").and_then(Value::as_u64) {
            Some(n) if n == u64::from(VERSION) => {}
            Some(n) => return Err(format!("format version {n}, which this cuda-fault does not know (it knows {VERSION}): use the cuda-fault that wrote it")),
            None => return Err("no format version".into()),
        }
        let record: Record = serde_json::from_value(v).map_err(|e| format!("malformed ({e})"))?;
        // The injection only adds under `spec`: a record naming anything else was not written by it.
        if let Some(a) = record.added.iter().find(|a| a.path.len() < 2 || a.path[0] != Step::Key("spec".into())) {
            return Err(format!("malformed (it lists {}, outside the object's spec)", show(&a.path)));
        }
        Ok(record)
    }
}

fn name_of(v: &Value) -> Option<String> {
    v.get("name").and_then(Value::as_str).map(str::to_string)
}

/// Walks `original` and `result` side by side; what `result` has beyond `original` is added.
/// The rules only add keys, append to lists and replace the user's `LD_PRELOAD` value.
fn diff(original: &Value, result: &Value, path: &mut Vec<Step>, out: &mut Vec<Added>) {
    match (original, result) {
        (Value::Object(o), Value::Object(r)) => {
            for (k, rv) in r {
                path.push(Step::Key(k.clone()));
                match o.get(k) {
                    // Absent, or null (which the rules treat as absent).
                    None | Some(Value::Null) => out.push(Added { path: path.clone(), value: rv.clone(), was: None }),
                    Some(ov) => diff(ov, rv, path, out),
                }
                path.pop();
            }
        }
        (Value::Array(o), Value::Array(r)) => {
            for (i, rv) in r.iter().enumerate() {
                match o.get(i) {
                    Some(ov) => {
                        path.push(Step::Index(i, name_of(ov)));
                        diff(ov, rv, path, out);
                    }
                    None => {
                        path.push(Step::Index(i, name_of(rv)));
                        out.push(Added { path: path.clone(), value: rv.clone(), was: None });
                    }
                }
                path.pop();
            }
        }
        (o, r) if o != r => out.push(Added { path: path.clone(), value: r.clone(), was: Some(o.clone()) }),
        _ => {}
    }
}

/// A path for people: `spec.template.spec.containers[vllm].env[LD_PRELOAD]`, an unnamed list
/// element by its index.
pub fn show(path: &[Step]) -> String {
    let mut s = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Step::Index(_, Some(n)) => s.push_str(&format!("[{n}]")),
            Step::Index(i, None) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// The steps of a concrete pointer into `doc`, each index with the name of the element there.
pub fn steps_of(doc: &Value, ptr: &Ptr) -> Vec<Step> {
    let mut cur = Some(doc);
    let mut out = Vec::new();
    for seg in &ptr.0 {
        match seg {
            Seg::Key(k) => {
                out.push(Step::Key(k.clone()));
                cur = cur.and_then(|c| c.get(k));
            }
            Seg::Index(i) => {
                let el = cur.and_then(|c| c.get(*i));
                out.push(Step::Index(*i, el.and_then(name_of)));
                cur = el;
            }
            Seg::End => {}
        }
    }
    out
}

/// The pointer of recorded steps, as recorded (indices as they were).
pub fn ptr_of(steps: &[Step]) -> Ptr {
    Ptr(steps
        .iter()
        .map(|s| match s {
            Step::Key(k) => Seg::Key(k.clone()),
            Step::Index(i, _) => Seg::Index(*i),
        })
        .collect())
}
