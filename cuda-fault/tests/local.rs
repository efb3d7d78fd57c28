//! The local commands through the real binary: every command, exit code and message.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_cuda-fault");

/// The binary with a clean environment: no toggle-file or image override, no kube config.
fn cf() -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("CUDA_FAULT_TOGGLE_FILE").env_remove("CUDA_FAULT_IMAGE");
    c
}

fn tmp() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o755)).unwrap();
    d
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn one_line(stderr: &[u8]) -> String {
    let s = String::from_utf8_lossy(stderr).into_owned();
    assert_eq!(s.lines().count(), 1, "stderr must be one line: {s:?}");
    assert!(s.starts_with("cuda-fault: "), "{s:?}");
    s
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    v.sort();
    v
}

fn is_root() -> bool {
    fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

#[test]
fn enable_writes_1_and_creates_the_directory() {
    let d = tmp();
    let f = d.path().join("new/dir/cuda_fault_enabled");
    cf().args(["enable", "--file", p(&f)])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("wrote \"1\" to {}", f.display())))
        .stdout(predicate::str::contains("faults on"));
    assert_eq!(fs::read_to_string(&f).unwrap(), "1\n");
    assert_eq!(fs::metadata(&f).unwrap().mode() & 0o7777, 0o644);
    assert_eq!(fs::metadata(f.parent().unwrap()).unwrap().mode() & 0o7777, 0o755);
    assert_eq!(names_in(f.parent().unwrap()), ["cuda_fault_enabled"], "no temporary file left");
}

#[test]
fn enable_with_xid_and_every_scenario_flag() {
    let d = tmp();
    let f = d.path().join("t");
    cf().args(["enable", "--file", p(&f), "--xid", "48"])
        .assert()
        .success()
        .stdout(predicate::str::contains("XID 48 (GPU_ECC_DBE)"));
    assert_eq!(fs::read_to_string(&f).unwrap(), "1 48\n");
    // Flags in any order; keys always in the fixed order.
    cf().args([
        "enable",
        "--sticky",
        "--mode",
        "hang",
        "--after",
        "2m",
        "--after-calls",
        "10",
        "--devices",
        "1,GPU-8f2c1a3e-1111-2222-3333-444455556666",
        "--xid",
        "79",
        "--file",
        p(&f),
    ])
    .assert()
    .success();
    assert_eq!(
        fs::read_to_string(&f).unwrap(),
        "1 79 devices=1,GPU-8f2c1a3e-1111-2222-3333-444455556666 after_calls=10 after_ms=120000 mode=hang sticky=1\n"
    );
    for (after, ms) in [("500ms", "500"), ("5s", "5000"), ("2m", "120000"), ("750", "750")] {
        cf().args(["enable", "--file", p(&f), "--devices", "1", "--after", after]).assert().success();
        assert_eq!(fs::read_to_string(&f).unwrap(), format!("1 devices=1 after_ms={ms}\n"));
    }
    cf().args(["enable", "--file", p(&f), "--mode", "error"]).assert().success();
    assert_eq!(fs::read_to_string(&f).unwrap(), "1 mode=error\n");
}

/// Every function hooks.list lets `functions=` name: a toggle line longer than the shim reads.
fn every_function() -> String {
    let names: Vec<&str> =
        hook_list::HOOKS.iter().filter(|h| h.flags & hook_list::flags::EXEMPT == 0).map(|h| h.name).collect();
    names.join(",")
}

#[test]
fn bad_values_exit_2_with_one_line_and_write_nothing() {
    let d = tmp();
    let f = d.path().join("t");
    let supported = xid_table::supported_list();
    let nine_uuids: Vec<String> = (0..9).map(|i| format!("GPU-8f2c1a3e-1111-2222-3333-4444555566{i:02}")).collect();
    let nine_uuids = nine_uuids.join(",");
    let all = every_function();
    let cases: &[(&[&str], &str)] = &[
        (&["--xid", "999"], "invalid value '999' for '--xid <N>': unknown XID 999; supported: "),
        (&["--xid", "abc"], "'abc' is not a number; supported: "),
        (&["--xid", "0"], "unknown XID 0; supported: "),
        (&["--xid", "-48"], "'-48' is not a number; supported: "),
        (&["--devices", ""], "for '--devices <LIST>': has an empty item"),
        (&["--devices", "0,,1"], "for '--devices <LIST>': has an empty item"),
        (&["--devices", "gpu0"], "'gpu0' is neither an ordinal 0..63 nor a GPU-/MIG- UUID"),
        (&["--devices", "64"], "device '64' is outside 0..63"),
        (&["--devices", "GPU-12345678-abcd"], "'GPU-12345678-abcd' is neither an ordinal 0..63 nor a GPU-/MIG- UUID"),
        (&["--devices", &nine_uuids], "lists more than 8 UUIDs"),
        (&["--functions", &all], "more than the 1024 the shim reads"),
        (&["--functions", "cudaMallocc"], "'cudaMallocc' is not a function in hooks.list"),
        (&["--functions", "@kernels"], "'@kernels' is not a family (@launch, @memcpy, @sync, @alloc)"),
        // A value holding a newline: named escaped, with the reason, on one line.
        (
            &["--functions", "a,\nb"],
            "invalid value 'a,\\nb' for '--functions <LIST>': 'a' is not a function in hooks.list",
        ),
        (&["--mode", "x\ny"], "invalid value 'x\\ny' for '--mode <error|hang>': 'x\\x0ay' is not error or hang"),
        (&["--after-calls", "-1"], "for '--after-calls <N>': '-1' is not a number"),
        (
            &["--after-calls", "18446744073709551616"],
            "'18446744073709551616' is out of range (at most 18446744073709551615)",
        ),
        (&["--after", "5x"], "invalid value '5x' for '--after <DURATION>'"),
        (&["--after", "18446744073709551616"], "is out of range"),
        (&["--mode", "crash"], "'crash' is not error or hang"),
        (&["--sticky=2"], "'2' is not 1, 0, true or false"),
        (&["--percent", "0"], "'0' is not above 0 and at most 100"),
        (&["--percent", "0.0000001"], "has more than 6 decimals"),
        (&["--count", "0"], "for '--count <N>': must be at least 1"),
        (&["--seed", "x"], "for '--seed <S>': 'x' is not a number"),
    ];
    for (args, needle) in cases {
        let out = cf().args(["enable", "--file", p(&f)]).args(*args).assert().code(2).get_output().clone();
        let line = one_line(&out.stderr);
        assert!(line.contains(needle), "{args:?}: {line}");
        if needle.contains("supported: ") {
            assert!(line.contains(&supported), "{line}");
        }
        assert!(!f.exists(), "{args:?} wrote the file");
    }
    assert!(names_in(d.path()).is_empty());
    // clap's own usage errors: one line, exit 2.
    for args in [&["enable", "--bogus"][..], &["frobnicate"], &["enable", "--file", ""], &["status", "--file", ""]] {
        let out = cf().args(args).assert().code(2).get_output().clone();
        one_line(&out.stderr);
    }
    // A missing argument is named on the same line.
    let out = cf().args(["hold", "--check"]).assert().code(2).get_output().clone();
    assert!(one_line(&out.stderr).contains("were not provided: --ready-file <PATH>"));
    cf().assert().code(2);
}

#[test]
fn what_enable_writes_the_shim_accepts_to_the_grammar_s_limits() {
    let d = tmp();
    let f = d.path().join("t");
    let eight: Vec<String> = (0..8).map(|i| format!("MIG-8f2c1a3e-1111-2222-3333-4444555566{i:02}")).collect();
    let cases: &[(&[&str], &str)] = &[
        (&["--devices", "63,0"], "1 devices=0,63\n"),
        (&["--devices", &eight.join(",")], &format!("1 devices={}\n", eight.join(","))),
        (&["--after-calls", "10000000000000000000"], "1 after_calls=10000000000000000000\n"),
        (&["--after", "18446744073709551615"], "1 after_ms=18446744073709551615\n"),
        (&["--after", "1.5s"], "1 after_ms=1500\n"),
        (&["--sticky=false"], "1 sticky=0\n"),
        (&["--percent", "007.50", "--count", "3", "--seed", "0"], "1 percent=7.5 count=3 seed=0\n"),
        (&["--functions", "cuMemAlloc_v2,@launch,cudaMalloc"], "1 functions=@launch,cudaMalloc,cuMemAlloc\n"),
    ];
    for (args, want) in cases {
        cf().args(["enable", "--file", p(&f)]).args(*args).assert().success();
        let written = fs::read_to_string(&f).unwrap();
        assert_eq!(&written, want, "{args:?}");
        // What was written reads back as on, with nothing malformed.
        let v: Value = serde_json::from_slice(
            &cf().args(["status", "--json", "--file", p(&f)]).assert().success().get_output().stdout,
        )
        .unwrap();
        assert_eq!(v["state"], "on", "{args:?}: {v}");
    }
}

#[test]
fn disable_writes_0_and_clean_removes() {
    let d = tmp();
    let f = d.path().join("t");
    cf().args(["enable", "--file", p(&f), "--xid", "48"]).assert().success();
    cf().args(["disable", "--file", p(&f)]).assert().success().stdout(predicate::str::contains("faults off"));
    assert_eq!(fs::read_to_string(&f).unwrap(), "0\n");
    cf().args(["clean", "--file", p(&f)])
        .assert()
        .success()
        .stdout(format!("removed {}: absent: env decides\n", f.display()));
    assert!(!f.exists());
    cf().args(["clean", "--file", p(&f)])
        .assert()
        .success()
        .stdout(format!("{} already absent: env decides\n", f.display()));
    // clean in a missing directory is fine too.
    cf().args(["clean", "--file", p(&d.path().join("nope/t"))]).assert().success();
}

#[test]
fn status_text_and_json() {
    let d = tmp();
    let f = d.path().join("t");
    let file = f.display().to_string();

    cf().args(["status", "--file", p(&f)])
        .assert()
        .success()
        .stdout(predicate::str::contains("absent: env decides"))
        .stdout(predicate::str::contains(&file));
    let absent: Value = serde_json::from_slice(
        &cf().args(["status", "--json", "--file", p(&f)]).assert().success().get_output().stdout,
    )
    .unwrap();
    assert_eq!(
        absent,
        json!({"file": file, "present": false, "state": "absent", "xid": null, "devices": null,
               "after_calls": null, "after_ms": null, "mode": null, "sticky": null, "surface": null, "scope": null,
               "percent": null,
               "count": null, "functions": null, "seed": null, "raw": null,
               "error": null, "effect": "absent: env decides"})
    );

    fs::write(&f, "1 48\n").unwrap();
    let out = cf().args(["status", "--json", "--file", p(&f)]).assert().success().get_output().stdout.clone();
    let text = String::from_utf8(out).unwrap();
    // Stable key order; keys the file does not set are null (the pod's variables decide them).
    assert!(text.starts_with(r#"{"file":"#) && text.contains(r#""present":true,"state":"on","xid":48,"devices":null,"after_calls":null,"after_ms":null,"mode":null,"sticky":null,"surface":null,"scope":null,"percent":null,"count":null,"functions":null,"seed":null,"raw":"1 48\n","error":null,"effect":"#), "{text}");
    cf().args(["status", "--file", p(&f)])
        .assert()
        .success()
        .stdout(predicate::str::contains("state:       on\n"))
        .stdout(predicate::str::contains("XID 48 (GPU_ECC_DBE)"))
        .stdout(predicate::str::contains(&file));

    fs::write(
        &f,
        "1 79 devices=0,GPU-12345678-AAAA-2222-3333-444455556666 after_calls=3 after_ms=5000 mode=hang sticky=true \
         percent=0.50 count=2 functions=cudaMalloc,@sync seed=11 scope=process surface=async\n",
    )
    .unwrap();
    let v: Value = serde_json::from_slice(
        &cf().args(["status", "--json", "--file", p(&f)]).assert().success().get_output().stdout,
    )
    .unwrap();
    assert_eq!(v["state"], "on");
    assert_eq!(v["xid"], 79);
    assert_eq!(v["devices"], json!(["0", "GPU-12345678-aaaa-2222-3333-444455556666"]));
    assert_eq!((v["percent"].as_str(), v["count"].as_u64(), v["seed"].as_u64()), (Some("0.5"), Some(2), Some(11)));
    assert_eq!(v["functions"], json!(["@sync", "cudaMalloc"]));
    assert_eq!(v["after_calls"], 3);
    assert_eq!(v["after_ms"], 5000);
    assert_eq!(v["mode"], "hang");
    assert_eq!(v["sticky"], true);
    assert_eq!((v["surface"].as_str(), v["scope"].as_str()), (Some("async"), Some("process")));
    cf().args(["status", "--file", p(&f)])
        .assert()
        .success()
        .stdout(predicate::str::contains("devices:     0,GPU-12345678-aaaa-2222-3333-444455556666\n"))
        .stdout(predicate::str::contains("functions:   @sync,cudaMalloc\n"))
        .stdout(predicate::str::contains("percent:     0.5\n"))
        .stdout(predicate::str::contains("after_calls: 3\n"))
        .stdout(predicate::str::contains("after_ms:    5000\n"))
        .stdout(predicate::str::contains("mode:        hang\n"))
        .stdout(predicate::str::contains("sticky:      yes\n"))
        .stdout(predicate::str::contains("surface:     async\n"))
        .stdout(predicate::str::contains("scope:       process\n"));

    fs::write(&f, "0\n").unwrap();
    let v: Value = serde_json::from_slice(
        &cf().args(["status", "--json", "--file", p(&f)]).assert().success().get_output().stdout,
    )
    .unwrap();
    assert_eq!((v["state"].as_str(), v["present"].as_bool()), (Some("off"), Some(true)));

    // What the shim accepts: any whitespace; an XID outside the table (the shim uses the pod's).
    fs::write(&f, "1\t 48\r\n").unwrap();
    let v: Value = serde_json::from_slice(
        &cf().args(["status", "--json", "--file", p(&f)]).assert().success().get_output().stdout,
    )
    .unwrap();
    assert_eq!((v["state"].as_str(), v["xid"].as_u64()), (Some("on"), Some(48)));
    fs::write(&f, "1 999\n").unwrap();
    cf().args(["status", "--file", p(&f)])
        .assert()
        .success()
        .stdout(predicate::str::contains("state:       on\n"))
        .stdout(predicate::str::contains("XID 999, which is not in the XID table"));

    // Exactly what the shim refuses: over 1024 bytes, bad values of every key.
    let too_long = format!("1 48{}\n", " ".repeat(1021));
    assert_eq!(too_long.len(), 1026);
    for bad in [
        "",
        "yes\n",
        "1 48 49\n",
        "1 48 colour=red\n",
        "1 mode=explode\n",
        too_long.as_str(),
        "1 devices=64\n",
        "1 devices=GPU-12345678-abcd\n",
        "1 after_ms=18446744073709551616\n",
        "1 sticky=2\n",
        "1 percent=0\n",
        "1 count=0\n",
        "1 functions=nvmlShutdown\n",
        "\x0b1\x0b48 x",
    ] {
        fs::write(&f, bad).unwrap();
        let v: Value = serde_json::from_slice(
            &cf().args(["status", "--json", "--file", p(&f)]).assert().success().get_output().stdout,
        )
        .unwrap();
        assert_eq!(v["state"], "invalid", "{bad:?}");
        assert_eq!(v["present"], true);
        assert_eq!(v["raw"], bad[..bad.len().min(1025)], "raw: the bytes the shim reads");
        assert!(v["error"].is_string());
        assert!(v["effect"].as_str().unwrap().contains("treats malformed content as off"));
        cf().args(["status", "--file", p(&f)])
            .assert()
            .success()
            .stdout(predicate::str::contains("invalid: "))
            .stdout(predicate::str::contains("the shim treats malformed content as off"));
    }
}

#[test]
fn toggle_file_env_and_default_path() {
    let d = tmp();
    let f = d.path().join("from-env");
    cf().env("CUDA_FAULT_TOGGLE_FILE", &f).args(["enable", "--xid", "79"]).assert().success();
    assert_eq!(fs::read_to_string(&f).unwrap(), "1 79\n");
    cf().env("CUDA_FAULT_TOGGLE_FILE", &f)
        .arg("status")
        .assert()
        .success()
        .stdout(predicate::str::contains(f.display().to_string()));
    // --file wins over the environment.
    let g = d.path().join("from-flag");
    cf().env("CUDA_FAULT_TOGGLE_FILE", &f).args(["disable", "--file", p(&g)]).assert().success();
    assert_eq!(fs::read_to_string(&g).unwrap(), "0\n");
    assert_eq!(fs::read_to_string(&f).unwrap(), "1 79\n");
    cf().env("CUDA_FAULT_TOGGLE_FILE", &f).arg("clean").assert().success();
    assert!(!f.exists());
    for cmd in ["enable", "disable", "status", "clean"] {
        cf().args([cmd, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("/host-fault/cuda_fault_enabled"));
    }
    cf().args(["status", "--json"])
        .assert()
        .success()
        .stdout(predicate::str::contains(r#""file":"/host-fault/cuda_fault_enabled""#));
}

#[test]
fn symlink_at_the_target_is_refused_never_followed() {
    let d = tmp();
    let real = d.path().join("real");
    fs::write(&real, "precious\n").unwrap();
    let link = d.path().join("t");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    for args in [vec!["enable", "--xid", "48"], vec!["disable"], vec!["clean"]] {
        let out = cf().args(&args).args(["--file", p(&link)]).assert().code(40).get_output().clone();
        assert!(one_line(&out.stderr).contains("symbolic link"), "{args:?}");
        assert_eq!(fs::read_to_string(&real).unwrap(), "precious\n");
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    }
    // A dangling symlink is refused too (it would otherwise create its target).
    let dangling = d.path().join("dangling");
    std::os::unix::fs::symlink(d.path().join("nowhere"), &dangling).unwrap();
    cf().args(["enable", "--file", p(&dangling)]).assert().code(40);
    assert!(!d.path().join("nowhere").exists());
    assert_eq!(names_in(d.path()), ["dangling", "real", "t"]);
}

#[test]
fn directory_at_the_target_exits_21() {
    let d = tmp();
    let dir = d.path().join("t");
    fs::create_dir(&dir).unwrap();
    for args in [vec!["enable"], vec!["disable"], vec!["clean"]] {
        let out = cf().args(&args).args(["--file", p(&dir)]).assert().code(21).get_output().clone();
        assert!(one_line(&out.stderr).contains("is a directory"), "{args:?}");
    }
    // status says what the shim makes of it.
    let v: Value = serde_json::from_slice(
        &cf().args(["status", "--json", "--file", p(&dir)]).assert().success().get_output().stdout,
    )
    .unwrap();
    assert_eq!(
        (v["state"].as_str(), v["error"].as_str()),
        (Some("invalid"), Some("it is a directory, not a regular file"))
    );
    assert!(dir.is_dir());
    assert_eq!(names_in(d.path()), ["t"], "nothing half-written");
}

#[test]
fn device_nodes_fifos_and_sockets_are_never_replaced_or_removed() {
    let d = tmp();
    let fifo = d.path().join("fifo");
    assert!(StdCommand::new("mkfifo").arg(&fifo).status().unwrap().success());
    let sock = d.path().join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let mut targets = vec![(fifo.clone(), "a FIFO"), (sock.clone(), "a socket")];
    if is_root() {
        // A real character device node (the same numbers as /dev/null), never the system's own.
        let node = d.path().join("null");
        assert!(StdCommand::new("mknod").arg(&node).args(["c", "1", "3"]).status().unwrap().success());
        targets.push((node, "a character device"));
    }
    for (target, kind) in &targets {
        let before = fs::symlink_metadata(target).unwrap();
        for args in [vec!["enable", "--xid", "48"], vec!["disable"], vec!["clean"]] {
            let out = cf().args(&args).args(["--file", p(target)]).assert().code(73).get_output().clone();
            let line = one_line(&out.stderr);
            assert!(line.contains(&format!("it is {kind}, not a regular file")), "{args:?}: {line}");
        }
        let after = fs::symlink_metadata(target).unwrap();
        assert_eq!((before.ino(), before.file_type()), (after.ino(), after.file_type()), "{kind} was replaced");
        // status never blocks on a FIFO and says the shim treats it as off.
        let v: Value = serde_json::from_slice(
            &cf().args(["status", "--json", "--file", p(target)]).assert().success().get_output().stdout,
        )
        .unwrap();
        assert_eq!(v["state"], "invalid", "{kind}");
        assert_eq!(v["error"], format!("it is {kind}, not a regular file"));
    }
    let mut left = names_in(d.path());
    left.retain(|n| n.starts_with('.'));
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn permission_denied_exits_13_and_writes_nothing() {
    let d = tmp();
    let ro = d.path().join("ro");
    fs::create_dir(&ro).unwrap();
    fs::write(ro.join("t"), "0\n").unwrap();
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
    // A copy of the binary inside the 0755 temporary directory, so uid 65534 can run it wherever
    // the checkout lives.
    let bin = d.path().join("cuda-fault");
    copy_binary(&bin);
    let run = |args: &[&str]| {
        let mut c = StdCommand::new(&bin);
        c.args(args).env_remove("CUDA_FAULT_TOGGLE_FILE");
        if is_root() {
            // Root ignores permission bits: drop to nobody (uid/gid 65534, no supplementary groups).
            use std::os::unix::process::CommandExt;
            c.uid(65534).gid(65534);
        }
        Command::from_std(c).assert()
    };
    let t = ro.join("t");
    for args in [vec!["enable", "--xid", "48"], vec!["disable"], vec!["clean"]] {
        let out = run(&[args.as_slice(), &["--file", p(&t)]].concat()).code(13).get_output().clone();
        assert!(one_line(&out.stderr).contains("permission denied"), "{args:?}");
    }
    // Creating a missing directory under a read-only one.
    let out = run(&["enable", "--file", p(&ro.join("sub/t"))]).code(13).get_output().clone();
    assert!(one_line(&out.stderr).contains("permission denied"));
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(fs::read_to_string(&t).unwrap(), "0\n");
    assert_eq!(names_in(&ro), ["t"], "nothing half-written");
    // The same binary as root writes fine: the failures above were the permissions.
    if is_root() {
        Command::new(&bin).args(["disable", "--file", p(&t)]).assert().success();
    }
}

#[test]
fn read_only_file_system_exits_30() {
    // A read-only tmpfs in a private mount namespace; needs root (or user namespaces) and unshare.
    let d = tmp();
    let mnt = d.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let script = r#"mount -t tmpfs -o ro tmpfs "$1" || exit 99; shift; exec "$@""#;
    let probe = StdCommand::new("unshare").args(["--mount", "sh", "-c", script, "sh", p(&mnt), "true"]).status();
    // CI and the developer machines run as root, where this works; never pass silently.
    assert!(
        matches!(probe, Ok(s) if s.success()),
        "cannot mount a read-only tmpfs here: this test needs root and unshare (util-linux)"
    );
    let cases: [(&[&str], PathBuf); 3] =
        [(&["enable", "--xid", "48"], mnt.join("t")), (&["disable"], mnt.join("t")), (&["enable"], mnt.join("sub/t"))];
    for (args, file) in cases {
        let out = StdCommand::new("unshare")
            .args(["--mount", "sh", "-c", script, "sh", p(&mnt), BIN])
            .args(args)
            .args(["--file", p(&file)])
            .env_remove("CUDA_FAULT_TOGGLE_FILE")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(30), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(one_line(&out.stderr).contains("read-only file system"));
    }
}

#[test]
fn other_io_errors_exit_74() {
    let d = tmp();
    let plain = d.path().join("plain");
    fs::write(&plain, "x").unwrap();
    // A path through a regular file: ENOTDIR.
    let out = cf().args(["enable", "--file", p(&plain.join("t"))]).assert().code(74).get_output().clone();
    one_line(&out.stderr);
    // The shim sees no file there (ENOTDIR): its environment decides, and status says so.
    cf().args(["status", "--file", p(&plain.join("t"))])
        .assert()
        .success()
        .stdout(predicate::str::contains("absent: env decides"));
}

#[test]
fn concurrent_writers_never_expose_a_partial_or_empty_file() {
    let d = tmp();
    let f = d.path().join("t");
    cf().args(["enable", "--file", p(&f)]).assert().success();
    let long = "1 79 devices=0,1,2,3,GPU-8f2c1a3e-1111-2222-3333-444455556666 after_calls=123456 after_ms=654321 mode=hang sticky=1\n";
    let valid = ["1\n", "0\n", "1 48\n", long];
    let done = Arc::new(AtomicBool::new(false));
    let writer = |args: Vec<String>, rounds: usize| {
        let f = f.clone();
        thread::spawn(move || {
            for i in 0..rounds {
                let mut c = StdCommand::new(BIN);
                c.arg(if i % 2 == 0 { &args[0] } else { &args[1] }).args(&args[2..]).arg("--file").arg(&f);
                assert!(c.stdout(std::process::Stdio::null()).status().unwrap().success());
            }
        })
    };
    let a = writer(vec!["disable".into(), "enable".into()], 150);
    let b = writer(
        [
            "enable",
            "enable",
            "--xid",
            "79",
            "--devices",
            "0,1,2,3,GPU-8f2c1a3e-1111-2222-3333-444455556666",
            "--after-calls",
            "123456",
            "--after",
            "654321",
            "--mode",
            "hang",
            "--sticky",
        ]
        .map(String::from)
        .to_vec(),
        150,
    );
    // A second pair of writers in-process, through the library, for many more interleavings.
    let lib_writers: Vec<_> = (0..2)
        .map(|k| {
            let f = f.clone();
            let done = done.clone();
            thread::spawn(move || {
                let mut n = 0;
                while !done.load(Ordering::Relaxed) || n < 500 {
                    let text = if (n + k) % 2 == 0 { "1 48\n" } else { "0\n" };
                    cuda_fault::fsops::write_atomic(&f, text.as_bytes(), 0o644).unwrap();
                    n += 1;
                }
            })
        })
        .collect();
    let reader = {
        let f = f.clone();
        let done = done.clone();
        thread::spawn(move || {
            let mut reads = 0u64;
            while !done.load(Ordering::Relaxed) {
                let got = fs::read_to_string(&f).expect("the file never disappears");
                assert!(valid.contains(&got.as_str()), "reader saw {got:?}");
                reads += 1;
            }
            reads
        })
    };
    a.join().unwrap();
    b.join().unwrap();
    done.store(true, Ordering::Relaxed);
    for w in lib_writers {
        w.join().unwrap();
    }
    let reads = reader.join().unwrap();
    assert!(reads > 100, "reader polled only {reads} times");
    assert_eq!(names_in(d.path()), ["t"], "no temporary file left behind");
}

#[test]
fn xids_text_and_json_come_from_the_table() {
    let out = cf().arg("xids").assert().success().get_output().stdout.clone();
    let text = String::from_utf8(out).unwrap();
    let table = xid_table::table();
    for row in &table {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next().map(|x| x.trim_end_matches('*')) == Some(&row.xid.to_string()))
            .unwrap_or_else(|| panic!("XID {} missing", row.xid));
        assert!(line.contains(row.mnemonic) && line.contains(row.runtime.name) && line.contains(row.driver.name));
        assert!(line.contains(row.description));
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = words.iter().position(|w| *w == row.surface.word()).unwrap_or_else(|| panic!("{line}"));
        assert_eq!(words[at + 1], row.scope.word(), "{line}");
    }
    assert_eq!(text.lines().count(), table.len() + 2, "header + rows + footnote");
    let v: Value =
        serde_json::from_slice(&cf().args(["xids", "--json"]).assert().success().get_output().stdout).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), table.len());
    for (j, r) in rows.iter().zip(&table) {
        assert_eq!(j["xid"], r.xid);
        assert_eq!(j["mnemonic"], r.mnemonic);
        assert_eq!(j["runtime"], json!({"name": r.runtime.name, "code": r.runtime.code}));
        assert_eq!(j["driver"], json!({"name": r.driver.name, "code": r.driver.code}));
        assert_eq!(j["nvml"], r.nvml.map_or(Value::Null, |e| json!({"name": e.name, "code": e.code})));
        assert_eq!(j["sticky"], r.sticky);
        assert_eq!((&j["kmsg"], &j["kmsg_evidence"]), (&json!(r.kmsg), &json!(r.kmsg_evidence)));
        assert_eq!((j["surface"].as_str(), j["scope"].as_str()), (Some(r.surface.word()), Some(r.scope.word())));
        assert_eq!(j["lost"], r.lost);
        assert_eq!(
            j["ecc"].as_array().unwrap().len(),
            [r.ecc.uncorrected, r.ecc.pending, r.ecc.failure].iter().filter(|b| **b).count()
        );
        assert_eq!(j["default"], r.xid == xid_table::DEFAULT_XID);
    }
}

/// Copies the helper binary to `dest` and waits until it can be executed. A child that another
/// test thread forks while `fs::copy` holds the destination open keeps a writable descriptor to
/// it until that child execs; executing the copy meanwhile fails with ETXTBSY ("Text file
/// busy"). Once one exec succeeds no such descriptor is left, so later runs are safe.
fn copy_binary(dest: &Path) {
    fs::copy(BIN, dest).unwrap();
    for _ in 0..200 {
        match StdCommand::new(dest).arg("--version").output() {
            Err(e) if e.raw_os_error() == Some(26) => std::thread::sleep(std::time::Duration::from_millis(10)),
            Err(e) => panic!("cannot run {}: {e}", dest.display()),
            Ok(_) => return,
        }
    }
    panic!("{} stayed busy", dest.display());
}

#[test]
fn install_copies_the_library_atomically() {
    let d = tmp();
    let lib = d.path().join("lib.so");
    fs::write(&lib, b"\x7fELF fake shim").unwrap();
    let dest = d.path().join("shared/lib");
    cf().args(["install", p(&dest), "--from", p(&lib)])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("{}", dest.join("cuda_intercept.so").display())));
    let installed = dest.join("cuda_intercept.so");
    assert_eq!(fs::read(&installed).unwrap(), b"\x7fELF fake shim");
    assert_eq!(fs::metadata(&installed).unwrap().mode() & 0o7777, 0o755);
    // Replacing an existing copy.
    fs::write(&lib, b"\x7fELF v2").unwrap();
    cf().args(["install", p(&dest), "--from", p(&lib)]).assert().success();
    assert_eq!(fs::read(&installed).unwrap(), b"\x7fELF v2");
    assert_eq!(names_in(&dest), ["cuda_intercept.so"]);

    // Default source: cuda_intercept.so beside the binary (as in the FROM-scratch image).
    let image = d.path().join("image");
    fs::create_dir(&image).unwrap();
    copy_binary(&image.join("cuda-fault"));
    let out2 = d.path().join("out2");
    Command::new(image.join("cuda-fault")).args(["install", p(&out2)]).assert().code(66).stderr(
        predicate::str::contains(format!("{} not found", image.join("cuda_intercept.so").display()))
            .and(predicate::str::contains("--from")),
    );
    fs::write(image.join("cuda_intercept.so"), b"\x7fELF beside").unwrap();
    Command::new(image.join("cuda-fault")).args(["install", p(&out2)]).assert().success();
    assert_eq!(fs::read(out2.join("cuda_intercept.so")).unwrap(), b"\x7fELF beside");

    // Missing --from source, a directory as source, a symlink at the destination.
    let out =
        cf().args(["install", p(&dest), "--from", p(&d.path().join("nope.so"))]).assert().code(66).get_output().clone();
    one_line(&out.stderr);
    cf().args(["install", p(&dest), "--from", p(d.path())]).assert().code(66);
    let dest3 = d.path().join("d3");
    fs::create_dir(&dest3).unwrap();
    std::os::unix::fs::symlink(&lib, dest3.join("cuda_intercept.so")).unwrap();
    cf().args(["install", p(&dest3), "--from", p(&lib)]).assert().code(40);
}

#[test]
fn help_documents_commands_and_exit_codes() {
    let out = cf().arg("--help").assert().success().get_output().stdout.clone();
    let text = String::from_utf8(out).unwrap();
    for needle in ["enable", "disable", "status", "clean", "xids", "install", "node", "Exit codes:"] {
        assert!(text.contains(needle), "{needle}");
    }
    for code in [2, 13, 21, 30, 40, 66, 69, 70, 73, 74, 75, 77, 78] {
        assert!(text.contains(&format!("{code:>4}  ")), "exit code {code} not in --help");
    }
    cf().args(["enable", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("--after <DURATION>").and(predicate::str::contains("--devices <LIST>")));
}

/// README says `--help` shows the same exit-code table: the same codes, in the same order.
#[test]
fn readme_lists_the_exit_codes_help_shows() {
    let codes =
        |lines: Vec<&str>, parse: fn(&str) -> Option<u32>| lines.into_iter().filter_map(parse).collect::<Vec<u32>>();
    let help = codes(cuda_fault::exit::TABLE.lines().skip(1).collect(), |l| l.split_whitespace().next()?.parse().ok());
    let readme = include_str!("../README.md");
    let table = &readme[readme.find("## Exit codes").expect("README has an exit-code section")..];
    let rows: Vec<&str> =
        table.lines().skip_while(|l| !l.starts_with("| code")).skip(2).take_while(|l| l.starts_with('|')).collect();
    let readme_codes = codes(rows, |l| l.trim_start_matches('|').split('|').next()?.trim().parse().ok());
    assert_eq!(readme_codes, help, "cuda-fault/README.md's exit-code table differs from --help's");
}

#[test]
fn node_validates_before_touching_the_cluster() {
    let d = tmp();
    let no_cluster = |c: &mut Command| {
        c.env("KUBECONFIG", d.path().join("missing-kubeconfig"))
            .env("HOME", d.path())
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT");
    };
    let cases: &[(&[&str], &str)] = &[
        (&["node", "gpu-1", "enable", "--xid", "999"], "unknown XID 999"),
        (&["node", "gpu-1", "enable", "--after", "soon"], "invalid value 'soon' for '--after <DURATION>'"),
        (&["node", "gpu-1", "enable", "--mode", "x"], "invalid value 'x' for '--mode <error|hang>'"),
        (&["node", "gpu-1", "enable", "--devices", "64"], "device '64' is outside 0..63"),
        (&["node", "gpu-1", "clean", "--timeout", "forever"], "invalid value 'forever' for '--timeout <S>'"),
        (&["node", "gpu-1", "clean", "--timeout", "0"], "expected 1 s to 24 h"),
        (&["node", "gpu-1", "clean", "--namespace", "Not_OK"], "invalid --namespace"),
        (&["node", "GPU_1", "clean"], "invalid node name"),
    ];
    for (args, needle) in cases {
        let mut c = cf();
        no_cluster(&mut c);
        let out = c.args(*args).assert().code(2).get_output().clone();
        assert!(one_line(&out.stderr).contains(needle), "{args:?}");
    }
    let mut c = cf();
    no_cluster(&mut c);
    c.args(["node", "gpu-1", "--all", "clean"]).assert().code(2);
    let mut c = cf();
    no_cluster(&mut c);
    c.args(["node", "--selector", "a=b", "clean"]).assert().code(2);
}

#[test]
fn node_without_kubeconfig_exits_78() {
    let d = tmp();
    for kubeconfig in [None, Some(d.path().join("missing"))] {
        let mut c = cf();
        c.env("HOME", d.path()).env_remove("KUBERNETES_SERVICE_HOST").env_remove("KUBERNETES_SERVICE_PORT");
        match &kubeconfig {
            Some(k) => c.env("KUBECONFIG", k),
            None => c.env_remove("KUBECONFIG"),
        };
        let out = c.args(["node", "gpu-1", "enable"]).assert().code(78).get_output().clone();
        let line = one_line(&out.stderr);
        assert!(line.contains("set KUBECONFIG") && line.contains("in-cluster"), "{line}");
    }
}

#[test]
fn node_with_unreachable_api_server_exits_69() {
    let d = tmp();
    let kubeconfig = d.path().join("config");
    // Port 1 on loopback: connection refused at once.
    fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n\
         contexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\nusers:\n- name: u\n  user:\n    token: t\n",
    )
    .unwrap();
    let out = cf()
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", d.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .args(["node", "gpu-1", "clean", "--timeout", "5"])
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .code(69)
        .get_output()
        .clone();
    let line = one_line(&out.stderr);
    assert!(line.contains("cannot reach the Kubernetes API server"), "{line}");
    let _: PathBuf = kubeconfig;
}
