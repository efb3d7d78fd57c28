//! `cuda-fault verify`: which pods carry the injection, on which nodes, and those nodes' toggle
//! files.

use std::io::Write;
use std::time::Duration;

use clap::Args;

use super::flags::parse_timeout;
use crate::cluster::verify::Workload;
use crate::cluster::{self, Options, DEFAULT_IMAGE, DEFAULT_NAMESPACE, IMAGE_ENV};
use crate::exit::{self, Failure};

pub const VERIFY_HELP: &str = "\
Reads the pods' spec and status (the shim-install init container finished, LD_PRELOAD naming the
shim first in every container that mounts it, the /cuda-fault and /host-fault mounts) and runs a
read-only status Job on each node that holds an injected pod. Exit 1 when a selected pod does not
carry the injection; the report says why for each. Examples:
  cuda-fault verify -n llm dgd/vllm-disagg
  cuda-fault verify -n prod -l app=vllm --json";

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The pods' namespace [default: the kubeconfig context's]
    #[arg(long, short = 'n', value_name = "NS")]
    pub namespace: Option<String>,
    /// deployment/NAME, statefulset/NAME, daemonset/NAME or dynamographdeployment/NAME (dgd/NAME)
    #[arg(value_name = "KIND/NAME", conflicts_with = "selector", value_parser = Workload::parse)]
    pub workload: Option<Workload>,
    /// Label selector of the pods (default: every pod of the namespace)
    #[arg(long, short = 'l', value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Print a JSON object
    #[arg(long)]
    pub json: bool,
    /// Only read the pods: no status Job on the nodes
    #[arg(long)]
    pub no_node_check: bool,
    /// Namespace of the status Jobs
    #[arg(long, value_name = "NS", default_value = DEFAULT_NAMESPACE)]
    pub jobs_namespace: String,
    /// Image of the status Jobs
    #[arg(long, value_name = "IMAGE", env = IMAGE_ENV, default_value = DEFAULT_IMAGE)]
    pub image: String,
    /// How long to wait for each status Job: seconds, 90s or 2m
    #[arg(long, value_name = "S", allow_hyphen_values = true, default_value = "120", value_parser = parse_timeout)]
    pub timeout: Duration,
}

impl VerifyArgs {
    /// The validated plan; `default_namespace` when `-n` is not given.
    pub fn plan(&self, default_namespace: &str) -> Result<cluster::verify::Plan, Failure> {
        for ns in self.namespace.iter().chain([&self.jobs_namespace]) {
            if !cluster::is_dns_label(ns) {
                return Err(Failure::usage(format!("invalid namespace '{ns}': expected a DNS-1123 label")));
            }
        }
        Ok(cluster::verify::Plan {
            namespace: self.namespace.clone().unwrap_or_else(|| default_namespace.to_string()),
            workload: self.workload.clone(),
            selector: self.selector.clone(),
            node_check: !self.no_node_check,
            jobs: Options::new(&self.jobs_namespace, &self.image, self.timeout),
        })
    }
}

/// Runs `verify` against a client (a real one, or a mock in tests): the report on `out`.
pub async fn run_verify(
    client: &kube::Client,
    args: &VerifyArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    let plan = args.plan(client.default_namespace())?;
    verify_with(client, &plan, args.json, out, err).await
}

/// `verify` with a prepared plan (tests shorten the Jobs' poll interval).
pub async fn verify_with(
    client: &kube::Client,
    plan: &cluster::verify::Plan,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    let report = cluster::verify::verify(client, plan, err).await?;
    let text = if json {
        serde_json::to_string(&report).expect("serializable") + "\n"
    } else {
        cluster::report::text(&report)
    };
    out.write_all(text.as_bytes()).map_err(|e| Failure::new(exit::IO_ERROR, format!("stdout: {e}")))?;
    let missing: Vec<String> = report
        .pods
        .iter()
        .filter(|p| !p.injected)
        .map(|p| match &p.reason {
            Some(r) => format!("{} ({r})", p.pod),
            None => p.pod.clone(),
        })
        .collect();
    if !missing.is_empty() {
        return Err(Failure::new(
            exit::NOT_INJECTED,
            format!(
                "{} of {} pods do not carry the injection: {}",
                missing.len(),
                report.pods.len(),
                missing.join(", ")
            ),
        ));
    }
    Ok(())
}
