//! `cuda-fault inject`: the shim injected into a live workload (no kustomize sources needed), and
//! `--remove` taking exactly that away again.

use std::io::Write;

use clap::Args;
use injection::pin::{Mode, NodePin};

use crate::cluster::inject::{self, Injected, Plan, RemovePlan, Removed};
use crate::cluster::verify::Workload;
use crate::cluster::{is_dns_label, is_node_name, DEFAULT_IMAGE, IMAGE_ENV};
use crate::exit::{self, Failure};

pub const INJECT_HELP: &str = "\
Reads the workload from the API server and applies the generator's injection (the same rules
as cuda-fault-kustomize) as ONE JSON patch that opens with `test` operations: the API server
applies all of it or nothing, and a change made meanwhile fails it (exit 11: run it again).
What was added is recorded in the annotation cuda-fault/injection; injecting twice is refused.
--remove takes exactly that away (each piece tested first); what changed since stays and is
reported as kept. Examples:
  cuda-fault inject -n prod deployment/vllm --pin-node gpu-node-1
  cuda-fault inject -n llm dgd/vllm-disagg --json
  cuda-fault inject --remove -n llm dgd/vllm-disagg --restart";

/// An image reference is at most this long (generous; registries allow 255-byte names plus a
/// tag or digest).
const MAX_IMAGE: usize = 1024;

#[derive(Debug, Args)]
pub struct InjectArgs {
    /// deployment/NAME, statefulset/NAME, daemonset/NAME or dynamographdeployment/NAME (dgd/NAME)
    #[arg(value_name = "KIND/NAME", value_parser = Workload::parse)]
    pub workload: Workload,
    /// The workload's namespace [default: the kubeconfig context's]
    #[arg(long, short = 'n', value_name = "NS")]
    pub namespace: Option<String>,
    /// Take away what an earlier `inject` added (what changed since stays)
    #[arg(long)]
    pub remove: bool,
    /// With --remove: delete the workload's pods that still carry the injection
    #[arg(long, requires = "remove")]
    pub restart: bool,
    /// Pin the injected pods to this node (its metadata.name)
    #[arg(long, value_name = "NODE", conflicts_with = "remove")]
    pub pin_node: Option<String>,
    /// How --pin-node pins
    #[arg(long, value_enum, default_value = "preferred", requires = "pin_node")]
    pub pin: Mode,
    /// Faults on from process start with this XID (CUDA_FAULT_INJECTION_ENABLED="1", CUDA_XID_TYPE)
    #[arg(long, value_name = "XID", conflicts_with = "remove")]
    pub faults_from_start: Option<u32>,
    /// Do not mount the node's toggle directory (for namespaces whose Pod Security forbids hostPath)
    #[arg(long, conflicts_with = "remove")]
    pub no_toggle: bool,
    /// Also inject into the container with this name, which asks for no GPU (repeatable)
    #[arg(long = "container", value_name = "NAME", conflicts_with = "remove")]
    pub containers: Vec<String>,
    /// A ConfigMap or Secret named in envFrom that sets no LD_PRELOAD: not read (repeatable)
    #[arg(long = "envfrom-without-ld-preload", value_name = "NAME", conflicts_with = "remove")]
    pub envfrom_without_ld_preload: Vec<String>,
    /// Image of the init container that installs the shim
    #[arg(long, value_name = "IMAGE", env = IMAGE_ENV, default_value = DEFAULT_IMAGE)]
    pub image: String,
    /// Print a JSON object
    #[arg(long)]
    pub json: bool,
}

/// What the arguments ask for.
#[derive(Debug, Clone)]
pub enum InjectPlan {
    Inject(Plan),
    Remove(RemovePlan),
}

impl InjectArgs {
    /// The validated plan; `default_namespace` when `-n` is not given.
    pub fn plan(&self, default_namespace: &str) -> Result<InjectPlan, Failure> {
        let namespace = self.namespace.clone().unwrap_or_else(|| default_namespace.to_string());
        if !is_dns_label(&namespace) {
            return Err(Failure::usage(format!("invalid namespace '{namespace}': expected a DNS-1123 label")));
        }
        if self.remove {
            return Ok(InjectPlan::Remove(RemovePlan {
                namespace,
                workload: self.workload.clone(),
                restart: self.restart,
            }));
        }
        if let Some(n) = self.pin_node.as_deref().filter(|n| !is_node_name(n)) {
            return Err(Failure::usage(format!("--pin-node '{n}' is not a node name (a DNS-1123 subdomain)")));
        }
        if let Some(c) = self.containers.iter().find(|c| !is_dns_label(c)) {
            return Err(Failure::usage(format!("--container '{c}' is not a container name (a DNS-1123 label)")));
        }
        if let Some(n) = self.envfrom_without_ld_preload.iter().find(|n| !is_node_name(n)) {
            return Err(Failure::usage(format!(
                "--envfrom-without-ld-preload '{n}' is not a ConfigMap or Secret name (a DNS-1123 subdomain)"
            )));
        }
        let image = &self.image;
        if image.is_empty() || image.len() > MAX_IMAGE || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Failure::usage(format!(
                "--image {image:?} is not an image reference (1 to {MAX_IMAGE} bytes, no spaces or control characters)"
            )));
        }
        Ok(InjectPlan::Inject(Plan {
            namespace,
            workload: self.workload.clone(),
            opts: injection::Options {
                image: image.clone(),
                containers: self.containers.clone(),
                envfrom_without_ld_preload: self.envfrom_without_ld_preload.clone(),
                faults_from_start: self.faults_from_start,
                toggle: !self.no_toggle,
                pin: self.pin_node.clone().map(|node| NodePin { node, mode: self.pin }),
                command: "cuda-fault inject".into(),
            },
        }))
    }
}

/// Runs `inject` against a client (a real one, or a mock in tests): the report on `out`,
/// warnings on `err`.
pub async fn run_inject(
    client: &kube::Client,
    args: &InjectArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    let text = match args.plan(client.default_namespace())? {
        InjectPlan::Inject(plan) => {
            if !plan.opts.toggle && plan.opts.faults_from_start.is_none() {
                let _ = writeln!(
                    err,
                    "cuda-fault: warning: --no-toggle without --faults-from-start loads a shim that nothing can turn on (useful only to measure its overhead)"
                );
            }
            let done = inject::inject(client, &plan).await?;
            if args.json {
                serde_json::to_string(&done).expect("serializable") + "\n"
            } else {
                injected_text(&done, &args.workload)
            }
        }
        InjectPlan::Remove(plan) => {
            let done = inject::remove(client, &plan).await?;
            if args.json {
                serde_json::to_string(&done).expect("serializable") + "\n"
            } else {
                removed_text(&done)
            }
        }
    };
    out.write_all(text.as_bytes()).map_err(|e| Failure::new(exit::IO_ERROR, format!("stdout: {e}")))
}

fn lines(title: &str, items: &[String]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let mut s = format!("{title}:\n");
    for i in items {
        s.push_str(&format!("  {i}\n"));
    }
    s
}

fn injected_text(d: &Injected, w: &Workload) -> String {
    let kind = match w {
        Workload::Deployment(_) => "deployment",
        Workload::StatefulSet(_) => "statefulset",
        Workload::DaemonSet(_) => "daemonset",
        Workload::DynamoGraphDeployment(_) => "dgd",
    };
    format!(
        "injected {} {}/{} ({}): one JSON patch of {} operations\n{}{}recorded in the annotation {}; undo with: cuda-fault inject --remove {kind}/{} -n {}\n",
        d.kind,
        d.namespace,
        d.name,
        d.api_version,
        d.operations,
        lines("injected", &d.injected),
        lines("left alone", &d.left_alone),
        d.annotation,
        d.name,
        d.namespace
    )
}

fn removed_text(d: &Removed) -> String {
    let mut s = format!("removed the injection from {} {}/{} ({})\n", d.kind, d.namespace, d.name, d.api_version);
    s.push_str(&lines("removed", &d.removed));
    s.push_str(&lines("kept (changed since the injection; remove by hand if unwanted)", &d.kept));
    s.push_str(&lines("already gone", &d.gone));
    s.push_str(&lines("restarted pods", &d.restarted_pods));
    s
}
