//! What a hostile tester did to the shim, each a bug a user could hit: a CUDA call from a signal
//! handler during the first CUDA call, a daemon whose data file lands on fd 2, forks in the middle
//! of a publication, a musl program in the same container, 64 threads on 2 cores with
//! `CUDA_FAULT_POLL_MS=0`, and the shim and the helper disagreeing about a toggle file.

use std::fs;
use std::time::Duration;

use cuda_fault_tests::{finish, fixture, helper_path, run, scratch_dir, shim_lines, shipped, spawn, write_atomic};

const T: Duration = Duration::from_secs(60);

#[test]
fn a_cuda_call_from_a_signal_handler_during_the_first_call_never_hangs() {
    let dir = scratch_dir("signal");
    let toggle = dir.join("absent").display().to_string();
    for round in 0..20 {
        for enabled in ["0", "1"] {
            let env = [("CUDA_FAULT_TOGGLE_FILE", toggle.as_str()), ("CUDA_FAULT_INJECTION_ENABLED", enabled)];
            let r = run(&fixture("signal_probe"), &["200"], &env, true, Duration::from_secs(20));
            assert!(!r.timed_out, "round {round}, enabled={enabled}: hung\n{}", r.describe());
            let line = r.lines().last().copied().unwrap_or("").to_string();
            let f: Vec<&str> = line.split(' ').collect();
            assert_eq!(f[..2], ["signal", "ok"], "{}", r.describe());
            assert!(f[2].parse::<u32>().unwrap() > 0, "the handler never ran: {line}");
            assert_eq!(f[3], if enabled == "1" { "100" } else { "0" }, "{}", r.describe());
        }
    }
}

#[test]
fn log_lines_never_land_in_a_file_the_application_opened_on_fd_2() {
    let dir = scratch_dir("daemon-fds");
    let toggle = dir.join("absent").display().to_string();
    let d = dir.display().to_string();
    let env = [("CUDA_FAULT_TOGGLE_FILE", toggle.as_str()), ("CUDA_FAULT_INJECTION_ENABLED", "1")];
    let r = run(&fixture("fd_probe"), &[&d], &env, true, T);
    assert!(r.success(), "{}", r.describe());
    assert_eq!(fs::read_to_string(dir.join("result")).unwrap(), "cudaMalloc 100\n", "the fault was on");
    for i in 0..3 {
        assert_eq!(
            fs::read_to_string(dir.join(format!("data{i}"))).unwrap(),
            format!("data {i}\nend {i}\n"),
            "data{i}"
        );
    }
    assert_eq!(r.stderr, "", "the original stderr was closed by the program");
    // The same program with its stderr kept: the lines reach it.
    let r = run(&fixture("workload"), &["1"], &env, true, T);
    assert!(r.stderr.contains("[XID 79 SIM]"), "{}", r.describe());
}

#[test]
fn forks_in_the_middle_of_a_publication_never_leave_a_child_spinning() {
    let dir = scratch_dir("fork-storm");
    let file = dir.join("toggle");
    write_atomic(&file, b"1 79 after_calls=1\n");
    let f = file.display().to_string();
    let env = [("CUDA_FAULT_TOGGLE_FILE", f.as_str()), ("CUDA_FAULT_POLL_MS", "1")];
    let child = spawn(&fixture("fork_storm"), &["2000"], &env, true);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flipper = {
        let (stop, file) = (stop.clone(), file.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Two scenarios in turn: every poll publishes a new one.
                let line = format!("1 79 after_calls={}\n", 1 + i % 2);
                write_atomic(&file, line.as_bytes());
                i += 1;
                std::thread::sleep(Duration::from_micros(300));
            }
        })
    };
    let r = finish(child, Duration::from_secs(600));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flipper.join().unwrap();
    let line = r.lines().last().copied().unwrap_or("").to_string();
    assert!(line.starts_with("forks 2000 hung 0 faulted "), "{}", r.describe());
    let faulted: u32 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(faulted > 0, "the children saw the fault: {line}");
}

#[test]
fn the_shipped_shim_loads_into_a_musl_program_and_stays_out_of_its_way() {
    assert_eq!(
        env!("CUDA_FAULT_MUSL_PROBE"),
        "1",
        "musl-gcc was not found when the tests were built: apt install musl-tools, then rebuild"
    );
    // The shipped build (manifests/image/build.sh): a plain `cargo build` also needs the glibc
    // loader by name.
    let shim = shipped("x86_64").shim.display().to_string();
    let dir = scratch_dir("musl");
    let file = dir.join("toggle");
    write_atomic(&file, b"1 79\n");
    let f = file.display().to_string();
    let bare = run(&fixture("musl_probe"), &[], &[], false, T);
    assert!(bare.success(), "{}", bare.describe());
    assert_eq!(bare.lines(), ["musl dlsym ok", "musl thread ok", "musl fork ok", "musl ok"]);
    for extra in [vec![], vec![("CUDA_FAULT_INJECTION_ENABLED", "1"), ("CUDA_FAULT_TOGGLE_FILE", f.as_str())]] {
        let mut env = vec![("LD_PRELOAD", shim.as_str())];
        env.extend(extra);
        let r = run(&fixture("musl_probe"), &[], &env, false, T);
        assert_eq!((r.status, r.stdout.as_str(), r.stderr.as_str()), (0, bare.stdout.as_str(), ""), "{}", r.describe());
    }
    // And it still loads into glibc processes without the loader entry: one CUDA call faults.
    let r = run(
        &fixture("workload"),
        &["1"],
        &[
            ("LD_PRELOAD", shim.as_str()),
            ("CUDA_FAULT_INJECTION_ENABLED", "1"),
            ("CUDA_FAULT_TOGGLE_FILE", "/nonexistent/toggle"),
        ],
        false,
        T,
    );
    assert!(r.has_line("FAIL cudaGetDeviceCount cudaErrorNoDevice 100"), "{}", r.describe());
}

#[test]
fn with_poll_0_every_call_that_starts_after_a_change_sees_it_even_with_64_threads() {
    let dir = scratch_dir("lockstep");
    let file = dir.join("toggle");
    write_atomic(&file, b"0\n");
    let f = file.display().to_string();
    let env = [("CUDA_FAULT_TOGGLE_FILE", f.as_str()), ("CUDA_FAULT_POLL_MS", "0")];
    let r = run(&fixture("lockstep_probe"), &[&f, "64", "40"], &env, true, Duration::from_secs(300));
    assert_eq!(r.lines().last().copied(), Some("rounds 40 calls 128000 stale 0"), "{}", r.describe());
}

// ---- one grammar: the shim and `cuda-fault status` decide alike ------------------------------

/// What the shim made of a toggle file, from the lines a one-call process printed.
#[derive(Debug, PartialEq, Eq)]
enum ShimSaw {
    /// "faults ON: simulating XID n (...)<scenario> [toggle file ...]"
    On {
        xid: u64,
        scenario: String,
    },
    Off,
    /// A warning that the file is malformed or unreadable.
    Refused(String),
}

fn shim_decision(toggle: &std::path::Path) -> ShimSaw {
    let f = toggle.display().to_string();
    let env = [("CUDA_FAULT_TOGGLE_FILE", f.as_str()), ("CUDA_FAULT_SEED", "1")];
    let r = run(&fixture("flip_probe"), &["1"], &env, true, T);
    assert!(r.success(), "{}", r.describe());
    let lines = shim_lines(&r.stderr);
    let prefix = format!("[cuda-fault] toggle file {f} ");
    if let Some(l) =
        lines.iter().find(|l| l.starts_with(&prefix) && l.ends_with("faults off (write '1', '1 <xid>' or '0')"))
    {
        return ShimSaw::Refused(l.to_string());
    }
    let Some(on) = lines.iter().find_map(|l| l.strip_prefix("[cuda-fault] faults ON: simulating XID ")) else {
        return ShimSaw::Off;
    };
    let (xid, rest) = on.split_once(' ').unwrap();
    // A process-scope XID names the file, and that it does not reach this process (which started
    // after the file was written).
    let rest = rest
        .strip_suffix(&format!(" [toggle file {f}]"))
        .or_else(|| {
            rest.strip_suffix(&format!(
                " [toggle file {f}; not in this process: it started after the file was written]"
            ))
        })
        .unwrap_or_else(|| panic!("{on}"));
    // "(description)<scenario>": the description is the table's; the scenario follows it.
    let row = xid_table::find(xid.parse().unwrap()).unwrap();
    let scenario = rest.strip_prefix(&format!("({})", row.description)).unwrap().to_string();
    ShimSaw::On { xid: xid.parse().unwrap(), scenario }
}

/// What `cuda-fault status --json` says of the same file, in the same terms.
fn helper_decision(toggle: &std::path::Path) -> ShimSaw {
    let out =
        std::process::Command::new(helper_path()).args(["status", "--json", "--file"]).arg(toggle).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    match v["state"].as_str().unwrap() {
        "off" | "absent" => ShimSaw::Off,
        "invalid" => ShimSaw::Refused(v["error"].as_str().unwrap().to_string()),
        "on" => {
            let xid = v["xid"].as_u64().filter(|x| xid_table::find(*x as u32).is_some()).unwrap_or(79);
            let raw = v["raw"].as_str().unwrap();
            let toggle_grammar::Line::On { keys, .. } = toggle_grammar::parse(raw.as_bytes()).unwrap() else {
                panic!("status said on for {raw:?}")
            };
            // The shim's process has CUDA_FAULT_SEED=1 and no other scenario variable; the shim
            // says which surface and scope it applies, the XID's unless the file names them.
            let env = toggle_grammar::Scenario { seed: Some(1), ..Default::default() };
            let row = xid_table::find(xid as u32).unwrap();
            let mut scenario = keys.over(&env);
            scenario.surface = scenario.surface.or(Some(match row.surface {
                xid_table::Surface::Async => toggle_grammar::Surface::Async,
                xid_table::Surface::Immediate => toggle_grammar::Surface::Immediate,
            }));
            scenario.scope = scenario.scope.or(Some(match row.scope {
                xid_table::Scope::Process => toggle_grammar::Scope::Process,
                xid_table::Scope::Device => toggle_grammar::Scope::Device,
            }));
            ShimSaw::On { xid, scenario: scenario.to_string() }
        }
        other => panic!("state {other}"),
    }
}

fn agree(toggle: &std::path::Path) -> Result<(), String> {
    let shim = shim_decision(toggle);
    let helper = helper_decision(toggle);
    match (&shim, &helper) {
        (ShimSaw::Refused(s), ShimSaw::Refused(h)) => {
            if s.contains(h.as_str()) {
                Ok(())
            } else {
                Err(format!("shim {s:?} vs status {h:?}"))
            }
        }
        _ if shim == helper => Ok(()),
        _ => Err(format!("shim {shim:?} vs status {helper:?}: {:?}", fs::read(toggle).unwrap_or_default())),
    }
}

mod same_decision {
    use proptest::prelude::*;

    use super::*;

    fn token() -> impl Strategy<Value = String> {
        let keys: Vec<&'static str> = toggle_grammar::Key::ALL.iter().map(|k| k.name()).collect();
        prop_oneof![
            Just("1".to_string()),
            Just("0".to_string()),
            "[0-9]{1,21}",
            (prop::sample::select(keys), "[0-9a-zA-Z@,.=_-]{0,40}").prop_map(|(k, v)| format!("{k}={v}")),
            Just("devices=GPU-8f2c1a3e-1111-2222-3333-444455556666".to_string()),
            Just("functions=@launch,cudaMalloc".to_string()),
            "[ -~]{0,12}",
        ]
    }

    fn space() -> impl Strategy<Value = String> {
        prop::sample::select(vec![" ", "  ", "\t", "\n", "\r\n", "\x0b", "\x0c"]).prop_map(String::from)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        #[test]
        fn the_same_bytes_give_the_same_decision(words in prop::collection::vec((token(), space()), 0..7),
                                                  pad in 0usize..1100, raw in prop::collection::vec(any::<u8>(), 0..40)) {
            let dir = scratch_dir("agree-bytes");
            let file = dir.join("toggle");
            let mut text: Vec<u8> = words.iter().flat_map(|(w, s)| [w.as_bytes(), s.as_bytes()].concat()).collect();
            if pad > 1000 {
                // Past the limit (or just under it): both sides must draw the line at 1024 bytes.
                text.resize(pad, b' ');
            }
            if pad % 7 == 0 {
                text.extend_from_slice(&raw);
            }
            write_atomic(&file, &text);
            prop_assert_eq!(agree(&file), Ok(()));
        }

        #[test]
        fn what_enable_writes_the_shim_turns_on_as_status_says(
            xid in prop::option::of(prop::sample::select(vec!["79", "48", "13", "999", "0"])),
            devices in prop::option::of(prop::sample::select(vec!["1", "63", "64", "0,1", "GPU-12345678-abcd",
                "GPU-8f2c1a3e-1111-2222-3333-444455556666", ""])),
            after_calls in prop::option::of(prop::sample::select(vec!["0", "5", "18446744073709551615", "18446744073709551616", "x"])),
            after in prop::option::of(prop::sample::select(vec!["5s", "750", "1.5s", "18446744073709551615", "soon"])),
            mode in prop::option::of(prop::sample::select(vec!["error", "hang", "crash"])),
            sticky in prop::option::of(prop::sample::select(vec!["--sticky", "--sticky=false", "--sticky=2"])),
            percent in prop::option::of(prop::sample::select(vec!["5", "0.1", "100", "0", "101", "0.0000001"])),
            count in prop::option::of(prop::sample::select(vec!["1", "3", "0"])),
            functions in prop::option::of(prop::sample::select(vec!["@launch", "cudaMalloc,cuLaunchKernel", "nope", "cuGetErrorString"])),
        ) {
            let dir = scratch_dir("agree-flags");
            let file = dir.join("toggle");
            let mut args: Vec<String> = vec!["enable".into(), "--file".into(), file.display().to_string()];
            for (flag, v) in [("--xid", xid), ("--devices", devices), ("--after-calls", after_calls), ("--after", after),
                              ("--mode", mode), ("--percent", percent), ("--count", count), ("--functions", functions)] {
                if let Some(v) = v {
                    args.push(flag.into());
                    args.push(v.into());
                }
            }
            if let Some(s) = sticky {
                args.push(s.into());
            }
            let out = std::process::Command::new(helper_path()).args(&args).output().unwrap();
            match out.status.code() {
                Some(0) => {
                    // Whatever the helper writes, the shim accepts: on, as status says.
                    prop_assert!(matches!(shim_decision(&file), ShimSaw::On { .. }), "{:?}", fs::read_to_string(&file));
                    prop_assert_eq!(agree(&file), Ok(()));
                }
                Some(2) => {
                    prop_assert!(!file.exists(), "exit 2 but {:?} written", args);
                    prop_assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
                }
                other => prop_assert!(false, "exit {:?}: {}", other, String::from_utf8_lossy(&out.stderr)),
            }
        }
    }
}

#[test]
fn a_toggle_path_that_cannot_exist_lets_the_environment_decide_as_a_missing_file_does() {
    let too_long = format!("/tmp/{}", "x".repeat(5000));
    let long_name = format!("/tmp/{}", "y".repeat(300));
    for (path, warning) in [
        (too_long.as_str(), Some(format!("[cuda-fault] CUDA_FAULT_TOGGLE_FILE='{}...' is not a usable path (empty or longer than 4095 bytes); no toggle file: the environment decides", &too_long[..48]))),
        (long_name.as_str(), None),
    ] {
        let env = [("CUDA_FAULT_TOGGLE_FILE", path), ("CUDA_FAULT_INJECTION_ENABLED", "1")];
        let r = run(&fixture("workload"), &["1"], &env, true, T);
        assert!(r.has_line("FAIL cudaGetDeviceCount cudaErrorNoDevice 100"), "{}", r.describe());
        let lines = shim_lines(&r.stderr);
        match &warning {
            Some(w) => assert_eq!(lines[0], w, "{}", r.describe()),
            None => assert!(lines[0].starts_with("[cuda-fault] faults ON: simulating XID 79"), "{}", r.describe()),
        }
        assert!(!lines.iter().any(|l| l.contains("cannot be read")), "{}", r.describe());
    }
}
