//! `cuda-fault fault apply|delete|status`: the fault layer (`kustomize/xidNN`) as commands.

use std::io::Write;
use std::time::Duration;

use clap::{ArgGroup, Args, Subcommand};

use super::flags::{parse_timeout, EnableFlags};
use crate::cluster::fault::{self, Waiting};
use crate::cluster::fault_delete;
use crate::cluster::fault_manifests::{FaultSpec, Targets};
use crate::cluster::selector::Selector;
use crate::cluster::{self, DEFAULT_IMAGE, DEFAULT_NAMESPACE, IMAGE_ENV};
use crate::exit::{self, Failure};
use crate::kmsg::{Pci, PciList};
use crate::toggle::{self, Line};

pub const FAULT_HELP: &str = "\
The same DaemonSet and ConfigMap as kubectl apply -k kustomize/xidNN, by server-side apply (field
manager cuda-fault). A hold pod is Ready once it has written its node's toggle file; --wait
returns when every targeted node has one. Examples:
  cuda-fault fault apply --xid 79 --node gpu-node-1 --wait
  cuda-fault fault apply --xid 48 -l cuda-fault/target=true --devices 1 --percent 5 --json
  cuda-fault fault apply --xid 79 --node gpu-node-1 --kmsg   (node health monitors see it: may drain or reboot the node)
  cuda-fault fault status --json
  cuda-fault fault delete --wait";

#[derive(Debug, Args)]
pub struct FaultArgs {
    #[command(subcommand)]
    pub verb: FaultVerb,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per command: boxing the flags would buy nothing
pub enum FaultVerb {
    /// Apply the fault (the hold DaemonSet and its ConfigMap) on the chosen nodes
    Apply(ApplyArgs),
    /// Delete the fault (the hold DaemonSet and every fault ConfigMap)
    Delete(DeleteArgs),
    /// Show the fault, its nodes and its hold pods
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct Common {
    /// Namespace of the fault (manifests/rbac/ sets up cuda-fault)
    #[arg(long, short = 'n', value_name = "NS", default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Print a JSON object
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("targets").required(true).args(["nodes", "selector"])))]
pub struct ApplyArgs {
    #[command(flatten)]
    pub flags: EnableFlags,
    /// The nodes, by name (repeatable, or comma-separated)
    #[arg(long = "node", value_name = "NODE", value_delimiter = ',', action = clap::ArgAction::Append)]
    pub nodes: Vec<String>,
    /// The nodes, by label selector (e.g. cuda-fault/target=true)
    #[arg(long, short = 'l', value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Also log the driver's Xid line in each node's kernel log (privileged hold pods; a monitor may drain or reboot the node)
    #[arg(long)]
    pub kmsg: bool,
    /// The GPUs the kernel-log line names: PCI bus IDs [default: each node's, as --devices selects]
    #[arg(long, value_name = "LIST", value_parser = Pci::parse_flag, requires = "kmsg")]
    pub pci: Option<PciList>,
    /// Wait until every targeted node has the fault (its hold pod Ready)
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits: seconds, 90s or 2m
    #[arg(long, value_name = "DURATION", default_value = "120", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// The hold pods' image
    #[arg(long, value_name = "IMAGE", env = IMAGE_ENV, default_value = DEFAULT_IMAGE)]
    pub image: String,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Wait until every hold pod has stopped, and say which node kept its toggle file and why
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits: seconds, 90s or 2m
    #[arg(long, value_name = "DURATION", default_value = "120", value_parser = parse_timeout)]
    pub timeout: Duration,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub common: Common,
}

/// A validated `fault` command, before any cluster call.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // one per command: boxing the scenario would buy nothing
pub enum FaultPlan {
    Apply { spec: FaultSpec, wait: Option<Waiting>, json: bool },
    Delete { namespace: String, wait: Option<Waiting>, json: bool },
    Status { namespace: String, json: bool },
}

fn namespace(ns: &str) -> Result<String, Failure> {
    if cluster::is_dns_label(ns) {
        Ok(ns.to_string())
    } else {
        Err(Failure::usage(format!("invalid --namespace '{}': expected a DNS-1123 label", ns.escape_debug())))
    }
}

/// How often `--wait` reads the DaemonSet and its pods: a fault is usually in effect within a
/// second of the hold pods starting, and a test waiting on it should not wait a poll longer.
const WAIT_POLL: Duration = Duration::from_millis(250);

fn waiting(wait: bool, timeout: Duration) -> Option<Waiting> {
    wait.then_some(Waiting { timeout, poll: WAIT_POLL })
}

impl FaultArgs {
    pub fn plan(&self) -> Result<FaultPlan, Failure> {
        Ok(match &self.verb {
            FaultVerb::Apply(a) => {
                let Line::On { xid, keys } = a.flags.line()? else { unreachable!("enable's flags make an on line") };
                let xid = xid.ok_or_else(|| Failure::usage("fault apply needs --xid N (see cuda-fault xids)"))?;
                let targets = match &a.selector {
                    Some(s) => Targets::Selector(Selector::parse(s).map_err(Failure::usage)?),
                    None => {
                        for n in &a.nodes {
                            if !cluster::is_node_name(n) {
                                return Err(Failure::usage(format!(
                                    "invalid node name '{}': expected a DNS-1123 name",
                                    n.escape_debug()
                                )));
                            }
                        }
                        let mut nodes = a.nodes.clone();
                        nodes.dedup();
                        Targets::Nodes(nodes)
                    }
                };
                if a.image.is_empty() || a.image.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(Failure::usage(format!("invalid --image '{}'", a.image.escape_debug())));
                }
                toggle::on(Some(xid), keys).map_err(Failure::usage)?;
                let spec = FaultSpec {
                    namespace: namespace(&a.common.namespace)?,
                    image: a.image.clone(),
                    xid,
                    keys,
                    kmsg: a.kmsg,
                    pci: a.pci.clone().map(|p| p.0),
                    targets,
                };
                FaultPlan::Apply { spec, wait: waiting(a.wait, a.timeout), json: a.common.json }
            }
            FaultVerb::Delete(d) => FaultPlan::Delete {
                namespace: namespace(&d.common.namespace)?,
                wait: waiting(d.wait, d.timeout),
                json: d.common.json,
            },
            FaultVerb::Status(s) => {
                FaultPlan::Status { namespace: namespace(&s.common.namespace)?, json: s.common.json }
            }
        })
    }
}

fn print(out: &mut dyn Write, text: String) -> Result<(), Failure> {
    out.write_all(text.as_bytes()).map_err(|e| Failure::new(exit::IO_ERROR, format!("stdout: {e}")))
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("serializable") + "\n"
}

/// Runs a validated plan against a client (a real one, or a mock in tests). With `--json` the
/// progress lines are not written: a caller reads the object on stdout, and on failure the one
/// line on stderr.
pub async fn run_fault(
    client: &kube::Client,
    plan: &FaultPlan,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    let mut quiet = std::io::sink();
    let json_mode = match plan {
        FaultPlan::Apply { json, .. } | FaultPlan::Delete { json, .. } | FaultPlan::Status { json, .. } => *json,
    };
    let err: &mut dyn Write = if json_mode { &mut quiet } else { err };
    match plan {
        FaultPlan::Apply { spec, wait, json: as_json } => {
            let s = fault::apply(client, spec, wait.as_ref(), err).await?;
            print(out, if *as_json { json(&s) } else { fault::status_text(&s) })
        }
        FaultPlan::Delete { namespace, wait, json: as_json } => {
            let d = fault_delete::delete(client, namespace, wait.as_ref(), err).await?;
            let text = if *as_json {
                json(&d)
            } else if !d.deleted {
                format!("no fault in namespace {namespace}: nothing to delete\n")
            } else if wait.is_some() && d.remaining.is_empty() {
                "deleted the fault; every hold pod removed its toggle file\n".into()
            } else if wait.is_some() {
                let nodes: Vec<&str> = d.remaining.iter().map(|r| r.node.as_str()).collect();
                format!("deleted the fault; the toggle file may remain on: {}\n", nodes.join(", "))
            } else {
                "deleted the fault; its hold pods remove their toggle files as they stop (--wait waits for them)\n"
                    .into()
            };
            print(out, text)
        }
        FaultPlan::Status { namespace, json: as_json } => {
            let s = fault::status(client, namespace).await?;
            print(out, if *as_json { json(&s) } else { fault::status_text(&s) })
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::{Cli, Command};

    fn plan(args: &[&str]) -> Result<FaultPlan, String> {
        let cli = Cli::try_parse_from(args).map_err(|e| e.to_string())?;
        match cli.command {
            Command::Fault(f) => f.plan().map_err(|f| f.message),
            _ => unreachable!(),
        }
    }

    #[test]
    fn apply_arguments_parse_and_are_checked() {
        let p = plan(&[
            "cuda-fault",
            "fault",
            "apply",
            "--xid",
            "48",
            "--node",
            "a",
            "--node",
            "b,c",
            "--percent",
            "5",
            "--wait",
        ])
        .unwrap();
        let FaultPlan::Apply { spec, wait, json } = p else { panic!() };
        assert_eq!(spec.targets, Targets::Nodes(vec!["a".into(), "b".into(), "c".into()]));
        assert_eq!((spec.xid, spec.keys.percent.map(|p| p.to_string())), (48, Some("5".into())));
        assert!(wait.is_some() && !json);
        let p =
            plan(&["cuda-fault", "fault", "apply", "--xid", "79", "-l", "cuda-fault/target=true", "--kmsg", "--json"])
                .unwrap();
        assert!(matches!(
            p,
            FaultPlan::Apply { spec: FaultSpec { kmsg: true, targets: Targets::Selector(_), .. }, json: true, .. }
        ));
        let err = |args: &[&str]| plan(args).unwrap_err();
        assert!(err(&["cuda-fault", "fault", "apply", "--node", "a"]).contains("needs --xid"));
        assert!(err(&["cuda-fault", "fault", "apply", "--xid", "79"]).contains("--node"));
        assert!(err(&["cuda-fault", "fault", "apply", "--xid", "79", "--node", "a", "-l", "x=y"])
            .contains("cannot be used with"));
        assert!(err(&["cuda-fault", "fault", "apply", "--xid", "79", "--node", "A_b"]).contains("invalid node name"));
        assert!(
            err(&["cuda-fault", "fault", "apply", "--xid", "79", "-l", "a=b\nc"]).contains("invalid label selector")
        );
        assert!(
            err(&["cuda-fault", "fault", "apply", "--xid", "79", "--node", "a", "-n", "Bad"]).contains("--namespace")
        );
        assert!(err(&["cuda-fault", "fault", "apply", "--xid", "79", "--node", "a", "--pci", "0000:3b:00.0"])
            .contains("--kmsg"));
        let p = plan(&[
            "cuda-fault",
            "fault",
            "apply",
            "--xid",
            "79",
            "--node",
            "a",
            "--kmsg",
            "--pci",
            "0000:3b:00.0,0000:86:00.0",
        ])
        .unwrap();
        let FaultPlan::Apply { spec, .. } = p else { panic!() };
        assert_eq!(spec.pci.map(|p| p.len()), Some(2));
        assert!(err(&["cuda-fault", "fault", "apply", "--xid", "79", "--node", "a", "--kmsg", "--pci", "3b:00"])
            .contains("is not a PCI bus ID"));
        assert!(err(&["cuda-fault", "fault", "apply", "--xid", "79", "--node", "a", "--image", "x\ny"])
            .contains("invalid --image"));
        assert!(matches!(plan(&["cuda-fault", "fault", "status"]).unwrap(), FaultPlan::Status { json: false, .. }));
        assert!(matches!(
            plan(&["cuda-fault", "fault", "delete", "--wait", "--json"]).unwrap(),
            FaultPlan::Delete { json: true, wait: Some(_), .. }
        ));
    }
}
