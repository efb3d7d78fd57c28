//! Taking a live injection away again: exactly what the record says was added, found in the
//! object as it is now, as one JSON patch guarded by `test` operations (each thing removed is
//! tested to be as read, and the record to be the one read), so a change made meanwhile fails the
//! patch instead of being lost.
//!
//! What the user changed since stays, and is reported as kept:
//! - an element the injection appended (a mount, an env entry, the init container, a volume, a
//!   node pin term) is removed while every field it was added with still holds (the API server
//!   fills in defaults beside them); otherwise it is kept;
//! - a key the injection created (a list or map that was absent) is removed whole while it holds
//!   only what the injection put there; what the user added inside it stays;
//! - the user's `LD_PRELOAD`, prefixed with the shim, gets its old value back while it still holds
//!   the injected one;
//! - a volume of ours that something kept still mounts stays too, so the pod spec stays valid.
//!
//! Containers and env entries are found by name (the record keeps the names along its paths), so
//! a user who reordered a list does not make the removal miss or hit the wrong element.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::record::{show, steps_of, Added, Record, Step};
use super::{annotation_ptr, describe, record_text, ANNOTATION};
use crate::error::{refuse, Error};
use crate::patch::Op;
use crate::ptr::{Ptr, Seg};

/// The planned removal.
#[derive(Debug)]
pub struct Removal {
    /// The whole JSON patch.
    pub ops: Vec<Op>,
    /// What is removed or restored, one line each.
    pub removed: Vec<String>,
    /// What stays because it changed since the injection (or something kept still uses it).
    pub kept: Vec<String>,
    /// What the record lists but the object no longer has.
    pub gone: Vec<String>,
    /// The object as the patch leaves it.
    pub result: Value,
}

#[derive(Debug, Clone)]
enum Action {
    Remove,
    Restore(Value),
}

#[derive(Debug, Clone)]
struct Target {
    ptr: Ptr,
    /// The value there now (tested before the change).
    current: Value,
    action: Action,
}

/// Plans the removal of the injection recorded on `current`.
pub fn plan(current: &Value) -> Result<Removal, Error> {
    let what = describe(current);
    let Some(text) = record_text(current) else {
        refuse!(
            "{what} carries no record of cuda-fault inject (annotation {ANNOTATION}): nothing to remove; an injection by the kustomize Component goes away by applying your base again"
        );
    };
    let record = Record::parse(text).map_err(|e| {
        Error::new(format!(
            "{what}: the annotation {ANNOTATION} is {e}; nothing was changed, remove the injection by hand"
        ))
    })?;
    // Volumes still mounted by something that stays are kept too; keeping one can only add to
    // what stays, so this settles within a few rounds.
    let mut protected: BTreeMap<Ptr, String> = BTreeMap::new();
    loop {
        let mut pass = Pass { doc: current, protected: &protected, targets: vec![], kept: vec![], gone: vec![] };
        for added in &record.added {
            pass.entry(added);
        }
        let more: Vec<(Ptr, String)> =
            still_mounted(current, &pass.targets).into_iter().filter(|(p, _)| !protected.contains_key(p)).collect();
        if more.is_empty() {
            return Ok(pass.finish(text));
        }
        protected.extend(more);
    }
}

struct Pass<'a> {
    doc: &'a Value,
    protected: &'a BTreeMap<Ptr, String>,
    targets: Vec<Target>,
    kept: Vec<String>,
    gone: Vec<String>,
}

fn name_of(v: &Value) -> Option<&str> {
    v.get("name").and_then(Value::as_str)
}

/// Whether `current` still holds everything `ours` was added with: every field of a map (others
/// may have been filled in), lists element by element.
fn same(current: &Value, ours: &Value) -> bool {
    match (current, ours) {
        (Value::Object(c), Value::Object(o)) => o.iter().all(|(k, v)| c.get(k).is_some_and(|cv| same(cv, v))),
        (Value::Array(c), Value::Array(o)) => c.len() == o.len() && c.iter().zip(o).all(|(a, b)| same(a, b)),
        (c, o) => c == o,
    }
}

impl Pass<'_> {
    fn show(&self, ptr: &Ptr) -> String {
        show(&steps_of(self.doc, ptr))
    }

    /// The recorded steps in the object as it is now: a list element by its recorded name
    /// (where it had one), else by its index.
    fn resolve(&self, steps: &[Step]) -> Option<Ptr> {
        let mut cur = self.doc;
        let mut ptr = Ptr::default();
        for step in steps {
            match step {
                Step::Key(k) => {
                    cur = cur.get(k).filter(|v| !v.is_null())?;
                    ptr = ptr.key(k);
                }
                Step::Index(i, name) => {
                    let list = cur.as_array()?;
                    let at = match name {
                        Some(n) if list.get(*i).and_then(name_of) == Some(n) => *i,
                        Some(n) => list.iter().position(|e| name_of(e) == Some(n))?,
                        None if *i < list.len() => *i,
                        None => return None,
                    };
                    cur = &list[at];
                    ptr = ptr.index(at);
                }
            }
        }
        Some(ptr)
    }

    fn remove(&mut self, ptr: Ptr, current: &Value) {
        self.targets.push(Target { ptr, current: current.clone(), action: Action::Remove });
    }

    fn entry(&mut self, added: &Added) {
        let Some((last, parent)) = added.path.split_last() else { return };
        let shown = show(&added.path);
        let Some(parent) = self.resolve(parent) else {
            self.gone.push(format!("{shown}: already gone"));
            return;
        };
        let doc = self.doc;
        match (last, &added.was) {
            (step, Some(was)) => {
                let ptr = match step {
                    Step::Key(k) => parent.key(k),
                    Step::Index(i, _) => parent.index(*i),
                };
                match ptr.get(doc) {
                    Some(c) if *c == added.value => {
                        self.targets.push(Target { ptr, current: c.clone(), action: Action::Restore(was.clone()) })
                    }
                    Some(c) if c == was => self.gone.push(format!("{shown}: already restored")),
                    _ => self.kept.push(format!("{}: changed since the injection, left as it is", self.show(&ptr))),
                }
            }
            (Step::Key(k), None) => {
                let ptr = parent.key(k);
                match ptr.get(doc) {
                    None => self.gone.push(format!("{shown}: already gone")),
                    Some(c) => {
                        let (_, targets) = self.strip(&ptr, c, &added.value);
                        self.targets.extend(targets);
                    }
                }
            }
            (Step::Index(i, _), None) => {
                let Some(list) = parent.get(doc).and_then(Value::as_array) else {
                    self.gone.push(format!("{shown}: already gone"));
                    return;
                };
                let taken = |j: usize, t: &[Target]| t.iter().any(|t| t.ptr == parent.index(j));
                let found = std::iter::once(*i)
                    .chain(0..list.len())
                    .find(|&j| list.get(j).is_some_and(|c| same(c, &added.value)) && !taken(j, &self.targets));
                match found {
                    Some(j) => self.item(parent.index(j), &list[j]),
                    None => self.missing(&parent, list, &added.value, &shown),
                }
            }
        }
    }

    /// An element of ours, found: removed unless something kept still uses it.
    fn item(&mut self, ptr: Ptr, current: &Value) {
        match self.protected.get(&ptr) {
            Some(why) => self.kept.push(format!("{}: {why}, left as it is", self.show(&ptr))),
            None => self.remove(ptr, current),
        }
    }

    /// An element of ours that is not there as added: changed (an element of the same name is
    /// there) or gone.
    fn missing(&mut self, list_ptr: &Ptr, list: &[Value], ours: &Value, shown: &str) {
        match name_of(ours).and_then(|n| list.iter().position(|e| name_of(e) == Some(n))) {
            Some(j) => {
                self.kept.push(format!("{}: changed since the injection, left as it is", self.show(&list_ptr.index(j))))
            }
            None => self.gone.push(format!("{shown}: already gone")),
        }
    }

    /// Takes what the injection created at `ptr` (`ours`) out of what is there now (`current`).
    /// Returns whether nothing else is there (then the one target removes `ptr` whole), and the
    /// targets.
    fn strip(&mut self, ptr: &Ptr, current: &Value, ours: &Value) -> (bool, Vec<Target>) {
        let whole =
            |current: &Value| vec![Target { ptr: ptr.clone(), current: current.clone(), action: Action::Remove }];
        match (current, ours) {
            (Value::Object(c), Value::Object(o)) => {
                let mut full = c.iter().all(|(k, v)| v.is_null() || o.contains_key(k));
                let mut targets = Vec::new();
                for (k, ov) in o {
                    let Some(cv) = c.get(k).filter(|v| !v.is_null()) else { continue };
                    let (f, t) = self.strip(&ptr.key(k), cv, ov);
                    full &= f;
                    targets.extend(t);
                }
                if full {
                    (true, whole(current))
                } else {
                    (false, targets)
                }
            }
            (Value::Array(c), Value::Array(o)) => {
                let mut claimed = vec![false; c.len()];
                let mut full = true;
                let mut targets = Vec::new();
                for ov in o {
                    let found = (0..c.len()).find(|&j| !claimed[j] && same(&c[j], ov));
                    match found {
                        Some(j) => {
                            claimed[j] = true;
                            match self.protected.get(&ptr.index(j)) {
                                Some(why) => {
                                    full = false;
                                    self.kept.push(format!("{}: {why}, left as it is", self.show(&ptr.index(j))));
                                }
                                None => targets.push(Target {
                                    ptr: ptr.index(j),
                                    current: c[j].clone(),
                                    action: Action::Remove,
                                }),
                            }
                        }
                        None => self.missing(ptr, c, ov, &self.show(ptr)),
                    }
                }
                full &= claimed.iter().all(|c| *c);
                if full {
                    (true, whole(current))
                } else {
                    (false, targets)
                }
            }
            (c, o) if c == o => (true, whole(current)),
            _ => {
                self.kept.push(format!("{}: changed since the injection, left as it is", self.show(ptr)));
                (false, vec![])
            }
        }
    }

    fn finish(self, record_text: &str) -> Removal {
        let doc = self.doc;
        let removed: Vec<String> = self
            .targets
            .iter()
            .map(|t| match &t.action {
                Action::Remove => show(&steps_of(doc, &t.ptr)),
                Action::Restore(was) => format!("{} restored to {}", show(&steps_of(doc, &t.ptr)), json!(was)),
            })
            .collect();
        let mut targets = self.targets;
        // Later elements of a list first, so the earlier indices stay valid.
        targets.sort_by(|a, b| b.ptr.cmp(&a.ptr));
        let mut ops = Vec::new();
        let uid = Ptr::keys(&["metadata", "uid"]);
        if let Some(u) = uid.get(doc) {
            ops.push(Op::test(&uid, u.clone()));
        }
        ops.push(Op::test(&annotation_ptr(), json!(record_text)));
        ops.extend(targets.iter().map(|t| Op::test(&t.ptr, t.current.clone())));
        let mut result = doc.clone();
        for t in &targets {
            match &t.action {
                Action::Remove => {
                    ops.push(Op::remove(&t.ptr));
                    remove_at(&mut result, &t.ptr);
                }
                Action::Restore(was) => {
                    ops.push(Op::replace(&t.ptr, was.clone()));
                    if let Some(v) = t.ptr.get_mut(&mut result) {
                        *v = was.clone();
                    }
                }
            }
        }
        // The annotations map goes with the record when the record was all it held.
        let annotations = Ptr::keys(&["metadata", "annotations"]);
        let only_ours = annotations.get(doc).and_then(Value::as_object).is_some_and(|m| m.len() == 1);
        let record_at = if only_ours { annotations } else { annotation_ptr() };
        ops.push(Op::remove(&record_at));
        remove_at(&mut result, &record_at);
        Removal { ops, removed, kept: self.kept, gone: self.gone, result }
    }
}

fn remove_at(doc: &mut Value, ptr: &Ptr) {
    let Some(parent) = ptr.parent().get_mut(doc) else { return };
    match (parent, ptr.0.last()) {
        (Value::Object(m), Some(Seg::Key(k))) => {
            m.remove(k);
        }
        (Value::Array(a), Some(Seg::Index(i))) if *i < a.len() => {
            a.remove(*i);
        }
        _ => {}
    }
}

/// Volumes the targets remove that a mount staying in the same pod still names: (the volume
/// element, why it stays).
fn still_mounted(doc: &Value, targets: &[Target]) -> Vec<(Ptr, String)> {
    let removed = |p: &Ptr| targets.iter().any(|t| matches!(t.action, Action::Remove) && p.0.starts_with(&t.ptr.0));
    let mut volumes: Vec<(Ptr, Ptr)> = Vec::new(); // (pod, volume element)
    for t in targets.iter().filter(|t| matches!(t.action, Action::Remove)) {
        let n = t.ptr.0.len();
        if n >= 2 && t.ptr.0[n - 2] == Seg::Key("volumes".into()) && matches!(t.ptr.0[n - 1], Seg::Index(_)) {
            volumes.push((t.ptr.parent().parent(), t.ptr.clone()));
        }
        if t.ptr.0.last() == Some(&Seg::Key("volumes".into())) {
            for (i, _) in t.current.as_array().into_iter().flatten().enumerate() {
                volumes.push((t.ptr.parent(), t.ptr.index(i)));
            }
        }
        pods_with_volumes(&t.current, &t.ptr, &mut volumes);
    }
    let mut out = Vec::new();
    for (pod, vol) in volumes {
        let Some(name) = vol.get(doc).and_then(name_of) else { continue };
        let Some(pod_doc) = pod.get(doc) else { continue };
        let mut containers: Vec<Ptr> = Vec::new();
        for key in ["containers", "initContainers", "ephemeralContainers"] {
            for (i, _) in pod_doc.get(key).and_then(Value::as_array).into_iter().flatten().enumerate() {
                containers.push(pod.key(key).index(i));
            }
        }
        if pod_doc.get("mainContainer").is_some_and(Value::is_object) {
            containers.push(pod.key("mainContainer"));
        }
        for c in containers {
            let mounts = c.key("volumeMounts");
            let mut users = mounts.get(doc).and_then(Value::as_array).into_iter().flatten().enumerate();
            if users.any(|(j, m)| name_of(m) == Some(name) && !removed(&mounts.index(j))) {
                out.push((vol.clone(), format!("still mounted by {}", show(&steps_of(doc, &c)))));
                break;
            }
        }
    }
    out
}

/// The volume elements of every pod spec (a map with a `volumes` list) inside `v`, removed whole
/// at `at`.
fn pods_with_volumes(v: &Value, at: &Ptr, out: &mut Vec<(Ptr, Ptr)>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                if k == "volumes" {
                    for (i, _) in child.as_array().into_iter().flatten().enumerate() {
                        out.push((at.clone(), at.key(k).index(i)));
                    }
                } else {
                    pods_with_volumes(child, &at.key(k), out);
                }
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                pods_with_volumes(child, &at.index(i), out);
            }
        }
        _ => {}
    }
}
