//! The injection into one object: what goes into each pod and container that [`crate::sites`]
//! finds there. Everything is added, nothing of the user's is replaced: an init container, two
//! volumes, two read-only mounts and `LD_PRELOAD` (prefixed to the user's own), only on the
//! containers that use a GPU (or that `--container` names). A name or mount path of ours that the
//! pod already uses is refused.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, HostPathVolumeSource, ResourceRequirements, SeccompProfile,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::{json, Value};

use crate::env::{self, Lookup, SourcePin};
use crate::error::{refuse, Error};
use crate::layout::*;
use crate::outcome::Outcome;
use crate::patch::Plan;
use crate::pin;
use crate::sites::{self, list, name_of, Site};
use crate::stream::Object;
use crate::workloads::{self, Shape};
use crate::Options;

/// Plans the injection into `objects[index]`; `None` for kinds the generator does not handle.
pub fn object(objects: &[Object], index: usize, opts: &Options) -> Result<Option<Outcome>, Error> {
    let obj = &objects[index];
    let Some(shape) = workloads::shape(&obj.id)? else { return Ok(None) };
    if obj.doc.get("spec").and_then(Value::as_object).is_none() {
        refuse!("{} has no spec", obj.id);
    }
    let mut plan = Plan::new(&obj.doc);
    let mut out = Outcome {
        ops: vec![],
        injected: false,
        injected_lines: vec![],
        left_alone: vec![],
        source_pins: vec![],
        named: BTreeSet::new(),
        result: Value::Null,
    };
    let sites = match shape {
        Shape::PodSpec(pod) => sites::pod_spec_sites(&mut plan, &obj.id.to_string(), &pod, opts, &mut out)?,
        Shape::DgdServices => sites::dgd_services(&mut plan, &mut out)?,
        Shape::DgdComponents => sites::dgd_components(&mut plan, &mut out)?,
    };
    let lookup = Lookup { objects, owner: &obj.id, assumed_absent: &opts.envfrom_without_ld_preload };
    for site in sites {
        let lines = inject(&mut plan, &site, opts, &lookup, &mut out.source_pins)?;
        out.injected_lines.extend(lines);
    }
    out.injected = plan.injects();
    out.result = plan.result().clone();
    out.ops = plan.ops();
    Ok(Some(out))
}

/// The init container that copies the shim into the emptyDir.
fn init_container(image: &str) -> Value {
    let small = [("cpu".to_string(), Quantity("50m".into())), ("memory".to_string(), Quantity("32Mi".into()))];
    let c = Container {
        name: INIT_CONTAINER.into(),
        image: Some(image.into()),
        // The image's entrypoint is the helper; `install` copies the shim beside it atomically.
        args: Some(vec!["install".into(), SHIM_DIR.into()]),
        volume_mounts: Some(vec![VolumeMount {
            name: SHIM_VOLUME.into(),
            mount_path: SHIM_DIR.into(),
            ..Default::default()
        }]),
        // requests == limits: a Guaranteed-QoS GPU pod stays Guaranteed.
        resources: Some(ResourceRequirements {
            requests: Some(small.clone().into()),
            limits: Some(small.into()),
            ..Default::default()
        }),
        // Passes the Pod Security "restricted" level on its own.
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(IMAGE_UID),
            run_as_group: Some(IMAGE_UID),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
            seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }),
            ..Default::default()
        }),
        ..Default::default()
    };
    serde_json::to_value(c).expect("serializable")
}

fn volumes(toggle: bool) -> Vec<Value> {
    let mut v = vec![Volume {
        name: SHIM_VOLUME.into(),
        empty_dir: Some(EmptyDirVolumeSource { size_limit: Some(Quantity(SHIM_VOLUME_SIZE.into())), medium: None }),
        ..Default::default()
    }];
    if toggle {
        v.push(Volume {
            name: TOGGLE_VOLUME.into(),
            host_path: Some(HostPathVolumeSource { path: HOST_DIR.into(), type_: Some("DirectoryOrCreate".into()) }),
            ..Default::default()
        });
    }
    v.into_iter().map(|v| serde_json::to_value(v).expect("serializable")).collect()
}

fn mounts(toggle: bool) -> Vec<Value> {
    let mount = |name: &str, path: &str| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        // Workers only read: the shim, and the toggle file that the fault layer writes.
        read_only: Some(true),
        ..Default::default()
    };
    let mut m = vec![mount(SHIM_VOLUME, SHIM_DIR)];
    if toggle {
        m.push(mount(TOGGLE_VOLUME, TOGGLE_DIR));
    }
    m.into_iter().map(|m| serde_json::to_value(m).expect("serializable")).collect()
}

fn env_var(name: &str, value: &str) -> Value {
    serde_json::to_value(EnvVar { name: name.into(), value: Some(value.into()), value_from: None })
        .expect("serializable")
}

/// Refuses a pod that already uses one of our names or mount paths.
fn collisions(doc: &Value, site: &Site) -> Result<(), Error> {
    let what = &site.what;
    for key in ["initContainers", "containers"] {
        for c in list(doc, &site.pod.key(key), what)? {
            if name_of(c) == INIT_CONTAINER {
                refuse!("{what} already has a container named {INIT_CONTAINER} (was the input already injected? generate from the workload without the cuda-fault Component)");
            }
        }
    }
    for v in list(doc, &site.pod.key("volumes"), what)? {
        let name = name_of(v);
        if [SHIM_VOLUME, TOGGLE_VOLUME].contains(&name) {
            refuse!("{what} already has a volume named {name}, which the injection uses; rename yours (nothing of the user's is ever replaced)");
        }
    }
    for t in &site.targets {
        let Some(c) = &t.ptr else { continue };
        let mut lists = vec![(c.key("volumeMounts"), "mountPath")];
        lists.extend(t.more_mounts.iter().cloned());
        for (p, field) in lists {
            for m in list(doc, &p, what)? {
                let path = m.get(field).and_then(Value::as_str).unwrap_or("").trim_end_matches('/');
                let name = name_of(m);
                if [SHIM_VOLUME, TOGGLE_VOLUME].contains(&name) || [SHIM_DIR, TOGGLE_DIR].contains(&path) {
                    refuse!(
                        "{what}: {} already mounts {} at {}, which the injection uses; move yours",
                        t.label,
                        if name.is_empty() { "a volume" } else { name },
                        path
                    );
                }
            }
        }
    }
    Ok(())
}

/// Injects into one pod; returns the header lines.
fn inject(
    plan: &mut Plan<'_>,
    site: &Site,
    opts: &Options,
    lookup: &Lookup<'_>,
    pins: &mut Vec<SourcePin>,
) -> Result<Vec<String>, Error> {
    collisions(plan.original(), site)?;
    let mut ours = vec![ENV_PRELOAD];
    if opts.faults_from_start.is_some() {
        ours.extend([ENV_ENABLED, ENV_XID]);
    }
    let mut lines = Vec::new();
    for t in &site.targets {
        let what = format!("{}: {}", site.what, t.label);
        let preload = env::resolve(plan, &t.env, &ours, lookup, &what, pins)?;
        let value =
            if preload.theirs.is_empty() { PRELOAD.to_string() } else { format!("{PRELOAD}:{}", preload.theirs) };
        let mut new_env = Vec::new();
        match preload.own_index {
            Some(i) => {
                let own = t.env.own.as_ref().expect("an index in the container's own env");
                plan.replace(&own.index(i).key("value"), json!(value))
            }
            None => new_env.push(env_var(ENV_PRELOAD, &value)),
        }
        if let Some(xid) = opts.faults_from_start {
            new_env.push(env_var(ENV_ENABLED, "1"));
            new_env.push(env_var(ENV_XID, &xid.to_string()));
        }
        match &t.ptr {
            Some(c) => {
                for e in new_env {
                    plan.append(&c.key("env"), e)?;
                }
                for m in mounts(opts.toggle) {
                    plan.append(&c.key("volumeMounts"), m)?;
                }
            }
            None => plan.append(
                &site.containers,
                json!({"name": t.name, "env": new_env, "volumeMounts": mounts(opts.toggle)}),
            )?,
        }
        let kept = match &preload.source {
            Some(source) if !preload.theirs.is_empty() => {
                format!("; LD_PRELOAD keeps {} from {source} after the shim", preload.theirs)
            }
            _ => String::new(),
        };
        let why = if t.why.is_empty() { String::new() } else { format!(" ({})", t.why) };
        lines.push(format!("{what}{why}{kept}"));
    }
    // Before the first sidecar that preloads the shim, which starts before later init containers.
    match site.install_before {
        Some(i) => plan.insert(&site.pod.key("initContainers"), i, init_container(&opts.image))?,
        None => plan.append(&site.pod.key("initContainers"), init_container(&opts.image))?,
    }
    for v in volumes(opts.toggle) {
        plan.append(&site.pod.key("volumes"), v)?;
    }
    if let Some(p) = &opts.pin {
        pin::node(plan, &site.pod, p, &site.what)?;
    }
    Ok(lines)
}
