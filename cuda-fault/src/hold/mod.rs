//! `cuda-fault hold`: the process of the fault DaemonSet's pods (kustomize/fault). It writes the
//! node's toggle file once, from the fault ConfigMap mounted at `--config` (or from `enable`'s
//! flags), optionally logs the driver's Xid line in the node's kernel log ([`crate::kmsg`]), marks
//! itself ready ([`ready`]), then waits. A file that already holds exactly its line (an evicted or
//! restarted hold pod's) is kept, not rewritten, and no second kernel-log line is written: to the
//! shim every write is a new fault. When it is stopped (SIGTERM or SIGINT; it runs as PID 1,
//! so the handlers are its own) it asks the Kubernetes API why ([`stop`]) and removes the file only
//! when the fault resource was deleted or no longer targets this node, and only if the file is
//! still exactly the one it wrote ([`held`]): a later `cuda-fault node N enable|disable|clean` is
//! never undone. It never rewrites the file after starting, so the two never fight.

pub mod config;
pub mod held;
pub mod ready;
pub mod stop;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use config::{
    fault_from_dir, fault_from_entries, line_from_dir, line_from_entries, Fault, KMSG_KEY, PCI_KEY, XID_KEY,
};
pub use held::{Held, Removal, Stage};
pub use stop::{pod_from_env, Decision};

use crate::exit::{self, Failure};
use crate::kmsg;
use crate::toggle;

/// How long a stopped hold pod may take to decide, by default (the pod's grace period is 30 s).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Where things are, for one hold process.
#[derive(Debug, Clone)]
pub struct Paths {
    pub file: PathBuf,
    pub ready: Option<PathBuf>,
    pub kmsg_device: PathBuf,
    pub sysfs: PathBuf,
}

/// Writes the kernel-log Xid lines of `fault`; the line to print, Err when nothing could be written.
pub fn log_xid(fault: &Fault, paths: &Paths) -> Result<String, String> {
    let xid = fault.xid();
    let row = toggle::lookup(xid).ok_or_else(|| format!("XID {xid} is not in the XID table"))?;
    let devices = fault.devices();
    let targets = kmsg::targets(&paths.sysfs, devices.as_ref(), fault.pci.as_deref())?;
    let records: Vec<Vec<u8>> = targets.iter().map(|p| kmsg::record(p, &row)).collect();
    kmsg::write(&paths.kmsg_device, &records)?;
    let names: Vec<String> = targets.iter().map(kmsg::Pci::driver).collect();
    Ok(format!(
        "kmsg: logged XID {xid} for {} GPU(s) ({}) in {}: {}",
        targets.len(),
        names.join(", "),
        paths.kmsg_device.display(),
        kmsg::line(&targets[0], &row)
    ))
}

/// The whole command: write, log, mark ready, wait for SIGTERM or SIGINT, decide, act. Exits 0
/// once stopped.
pub fn run(
    fault: &Fault,
    paths: &Paths,
    stop_timeout: Duration,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(exit::IO_ERROR, format!("cannot start the async runtime: {e}")))?;
    // The handlers come first: as PID 1 a signal without a handler is ignored, so one arriving
    // between the write and the handlers would be lost.
    let (mut term, mut int) = rt.block_on(async {
        let t = signal(SignalKind::terminate())
            .map_err(|e| Failure::new(exit::IO_ERROR, format!("cannot handle SIGTERM: {e}")))?;
        let i = signal(SignalKind::interrupt())
            .map_err(|e| Failure::new(exit::IO_ERROR, format!("cannot handle SIGINT: {e}")))?;
        Ok::<_, Failure>((t, i))
    })?;
    if let Some(ready) = &paths.ready {
        ready::unmark(ready)?;
    }
    let (held, wrote) = Held::write_or_keep(&paths.file, &fault.line)?;
    let pod = pod_from_env();
    let _ = writeln!(
        out,
        "holding {:?} in {} until this pod stops: {}",
        toggle::render(&fault.line).trim_end(),
        paths.file.display(),
        toggle::effect(&fault.line)
    );
    if !wrote {
        let _ = writeln!(
            out,
            "kept: the file already held this fault (a previous hold pod's), so it was not rewritten: \
             running processes see no new fault{}",
            if fault.kmsg { " and no kernel-log line is written again" } else { "" }
        );
    }
    let _ = out.flush();
    if fault.kmsg && wrote {
        // The toggle fault stands whatever happens here.
        match log_xid(fault, paths) {
            Ok(line) => {
                let _ = writeln!(out, "{line}");
            }
            Err(why) => {
                let _ =
                    writeln!(err, "cuda-fault: kmsg: no kernel-log line written: {why}; the toggle fault is applied");
            }
        }
        let _ = out.flush();
    }
    if let Some(ready) = &paths.ready {
        ready::mark(ready, &held)?;
    }
    let name = rt.block_on(async {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    });
    drop(rt);
    let node = pod.as_ref().and_then(|p| p.node.clone()).unwrap_or_else(|| "NODE".into());
    let act = |d: &Decision| held.finish_off(d, &node);
    let (line, warning) = stop::stop(pod, stop_timeout, act)?;
    let _ = writeln!(out, "{name}: {line}");
    if let Some(w) = warning {
        let _ = writeln!(err, "cuda-fault: warning: {w}");
    }
    Ok(())
}

/// `hold --check`: the readiness probe.
pub fn check(ready: &Path, file: &Path, out: &mut dyn Write) -> Result<(), Failure> {
    match ready::check(ready, file) {
        Ok(line) => {
            let _ = writeln!(out, "{line}");
            Ok(())
        }
        Err(why) => Err(Failure::new(exit::NOT_READY, why)),
    }
}
