//! Where to inject in one object: the pods (a pod template, a DGD service's `extraPodSpec`, a
//! v1beta1 component's `podTemplate.spec`) and their target containers, with what pins them:
//! the exact list of containers, init containers, services or components, the resources of
//! containers left alone, the DGD component types.
//!
//! A native sidecar (an init container with `restartPolicy: Always`) runs beside the containers
//! for the pod's whole life, so one that uses a GPU (or that `--container` names) is a target
//! like a container. Init containers that run to completion are left alone.

use serde_json::Value;

use crate::env::{EnvPlace, FromRef};
use crate::error::{refuse, Error};
use crate::gpu;
use crate::layout::WORKER_TYPES;
use crate::outcome::Outcome;
use crate::patch::Plan;
use crate::ptr::Ptr;
use crate::Options;

/// A container to inject into.
pub struct Target {
    /// The container; `None`: it is to be created (a v1beta1 component without `main`).
    pub ptr: Option<Ptr>,
    pub name: String,
    /// How the header and refusals call it: `container NAME`, `native sidecar NAME`.
    pub label: String,
    pub why: String,
    pub env: EnvPlace,
    /// Other mount lists of the same container, with the field holding the path (a v1alpha1
    /// service's `volumeMounts` use `mountPoint`).
    pub more_mounts: Vec<(Ptr, &'static str)>,
}

/// A pod to inject into.
pub struct Site {
    pub pod: Ptr,
    /// The list a created container goes into.
    pub containers: Ptr,
    pub what: String,
    pub targets: Vec<Target>,
    /// The index in `initContainers` before which the shim's installer goes: before the first
    /// native sidecar that is a target (it starts before later init containers run); `None`: at
    /// the end.
    pub install_before: Option<usize>,
}

pub fn list<'v>(v: &'v Value, p: &Ptr, what: &str) -> Result<&'v [Value], Error> {
    match p.get(v) {
        None => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(Error::new(format!("{what}: {p} is not a list"))),
    }
}

pub fn name_of(v: &Value) -> &str {
    v.get("name").and_then(Value::as_str).unwrap_or("")
}

/// Whether an init container is a native sidecar.
fn is_sidecar(c: &Value) -> bool {
    c.get("restartPolicy").and_then(Value::as_str) == Some("Always")
}

/// Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs and Pods.
pub fn pod_spec_sites(
    plan: &mut Plan<'_>,
    id: &str,
    pod: &Ptr,
    opts: &Options,
    out: &mut Outcome,
) -> Result<Vec<Site>, Error> {
    let doc = plan.original();
    if pod.get(doc).is_none() {
        refuse!("{id} has no pod spec at {pod}");
    }
    let containers_ptr = pod.key("containers");
    let containers = list(doc, &containers_ptr, id)?;
    // The set of containers is exact: a container added later (perhaps with a GPU) fails the build.
    plan.exact_list(&containers_ptr, "name");
    let inits_ptr = pod.key("initContainers");
    let inits = list(doc, &inits_ptr, id)?;
    // So is the set of init containers: a sidecar added later may use a GPU.
    plan.exact_list(&inits_ptr, "name");
    let mut targets = Vec::new();
    let mut others = Vec::new();
    let mut install_before = None;
    for (i, c) in inits.iter().enumerate() {
        let name = name_of(c).to_string();
        let c_ptr = inits_ptr.index(i);
        // A run-to-completion init container that becomes a sidecar fails the build.
        plan.pin(&c_ptr.key("restartPolicy"));
        let named = opts.containers.contains(&name);
        if !is_sidecar(c) {
            if named {
                refuse!("--container {name} names an init container of {id} that runs to completion before the shim is installed; the shim is for containers and native sidecars (restartPolicy: Always)");
            }
            plan.pin(&c_ptr.key("resources"));
            let uses = gpu::gpu_resource(c).map(|r| format!(", uses {r}")).unwrap_or_default();
            others.push(format!("{id}: init container {name} (runs to completion{uses})"));
            continue;
        }
        let Some(why) = target_why(plan, c, &c_ptr, named) else {
            others.push(format!("{id}: native sidecar {name} (no GPU)"));
            continue;
        };
        if named {
            out.named.insert(name.clone());
        }
        install_before.get_or_insert(i);
        targets.push(target(c_ptr, format!("native sidecar {name}"), name, why));
    }
    for (i, c) in containers.iter().enumerate() {
        let name = name_of(c).to_string();
        let named = opts.containers.contains(&name);
        let c_ptr = containers_ptr.index(i);
        let Some(why) = target_why(plan, c, &c_ptr, named) else {
            others.push(format!("{id}: container {name} (no GPU)"));
            continue;
        };
        if named {
            out.named.insert(name.clone());
        }
        targets.push(target(c_ptr, format!("container {name}"), name, why));
    }
    if targets.is_empty() {
        out.left_alone.push(format!("{id}: no container uses a GPU (name one with --container)"));
        return Ok(vec![]);
    }
    out.left_alone.extend(others);
    Ok(vec![Site { pod: pod.clone(), containers: containers_ptr, what: id.to_string(), targets, install_before }])
}

/// Why a container is a target (a GPU, or `--container`); `None` pins what keeps it a
/// non-target: its resources.
fn target_why(plan: &mut Plan<'_>, c: &Value, c_ptr: &Ptr, named: bool) -> Option<String> {
    match (gpu::gpu_resource(c), named) {
        (Some(resource), _) => Some(format!("uses {resource}")),
        (None, true) => Some("named with --container".to_string()),
        (None, false) => {
            plan.pin(&c_ptr.key("resources"));
            None
        }
    }
}

/// A Kubernetes container (or native sidecar) to inject into.
fn target(c_ptr: Ptr, label: String, name: String, why: String) -> Target {
    Target {
        env: EnvPlace {
            own: Some(c_ptr.key("env")),
            inherited: vec![],
            from: vec![FromRef::List(c_ptr.key("envFrom"))],
        },
        ptr: Some(c_ptr),
        label,
        name,
        why,
        more_mounts: vec![],
    }
}

/// v1alpha1: every service whose componentType is a worker type, at `extraPodSpec`.
pub fn dgd_services(plan: &mut Plan<'_>, out: &mut Outcome) -> Result<Vec<Site>, Error> {
    let doc = plan.original();
    let id = crate::stream::ObjectId::of(doc)?.to_string();
    let services_ptr = Ptr::keys(&["spec", "services"]);
    let Some(services) = services_ptr.get(doc).and_then(Value::as_object) else {
        refuse!("{id} has no spec.services map");
    };
    plan.exact_map(&services_ptr);
    let mut sites = Vec::new();
    for (name, service) in services {
        let s_ptr = services_ptr.key(name);
        // A frontend that later becomes a worker fails the build instead of going without the shim.
        plan.pin(&s_ptr.key("componentType"));
        let ctype = service.get("componentType").and_then(Value::as_str).unwrap_or("");
        if !WORKER_TYPES.contains(&ctype) {
            out.left_alone
                .push(format!("{id}: service {name} ({})", if ctype.is_empty() { "no componentType" } else { ctype }));
            continue;
        }
        let pod = s_ptr.key("extraPodSpec");
        let main = pod.key("mainContainer");
        sites.push(Site {
            pod: pod.clone(),
            containers: pod.key("containers"),
            what: format!("{id}: service {} ({})", crate::text::escape(name), crate::text::escape(ctype)),
            install_before: None,
            targets: vec![Target {
                env: EnvPlace {
                    own: Some(main.key("env")),
                    inherited: vec![(s_ptr.key("envs"), "service envs"), (Ptr::keys(&["spec", "envs"]), "graph envs")],
                    from: vec![FromRef::List(main.key("envFrom")), FromRef::DgdSecret(s_ptr.key("envFromSecret"))],
                },
                ptr: Some(main),
                name: "mainContainer".into(),
                label: "container mainContainer".into(),
                why: String::new(),
                more_mounts: vec![(s_ptr.key("volumeMounts"), "mountPoint")],
            }],
        });
    }
    Ok(sites)
}

/// v1beta1: every component whose type is a worker type, at `podTemplate.spec`, container `main`.
pub fn dgd_components(plan: &mut Plan<'_>, out: &mut Outcome) -> Result<Vec<Site>, Error> {
    let doc = plan.original();
    let id = crate::stream::ObjectId::of(doc)?.to_string();
    let comps_ptr = Ptr::keys(&["spec", "components"]);
    let comps = list(doc, &comps_ptr, &id)?;
    if comps.is_empty() {
        refuse!("{id} has no spec.components");
    }
    plan.exact_list(&comps_ptr, "name");
    let mut sites = Vec::new();
    for (i, comp) in comps.iter().enumerate() {
        let name = name_of(comp);
        let c_ptr = comps_ptr.index(i);
        plan.pin(&c_ptr.key("type"));
        let ctype = comp.get("type").and_then(Value::as_str).unwrap_or("");
        if !WORKER_TYPES.contains(&ctype) {
            out.left_alone
                .push(format!("{id}: component {name} ({})", if ctype.is_empty() { "no type" } else { ctype }));
            continue;
        }
        let pod = c_ptr.key("podTemplate").key("spec");
        let containers_ptr = pod.key("containers");
        let containers = list(doc, &containers_ptr, &id)?;
        plan.exact_list(&containers_ptr, "name");
        let mains: Vec<usize> =
            containers.iter().enumerate().filter(|(_, c)| name_of(c) == "main").map(|(j, _)| j).collect();
        if mains.len() > 1 {
            refuse!("{id}: component {name} has {} containers named main", mains.len());
        }
        let main = mains.first().map(|j| containers_ptr.index(*j));
        let graph_env = vec![(Ptr::keys(&["spec", "env"]), "graph env")];
        let env = match &main {
            Some(m) => {
                EnvPlace { own: Some(m.key("env")), inherited: graph_env, from: vec![FromRef::List(m.key("envFrom"))] }
            }
            // Created here; the operator merges it into its own main container by name.
            None => EnvPlace { own: None, inherited: graph_env, from: vec![] },
        };
        sites.push(Site {
            pod: pod.clone(),
            containers: containers_ptr,
            what: format!("{id}: component {} ({})", crate::text::escape(name), crate::text::escape(ctype)),
            install_before: None,
            targets: vec![Target {
                why: if main.is_none() {
                    "created: the operator merges it into its main container".into()
                } else {
                    String::new()
                },
                ptr: main,
                name: "main".into(),
                label: "container main".into(),
                env,
                more_mounts: vec![],
            }],
        });
    }
    Ok(sites)
}
