use std::io::{Read, Write};
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use cuda_fault_kustomize::pin::{Mode, NodePin};
use cuda_fault_kustomize::{generate, overlays, Options};

const ABOUT: &str = "Generates the kustomize Component that loads the cuda-fault shim into your workloads";

const GENERATE_HELP: &str = "\
Reads the rendered workloads (kubectl kustomize output) on stdin and prints ONE kustomize
Component (JSON6902 patches and guards) on stdout:

  kubectl kustomize ./my-app | cuda-fault-kustomize generate > ./my-app-cuda-fault/kustomization.yaml

then, in an overlay of your own:

  resources: [../my-app]
  components: [../my-app-cuda-fault]

Injected into GPU containers (resources naming nvidia.com/gpu, */gpu, nvidia.com/mig-*, or
--container) of Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs and Pods,
and into the worker/prefill/decode services of DynamoGraphDeployments (v1alpha1, v1beta1):
an init container copying the shim, two volumes, read-only mounts, LD_PRELOAD (the user's own
value kept after the shim). Faults stay off until the node's toggle file turns them on.
The build fails when the base no longer matches: regenerate then.";

#[derive(Parser)]
#[command(name = "cuda-fault-kustomize", version, about = ABOUT)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the Component for the workloads on stdin (kubectl kustomize output)
    #[command(after_help = GENERATE_HELP)]
    Generate(GenerateArgs),
    /// Write this repository's kustomize/xidNN overlays from the XID table (maintainers)
    #[command(hide = true)]
    XidOverlays {
        /// The kustomize directory of this repository
        dir: PathBuf,
        /// Only report stale files (exit 1 if any)
        #[arg(long)]
        check: bool,
    },
}

#[derive(clap::Args)]
struct GenerateArgs {
    /// Image of the init container that installs the shim
    #[arg(long, value_name = "IMAGE", default_value = cuda_fault_kustomize::layout::DEFAULT_IMAGE)]
    image: String,
    /// Also inject into containers with this name that ask for no GPU (repeatable)
    #[arg(long = "container", value_name = "NAME")]
    containers: Vec<String>,
    /// A ConfigMap or Secret named in envFrom but absent from the input that sets no LD_PRELOAD (repeatable)
    #[arg(long = "envfrom-without-ld-preload", value_name = "NAME")]
    envfrom_without_ld_preload: Vec<String>,
    /// Faults on from process start with this XID (CUDA_FAULT_INJECTION_ENABLED="1", CUDA_XID_TYPE)
    #[arg(long, value_name = "XID")]
    faults_from_start: Option<u32>,
    /// Do not mount the node's toggle directory (for namespaces whose Pod Security forbids hostPath)
    #[arg(long)]
    no_toggle: bool,
    /// Pin the injected pods to this node (its metadata.name)
    #[arg(long, value_name = "NODE")]
    pin_node: Option<String>,
    /// How --pin-node pins
    #[arg(long, value_enum, default_value = "preferred", requires = "pin_node")]
    pin: Mode,
    /// Read the workloads from this file instead of stdin
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
}

/// The arguments after `generate`, quoted for a shell, for the header (which pipes the input in,
/// so `--input FILE` is left out).
fn command_line() -> String {
    let mut args: Vec<String> = std::env::args().skip_while(|a| a != "generate").skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--input") {
        args.drain(i..(i + 2).min(args.len()));
    }
    args.retain(|a| !a.starts_with("--input="));
    let mut words = vec!["cuda-fault-kustomize".to_string(), "generate".to_string()];
    for a in args {
        let plain = !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+".contains(c));
        words.push(if plain { a } else { format!("'{}'", a.replace('\'', r"'\''")) });
    }
    words.join(" ")
}

fn fail(message: impl std::fmt::Display, code: i32) -> ! {
    eprintln!("cuda-fault-kustomize: {message}");
    std::process::exit(code)
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let text = e.render().to_string();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("invalid arguments");
            fail(format!("{} (see --help)", first.strip_prefix("error: ").unwrap_or(first)), 2)
        }
    };
    match cli.command {
        Command::Generate(a) => {
            let mut input = String::new();
            let read = match &a.input {
                Some(p) => std::fs::read_to_string(p).map(|s| input = s),
                None => std::io::stdin().read_to_string(&mut input).map(|_| ()),
            };
            if let Err(e) = read {
                fail(format!("cannot read the input: {e}"), 74);
            }
            if a.input.is_none() && input.trim().is_empty() {
                fail("no input on stdin; pipe in the rendered workloads: kubectl kustomize ./my-app | cuda-fault-kustomize generate", 2);
            }
            let opts = Options {
                image: a.image,
                containers: a.containers,
                envfrom_without_ld_preload: a.envfrom_without_ld_preload,
                faults_from_start: a.faults_from_start,
                toggle: !a.no_toggle,
                pin: a.pin_node.map(|node| NodePin { node, mode: a.pin }),
                command: command_line(),
            };
            match generate(&input, &opts) {
                Ok(g) => {
                    for w in &g.warnings {
                        eprintln!("cuda-fault-kustomize: {w}");
                    }
                    let mut out = std::io::stdout().lock();
                    if out.write_all(g.text.as_bytes()).and_then(|_| out.flush()).is_err() {
                        fail("cannot write to stdout", 74);
                    }
                }
                Err(e) => fail(e, 2),
            }
        }
        Command::XidOverlays { dir, check } => {
            let result = if check { overlays::stale(&dir) } else { overlays::write(&dir) };
            match result {
                Ok(lines) => {
                    for l in &lines {
                        println!("{l}");
                    }
                    if check && !lines.is_empty() {
                        std::process::exit(1);
                    }
                }
                Err(e) => fail(format!("{}: {e}", dir.display()), 74),
            }
        }
    }
}
