//! The command-line contract the Python package relies on: `scenario` (its line and `--json`
//! object) and `--json` on `enable`, `disable` and `clean`. On success exactly one JSON object and
//! a newline on stdout; on failure nothing on stdout, one line on stderr and the exit code.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use assert_cmd::Command;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_cuda-fault");

fn cf() -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("CUDA_FAULT_TOGGLE_FILE");
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

/// Stdout of a successful run: exactly one JSON object, then a newline, nothing else.
fn one_object(stdout: &[u8]) -> Value {
    let text = std::str::from_utf8(stdout).unwrap();
    assert!(text.ends_with("}\n") && text.matches('\n').count() == 1, "one object and a newline: {text:?}");
    let v: Value = serde_json::from_str(text).unwrap();
    assert!(v.is_object());
    v
}

/// A failed run: the code, nothing on stdout, one `cuda-fault: ` line on stderr; returns it.
fn fails(cmd: &mut Command, code: i32) -> String {
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(code), "{out:?}");
    assert!(out.stdout.is_empty(), "nothing on stdout: {:?}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(err.starts_with("cuda-fault: "), "{err:?}");
    err
}

const FLAG_SETS: &[&[&str]] = &[
    &[],
    &["--xid", "48"],
    &["--xid", "79", "--devices", "1,GPU-8f2c1a3e-1111-2222-3333-444455556666", "--after", "5s"],
    &["--percent", "0.5000", "--seed", "7", "--functions", "@launch,cudaMalloc", "--count", "3"],
    &["--mode", "hang", "--sticky", "--after-calls", "10"],
    &["--sticky=false", "--xid", "13"],
];

#[test]
fn scenario_prints_the_line_enable_writes() {
    let d = tmp();
    let f = d.path().join("t");
    for flags in FLAG_SETS {
        let out = cf().arg("scenario").args(*flags).output().unwrap();
        assert!(out.status.success(), "{flags:?}: {out:?}");
        cf().args(["enable", "--file", p(&f)]).args(*flags).assert().success();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), fs::read_to_string(&f).unwrap(), "{flags:?}");

        let json = one_object(&cf().arg("scenario").args(*flags).arg("--json").output().unwrap().stdout);
        assert_eq!(format!("{}\n", json["line"].as_str().unwrap()), fs::read_to_string(&f).unwrap());
    }
}

#[test]
fn scenario_json_is_the_contract_s_object() {
    let out = cf().args(["scenario", "--xid", "48", "--percent", "5", "--json"]).output().unwrap();
    assert!(out.status.success());
    let v = one_object(&out.stdout);
    let scenario_vars = json!([
        "CUDA_XID_TYPE",
        "CUDA_FAULT_DEVICES",
        "CUDA_FAULT_AFTER_CALLS",
        "CUDA_FAULT_AFTER_MS",
        "CUDA_FAULT_MODE",
        "CUDA_FAULT_STICKY",
        "CUDA_FAULT_SURFACE",
        "CUDA_FAULT_SCOPE",
        "CUDA_FAULT_PERCENT",
        "CUDA_FAULT_COUNT",
        "CUDA_FAULT_FUNCTIONS",
        "CUDA_FAULT_SEED"
    ]);
    assert_eq!(
        v,
        json!({
            "line": "1 48 percent=5",
            "xid": 48,
            "keys": {"percent": "5"},
            "env": {"CUDA_FAULT_INJECTION_ENABLED": "1", "CUDA_XID_TYPE": "48", "CUDA_FAULT_PERCENT": "5"},
            "variables": {
                "enabled": "CUDA_FAULT_INJECTION_ENABLED",
                "toggle_file": "CUDA_FAULT_TOGGLE_FILE",
                "preload": "LD_PRELOAD",
                "scenario": scenario_vars
            }
        })
    );

    // No XID: null, and no CUDA_XID_TYPE (the environment's, or the shim's default).
    let v = one_object(&cf().args(["scenario", "--after", "2m", "--sticky", "--json"]).output().unwrap().stdout);
    assert_eq!(v["xid"], Value::Null);
    assert_eq!(v["keys"], json!({"after_ms": "120000", "sticky": "1"}));
    assert_eq!(
        v["env"],
        json!({"CUDA_FAULT_INJECTION_ENABLED": "1", "CUDA_FAULT_AFTER_MS": "120000", "CUDA_FAULT_STICKY": "1"})
    );
    // Canonical values, in the grammar's key order.
    let text = String::from_utf8(
        cf().args(["scenario", "--seed", "1", "--percent", "05.50", "--json"]).output().unwrap().stdout,
    )
    .unwrap();
    assert!(text.contains(r#""keys":{"percent":"5.5","seed":"1"}"#), "{text}");
}

#[test]
fn scenario_refuses_what_enable_refuses_and_writes_nothing() {
    let d = tmp();
    for (flags, needle) in [
        (&["--xid", "999"][..], "unknown XID 999"),
        (&["--percent", "0"][..], "'0' is not above 0 and at most 100"),
        (&["--count", "0"][..], "--count"),
        (&["--functions", "cuGetErrorString"][..], "cuGetErrorString"),
        (&["--mode", "explode"][..], "--mode"),
        (&["--devices", "64"][..], "--devices"),
        (&["--no-such-key", "1"][..], "unexpected argument '--no-such-key'"),
    ] {
        for json in [false, true] {
            let mut cmd = cf();
            cmd.current_dir(d.path()).arg("scenario").args(flags);
            if json {
                cmd.arg("--json");
            }
            let err = fails(&mut cmd, 2);
            assert!(err.contains(needle), "{flags:?}: {err}");
        }
    }
    assert!(fs::read_dir(d.path()).unwrap().next().is_none(), "scenario writes nothing");
}

#[test]
fn enable_disable_clean_json_print_the_status_read_after_the_change() {
    let d = tmp();
    let f = d.path().join("toggle");
    let status = |f: &Path| one_object(&cf().args(["status", "--json", "--file", p(f)]).output().unwrap().stdout);

    let v = one_object(
        &cf().args(["enable", "--json", "--file", p(&f), "--xid", "48", "--count", "2"]).output().unwrap().stdout,
    );
    assert_eq!(v, status(&f));
    assert_eq!((v["state"].as_str(), v["xid"].as_u64(), v["count"].as_u64()), (Some("on"), Some(48), Some(2)));
    assert_eq!(v["raw"], "1 48 count=2\n");

    let v = one_object(&cf().args(["disable", "--json", "--file", p(&f)]).output().unwrap().stdout);
    assert_eq!(v, status(&f));
    assert_eq!((v["state"].as_str(), v["raw"].as_str()), (Some("off"), Some("0\n")));

    let v = one_object(&cf().args(["clean", "--json", "--file", p(&f)]).output().unwrap().stdout);
    assert_eq!(v, status(&f));
    assert_eq!((v["state"].as_str(), v["present"].as_bool()), (Some("absent"), Some(false)));
    assert!(!f.exists());
    // Already absent: the same object.
    let again = one_object(&cf().args(["clean", "--json", "--file", p(&f)]).output().unwrap().stdout);
    assert_eq!(again, v);
}

#[test]
fn json_failures_print_nothing_on_stdout() {
    let d = tmp();
    let link = d.path().join("link");
    std::os::unix::fs::symlink(d.path().join("elsewhere"), &link).unwrap();
    for verb in [&["enable", "--xid", "48"][..], &["disable"], &["clean"]] {
        let err = fails(cf().args(verb).args(["--json", "--file", p(&link)]), 40);
        assert!(err.contains("symbolic link"), "{err}");
    }
    assert!(!d.path().join("elsewhere").exists());
    let err = fails(cf().args(["enable", "--json", "--percent", "101", "--file", p(&d.path().join("t"))]), 2);
    assert!(err.contains("--percent"), "{err}");
    assert!(!d.path().join("t").exists());
}
