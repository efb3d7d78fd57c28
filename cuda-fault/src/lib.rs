//! `cuda-fault`: writes, reads and removes the toggle file that switches the cuda-fault shim, on
//! this machine or on a node through a Kubernetes Job, lists the XID table, installs the shim
//! library for an init container, holds a node's toggle file for the fault DaemonSet (`hold`) and
//! says which pods carry the injection (`verify`).
//!
//! The toggle-file commands run without an async runtime; `node`, `hold` and `verify` start one.

#![deny(unsafe_code)]

pub mod cluster;
pub mod exit;
pub mod fsops;
pub mod hold;
pub mod layout;
pub mod local;
pub mod toggle;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::cluster::verify::Workload;
use crate::cluster::{Options, Verb, DEFAULT_IMAGE, DEFAULT_NAMESPACE, IMAGE_ENV};
use crate::exit::Failure;
use crate::toggle::{Devices, Functions, Key, Keys, Line, Mode, Percent, DEFAULT_FILE, FILE_ENV};

const ABOUT: &str = "Switches the cuda-fault shim on and off through its toggle file, locally or on a node";

const LONG_ABOUT: &str = "\
Switches the cuda-fault shim on and off through its toggle file, locally or on a node.

The toggle file holds one line: `<state> [<xid>] [key=value ...]`, e.g. `1`, `1 48`, `0`,
`1 79 devices=1 after_ms=5000`. State 1 = faults on, 0 = off; the XID overrides the pod's
CUDA_XID_TYPE. Keys: devices, after_calls, after_ms, mode, sticky, percent, count, functions,
seed. A missing file means the shim's environment decides; a malformed one counts as off.
Writes are atomic (temporary file, fsync, rename) and never replace anything but a regular file.";

#[derive(Debug, Parser)]
#[command(name = "cuda-fault", version, about = ABOUT, long_about = LONG_ABOUT, after_help = exit::TABLE)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct FileArg {
    /// The toggle file
    #[arg(long, value_name = "PATH", env = FILE_ENV, default_value = DEFAULT_FILE, value_parser = non_empty_path)]
    pub file: PathBuf,
}

fn non_empty_path(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("the path is empty".into());
    }
    Ok(PathBuf::from(s))
}

/// A value parser that reads one toggle key with the shared grammar, so a flag accepts exactly
/// what the shim accepts in the file.
fn key<T: 'static>(
    key: Key,
    get: fn(&Keys) -> Option<T>,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static {
    move |s: &str| {
        let mut keys = Keys::default();
        keys.set(key, s.as_bytes()).map_err(|e| e.detail().to_string())?;
        Ok(get(&keys).expect("set"))
    }
}

/// `--xid`: a number that the XID table has.
fn xid(s: &str) -> Result<u64, String> {
    let supported = xid_table::supported_list();
    let x = toggle_grammar::number(s.as_bytes()).map_err(|e| format!("{}; supported: {supported}", e.detail()))?;
    toggle::lookup(x).map(|_| x).ok_or_else(|| format!("unknown XID {x}; supported: {supported}"))
}

/// An XID the table has (for `hold`'s configuration, as for `--xid`).
pub(crate) fn parse_xid(s: &str) -> Result<u64, String> {
    xid(s)
}

/// `--after`: `500ms`, `5s`, `2m`, `1h30m` (humantime), or a bare number of milliseconds.
fn after(s: &str) -> Result<u64, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return toggle_grammar::number(s.as_bytes()).map_err(|e| e.detail().to_string());
    }
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{e} (expected e.g. 500ms, 5s, 2m or a number of milliseconds)"))?;
    u64::try_from(d.as_millis()).map_err(|_| "too long".to_string())
}

/// Scenario flags of `enable` (and of a node's `enable`), each checked by the toggle grammar.
#[derive(Debug, Args, Default, Clone, PartialEq, Eq)]
pub struct EnableFlags {
    /// XID to simulate (see `cuda-fault xids`); default: the pod's CUDA_XID_TYPE
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = xid)]
    pub xid: Option<u64>,
    /// Only these devices: comma-separated ordinals (0..63) and GPU-/MIG- UUIDs (at most 8)
    #[arg(long, value_name = "LIST", allow_hyphen_values = true, value_parser = key(Key::Devices, |k| k.devices))]
    pub devices: Option<Devices>,
    /// Let the first N calls that would fault pass
    #[arg(long = "after-calls", value_name = "N", allow_hyphen_values = true, value_parser = key(Key::AfterCalls, |k| k.after_calls))]
    pub after_calls: Option<u64>,
    /// Start faulting this long after turning on: 500ms, 5s, 2m, or a number of milliseconds
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true, value_parser = after)]
    pub after: Option<u64>,
    /// error: calls return the XID's error; hang: synchronizing calls block
    #[arg(long, value_name = "error|hang", allow_hyphen_values = true, value_parser = key(Key::Mode, |k| k.mode))]
    pub mode: Option<Mode>,
    /// Once a call has faulted, the process stays faulted (--sticky=false writes sticky=0)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = key(Key::Sticky, |k| k.sticky))]
    pub sticky: Option<bool>,
    /// Only this share of the calls that would fault do: 0 < P <= 100, e.g. 5 or 0.1
    #[arg(long, value_name = "P", allow_hyphen_values = true, value_parser = key(Key::Percent, |k| k.percent))]
    pub percent: Option<Percent>,
    /// At most N faults, then the fault ends by itself
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = key(Key::Count, |k| k.count))]
    pub count: Option<u64>,
    /// Only these functions fault: names from hooks.list and @launch, @memcpy, @sync, @alloc
    #[arg(long, value_name = "LIST", allow_hyphen_values = true, value_parser = key(Key::Functions, |k| k.functions))]
    pub functions: Option<Functions>,
    /// Seed of --percent's draws (default: a fresh one per process, printed by the shim)
    #[arg(long, value_name = "S", allow_hyphen_values = true, value_parser = key(Key::Seed, |k| k.seed))]
    pub seed: Option<u64>,
}

impl EnableFlags {
    /// The "on" line these flags make; exit 2 when it would be longer than the shim reads.
    pub fn line(&self) -> Result<Line, Failure> {
        let keys = Keys {
            devices: self.devices,
            after_calls: self.after_calls,
            after_ms: self.after,
            mode: self.mode,
            sticky: self.sticky,
            percent: self.percent,
            count: self.count,
            functions: self.functions,
            seed: self.seed,
        };
        toggle::on(self.xid, keys).map_err(Failure::usage)
    }

    /// The flags that make `line` (an "on" line): the command a node's Job runs.
    pub fn args_for(line: &Line) -> Vec<String> {
        let Line::On { xid, keys } = line else {
            return Vec::new();
        };
        let mut a = Vec::new();
        let mut push = |flag: &str, value: String| a.extend([flag.to_string(), value]);
        if let Some(x) = xid {
            push("--xid", x.to_string());
        }
        if let Some(d) = &keys.devices {
            push("--devices", d.to_string());
        }
        if let Some(n) = keys.after_calls {
            push("--after-calls", n.to_string());
        }
        if let Some(ms) = keys.after_ms {
            push("--after", format!("{ms}ms"));
        }
        if let Some(m) = keys.mode {
            push("--mode", m.word().to_string());
        }
        if let Some(p) = keys.percent {
            push("--percent", p.to_string());
        }
        if let Some(n) = keys.count {
            push("--count", n.to_string());
        }
        if let Some(f) = &keys.functions {
            push("--functions", f.to_string());
        }
        if let Some(s) = keys.seed {
            push("--seed", s.to_string());
        }
        if let Some(s) = keys.sticky {
            a.push(format!("--sticky={s}"));
        }
        a
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Turn faults on: writes `1 [XID] [keys]`
    Enable {
        #[command(flatten)]
        file: FileArg,
        #[command(flatten)]
        flags: EnableFlags,
    },
    /// Turn faults off: writes `0`
    Disable {
        #[command(flatten)]
        file: FileArg,
    },
    /// Show the toggle file: state, XID, keys, path ("absent: env decides" when missing)
    Status {
        #[command(flatten)]
        file: FileArg,
        /// Print a JSON object
        #[arg(long)]
        json: bool,
    },
    /// Remove the toggle file (the shim's environment decides again)
    Clean {
        #[command(flatten)]
        file: FileArg,
    },
    /// Print the XID table
    Xids {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Copy the shim library shipped beside this binary into DIR/cuda_intercept.so, atomically
    Install {
        /// Destination directory (created if missing)
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// The library to copy [default: cuda_intercept.so beside this binary]
        #[arg(long, value_name = "PATH")]
        from: Option<PathBuf>,
    },
    /// Run enable|disable|clean|status on a node through a Job (no exec into worker pods)
    #[command(after_help = NODE_HELP)]
    Node(NodeArgs),
    /// Write the toggle file and hold it until stopped (the fault DaemonSet's pods run this)
    #[command(after_help = HOLD_HELP)]
    Hold {
        #[command(flatten)]
        file: FileArg,
        /// A directory of key files (a mounted ConfigMap): xid and toggle keys (devices, after_ms, ...)
        #[arg(long, value_name = "DIR")]
        config: Option<PathBuf>,
        #[command(flatten)]
        flags: EnableFlags,
    },
    /// Which pods carry the injection, on which nodes, and those nodes' toggle files
    #[command(after_help = VERIFY_HELP)]
    Verify(VerifyArgs),
}

const HOLD_HELP: &str = "\
On SIGTERM or SIGINT it asks the Kubernetes API (in-cluster, or KUBECONFIG) about its pod's
DaemonSet and removes the toggle file only if the DaemonSet was deleted or no longer selects
this node, and only if the file is still the one it wrote. Otherwise (eviction, drain, update,
restart, API unreachable) the file stays. It needs POD_NAME, POD_NAMESPACE (and NODE_NAME) from
the downward API; see kustomize/fault/daemonset.yaml.";

const VERIFY_HELP: &str = "\
Reads the pods' spec and status (the shim-install init container finished, LD_PRELOAD naming the
shim, the /cuda-fault and /host-fault mounts) and runs a read-only status Job on each node that
holds an injected pod. Exit 1 when a selected pod does not carry the injection. Examples:
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

const NODE_HELP: &str = "\
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

/// `--timeout`: seconds, or a duration (`90s`, `2m`); 1 s to 24 h.
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse::<u64>().map(Duration::from_secs).map_err(|_| "too large".to_string())?
    } else {
        humantime::parse_duration(s).map_err(|e| format!("{e} (expected seconds, e.g. 120, 90s or 2m)"))?
    };
    if d < Duration::from_secs(1) || d > Duration::from_secs(86_400) {
        return Err("expected 1 s to 24 h".into());
    }
    Ok(d)
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

/// Reports a command-line error as one line on stderr, as every other failure is (help and
/// version requests print as usual); returns the exit code.
pub fn usage_error(e: &clap::Error) -> i32 {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            e.exit_code()
        }
        _ => {
            let rendered = e.render().to_string();
            let first = rendered.lines().find(|l| !l.trim().is_empty()).unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("cuda-fault: {first} (see cuda-fault --help)");
            i32::from(exit::USAGE)
        }
    }
}

/// Runs a parsed command; returns the exit code. Errors are one line on `err`.
pub fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    match dispatch(cli, out, err) {
        Ok(()) => exit::OK,
        Err(f) => {
            let _ = writeln!(err, "cuda-fault: {}", f.message);
            f.code
        }
    }
}

fn dispatch(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), Failure> {
    match cli.command {
        Command::Enable { file, flags } => local::write_toggle(&file.file, &flags.line()?, out),
        Command::Disable { file } => local::write_toggle(&file.file, &Line::Off, out),
        Command::Clean { file } => local::clean(&file.file, out),
        Command::Status { file, json } => {
            let s = local::status(&file.file)?;
            let text =
                if json { serde_json::to_string(&s).expect("serializable") + "\n" } else { local::status_text(&s) };
            out.write_all(text.as_bytes()).map_err(|e| Failure::new(exit::IO_ERROR, format!("stdout: {e}")))
        }
        Command::Xids { json } => {
            let text = if json { local::xids_json() } else { local::xids_text() };
            out.write_all(text.as_bytes()).map_err(|e| Failure::new(exit::IO_ERROR, format!("stdout: {e}")))
        }
        Command::Install { dir, from } => {
            let from = match from {
                Some(f) => f,
                None => local::default_library()?,
            };
            local::install(&from, &dir, out)
        }
        Command::Node(args) => {
            let plan = args.plan()?;
            runtime()?.block_on(async {
                let client = cluster::connect().await?;
                run_plan(&client, &plan, out, err).await
            })
        }
        Command::Hold { file, config, flags } => {
            let line = match config {
                Some(dir) if flags != EnableFlags::default() => {
                    return Err(Failure::usage(format!(
                        "--config {} and the scenario flags exclude each other; put the keys in the directory",
                        dir.display()
                    )))
                }
                Some(dir) => hold::line_from_dir(&dir)?,
                None => flags.line()?,
            };
            hold::run(&file.file, &line, out)
        }
        Command::Verify(args) => runtime()?.block_on(async {
            let client = cluster::connect().await?;
            run_verify(&client, &args, out, err).await
        }),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(exit::IO_ERROR, format!("cannot start the async runtime: {e}")))
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
    let missing: Vec<&str> = report.pods.iter().filter(|p| !p.injected).map(|p| p.pod.as_str()).collect();
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
    use super::*;

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

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
