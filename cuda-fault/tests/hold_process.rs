//! `cuda-fault hold` with real processes: another writer's `cuda-fault enable` landing inside a
//! hold pod's removal is never removed, and a stop whose configuration never loads (a FIFO as
//! KUBECONFIG, an exec credential plugin that never returns) ends within --stop-timeout, keeps
//! the fault and says how to clean the node by hand.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cuda_fault::hold::{Held, Removal, Stage};

const BIN: &str = env!("CARGO_BIN_EXE_cuda-fault");

fn enable(file: &Path, xid: &str) {
    let out = Command::new(BIN).args(["enable", "--xid", xid, "--file"]).arg(file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn another_process_writing_inside_the_removal_is_never_removed() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("cuda_fault_enabled");
    let line = toggle_grammar::parse(b"1 79").unwrap();
    // Between the check and the move: what was checked is no longer what is moved, so it goes back.
    let held = Held::write(&p, &line).unwrap();
    let r = held
        .remove_if_ours_with(&mut |s| {
            if s == Stage::Checked {
                enable(&p, "95")
            }
        })
        .unwrap();
    assert_eq!(r, Removal::NotOurs);
    assert_eq!(fs::read_to_string(&p).unwrap(), "1 95\n");
    // After the move: the write lands on the free path and stays; only this pod's file goes.
    let held = Held::write(&p, &line).unwrap();
    let r = held
        .remove_if_ours_with(&mut |s| {
            if s == Stage::SetAside {
                enable(&p, "95")
            }
        })
        .unwrap();
    assert_eq!(r, Removal::Removed);
    assert_eq!(fs::read_to_string(&p).unwrap(), "1 95\n");
    let names: Vec<String> =
        fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["cuda_fault_enabled"]);
}

/// A hold process with `env` (and nothing else), started and holding.
fn hold(file: &Path, env: &[(&str, &str)]) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(BIN)
        .args(["hold", "--xid", "79", "--stop-timeout", "2s", "--file"])
        .arg(file)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.starts_with("holding \"1 79\" in "), "{first}");
    (child, out)
}

/// SIGTERM, then the time it took to exit, its exit code and the rest of its stdout.
fn terminate(mut child: Child, mut out: BufReader<std::process::ChildStdout>) -> (Duration, i32, String) {
    let start = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("hold did not exit within a minute of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = start.elapsed();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    (took, status.code().unwrap_or(-1), rest)
}

fn assert_bounded_and_kept(file: &Path, took: Duration, code: i32, out: &str) {
    assert_eq!(code, 0, "{out}");
    assert!(took < Duration::from_secs(10), "the stop took {took:?} with --stop-timeout 2s");
    assert_eq!(
        out.trim_end(),
        format!(
            "SIGTERM: kept {}: cannot ask the Kubernetes API (no answer within 2s (loading the Kubernetes configuration \
             included)); if the fault resource was deleted, clean the node by hand: cuda-fault node node-a clean",
            file.display()
        )
    );
    assert_eq!(fs::read_to_string(file).unwrap(), "1 79\n", "the fault is kept");
}

#[test]
fn a_kubeconfig_that_never_loads_keeps_the_fault_within_the_stop_timeout() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("node/cuda_fault_enabled");
    let fifo = d.path().join("kubeconfig");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let pod = [("POD_NAME", "h1"), ("POD_NAMESPACE", "cuda-fault"), ("NODE_NAME", "node-a")];
    let mut env = vec![("KUBECONFIG", fifo.to_str().unwrap())];
    env.extend(pod);
    let (child, out) = hold(&file, &env);
    let (took, code, rest) = terminate(child, out);
    assert_bounded_and_kept(&file, took, code, &rest);
}

#[test]
fn an_exec_credential_plugin_that_never_returns_keeps_the_fault_within_the_stop_timeout() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("node/cuda_fault_enabled");
    let pidfile = d.path().join("plugin.pid");
    let plugin = d.path().join("plugin.sh");
    fs::write(&plugin, format!("#!/bin/sh\necho $$ > {}\nexec sleep 600\n", pidfile.display())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&plugin, fs::Permissions::from_mode(0o755)).unwrap();
    let kubeconfig = d.path().join("kubeconfig");
    fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: \"https://127.0.0.1:1\", insecure-skip-tls-verify: true}}\n\
             users:\n- name: u\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: {}\n      interactiveMode: Never\n\
             contexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
            plugin.display()
        ),
    )
    .unwrap();
    let env = [
        ("KUBECONFIG", kubeconfig.to_str().unwrap()),
        ("POD_NAME", "h1"),
        ("POD_NAMESPACE", "cuda-fault"),
        ("NODE_NAME", "node-a"),
        ("PATH", "/usr/bin:/bin"),
    ];
    let (child, out) = hold(&file, &env);
    let (took, code, rest) = terminate(child, out);
    // The plugin was started, and never answered.
    let pid = fs::read_to_string(&pidfile).expect("the exec plugin ran").trim().to_string();
    let _ = Command::new("kill").args(["-KILL", &pid]).status();
    assert_bounded_and_kept(&file, took, code, &rest);
}
