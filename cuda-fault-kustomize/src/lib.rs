//! `cuda-fault-kustomize`: writes the kustomize Component that loads the cuda-fault shim into a
//! user's own workloads, from the workloads as `kubectl kustomize` renders them, and the per-XID
//! fault overlays of this repository.
//!
//! The Component is one file of JSON6902 patches (see [`patch`] for their blocks) plus
//! `replacements` guards ([`component::guards`]): every change is exact (by index, checked with
//! `test` operations), adds only, and fails the build loudly when the base no longer matches what
//! the generator saw. See `kustomize/README.md`.

#![deny(unsafe_code)]

pub mod args;
pub mod component;
pub mod overlays;

// The injection's rules live in the `injection` crate, shared with the helper's live injection.
pub use injection::{
    env, error, gpu, hashed, inject, layout, names, patch, pin, ptr, sites, stream, text, workloads, Options,
};

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use injection::env::SourcePin;
use injection::error::{refuse, Error};
use injection::layout::STALE;
use injection::patch::Op;
use injection::ptr::Ptr;
use injection::stream::ObjectId;

use crate::args::Skip;
use crate::component::{Component, Patch};

/// The generated file and what it will do.
pub struct Generated {
    pub text: String,
    /// Every object the Component patches, as kustomize will render it.
    pub results: Vec<(ObjectId, Value)>,
    /// Things worth a line on stderr.
    pub warnings: Vec<String>,
}

/// Generates the Component for the rendered stream `input`.
pub fn generate(input: &str, opts: &Options) -> Result<Generated, Error> {
    generate_skipping(input, opts, &[])
}

/// Generates the Component, leaving out the workloads `skip` names (they stay known to the
/// guards, so they do not fail the build as new ones).
pub fn generate_skipping(input: &str, opts: &Options, skip: &[Skip]) -> Result<Generated, Error> {
    if let Some(xid) = opts.faults_from_start {
        if xid_table::find(xid).is_none() {
            refuse!("--faults-from-start {xid}: unknown XID; supported: {}", xid_table::supported_list());
        }
    }
    let objects = stream::parse(input)?;
    let mut patches = Vec::new();
    let mut results = Vec::new();
    let mut seen = Vec::new();
    let (mut injected, mut left_alone) = (Vec::new(), Vec::new());
    let mut named = BTreeSet::new();
    let mut source_pins: BTreeSet<SourcePin> = BTreeSet::new();
    let mut skipped = Vec::new();
    let mut skips_used = BTreeSet::new();
    let mut any_injected = false;
    for (i, obj) in objects.iter().enumerate() {
        if workloads::shape(&obj.id)?.is_none() {
            continue;
        }
        object_names(&obj.id)?;
        if let Some(s) = skip.iter().position(|s| s.matches(&obj.id)) {
            skips_used.insert(s);
            seen.push(obj.id.clone());
            skipped.push(format!("{} (--skip {})", obj.id, skip[s]));
            continue;
        }
        let Some(outcome) = inject::object(&objects, i, opts)? else { continue };
        seen.push(obj.id.clone());
        injected.extend(outcome.injected_lines);
        left_alone.extend(outcome.left_alone);
        named.extend(outcome.named);
        source_pins.extend(outcome.source_pins);
        any_injected |= outcome.injected;
        if !outcome.ops.is_empty() {
            patches.push(Patch { target: component::target(&obj.id), patch: component::patch_text(&outcome.ops) });
            results.push((obj.id.clone(), outcome.result));
        }
    }
    for name in &opts.containers {
        if !named.contains(name) {
            refuse!("--container {name} matches no container of a Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob or Pod in the input");
        }
    }
    for (i, s) in skip.iter().enumerate() {
        if !skips_used.contains(&i) {
            refuse!("--skip {s} matches no workload in the input");
        }
    }
    if !any_injected {
        let mut found: Vec<String> = left_alone.clone();
        found.extend(skipped.iter().cloned());
        if found.is_empty() {
            refuse!("found nothing to inject into: the input holds no Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, Pod or DynamoGraphDeployment; feed the output of kubectl kustomize");
        }
        refuse!(
            "found nothing to inject into: {}; name the containers that use a GPU with --container NAME (for GPUs from DRA resource claims), or generate from the workloads that use one",
            found.join("; ")
        );
    }
    let mut by_object: BTreeMap<usize, Vec<SourcePin>> = BTreeMap::new();
    for p in source_pins {
        by_object.entry(p.object).or_default().push(p);
    }
    for (index, pins) in by_object {
        let obj = &objects[index];
        object_names(&obj.id)?;
        patches.push(Patch {
            target: component::target(&obj.id),
            patch: component::patch_text(&source_ops(&obj.doc, &pins)),
        });
    }
    let component = Component {
        api_version: "kustomize.config.k8s.io/v1alpha1",
        kind: "Component",
        config_map_generator: vec![component::guard_source()],
        patches,
        replacements: vec![component::guards(&seen)],
    };
    let mut warnings = Vec::new();
    if !opts.toggle && opts.faults_from_start.is_none() {
        warnings.push(
            "warning: --no-toggle without --faults-from-start loads a shim that nothing can turn on (useful only to measure its overhead)"
                .to_string(),
        );
    }
    let text = component::render(&header(opts, &injected, &left_alone, &skipped), &component);
    Ok(Generated { text, results, warnings })
}

/// Refuses an object the Component would select whose name or namespace the API server would
/// refuse: kustomize keeps names in lists of its own (a ',' in one breaks the build), and such a
/// base could never be applied anyway.
fn object_names(id: &ObjectId) -> Result<(), Error> {
    if !names::is_dns_subdomain(&id.name) {
        refuse!("{id}: its name is not a Kubernetes object name (a DNS-1123 subdomain), which the API server would refuse; fix the base");
    }
    if id.namespace.as_deref().is_some_and(|ns| !names::is_dns_label(ns)) {
        refuse!("{id}: its namespace is not a DNS-1123 label, which the API server would refuse; fix the base");
    }
    Ok(())
}

/// Pins the keys of a ConfigMap or Secret that an `envFrom` decision relied on.
fn source_ops(doc: &Value, pins: &[SourcePin]) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut fields: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for p in pins {
        fields.entry(p.field).or_default().push(&p.key);
    }
    for (field, keys) in fields {
        let f = Ptr::keys(&[field]);
        match f.get(doc) {
            None => ops.push(Op::test(&f, Value::Null)),
            Some(map) => {
                let scratch = Ptr::keys(&[STALE]);
                ops.push(Op::copy(&f, &scratch));
                for key in keys {
                    ops.push(Op::test(&scratch.key(key), map.get(key).cloned().unwrap_or(Value::Null)));
                }
                ops.push(Op::remove(&scratch));
            }
        }
    }
    ops
}

fn header(opts: &Options, injected: &[String], left_alone: &[String], skipped: &[String]) -> Vec<String> {
    let version = env!("CARGO_PKG_VERSION");
    let mut h = vec![
        format!("Loads the cuda-fault shim into the containers listed below. Generated by cuda-fault-kustomize {version}; do not"),
        "edit. It holds for exactly what it was generated from: list it in an overlay of its own whose only".to_string(),
        "resource is that (your base, or your production overlay), with no patches or generators beside it:".to_string(),
        "  resources: [<what you generated from>]".to_string(),
        "  components: [<this directory>]".to_string(),
        "Regenerate whenever that changes (the build fails, naming".to_string(),
        format!("{STALE}, until you do):"),
        format!("  kubectl kustomize <what you generated from> | {} > <this directory>/kustomization.yaml", opts.command),
        String::new(),
    ];
    h.push(match opts.faults_from_start {
        None => "Faults: off (passthrough) until the node's toggle file turns them on: kubectl apply -k kustomize/xidNN, or cuda-fault node NODE enable.".into(),
        Some(x) => format!("Faults: on from process start, XID {x} (--faults-from-start){}.", if opts.toggle { "; the node's toggle file can still switch them" } else { "" }),
    });
    if !opts.toggle {
        h.push("No toggle: the node's /var/lib/cuda-fault-test is not mounted (--no-toggle).".into());
    }
    h.push(format!("Init container image: {}", opts.image));
    if let Some(p) = &opts.pin {
        h.push(format!(
            "Node pin: {} ({})",
            p.node,
            if p.mode == pin::Mode::Required { "required" } else { "preferred" }
        ));
    }
    h.push(String::new());
    h.push("Injected:".into());
    h.extend(injected.iter().map(|l| format!("  {l}")));
    if !left_alone.is_empty() {
        h.push("Left alone:".into());
        h.extend(left_alone.iter().map(|l| format!("  {l}")));
    }
    if !skipped.is_empty() {
        h.push("Skipped:".into());
        h.extend(skipped.iter().map(|l| format!("  {l}")));
    }
    h
}
