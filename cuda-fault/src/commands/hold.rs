//! `cuda-fault hold`: the fault DaemonSet's process, and `hold --check`, its readiness probe.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::flags::{parse_timeout, EnableFlags, FileArg};
use crate::exit::Failure;
use crate::hold::{self, Fault, Paths};
use crate::kmsg::{self, Pci, PciList};

pub const HOLD_HELP: &str = "\
On SIGTERM or SIGINT it asks the Kubernetes API (in-cluster, or KUBECONFIG) about its pod's
DaemonSet and removes the toggle file only if the DaemonSet was deleted or no longer selects
this node, and only if the file is still the one it wrote. Otherwise (eviction, drain, update,
restart, API unreachable or slower than --stop-timeout) the file stays. It needs POD_NAME,
POD_NAMESPACE (and NODE_NAME) from the downward API; see kustomize/fault/daemonset.yaml.
With kmsg=1 (or --kmsg) it also logs the NVIDIA driver's Xid line in the node's kernel log, for
node health monitors, whose remediation may drain or reboot the node.";

#[derive(Debug, Args)]
pub struct HoldArgs {
    #[command(flatten)]
    pub file: FileArg,
    /// A directory of key files (a mounted ConfigMap): xid, toggle keys (devices, after_ms, ...), kmsg, pci
    #[arg(long, value_name = "DIR")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub flags: EnableFlags,
    /// Also log the driver's Xid line in the node's kernel log (for node health monitors)
    #[arg(long)]
    pub kmsg: bool,
    /// The GPUs the kernel-log line names: PCI bus IDs [default: sysfs, in PCI order, as --devices selects]
    #[arg(long, value_name = "LIST", value_parser = Pci::parse_flag)]
    pub pci: Option<PciList>,
    /// The kernel log device
    #[arg(long, value_name = "PATH", default_value = kmsg::DEVICE)]
    pub kmsg_device: PathBuf,
    /// Where sysfs is mounted (for the GPUs' bus IDs)
    #[arg(long, value_name = "DIR", default_value = kmsg::SYSFS)]
    pub sysfs: PathBuf,
    /// Write this marker once the toggle file is written (the readiness probe reads it)
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    /// The readiness probe: exit 0 if --ready-file names the toggle file as it is now, else 1
    #[arg(long, requires = "ready_file")]
    pub check: bool,
    /// How long the decision at stop may take, loading the Kubernetes configuration included (keep it under the pod's grace period)
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_timeout)]
    pub stop_timeout: Duration,
}

impl HoldArgs {
    /// The fault to hold: `--config`'s, or the flags'.
    pub fn fault(&self) -> Result<Fault, Failure> {
        match &self.config {
            Some(dir) if self.flags != EnableFlags::default() || self.kmsg || self.pci.is_some() => Err(Failure::usage(format!(
                "--config {} and the scenario flags (--kmsg, --pci too) exclude each other; put the keys in the directory",
                dir.display()
            ))),
            Some(dir) => hold::fault_from_dir(dir),
            None => Ok(Fault { line: self.flags.line()?, kmsg: self.kmsg, pci: self.pci.clone().map(|p| p.0) }),
        }
    }

    pub fn run(&self, out: &mut dyn Write, err: &mut dyn Write) -> Result<(), Failure> {
        if self.check {
            let ready = self.ready_file.as_deref().expect("clap requires it");
            return hold::check(ready, &self.file.file, out);
        }
        let fault = self.fault()?;
        let paths = Paths {
            file: self.file.file.clone(),
            ready: self.ready_file.clone(),
            kmsg_device: self.kmsg_device.clone(),
            sysfs: self.sysfs.clone(),
        };
        hold::run(&fault, &paths, self.stop_timeout, out, err)
    }
}
