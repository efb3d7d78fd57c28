use std::io::{Read, Write};
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use cuda_fault_kustomize::pin::{Mode, NodePin};
use cuda_fault_kustomize::{args, generate_skipping, overlays, stream, Options};

const ABOUT: &str = "Generates the kustomize Component that loads the cuda-fault shim into your workloads";

const GENERATE_HELP: &str = "\
Reads the rendered workloads (kubectl kustomize output) on stdin and prints ONE kustomize
Component (JSON6902 patches and guards) on stdout:

  kubectl kustomize ./my-app | cuda-fault-kustomize generate > ./my-app-cuda-fault/kustomization.yaml

then, in an overlay of your own:

  resources: [../my-app]
  components: [../my-app-cuda-fault]

The overlay that lists the Component adds no generators and no patches of the workloads
(`images:` is fine): put your production overlay under it (resources: [../my-app-prod]) and
generate from `kubectl kustomize ../my-app-prod`, so the Component sees exactly that.

Injected into GPU containers (resources naming nvidia.com/gpu, */gpu, nvidia.com/mig-*, or
--container), native sidecars (init containers with restartPolicy: Always) included, of
Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs and Pods, and into the
worker/prefill/decode services of DynamoGraphDeployments (v1alpha1, v1beta1): an init container
copying the shim, two volumes, read-only mounts, LD_PRELOAD (the user's own value kept after
the shim). Faults stay off until the node's toggle file turns them on. When no workload has a
target, the generator refuses, listing each workload and why it was left alone.
The build fails when the base no longer matches, naming
cuda-fault-targets-are-stale--rerun-cuda-fault-kustomize: regenerate then.
The input is untrusted: flag values are checked, names are escaped in the header, and the
input is read within bounds (64 MiB, 128 levels of nesting, 1,000,000 nodes from aliases;
UTF-8, no duplicate keys). Refusals are one line on stderr, exit 2, nothing on stdout.";

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
    /// Also inject into containers (or native sidecars) with this name that ask for no GPU (repeatable)
    #[arg(long = "container", value_name = "NAME")]
    containers: Vec<String>,
    /// Leave this workload out although it uses a GPU: KIND/NAME or KIND/NAMESPACE/NAME, e.g.
    /// deployment/vllm-canary (repeatable)
    #[arg(long = "skip", value_name = "KIND/NAME")]
    skip: Vec<String>,
    /// A ConfigMap or Secret named in envFrom but absent from the input that sets none of the
    /// injected variables: LD_PRELOAD, and with --faults-from-start CUDA_FAULT_INJECTION_ENABLED
    /// and CUDA_XID_TYPE (repeatable)
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
    /// How --pin-node pins [default: preferred]
    #[arg(long, value_enum)]
    pin: Option<Mode>,
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

/// One line on stderr (escaped: a value with a line break never makes it two), and the exit code.
fn fail(message: impl std::fmt::Display, code: i32) -> ! {
    eprintln!("cuda-fault-kustomize: {}", cuda_fault_kustomize::text::escape(&message.to_string()));
    std::process::exit(code)
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // clap's message, on one line: what is wrong and which argument (it can take two lines).
            let text = e.render().to_string();
            let said: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .filter(|l| !l.is_empty())
                .collect();
            let said = said.join(" ");
            let said = said.strip_prefix("error: ").unwrap_or(&said);
            fail(format!("{} (see --help)", if said.is_empty() { "invalid arguments" } else { said }), 2)
        }
    };
    match cli.command {
        Command::Generate(a) => {
            // Every value that reaches the output is checked before the input is read.
            let checked = args::check(&args::Given {
                image: &a.image,
                containers: &a.containers,
                skip: &a.skip,
                envfrom_without_ld_preload: &a.envfrom_without_ld_preload,
                pin_node: a.pin_node.as_deref(),
                pin_given: a.pin.is_some(),
            });
            let skip = checked.unwrap_or_else(|e| fail(e, 2));
            // One byte more than the limit tells an input over it.
            let limit = stream::MAX_INPUT_BYTES as u64 + 1;
            let mut bytes = Vec::new();
            let read = match &a.input {
                Some(p) => std::fs::File::open(p).and_then(|f| f.take(limit).read_to_end(&mut bytes)),
                None => std::io::stdin().lock().take(limit).read_to_end(&mut bytes),
            };
            if let Err(e) = read {
                fail(format!("cannot read the input: {e}"), 74);
            }
            let input = stream::text(&bytes).unwrap_or_else(|e| fail(e, 2));
            if a.input.is_none() && input.trim().is_empty() {
                fail("no input on stdin; pipe in the rendered workloads: kubectl kustomize ./my-app | cuda-fault-kustomize generate", 2);
            }
            let opts = Options {
                image: a.image,
                containers: a.containers,
                envfrom_without_ld_preload: a.envfrom_without_ld_preload,
                faults_from_start: a.faults_from_start,
                toggle: !a.no_toggle,
                pin: a.pin_node.map(|node| NodePin { node, mode: a.pin.unwrap_or(Mode::Preferred) }),
                command: command_line(),
            };
            match generate_skipping(input, &opts, &skip) {
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
