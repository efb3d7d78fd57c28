//! `cuda-fault hold`: the process of the fault DaemonSet's pods (kustomize/fault). It writes the
//! node's toggle file once, from the fault ConfigMap mounted at `--config` (or from `enable`'s
//! flags), then waits. When it is stopped (SIGTERM or SIGINT; it runs as PID 1, so the handlers
//! are its own) it asks the Kubernetes API why ([`crate::cluster::hold`]) and removes the file
//! only when the fault resource was deleted or no longer targets this node, and only if the file
//! is still exactly the one it wrote: a later `cuda-fault node N enable|disable|clean` is never
//! undone. It never rewrites the file after starting, so the two never fight.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cluster::hold::{decide, Decision, PodRef};
use crate::exit::{self, Failure};
use crate::fsops;
use crate::local::TOGGLE_MODE;
use crate::toggle::{self, Key, Keys, Line};

/// The configuration key for the XID; every other file is named as a toggle key.
pub const XID_KEY: &str = "xid";
/// The largest value file read from `--config`.
const MAX_VALUE: u64 = 4096;
/// How long the API may take to answer at stop (the pod's grace period is 30 s).
pub const DECIDE_TIMEOUT: Duration = Duration::from_secs(15);

fn bad(dir: &Path, what: String) -> Failure {
    Failure::usage(format!("--config {}: {what}", dir.display()))
}

/// The "on" line of a configuration: `xid` and toggle keys, each from its own value.
pub fn line_from_entries(dir: &Path, entries: &[(String, String)]) -> Result<Line, Failure> {
    let mut xid = None;
    let mut keys = Keys::default();
    for (name, value) in entries {
        if name == XID_KEY {
            xid = Some(crate::commands::flags::parse_xid(value).map_err(|e| bad(dir, format!("xid: {e}")))?);
            continue;
        }
        let Some(key) = Key::from_name(name.as_bytes()) else {
            let known: Vec<&str> = Key::ALL.iter().map(|k| k.name()).collect();
            return Err(bad(
                dir,
                format!("unknown key '{name}' (expected {XID_KEY} or a toggle key: {})", known.join(", ")),
            ));
        };
        keys.set(key, value.as_bytes()).map_err(|e| bad(dir, e.to_string()))?;
    }
    toggle::on(xid, keys).map_err(|e| bad(dir, e))
}

/// Reads a mounted ConfigMap: one file per key; entries whose names start with a dot (the
/// volume's `..data` machinery) are skipped; values are trimmed.
pub fn line_from_dir(dir: &Path) -> Result<Line, Failure> {
    let read_dir = fs::read_dir(dir).map_err(|e| Failure::io("read", dir, &e))?;
    let mut entries = Vec::new();
    for entry in read_dir {
        let entry = entry.map_err(|e| Failure::io("read", dir, &e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let meta = fs::metadata(&path).map_err(|e| Failure::io("read", &path, &e))?;
        if !meta.is_file() {
            return Err(bad(dir, format!("{name} is not a file")));
        }
        let mut bytes = Vec::new();
        let file = fs::File::open(&path).map_err(|e| Failure::io("read", &path, &e))?;
        file.take(MAX_VALUE + 1).read_to_end(&mut bytes).map_err(|e| Failure::io("read", &path, &e))?;
        if bytes.len() as u64 > MAX_VALUE {
            return Err(bad(dir, format!("{name} is longer than {MAX_VALUE} bytes")));
        }
        let text = String::from_utf8(bytes).map_err(|_| bad(dir, format!("{name} is not text")))?;
        entries.push((name, text.trim().to_string()));
    }
    entries.sort();
    line_from_entries(dir, &entries)
}

/// The toggle file this process wrote: where, which file (device and inode), and what.
#[derive(Debug)]
pub struct Held {
    pub path: PathBuf,
    dev: u64,
    ino: u64,
    content: Vec<u8>,
}

impl Held {
    /// Writes `line` to `path` atomically and remembers the file.
    pub fn write(path: &Path, line: &Line) -> Result<Held, Failure> {
        let content = toggle::render(line).into_bytes();
        fsops::write_atomic(path, &content, TOGGLE_MODE)?;
        let meta = fs::symlink_metadata(path).map_err(|e| Failure::io("read", path, &e))?;
        Ok(Held { path: path.to_path_buf(), dev: meta.dev(), ino: meta.ino(), content })
    }

    /// Whether the file is still the one written here: the same file, unchanged. Anyone else's
    /// write (an atomic rename) makes a new inode.
    pub fn still_ours(&self) -> bool {
        match fs::symlink_metadata(&self.path) {
            Ok(m) if m.is_file() && m.dev() == self.dev && m.ino() == self.ino => {
                fs::read(&self.path).is_ok_and(|c| c == self.content)
            }
            _ => false,
        }
    }

    /// Acts on the API's answer; returns the line to print.
    pub fn finish(&self, decision: &Decision, node: &str) -> Result<String, Failure> {
        let p = self.path.display();
        Ok(match decision {
            Decision::Remove(why) if self.still_ours() => {
                fsops::remove(&self.path)?;
                format!("removed {p}: {why}")
            }
            Decision::Remove(why) => format!("kept {p}: it was rewritten since this pod wrote it, so it is not this pod's to remove ({why})"),
            Decision::Keep(why) => format!("kept {p}: {why}"),
            Decision::Unknown(why) => format!(
                "kept {p}: cannot ask the Kubernetes API ({why}); if the fault resource was deleted, clean the node by hand: cuda-fault node {node} clean"
            ),
        })
    }
}

/// The pod this process runs in, from the downward API's environment.
pub fn pod_from_env() -> Option<PodRef> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    Some(PodRef { namespace: var("POD_NAMESPACE")?, name: var("POD_NAME")?, node: var("NODE_NAME") })
}

/// In-cluster configuration, or KUBECONFIG when it is set.
async fn client() -> Result<kube::Client, String> {
    let config = if std::env::var_os("KUBECONFIG").is_some() {
        kube::Config::from_kubeconfig(&kube::config::KubeConfigOptions::default()).await.map_err(|e| e.to_string())?
    } else {
        kube::Config::incluster().map_err(|e| e.to_string())?
    };
    kube::Client::try_from(config).map_err(|e| e.to_string())
}

async fn ask(pod: Option<PodRef>) -> Decision {
    let Some(pod) = pod else {
        return Decision::Unknown("POD_NAME and POD_NAMESPACE are not set; the fault DaemonSet sets them".into());
    };
    let client = match client().await {
        Ok(c) => c,
        Err(e) => return Decision::Unknown(crate::cluster::errors::one_line(&e)),
    };
    match tokio::time::timeout(DECIDE_TIMEOUT, decide(&client, &pod)).await {
        Ok(d) => d,
        Err(_) => Decision::Unknown(format!("no answer within {}s", DECIDE_TIMEOUT.as_secs())),
    }
}

/// The whole command: write, wait for SIGTERM or SIGINT, decide, act. Exits 0 once stopped.
pub fn run(path: &Path, line: &Line, out: &mut dyn Write) -> Result<(), Failure> {
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
    let held = Held::write(path, line)?;
    let pod = pod_from_env();
    let _ = writeln!(
        out,
        "holding {:?} in {} until this pod stops: {}",
        toggle::render(line).trim_end(),
        path.display(),
        toggle::effect(line)
    );
    let _ = out.flush();
    let name = rt.block_on(async {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    });
    let node = pod.as_ref().and_then(|p| p.node.clone()).unwrap_or_else(|| "NODE".into());
    let decision = rt.block_on(ask(pod));
    let line = held.finish(&decision, &node)?;
    let _ = writeln!(out, "{name}: {line}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(e: &[(&str, &str)]) -> Vec<(String, String)> {
        e.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn configuration_keys_make_the_line_through_the_grammar() {
        let d = Path::new("/etc/cuda-fault/fault");
        let line =
            line_from_entries(d, &entries(&[("after_ms", "5000"), ("devices", "1"), ("sticky", "1"), ("xid", "48")]))
                .unwrap();
        assert_eq!(toggle::render(&line), "1 48 devices=1 after_ms=5000 sticky=1\n");
        assert_eq!(toggle::render(&line_from_entries(d, &[]).unwrap()), "1\n");
        let e = line_from_entries(d, &entries(&[("xid", "77")])).unwrap_err();
        assert_eq!(e.code, exit::USAGE);
        assert!(
            e.message.starts_with("--config /etc/cuda-fault/fault: xid: unknown XID 77; supported: 13, "),
            "{}",
            e.message
        );
        let e = line_from_entries(d, &entries(&[("mode", "slow")])).unwrap_err();
        assert!(e.message.starts_with("--config /etc/cuda-fault/fault: mode"), "{}", e.message);
        let e = line_from_entries(d, &entries(&[("after", "5s")])).unwrap_err();
        assert!(
            e.message
                .contains("unknown key 'after' (expected xid or a toggle key: devices, after_calls, after_ms, mode"),
            "{}",
            e.message
        );
        assert!(!e.message.contains('\n'));
    }

    #[test]
    fn a_mounted_config_map_is_read_without_its_dot_entries() {
        let d = tempfile::tempdir().unwrap();
        // What the kubelet makes of a ConfigMap volume: a timestamped directory, ..data
        // pointing at it, and one symlink per key.
        let stamp = d.path().join("..2026_01_01_00_00_00.000000001");
        fs::create_dir(&stamp).unwrap();
        fs::write(stamp.join("xid"), "79").unwrap();
        fs::write(stamp.join("count"), "3\n").unwrap();
        std::os::unix::fs::symlink(&stamp, d.path().join("..data")).unwrap();
        for key in ["xid", "count"] {
            std::os::unix::fs::symlink(format!("..data/{key}"), d.path().join(key)).unwrap();
        }
        assert_eq!(toggle::render(&line_from_dir(d.path()).unwrap()), "1 79 count=3\n");
        fs::create_dir(d.path().join("sub")).unwrap();
        assert!(line_from_dir(d.path()).unwrap_err().message.ends_with("sub is not a file"));
    }

    #[test]
    fn only_the_file_written_here_is_removed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("toggle");
        let line = toggle_grammar::parse(b"1 79").unwrap();
        let held = Held::write(&p, &line).unwrap();
        assert!(held.still_ours());
        let kept = held.finish(&Decision::Keep("still targeted".into()), "n1").unwrap();
        assert_eq!(kept, format!("kept {}: still targeted", p.display()));
        assert!(p.exists());
        let unknown = held.finish(&Decision::Unknown("unreachable".into()), "n1").unwrap();
        assert!(unknown.ends_with("clean the node by hand: cuda-fault node n1 clean"), "{unknown}");
        assert!(p.exists());
        // Someone else wrote the file since (the same content, a new inode): not ours.
        fsops::write_atomic(&p, b"1 79\n", 0o644).unwrap();
        let other = held.finish(&Decision::Remove("deleted".into()), "n1").unwrap();
        assert!(other.contains("it was rewritten since this pod wrote it"), "{other}");
        assert!(p.exists());
        // Ours: removed.
        let held = Held::write(&p, &line).unwrap();
        assert_eq!(
            held.finish(&Decision::Remove("deleted".into()), "n1").unwrap(),
            format!("removed {}: deleted", p.display())
        );
        assert!(!p.exists());
    }
}
