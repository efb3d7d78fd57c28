//! `cuda-fault`: writes, reads and removes the toggle file that switches the cuda-fault shim, on
//! this machine or on a node through a Kubernetes Job, lists the XID table, installs the shim
//! library for an init container, holds a node's toggle file for the fault DaemonSet (`hold`),
//! says which pods carry the injection (`verify`) and injects the shim into a live workload
//! (`inject`).
//!
//! The toggle-file commands run without an async runtime; `node`, `hold`, `verify` and `inject`
//! start one.

#![deny(unsafe_code)]

pub mod cluster;
pub mod commands;
pub mod exit;
pub mod fsops;
pub mod hold;
pub mod kmsg;
pub mod local;
pub mod toggle;

/// Where the injection puts things in a pod (shared with the generator).
pub use injection::layout;

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::commands::fault::FAULT_HELP;
pub use crate::commands::fault::{run_fault, FaultArgs, FaultPlan};
pub use crate::commands::flags::{parse_timeout, EnableFlags, FileArg};
pub use crate::commands::hold::HoldArgs;
use crate::commands::hold::HOLD_HELP;
use crate::commands::inject::INJECT_HELP;
pub use crate::commands::inject::{run_inject, InjectArgs};
use crate::commands::node::NODE_HELP;
pub use crate::commands::node::{run_plan, NodeArgs, NodePlan, NodeVerb, Target};
use crate::commands::scenario::{ScenarioArgs, SCENARIO_HELP};
use crate::commands::verify::VERIFY_HELP;
pub use crate::commands::verify::{run_verify, verify_with, VerifyArgs};
use crate::exit::Failure;
use crate::toggle::Line;

const ABOUT: &str = "Switches the cuda-fault shim on and off through its toggle file, locally or on a node";

/// The long help, with the keys as the toggle grammar has them.
fn long_about() -> String {
    let keys: Vec<&str> = crate::toggle::Key::ALL.iter().map(|k| k.name()).collect();
    format!(
        "\
Switches the cuda-fault shim on and off through its toggle file, locally or on a node.

The toggle file holds one line: `<state> [<xid>] [key=value ...]`, e.g. `1`, `1 48`, `0`,
`1 79 devices=1 after_ms=5000`. State 1 = faults on, 0 = off; the XID overrides the pod's
CUDA_XID_TYPE. Keys: {}. A missing file means the shim's environment decides; a malformed one
counts as off. Every write is a new fault for the shim, even with the same line.
Writes are atomic (temporary file, fsync, rename) and never replace anything but a regular file.",
        keys.join(", ")
    )
}

#[derive(Debug, Parser)]
#[command(name = "cuda-fault", version, about = ABOUT, long_about = long_about(), after_help = exit::TABLE)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Turn faults on: writes `1 [XID] [keys]`
    Enable {
        #[command(flatten)]
        file: FileArg,
        #[command(flatten)]
        flags: EnableFlags,
        /// Print the file's status as `status --json` does, read after the write
        #[arg(long)]
        json: bool,
    },
    /// Turn faults off: writes `0`
    Disable {
        #[command(flatten)]
        file: FileArg,
        /// Print the file's status as `status --json` does, read after the write
        #[arg(long)]
        json: bool,
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
        /// Print the file's status as `status --json` does, read after the removal
        #[arg(long)]
        json: bool,
    },
    /// Check a scenario with the toggle grammar and print its line (--json: keys and variables too)
    #[command(after_help = SCENARIO_HELP)]
    Scenario(ScenarioArgs),
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
    Hold(HoldArgs),
    /// Which pods carry the injection, on which nodes, and those nodes' toggle files
    #[command(after_help = VERIFY_HELP)]
    Verify(VerifyArgs),
    /// Inject the shim into a live workload by one guarded JSON patch, or --remove it again
    #[command(after_help = INJECT_HELP)]
    Inject(InjectArgs),
    /// Apply, delete or show the fault (the hold DaemonSet of kustomize/xidNN) on chosen nodes
    #[command(after_help = FAULT_HELP)]
    Fault(FaultArgs),
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
            eprintln!("cuda-fault: {} (see cuda-fault --help)", usage_line(e));
            i32::from(exit::USAGE)
        }
    }
}

/// A command-line error as one line. A bad value is named with its control characters escaped
/// (clap quotes it raw, so a value holding a newline would cut the line short), with the reason.
fn usage_line(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    let text = |k| match e.get(k) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    let escaped = |s: &str| {
        s.chars().flat_map(|c| if c.is_control() { c.escape_debug().collect() } else { vec![c] }).collect::<String>()
    };
    if let (Some(arg), Some(value)) = (text(ContextKind::InvalidArg), text(ContextKind::InvalidValue)) {
        let reason =
            std::error::Error::source(e).map(|s| s.to_string()).or_else(|| match e.get(ContextKind::ValidValue) {
                Some(ContextValue::Strings(v)) => Some(format!("expected one of {}", v.join(", "))),
                _ => None,
            });
        let reason = reason.map(|r| format!(": {}", escaped(&r))).unwrap_or_default();
        return format!("invalid value '{}' for '{}'{reason}", escaped(&value), escaped(&arg));
    }
    if let Some(ContextValue::Strings(missing)) = e.get(ContextKind::InvalidArg) {
        if e.kind() == clap::error::ErrorKind::MissingRequiredArgument {
            return format!("the following required arguments were not provided: {}", escaped(&missing.join(", ")));
        }
    }
    let rendered = e.render().to_string();
    let first = rendered.lines().find(|l| !l.trim().is_empty()).unwrap_or("invalid arguments");
    escaped(first.strip_prefix("error: ").unwrap_or(first))
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
        Command::Enable { file, flags, json } => {
            let line = flags.line()?;
            changed(&file.file, json, out, |o| local::write_toggle(&file.file, &line, o))
        }
        Command::Disable { file, json } => {
            changed(&file.file, json, out, |o| local::write_toggle(&file.file, &Line::Off, o))
        }
        Command::Clean { file, json } => changed(&file.file, json, out, |o| local::clean(&file.file, o)),
        Command::Status { file, json } => print_status(&file.file, json, out),
        Command::Scenario(args) => commands::scenario::run(&args, out),
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
        Command::Hold(args) => args.run(out, err),
        Command::Verify(args) => runtime()?.block_on(async {
            let client = cluster::connect().await?;
            run_verify(&client, &args, out, err).await
        }),
        Command::Inject(args) => runtime()?.block_on(async {
            let client = cluster::connect().await?;
            run_inject(&client, &args, out, err).await
        }),
        Command::Fault(args) => {
            let plan = args.plan()?;
            runtime()?.block_on(async {
                let client = cluster::connect().await?;
                run_fault(&client, &plan, out, err).await
            })
        }
    }
}

/// Runs a command that changes the toggle file: its own report on `out`, or with `json` only the
/// file's status read after the change (`status --json`'s object).
fn changed(
    path: &std::path::Path,
    json: bool,
    out: &mut dyn Write,
    change: impl FnOnce(&mut dyn Write) -> Result<(), Failure>,
) -> Result<(), Failure> {
    if !json {
        return change(out);
    }
    change(&mut std::io::sink())?;
    print_status(path, true, out)
}

fn print_status(path: &std::path::Path, json: bool, out: &mut dyn Write) -> Result<(), Failure> {
    let s = local::status(path)?;
    let text = if json { serde_json::to_string(&s).expect("serializable") + "\n" } else { local::status_text(&s) };
    out.write_all(text.as_bytes()).map_err(|e| Failure::new(exit::IO_ERROR, format!("stdout: {e}")))
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(exit::IO_ERROR, format!("cannot start the async runtime: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
