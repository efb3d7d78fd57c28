//! `cuda-fault node`: a toggle-file verb run on one node, or on every node of a selector, through
//! a Job.

use std::io::Write;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::flags::{parse_timeout, EnableFlags};
use crate::cluster::{self, Options, Verb, DEFAULT_IMAGE, DEFAULT_NAMESPACE, IMAGE_ENV};
use crate::exit::Failure;

pub const NODE_HELP: &str = "\
The Job is pinned with nodeName, tolerates every taint, mounts the node's /var/lib/cuda-fault-test
at /host-fault and runs this image's `cuda-fault <verb>`. cuda-fault waits for it, prints its log
and deletes it. RBAC: manifests/rbac/. Examples:
  cuda-fault node gpu-node-1 enable --xid 48 --after 5s
  cuda-fault node --all --selector nvidia.com/gpu.present=true clean";

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The node
    #[arg(value_name = "NODE", required_unless_present = "all", conflicts_with = "all")]
    pub node: Option<String>,
    /// Every node (matching --selector)
    #[arg(long)]
    pub all: bool,
    /// Label selector for --all, e.g. nvidia.com/gpu.present=true
    #[arg(long, short = 'l', value_name = "LABELS", requires = "all")]
    pub selector: Option<String>,
    /// Namespace for the Job
    #[arg(long, short = 'n', value_name = "NS", global = true, default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Image holding /cuda-fault
    #[arg(long, value_name = "IMAGE", global = true, env = IMAGE_ENV, default_value = DEFAULT_IMAGE)]
    pub image: String,
    /// How long to wait for the Job (also its activeDeadlineSeconds): seconds, 90s or 2m
    #[arg(long, value_name = "S", global = true, allow_hyphen_values = true, default_value = "120", value_parser = parse_timeout)]
    pub timeout: Duration,
    #[command(subcommand)]
    pub verb: NodeVerb,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per command: boxing the flags would buy nothing
pub enum NodeVerb {
    /// Turn faults on on the node
    Enable(EnableFlags),
    /// Turn faults off on the node
    Disable,
    /// Remove the node's toggle file
    Clean,
    /// Print the node's toggle file (mounted read-only)
    Status,
}

/// The validated inputs of `node`, before any cluster call.
#[derive(Debug)]
pub struct NodePlan {
    pub target: Target,
    pub verb: Verb,
    pub options: Options,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    Node(String),
    All { selector: Option<String> },
}

impl NodeArgs {
    pub fn plan(&self) -> Result<NodePlan, Failure> {
        let verb = match &self.verb {
            NodeVerb::Enable(flags) => Verb::Enable(flags.line()?),
            NodeVerb::Disable => Verb::Disable,
            NodeVerb::Clean => Verb::Clean,
            NodeVerb::Status => Verb::Status { json: false },
        };
        if !cluster::is_dns_label(&self.namespace) {
            return Err(Failure::usage(format!("invalid --namespace '{}': expected a DNS-1123 label", self.namespace)));
        }
        if self.image.is_empty() || self.image.chars().any(char::is_whitespace) {
            return Err(Failure::usage(format!("invalid --image '{}'", self.image)));
        }
        let timeout = self.timeout;
        let target = match (&self.node, self.all) {
            (Some(n), false) => {
                if !cluster::is_node_name(n) {
                    return Err(Failure::usage(format!("invalid node name '{n}': expected a DNS-1123 name")));
                }
                Target::Node(n.clone())
            }
            (None, true) => Target::All { selector: self.selector.clone() },
            _ => return Err(Failure::usage("give either NODE or --all")),
        };
        Ok(NodePlan { target, verb, options: Options::new(&self.namespace, &self.image, timeout) })
    }
}

/// Runs a validated `node` plan against a client (a real one, or a mock in tests).
pub async fn run_plan(
    client: &kube::Client,
    plan: &NodePlan,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    match &plan.target {
        Target::Node(n) => cluster::run_on_node(client, n, &plan.verb, &plan.options, out, err).await,
        Target::All { selector } => {
            cluster::run_on_selector(client, selector.as_deref(), &plan.verb, &plan.options, out, err).await
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::toggle::Line;
    use crate::{Cli, Command};

    #[test]
    fn node_arguments_parse() {
        let plan = |args: &[&str]| {
            let cli = Cli::try_parse_from(args).map_err(|e| e.to_string())?;
            match cli.command {
                Command::Node(n) => n.plan().map_err(|f| f.message),
                _ => unreachable!(),
            }
        };
        let p =
            plan(&["cuda-fault", "node", "gpu-1", "enable", "--xid", "48", "-n", "ns1", "--timeout", "2m"]).unwrap();
        assert_eq!(p.target, Target::Node("gpu-1".into()));
        assert_eq!(p.options.namespace, "ns1");
        assert_eq!(p.options.timeout, Duration::from_secs(120));
        assert!(matches!(p.verb, Verb::Enable(Line::On { xid: Some(48), .. })));
        let p = plan(&["cuda-fault", "node", "--all", "--selector", "a=b", "clean"]).unwrap();
        assert_eq!(p.target, Target::All { selector: Some("a=b".into()) });
        assert_eq!(p.verb, Verb::Clean);
        let p = plan(&["cuda-fault", "node", "--namespace", "x", "--all", "disable"]).unwrap();
        assert_eq!(p.target, Target::All { selector: None });
        assert!(plan(&["cuda-fault", "node", "gpu-1", "--all", "clean"]).is_err());
        assert!(plan(&["cuda-fault", "node", "clean"]).is_err());
        assert!(plan(&["cuda-fault", "node", "gpu-1", "clean", "--timeout", "0"]).unwrap_err().contains("--timeout"));
        assert!(plan(&["cuda-fault", "node", "gpu-1", "clean", "-n", "Bad_NS"]).unwrap_err().contains("--namespace"));
        assert!(plan(&["cuda-fault", "node", "GPU_1", "clean"]).unwrap_err().contains("node name"));
    }
}
