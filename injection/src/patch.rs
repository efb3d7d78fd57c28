//! One JSON6902 patch per object. Its operations come in four blocks:
//!
//! 1. `copy /spec` to a scratch key at the top of the object, named
//!    `cuda-fault-targets-are-stale--rerun-cuda-fault-kustomize`;
//! 2. pins: `test` operations on the scratch copy that hold exactly what the generator saw (a
//!    container's name at its index, a whole env list, `null` where something was absent);
//! 3. exactness guards on the scratch copy: the known entries of a list or map are removed one by
//!    one and the rest must be empty, so an entry added later fails the build;
//! 4. `remove` of the scratch key, then the `add`/`replace` operations of the injection.
//!
//! A failing pin or guard names the scratch key in kustomize's error ("testing value
//! /cuda-fault-targets-are-stale--rerun-cuda-fault-kustomize/... failed"), which says what to do.
//! The additions are computed on a working copy of the object, so a missing parent (an absent
//! `env`, `extraPodSpec` or `affinity`) is created once, whole, and later additions go into it.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::{json, Value};

use crate::error::{refuse, Error};
use crate::layout::STALE;
use crate::ptr::{Ptr, Seg};

/// One RFC 6902 operation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Op {
    pub op: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub path: String,
    /// `Some(Value::Null)` is written as `null` (a `test` for absence).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

impl Op {
    pub fn test(p: &Ptr, value: Value) -> Op {
        Op { op: "test", from: None, path: p.to_string(), value: Some(value) }
    }
    pub fn add(p: &Ptr, value: Value) -> Op {
        Op { op: "add", from: None, path: p.to_string(), value: Some(value) }
    }
    pub fn replace(p: &Ptr, value: Value) -> Op {
        Op { op: "replace", from: None, path: p.to_string(), value: Some(value) }
    }
    pub fn remove(p: &Ptr) -> Op {
        Op { op: "remove", from: None, path: p.to_string(), value: None }
    }
    pub fn copy(from: &Ptr, to: &Ptr) -> Op {
        Op { op: "copy", from: Some(from.to_string()), path: to.to_string(), value: None }
    }
}

/// The operations for one object, built against the object as the generator saw it.
pub struct Plan<'a> {
    original: &'a Value,
    work: Value,
    pinned: BTreeSet<Ptr>,
    pins: Vec<Op>,
    /// Exactness guards, one group per list or map.
    exact: Vec<(Ptr, Vec<Op>)>,
    adds: Vec<Op>,
}

impl<'a> Plan<'a> {
    pub fn new(original: &'a Value) -> Plan<'a> {
        Plan { original, work: original.clone(), pinned: BTreeSet::new(), pins: vec![], exact: vec![], adds: vec![] }
    }

    /// The object as the generator saw it.
    pub fn original(&self) -> &'a Value {
        self.original
    }

    /// Pins the value at `p` as seen; where `p` (or a parent) is absent, pins the first absent
    /// step as `null`.
    pub fn pin(&mut self, p: &Ptr) {
        let value = p.get(self.original).cloned();
        self.pin_as(p, value);
    }

    /// Pins `p` to `value` (what the Component will see there, which can differ from what the
    /// generator saw: generated names lose their hash suffix); absent as [`Plan::pin`].
    pub fn pin_as(&mut self, p: &Ptr, value: Option<Value>) {
        let mut at = p.clone();
        for len in 1..=p.0.len() {
            if p.prefix(len).get(self.original).is_none() {
                at = p.prefix(len);
                break;
            }
        }
        if !self.pinned.insert(at.clone()) {
            return;
        }
        let value = if at == *p { value.unwrap_or(Value::Null) } else { Value::Null };
        self.pins.push(Op::test(&at.scratch(), value));
    }

    /// The entries of the list at `list` must be exactly `names` (their `key` field), in this
    /// order. Nothing when the list is absent (then it is pinned absent).
    pub fn exact_list(&mut self, list: &Ptr, key: &str) {
        let Some(items) = list.get(self.original).and_then(Value::as_array) else {
            self.pin(list);
            return;
        };
        if self.exact.iter().any(|(p, _)| p == list) {
            return;
        }
        let scratch = list.scratch();
        let mut ops = Vec::new();
        for (i, item) in items.iter().enumerate().rev() {
            ops.push(Op::test(&scratch.index(i).key(key), item.get(key).cloned().unwrap_or(Value::Null)));
            ops.push(Op::remove(&scratch.index(i)));
        }
        ops.push(Op::test(&scratch, json!([])));
        self.exact.push((list.clone(), ops));
    }

    /// The keys of the map at `map` must be exactly those seen.
    pub fn exact_map(&mut self, map: &Ptr) {
        let Some(entries) = map.get(self.original).and_then(Value::as_object) else {
            self.pin(map);
            return;
        };
        let scratch = map.scratch();
        let mut ops: Vec<Op> = entries.keys().map(|key| Op::remove(&scratch.key(key))).collect();
        ops.push(Op::test(&scratch, json!({})));
        self.exact.push((map.clone(), ops));
    }

    /// Appends `item` to the list at `list`, creating the list and any absent parent maps.
    pub fn append(&mut self, list: &Ptr, item: Value) -> Result<(), Error> {
        for len in 1..=list.0.len() {
            let at = list.prefix(len);
            if at.get(&self.work).is_some() {
                continue;
            }
            // Absent here (and so in the original: the working copy only grows): pin it absent
            // and add it whole.
            let mut value = json!([item]);
            for seg in list.0[len..].iter().rev() {
                let Seg::Key(k) = seg else { panic!("cannot create the list index in {list}") };
                value = json!({ k: value });
            }
            self.pin(&at);
            self.set(&at, value.clone());
            self.adds.push(Op::add(&at, value));
            return Ok(());
        }
        match list.get_mut(&mut self.work) {
            Some(Value::Array(items)) => items.push(item.clone()),
            _ => refuse!("{list} is not a list"),
        }
        self.adds.push(Op::add(&list.end(), item));
        Ok(())
    }

    /// Inserts `item` into the existing list at `list`, before the entry at `index`.
    pub fn insert(&mut self, list: &Ptr, index: usize, item: Value) -> Result<(), Error> {
        match list.get_mut(&mut self.work) {
            Some(Value::Array(items)) if index <= items.len() => items.insert(index, item.clone()),
            _ => refuse!("{list} is not a list with an entry {index}"),
        }
        self.adds.push(Op::add(&list.index(index), item));
        Ok(())
    }

    /// Replaces the value at `p`, a key of an existing map; a key that is absent (an env entry
    /// `{name: LD_PRELOAD}` without a value) is added instead, as `replace` needs it present.
    pub fn replace(&mut self, p: &Ptr, value: Value) {
        match p.get_mut(&mut self.work) {
            Some(v) => {
                *v = value.clone();
                self.adds.push(Op::replace(p, value));
            }
            None => {
                self.set(p, value.clone());
                self.adds.push(Op::add(p, value));
            }
        }
    }

    fn set(&mut self, at: &Ptr, value: Value) {
        let Some(Seg::Key(k)) = at.0.last() else { panic!("{at} does not end in a key") };
        let parent = at.parent().get_mut(&mut self.work).and_then(Value::as_object_mut);
        parent.expect("the parent exists").insert(k.clone(), value);
    }

    /// Whether this plan changes the object or checks anything.
    pub fn is_empty(&self) -> bool {
        self.pins.is_empty() && self.exact.is_empty() && self.adds.is_empty()
    }

    /// Whether this plan injects anything.
    pub fn injects(&self) -> bool {
        !self.adds.is_empty()
    }

    /// The object after the injection (what kustomize will render).
    pub fn result(&self) -> &Value {
        &self.work
    }

    /// Every operation, in order.
    pub fn ops(self) -> Vec<Op> {
        let mut ops = Vec::new();
        let checks = !self.pins.is_empty() || !self.exact.is_empty();
        let scratch = Ptr::keys(&[STALE]);
        if checks {
            ops.push(Op::copy(&Ptr::keys(&["spec"]), &scratch));
        }
        ops.extend(self.pins);
        // A list inside another (a component's containers) is checked before its parent's
        // entries are removed from the scratch copy.
        let mut exact = self.exact;
        exact.sort_by_key(|(p, _)| std::cmp::Reverse(p.0.len()));
        ops.extend(exact.into_iter().flat_map(|(_, ops)| ops));
        if checks {
            ops.push(Op::remove(&scratch));
        }
        ops.extend(self.adds);
        ops
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(ops: &[Op]) -> Vec<String> {
        ops.iter().map(|o| format!("{} {}", o.op, o.path)).collect()
    }

    #[test]
    fn absent_parents_are_created_once_and_pinned_absent() {
        let doc = json!({"spec": {"services": {"W": {"componentType": "worker"}}}});
        let mut plan = Plan::new(&doc);
        let eps = Ptr::keys(&["spec", "services", "W", "extraPodSpec"]);
        plan.append(&eps.key("volumes"), json!({"name": "v"})).unwrap();
        plan.append(&eps.key("mainContainer").key("env"), json!({"name": "E"})).unwrap();
        plan.append(&eps.key("mainContainer").key("env"), json!({"name": "F"})).unwrap();
        assert_eq!(
            plan.result()["spec"]["services"]["W"]["extraPodSpec"],
            json!({"volumes": [{"name": "v"}], "mainContainer": {"env": [{"name": "E"}, {"name": "F"}]}})
        );
        let ops = plan.ops();
        assert_eq!(
            paths(&ops),
            [
                "copy /cuda-fault-targets-are-stale--rerun-cuda-fault-kustomize",
                "test /cuda-fault-targets-are-stale--rerun-cuda-fault-kustomize/services/W/extraPodSpec",
                "remove /cuda-fault-targets-are-stale--rerun-cuda-fault-kustomize",
                "add /spec/services/W/extraPodSpec",
                "add /spec/services/W/extraPodSpec/mainContainer",
                "add /spec/services/W/extraPodSpec/mainContainer/env/-",
            ]
        );
        assert_eq!(ops[1].value, Some(Value::Null));
    }

    #[test]
    fn exact_list_removes_descending_and_expects_empty() {
        let doc = json!({"spec": {"c": [{"name": "a"}, {"name": "b"}]}});
        let mut plan = Plan::new(&doc);
        plan.exact_list(&Ptr::keys(&["spec", "c"]), "name");
        let ops = plan.ops();
        let s = "/cuda-fault-targets-are-stale--rerun-cuda-fault-kustomize";
        assert_eq!(
            paths(&ops[1..7]),
            [
                format!("test {s}/c/1/name"),
                format!("remove {s}/c/1"),
                format!("test {s}/c/0/name"),
                format!("remove {s}/c/0"),
                format!("test {s}/c"),
                format!("remove {s}")
            ]
        );
        assert_eq!(ops[5].value, Some(json!([])));
    }
}
