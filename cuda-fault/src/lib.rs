//! `cuda-fault`: writes, reads and removes the toggle file that switches the cuda-fault shim, on
//! this machine or on a node through a Kubernetes Job, lists the XID table, installs the shim
//! library for an init container, holds a node's toggle file for the fault DaemonSet (`hold`) and
//! says which pods carry the injection (`verify`).
//!
//! The toggle-file commands run without an async runtime; `node`, `hold` and `verify` start one.

#![deny(unsafe_code)]

pub mod cluster;
pub mod commands;
pub mod exit;
pub mod fsops;
pub mod hold;
pub mod local;
pub mod toggle;

/// Where the injection puts things in a pod (shared with the generator).
pub use injection::layout;

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use crate::commands::flags::{parse_timeout, EnableFlags, FileArg};
use crate::commands::node::NODE_HELP;
pub use crate::commands::node::{run_plan, NodeArgs, NodePlan, NodeVerb, Target};
use crate::commands::verify::VERIFY_HELP;
pub use crate::commands::verify::{run_verify, verify_with, VerifyArgs};
use crate::commands::HOLD_HELP;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
