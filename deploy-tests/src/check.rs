//! What every rendered overlay must satisfy, given the base it was built on:
//!
//! - the same objects as the base, no more, no fewer;
//! - at every site (see [`crate::sites`]): the init container, the two volumes, the two
//!   mounts in each targeted container and the env entries each present exactly once, as the
//!   template says; env values strings; `LD_PRELOAD` = the shim, or `shim:<theirs>` where the
//!   container already had one (in the container, the v1alpha1 service's `envs`, or the
//!   graph-wide env); the chosen XID and on/off state; the pin, when asked for, merged into the
//!   user's affinity;
//! - once exactly those injected items are taken out again, every object equals the base's:
//!   the user's env, volumes, mounts, init containers, affinity and everything else survive,
//!   and nothing else (a phantom service, a lost field) changed.

use serde_json::{json, Value};

use crate::sites::{self, get, get_mut, key, named, Preload, ResId, Site};
use crate::{paths, yaml};
use crate::{
    ENV_ENABLED, ENV_PRELOAD, ENV_XID, INIT_CONTAINER, LIB_VOLUME, MARKER_VOLUME, PIN_FIELD,
    PREFERRED_WEIGHT, PRELOAD,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinMode {
    Required,
    Preferred,
}

#[derive(Debug, Clone)]
pub struct Expect {
    /// CUDA_XID_TYPE, e.g. "79".
    pub xid: String,
    /// CUDA_FAULT_INJECTION_ENABLED: "1" or "0".
    pub enabled: &'static str,
    /// The init container's image.
    pub image: String,
    pub pin: Option<(PinMode, String)>,
}

impl Expect {
    pub fn faults_on(xid: u32) -> Self {
        Expect {
            xid: xid.to_string(),
            enabled: "1",
            image: crate::IMAGE.into(),
            pin: None,
        }
    }

    pub fn passthrough(xid: u32) -> Self {
        Expect {
            enabled: "0",
            ..Expect::faults_on(xid)
        }
    }

    pub fn pinned(self, mode: PinMode, node: &str) -> Self {
        Expect {
            pin: Some((mode, node.into())),
            ..self
        }
    }
}

/// The `spec` of the InjectionTemplate in `kustomize/components/cuda-fault/template.yaml`.
pub fn template() -> Value {
    let p = paths::kustomize_dir().join("components/cuda-fault/template.yaml");
    let docs = yaml::read_docs(&p).unwrap_or_else(|e| panic!("{e}"));
    docs[0]["spec"].clone()
}

fn named_in<'a>(list: Option<&'a Value>, field: &str, value: &str) -> Vec<&'a Value> {
    list.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|e| e.get(field).and_then(Value::as_str) == Some(value))
                .collect()
        })
        .unwrap_or_default()
}

fn one<'a>(errs: &mut Vec<String>, what: &str, found: Vec<&'a Value>) -> Option<&'a Value> {
    if found.len() == 1 {
        Some(found[0])
    } else {
        errs.push(format!(
            "{what}: expected exactly once, found {} times",
            found.len()
        ));
        None
    }
}

fn expect_eq(errs: &mut Vec<String>, what: &str, got: Option<&Value>, want: &Value) {
    if let Some(g) = got {
        if let Some(d) = yaml::diff(g, want) {
            errs.push(format!("{what}: differs from the template at {d}"));
        }
    }
}

/// The pin as it must appear.
pub fn pin_requirement(node: &str) -> Value {
    json!({"key": PIN_FIELD, "operator": "In", "values": [node]})
}

fn check_site(
    site: &Site,
    doc: &Value,
    base_doc: &Value,
    expect: &Expect,
    tmpl: &Value,
    errs: &mut Vec<String>,
) {
    let at = format!("{} {}", site.res, site.what);
    let Some(pod) = get(doc, &site.pod) else {
        errs.push(format!(
            "{at}: no pod spec at {}",
            sites::kustomize_path(&site.pod).unwrap_or_default()
        ));
        return;
    };
    let mut init = tmpl["initContainer"].clone();
    init["image"] = json!(expect.image);
    let ic = one(
        errs,
        &format!("{at}: init container {INIT_CONTAINER}"),
        named_in(pod.get("initContainers"), "name", INIT_CONTAINER),
    );
    expect_eq(errs, &format!("{at}: init container"), ic, &init);
    let v = one(
        errs,
        &format!("{at}: volume {LIB_VOLUME}"),
        named_in(pod.get("volumes"), "name", LIB_VOLUME),
    );
    expect_eq(
        errs,
        &format!("{at}: volume {LIB_VOLUME}"),
        v,
        &tmpl["volumes"]["lib"],
    );
    let v = one(
        errs,
        &format!("{at}: volume {MARKER_VOLUME}"),
        named_in(pod.get("volumes"), "name", MARKER_VOLUME),
    );
    expect_eq(
        errs,
        &format!("{at}: volume {MARKER_VOLUME}"),
        v,
        &tmpl["volumes"]["marker"],
    );
    if let Some(v) = v {
        if v.pointer("/hostPath/path") != Some(&json!(crate::MARKER_HOST_PATH))
            || v.pointer("/hostPath/type") != Some(&json!("DirectoryOrCreate"))
        {
            errs.push(format!(
                "{at}: volume {MARKER_VOLUME} is not hostPath {} DirectoryOrCreate",
                crate::MARKER_HOST_PATH
            ));
        }
    }
    for c in &site.containers {
        let ct = format!("{at} container {}", c.name);
        let Some(cv) = get(doc, &c.path) else {
            errs.push(format!("{ct}: missing"));
            continue;
        };
        let m = one(
            errs,
            &format!("{ct}: mount {LIB_VOLUME}"),
            named_in(cv.get("volumeMounts"), "name", LIB_VOLUME),
        );
        expect_eq(
            errs,
            &format!("{ct}: mount {LIB_VOLUME}"),
            m,
            &tmpl["volumeMounts"]["lib"],
        );
        let m = one(
            errs,
            &format!("{ct}: mount {MARKER_VOLUME}"),
            named_in(cv.get("volumeMounts"), "name", MARKER_VOLUME),
        );
        expect_eq(
            errs,
            &format!("{ct}: mount {MARKER_VOLUME}"),
            m,
            &tmpl["volumeMounts"]["marker"],
        );
        for (i, e) in cv
            .get("env")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if let Some(val) = e.get("value") {
                if !val.is_string() {
                    errs.push(format!(
                        "{ct}: env[{i}] {} has a non-string value {val}",
                        e["name"]
                    ));
                }
            }
        }
        let value_of = |errs: &mut Vec<String>,
                        list: Option<&Value>,
                        name: &str,
                        what: &str|
         -> Option<String> {
            let e = one(errs, what, named_in(list, "name", name))?;
            match e.get("value") {
                Some(Value::String(s)) => Some(s.clone()),
                other => {
                    errs.push(format!("{what}: value is {other:?}, not a string"));
                    None
                }
            }
        };
        let env = cv.get("env");
        let want_preload = match c.preload.theirs() {
            Some(t) => format!("{PRELOAD}:{t}"),
            None => PRELOAD.to_string(),
        };
        // Where the effective LD_PRELOAD must be: in the container, except when the user's
        // is a v1alpha1 service's `envs` (prefixed there; the container must then have none).
        let in_container = match &c.preload {
            Preload::Prefix { entry, .. } => entry.starts_with(&c.path),
            _ => true,
        };
        if in_container {
            if let Some(v) = value_of(errs, env, ENV_PRELOAD, &format!("{ct}: env {ENV_PRELOAD}")) {
                if v != want_preload {
                    errs.push(format!(
                        "{ct}: {ENV_PRELOAD}={v:?}, expected {want_preload:?}"
                    ));
                }
            }
        } else if let Preload::Prefix { entry, .. } = &c.preload {
            let n = named_in(env, "name", ENV_PRELOAD).len();
            if n != 0 {
                errs.push(format!("{ct}: has {n} {ENV_PRELOAD} entries; the service-level one must stay the effective one"));
            }
            match get(doc, entry)
                .and_then(|e| e.get("value"))
                .and_then(Value::as_str)
            {
                Some(v) if v == want_preload => {}
                other => errs.push(format!(
                    "{ct}: service-level {ENV_PRELOAD} is {other:?}, expected {want_preload:?}"
                )),
            }
        }
        if let Some(v) = value_of(errs, env, ENV_ENABLED, &format!("{ct}: env {ENV_ENABLED}")) {
            if v != expect.enabled {
                errs.push(format!(
                    "{ct}: {ENV_ENABLED}={v:?}, expected {:?}",
                    expect.enabled
                ));
            }
        }
        if let Some(v) = value_of(errs, env, ENV_XID, &format!("{ct}: env {ENV_XID}")) {
            if v != expect.xid {
                errs.push(format!("{ct}: {ENV_XID}={v:?}, expected {:?}", expect.xid));
            }
        }
    }
    let base_pod = get(base_doc, &site.pod).cloned().unwrap_or(Value::Null);
    let na = |p: &Value, tail: &str| {
        p.pointer(&format!("/affinity/nodeAffinity/{tail}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    match &expect.pin {
        Some((PinMode::Required, node)) => {
            let terms = na(
                pod,
                "requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms",
            );
            let before = na(
                &base_pod,
                "requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms",
            )
            .len();
            if terms.len() != before.max(1) {
                errs.push(format!(
                    "{at}: {} nodeSelectorTerms, expected {}",
                    terms.len(),
                    before.max(1)
                ));
            }
            for (i, t) in terms.iter().enumerate() {
                match named_in(t.get("matchFields"), "key", PIN_FIELD).as_slice() {
                    [m] if **m == pin_requirement(node) => {}
                    found => errs.push(format!(
                        "{at}: nodeSelectorTerms[{i}] pin on {PIN_FIELD}: found {found:?}"
                    )),
                }
            }
        }
        Some((PinMode::Preferred, node)) => {
            let prefs = na(pod, "preferredDuringSchedulingIgnoredDuringExecution");
            let ours: Vec<&Value> = prefs
                .iter()
                .filter(|t| t.get("weight") == Some(&json!(PREFERRED_WEIGHT)))
                .collect();
            let want = json!({"weight": PREFERRED_WEIGHT, "preference": {"matchFields": [pin_requirement(node)]}});
            if ours.len() != 1 || *ours[0] != want {
                errs.push(format!(
                    "{at}: preferred pin: found {ours:?}, expected exactly {want}"
                ));
            }
        }
        None => {}
    }
}

fn retain(list: Option<&mut Value>, keep: impl Fn(&Value) -> bool) {
    if let Some(Value::Array(a)) = list {
        a.retain(|e| keep(e));
    }
}

fn name_is(e: &Value, names: &[&str]) -> bool {
    e.get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| names.contains(&n))
}

/// Takes out exactly what the injection adds at `site` (assumed checked).
fn strip(doc: &mut Value, base: &Value, site: &Site, expect: &Expect) {
    if let Some(pod) = get_mut(doc, &site.pod) {
        retain(pod.get_mut("initContainers"), |e| {
            !name_is(e, &[INIT_CONTAINER])
        });
        retain(pod.get_mut("volumes"), |e| {
            !name_is(e, &[LIB_VOLUME, MARKER_VOLUME])
        });
        if let Some((mode, node)) = &expect.pin {
            if let Some(na) = pod.pointer_mut("/affinity/nodeAffinity") {
                match mode {
                    PinMode::Required => {
                        if let Some(Value::Array(terms)) = na.pointer_mut(
                            "/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms",
                        ) {
                            for t in terms {
                                retain(t.get_mut("matchFields"), |m| *m != pin_requirement(node));
                            }
                        }
                    }
                    PinMode::Preferred => retain(
                        na.get_mut("preferredDuringSchedulingIgnoredDuringExecution"),
                        |t| t.get("weight") != Some(&json!(PREFERRED_WEIGHT)),
                    ),
                }
            }
        }
    }
    for c in &site.containers {
        if let Some(cv) = get_mut(doc, &c.path) {
            retain(cv.get_mut("volumeMounts"), |e| {
                !name_is(e, &[LIB_VOLUME, MARKER_VOLUME])
            });
            retain(cv.get_mut("env"), |e| !name_is(e, &[ENV_ENABLED, ENV_XID]));
        }
        match &c.preload {
            // The container's LD_PRELOAD is the injection's own (or a copy of the graph's).
            Preload::Absent | Preload::CopyThenPrefix { .. } => {
                if let Some(cv) = get_mut(doc, &c.path) {
                    retain(cv.get_mut("env"), |e| !name_is(e, &[ENV_PRELOAD]));
                }
            }
            Preload::Prefix { entry, theirs } => {
                if let Some(e) = get_mut(doc, entry) {
                    e["value"] = json!(theirs);
                }
            }
        }
        // A container the injection created (a v1beta1 worker without a `main` container in
        // its podTemplate): only its name is left now.
        if get(base, &c.path).is_none() {
            if let Some((sites::Seg::Named(f, v), list)) = c.path.split_last() {
                if let Some(Value::Array(a)) = get_mut(doc, list) {
                    a.retain(|e| {
                        let mut e = e.clone();
                        prune(&mut e, None);
                        e != json!({ f.as_str(): v })
                    });
                }
            }
        }
    }
}

/// Removes the empty lists and maps that the stripped injection leaves where the base had
/// nothing (an `env: []` created for the injection, an emptied affinity).
fn prune(v: &mut Value, base: Option<&Value>) {
    let empty = |v: &Value| {
        matches!(v, Value::Array(a) if a.is_empty())
            || matches!(v, Value::Object(o) if o.is_empty())
    };
    match v {
        Value::Object(o) => {
            let keys: Vec<String> = o.keys().cloned().collect();
            for k in keys {
                let b = base.and_then(|b| b.get(&k));
                let child = o.get_mut(&k).unwrap();
                prune(child, b);
                if empty(child) && b.is_none() {
                    o.remove(&k);
                }
            }
        }
        Value::Array(a) => {
            let blen = base.and_then(Value::as_array).map_or(0, Vec::len);
            for (i, child) in a.iter_mut().enumerate() {
                prune(child, base.and_then(|b| b.get(i)));
            }
            while a.len() > blen && a.last().is_some_and(empty) {
                a.pop();
            }
        }
        _ => {}
    }
}

/// Checks one overlay's rendered output against its base. Returns the number of sites.
pub fn check_overlay(rendered: &[Value], base: &[Value], expect: &Expect) -> Result<usize, String> {
    let mut errs = Vec::new();
    let ids = |docs: &[Value]| {
        let mut v: Vec<String> = docs.iter().map(yaml::id).collect();
        v.sort();
        v
    };
    if ids(rendered) != ids(base) {
        errs.push(format!(
            "objects differ from the base's:\n  rendered {:?}\n  base     {:?}",
            ids(rendered),
            ids(base)
        ));
    }
    let sites = sites::discover(base)?;
    let tmpl = template();
    for site in &sites {
        match (site.res.find(rendered), site.res.find(base)) {
            (Some(doc), Some(b)) => check_site(site, doc, b, expect, &tmpl, &mut errs),
            _ => errs.push(format!("{}: not in the rendered output", site.res)),
        }
    }
    for b in base {
        let Some(id) = ResId::of(b) else { continue };
        let Some(r) = id.find(rendered) else { continue };
        let mut r = r.clone();
        for s in sites.iter().filter(|s| s.res == id) {
            strip(&mut r, b, s, expect);
        }
        prune(&mut r, Some(b));
        if let Some(d) = yaml::diff(&r, b) {
            errs.push(format!(
                "{id}: with the injection taken out, differs from the base at {d}"
            ));
        }
    }
    if errs.is_empty() {
        Ok(sites.len())
    } else {
        Err(errs.join("\n"))
    }
}

/// The env entry `name` of the container at `path` (for tests).
pub fn env_value(doc: &Value, path: &[sites::Seg], name: &str) -> Option<String> {
    let p = sites::join(path, &[key("env"), named("name", name), key("value")]);
    get(doc, &p).and_then(Value::as_str).map(str::to_string)
}
