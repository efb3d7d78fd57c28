//! The shim on the fake CUDA runtime: every XID's runtime error, env and toggle-file
//! configuration, bad input of every kind, threads, and silence in processes that never call CUDA.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::{Duration, Instant};

use cuda_fault_tests::{
    finish, fixture, run, scratch_dir, shim_lines, spawn, workload_under, write_atomic, Run, DEFAULT_TIMEOUT,
};

const T: Duration = Duration::from_secs(30);

fn workload(env: &[(&str, &str)], preload: bool) -> Run {
    run(&fixture("workload"), &["3"], env, preload, T)
}

/// The environment of a run whose toggle file is `toggle` (which may not exist).
fn with_toggle<'a>(toggle: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![("CUDA_FAULT_TOGGLE_FILE", toggle)];
    env.extend_from_slice(extra);
    env
}

fn assert_passes(r: &Run) {
    assert!(r.success() && r.has_line("workload ok"), "expected a clean run:\n{}", r.describe());
}

/// The workload stopped with `code`/`name` where XID `xid`'s behaviour says (at the device
/// count when the GPU is lost, at cudaSetDevice when it is kept, at the first synchronize when
/// the fault is asynchronous), and the shim said so.
fn assert_fails_with(r: &Run, xid: u32, name: &str, code: u32) {
    let row = xid_table::find(xid).unwrap();
    assert_eq!((row.runtime.name, row.runtime.code), (name, code), "the XID table changed");
    let (lines, function) = workload_under(&row);
    assert_eq!(r.status, 1, "{}", r.describe());
    assert_eq!(r.lines(), lines, "{}", r.describe());
    let sim = format!("[XID {xid} SIM] {function} -> {name} ({code})");
    assert!(r.stderr.lines().any(|l| l == sim), "missing '{sim}':\n{}", r.describe());
}

#[test]
fn every_xid_in_the_table_fails_the_workload_with_its_runtime_error() {
    let dir = scratch_dir("every-xid");
    let toggle = dir.join("absent").display().to_string();
    for row in xid_table::table() {
        let xid = row.xid.to_string();
        let r =
            workload(&with_toggle(&toggle, &[("CUDA_FAULT_INJECTION_ENABLED", "1"), ("CUDA_XID_TYPE", &xid)]), true);
        assert_fails_with(&r, row.xid, row.runtime.name, row.runtime.code);
        assert!(
            r.stderr
                .lines()
                .next()
                .unwrap_or("")
                .starts_with(&format!("[cuda-fault] faults ON: simulating XID {xid} (")),
            "{}",
            r.describe()
        );
        // The same XID through the toggle file instead of the environment, written a while before
        // the workload starts: an XID of process scope leaves it alone.
        let file = dir.join(format!("toggle-{xid}"));
        write_atomic(&file, format!("1 {xid}\n").as_bytes());
        let aged = std::time::SystemTime::now() - Duration::from_secs(2);
        std::fs::File::options().write(true).open(&file).unwrap().set_modified(aged).unwrap();
        let f = file.display().to_string();
        let r = workload(&with_toggle(&f, &[]), true);
        match row.scope {
            xid_table::Scope::Device => assert_fails_with(&r, row.xid, row.runtime.name, row.runtime.code),
            xid_table::Scope::Process => assert_passes(&r),
        }
    }
}

#[test]
fn default_xid_is_79_and_device_counts_read_zero() {
    let dir = scratch_dir("default-79");
    let toggle = dir.join("absent").display().to_string();
    let r = workload(&with_toggle(&toggle, &[("CUDA_FAULT_INJECTION_ENABLED", "true")]), true);
    assert_fails_with(&r, 79, "cudaErrorNoDevice", 100);
    // The count out-pointers (the `count` flag of hooks.list): the real function would have
    // written them; the shim writes 0 and survives a NULL one.
    let off = run(&fixture("count_probe"), &[], &with_toggle(&toggle, &[]), true, T);
    assert_eq!(
        off.lines(),
        ["cudaGetDeviceCount 0 2", "cuDeviceGetCount 0 2", "cudaGetDeviceCount(NULL) 1"],
        "{}",
        off.describe()
    );
    let on =
        run(&fixture("count_probe"), &[], &with_toggle(&toggle, &[("CUDA_FAULT_INJECTION_ENABLED", "1")]), true, T);
    assert_eq!(
        on.lines(),
        ["cudaGetDeviceCount 100 0", "cuDeviceGetCount 100 0", "cudaGetDeviceCount(NULL) 100"],
        "{}",
        on.describe()
    );
}

#[test]
fn faults_off_output_is_identical_to_running_without_the_shim() {
    let dir = scratch_dir("identical");
    let absent = dir.join("absent").display().to_string();
    let zero = dir.join("zero");
    write_atomic(&zero, b"0\n");
    let zero = zero.display().to_string();
    for program in ["workload", "workload_ptds", "rt_probe", "threads"] {
        let args: &[&str] = if program == "threads" { &["4", "2000"] } else { &[] };
        let bare = run(&fixture(program), args, &with_toggle(&absent, &[]), false, T);
        assert!(bare.success(), "{}", bare.describe());
        for env in [
            with_toggle(&absent, &[]),
            with_toggle(&absent, &[("CUDA_FAULT_INJECTION_ENABLED", "0")]),
            // A toggle file saying 0 wins over the environment saying 1.
            with_toggle(&zero, &[("CUDA_FAULT_INJECTION_ENABLED", "1")]),
        ] {
            let shim = run(&fixture(program), args, &env, true, T);
            assert_eq!(
                (shim.status, &shim.stdout, &shim.stderr),
                (bare.status, &bare.stdout, &bare.stderr),
                "{program} under the shim with {env:?} differs:\n{}",
                shim.describe()
            );
        }
    }
}

#[test]
fn the_toggle_file_wins_over_the_environment_in_both_directions() {
    let dir = scratch_dir("file-wins");
    let file = dir.join("toggle");
    let f = file.display().to_string();
    write_atomic(&file, b"1 48\n");
    let r = workload(&with_toggle(&f, &[("CUDA_FAULT_INJECTION_ENABLED", "0"), ("CUDA_XID_TYPE", "79")]), true);
    assert_fails_with(&r, 48, "cudaErrorECCUncorrectable", 214);
    // "1" alone uses the environment's XID.
    write_atomic(&file, b"1\n");
    let r = workload(&with_toggle(&f, &[("CUDA_XID_TYPE", "95")]), true);
    assert_fails_with(&r, 95, "cudaErrorUnknown", 999);
    write_atomic(&file, b"0\n");
    assert_passes(&workload(&with_toggle(&f, &[("CUDA_FAULT_INJECTION_ENABLED", "1")]), true));
    std::fs::remove_file(&file).unwrap();
    // Absent: the environment decides again.
    let r = workload(&with_toggle(&f, &[("CUDA_FAULT_INJECTION_ENABLED", "1")]), true);
    assert_fails_with(&r, 79, "cudaErrorNoDevice", 100);
    assert_passes(&workload(&with_toggle(&f, &[]), true));
}

/// Starts the endless workload, waits for `steps` good steps, and returns the child with its
/// stdout reader.
fn start_forever(env: &[(&str, &str)], steps: usize) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut env = env.to_vec();
    env.push(("WORKLOAD_FOREVER", "1"));
    let mut child = spawn(&fixture("workload"), &["0", "2"], &env, true);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut seen = 0;
    let mut line = String::new();
    while seen < steps {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "workload ended early");
        if line.starts_with("step ") {
            seen += 1;
        }
    }
    (child, out)
}

#[test]
fn a_toggle_written_while_the_loop_runs_makes_it_fail_then_new_runs_pass_after_0_or_removal() {
    let dir = scratch_dir("live-toggle");
    let file = dir.join("toggle");
    let f = file.display().to_string();
    let (child, mut out) = start_forever(&with_toggle(&f, &[]), 5);
    write_atomic(&file, b"1 48\n");
    let written = Instant::now();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let reaction = written.elapsed();
    let r = finish(child, T);
    assert_eq!(r.status, 1, "{}\n{rest}", r.describe());
    assert!(
        rest.lines().any(|l| l.starts_with("FAIL ") && l.ends_with(" cudaErrorECCUncorrectable 214")),
        "no ECC failure after the toggle:\n{rest}\n{}",
        r.describe()
    );
    // Poll interval 10 ms; the bound is loose because this is a correctness test on a shared
    // 2-core machine, not a benchmark (bench/run.sh measures the reaction).
    assert!(reaction < Duration::from_secs(2), "took {reaction:?}");
    let on = format!(
        "[cuda-fault] faults ON: simulating XID 48 (Double-bit ECC error) (surface immediate; scope device) [toggle file {f}]"
    );
    assert!(shim_lines(&r.stderr).contains(&on.as_str()), "{}", r.describe());

    // Turning it off mid-run: the next runs pass.
    write_atomic(&file, b"0\n");
    assert_passes(&workload(&with_toggle(&f, &[]), true));
    write_atomic(&file, b"1\n");
    assert_eq!(workload(&with_toggle(&f, &[]), true).status, 1);
    std::fs::remove_file(&file).unwrap();
    assert_passes(&workload(&with_toggle(&f, &[]), true));
}

#[test]
fn with_poll_0_every_call_checks_the_file() {
    let dir = scratch_dir("poll0");
    let file = dir.join("toggle");
    let f = file.display().to_string();
    let (child, mut out) = start_forever(&with_toggle(&f, &[("CUDA_FAULT_POLL_MS", "0")]), 3);
    write_atomic(&file, b"1 31\n");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let r = finish(child, T);
    assert_eq!(r.status, 1, "{}", r.describe());
    assert!(rest.lines().any(|l| l.ends_with("cudaErrorIllegalAddress 700")), "{rest}");
}

/// Bad toggle content or a path that is not a plain file: the run ends normally (no hang, no
/// crash), faults are off, and the shim says why in exactly one line.
fn assert_bad_toggle(path: &Path, env_on: bool, needle: &str) {
    let f = path.display().to_string();
    let extra: &[(&str, &str)] = if env_on { &[("CUDA_FAULT_INJECTION_ENABLED", "1")] } else { &[] };
    let r = workload(&with_toggle(&f, extra), true);
    assert!(!r.timed_out, "hung on {f}");
    assert_passes(&r);
    let lines = shim_lines(&r.stderr);
    assert_eq!(lines.len(), 1, "expected one warning for {f}:\n{}", r.describe());
    assert!(lines[0].starts_with(&format!("[cuda-fault] toggle file {f} ")), "{}", lines[0]);
    assert!(lines[0].contains(needle), "'{}' should say '{needle}'", lines[0]);
    assert!(lines[0].ends_with("faults off") || lines[0].contains("faults off ("), "{}", lines[0]);
}

#[test]
fn bad_toggle_contents_turn_faults_off_with_one_warning() {
    let dir = scratch_dir("bad-content");
    let cases: &[(&str, &[u8], &str)] = &[
        ("empty", b"", "is empty"),
        ("blank", b"  \n\t\n", "is empty"),
        ("true", b"true\n", "starts with 'true', not the word 1 or 0"),
        ("two", b"2\n", "starts with '2', not the word 1 or 0"),
        ("glued", b"1abc\n", "starts with '1abc', not the word 1 or 0"),
        ("binary", b"\x00\xff\x01\x02garbage", "starts with '\\x00\\xff\\x01\\x02garbage', not the word 1 or 0"),
        ("words", b"1 48 49\n", "'49' is neither the XID (right after 1) nor key=value"),
        ("xid-word", b"1 abc\n", "'abc' is neither the XID (right after 1) nor key=value"),
        ("vertical-tab", b"1\x0b48 49", "'49' is neither the XID (right after 1) nor key=value"),
    ];
    for (name, content, needle) in cases {
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        assert_bad_toggle(&p, true, needle);
    }
    // A huge file: only the first bytes are read, and a file longer than the grammar allows is
    // refused whole, never parsed from a cut (which could read a truncated XID).
    let huge = dir.join("huge");
    std::fs::write(&huge, vec![b'1'; 8 << 20]).unwrap();
    assert_bad_toggle(&huge, true, "is longer than 1024 bytes");
    let cut = dir.join("cut");
    std::fs::write(&cut, format!("1 {}", "7".repeat(1030))).unwrap();
    assert_bad_toggle(&cut, true, "is longer than 1024 bytes");
}

#[test]
fn toggle_paths_that_are_not_readable_files_never_block_or_crash() {
    let dir = scratch_dir("bad-path");
    // A FIFO with no writer: a blocking open would hang forever.
    let fifo = dir.join("fifo");
    let c = std::ffi::CString::new(fifo.display().to_string()).unwrap();
    // SAFETY: mkfifo on a NUL-terminated path.
    assert_eq!(unsafe { libc_mkfifo(c.as_ptr(), 0o644) }, 0);
    assert_bad_toggle(&fifo, true, "is not a readable regular file");
    let sub = dir.join("a-directory");
    std::fs::create_dir(&sub).unwrap();
    assert_bad_toggle(&sub, true, "is not a readable regular file");
    let (a, b) = (dir.join("loop-a"), dir.join("loop-b"));
    std::os::unix::fs::symlink(&b, &a).unwrap();
    std::os::unix::fs::symlink(&a, &b).unwrap();
    assert_bad_toggle(&a, true, "cannot be read (errno 40)");
    // A dangling symlink is an absent file: the environment decides, silently.
    let dangling = dir.join("dangling");
    std::os::unix::fs::symlink(dir.join("nowhere"), &dangling).unwrap();
    let d = dangling.display().to_string();
    let r = workload(&with_toggle(&d, &[("CUDA_FAULT_INJECTION_ENABLED", "1")]), true);
    assert_fails_with(&r, 79, "cudaErrorNoDevice", 100);
    // A symlink to a good file is followed.
    let good = dir.join("good");
    write_atomic(&good, b"1 95\n");
    let link = dir.join("link");
    std::os::unix::fs::symlink(&good, &link).unwrap();
    let l = link.display().to_string();
    assert_fails_with(&workload(&with_toggle(&l, &[]), true), 95, "cudaErrorUnknown", 999);
}

unsafe extern "C" {
    #[link_name = "mkfifo"]
    fn libc_mkfifo(path: *const std::ffi::c_char, mode: u32) -> i32;
}

#[test]
fn an_unreadable_toggle_file_turns_faults_off_with_one_warning() {
    // Root reads any file, so run the workload as nobody against a root-only file.
    let dir = scratch_dir("unreadable");
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let file = dir.join("toggle");
    std::fs::write(&file, b"1\n").unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let f = file.display().to_string();
    let prog = fixture("workload").display().to_string();
    let setpriv = Path::new("/usr/bin/setpriv");
    assert!(setpriv.exists(), "setpriv (util-linux) is needed to drop root for this test");
    let args = ["--reuid=65534", "--regid=65534", "--clear-groups", prog.as_str(), "3"];
    let r = run(setpriv, &args, &with_toggle(&f, &[("CUDA_FAULT_INJECTION_ENABLED", "1")]), true, T);
    assert_passes(&r);
    let lines = shim_lines(&r.stderr);
    assert_eq!(
        lines,
        [format!("[cuda-fault] toggle file {f} is not a readable regular file; faults off")],
        "{}",
        r.describe()
    );
}

#[test]
fn an_unsupported_xid_in_the_toggle_file_warns_and_uses_the_environment_xid() {
    let dir = scratch_dir("bad-file-xid");
    let file = dir.join("toggle");
    write_atomic(&file, b"1 999999\n");
    let f = file.display().to_string();
    let r = workload(&with_toggle(&f, &[("CUDA_XID_TYPE", "48")]), true);
    assert_fails_with(&r, 48, "cudaErrorECCUncorrectable", 214);
    let supported = xid_table::supported_list();
    assert_eq!(
        shim_lines(&r.stderr)[0],
        format!("[cuda-fault] toggle file {f} names XID 999999, which is not supported (supported: {supported}); simulating XID 48")
    );
}

#[test]
fn bad_environment_values_give_one_line_and_the_documented_fallback() {
    let dir = scratch_dir("bad-env");
    let toggle = dir.join("absent").display().to_string();
    let supported = xid_table::supported_list();
    for bad in ["abc", "999999", "", "79x", "-1"] {
        let r = workload(&with_toggle(&toggle, &[("CUDA_FAULT_INJECTION_ENABLED", "1"), ("CUDA_XID_TYPE", bad)]), true);
        assert_fails_with(&r, 79, "cudaErrorNoDevice", 100);
        let warn = format!(
            "[cuda-fault] CUDA_XID_TYPE='{bad}' is not a supported XID (supported: {supported}); simulating XID 79"
        );
        let lines = shim_lines(&r.stderr);
        assert_eq!(lines.iter().filter(|l| **l == warn).count(), 1, "{}", r.describe());
    }
    let r = workload(&with_toggle(&toggle, &[("CUDA_FAULT_INJECTION_ENABLED", "yes")]), true);
    assert_passes(&r);
    assert_eq!(
        shim_lines(&r.stderr),
        ["[cuda-fault] CUDA_FAULT_INJECTION_ENABLED='yes' is not 1, true, 0 or false; faults stay off"]
    );
    let r = workload(&with_toggle(&toggle, &[("CUDA_FAULT_POLL_MS", "soon")]), true);
    assert_passes(&r);
    assert_eq!(
        shim_lines(&r.stderr),
        ["[cuda-fault] CUDA_FAULT_POLL_MS='soon' is not a number of milliseconds (0..=3600000); using 10"]
    );
    // CUDA_FAULT_LOG=0 silences everything, faults included.
    let r = workload(
        &with_toggle(
            &toggle,
            &[("CUDA_FAULT_INJECTION_ENABLED", "1"), ("CUDA_XID_TYPE", "abc"), ("CUDA_FAULT_LOG", "0")],
        ),
        true,
    );
    assert_eq!(r.status, 1);
    assert_eq!(r.stderr, "", "{}", r.describe());
}

#[test]
fn processes_that_never_call_cuda_print_nothing_and_start_no_thread() {
    let dir = scratch_dir("silent");
    let toggle = dir.join("toggle");
    std::fs::write(&toggle, b"garbage").unwrap();
    let t = toggle.display().to_string();
    let env = with_toggle(
        &t,
        &[("CUDA_FAULT_INJECTION_ENABLED", "bogus"), ("CUDA_XID_TYPE", "abc"), ("CUDA_FAULT_POLL_MS", "x")],
    );
    for (prog, args) in [
        ("/bin/sh", vec!["-c", "true; echo hi; ls / >/dev/null"]),
        ("/bin/ls", vec!["/"]),
        ("/usr/bin/env", vec!["true"]),
    ] {
        let r = run(Path::new(prog), &args, &env, true, T);
        assert_eq!(r.status, 0, "{prog}: {}", r.describe());
        assert_eq!(r.stderr, "", "{prog} printed on stderr:\n{}", r.describe());
    }
    let py = cuda_fault_tests::python3();
    let r = run(
        &py,
        &["-c", "import threading, os; print(threading.active_count(), len(os.listdir('/proc/self/task')))"],
        &env,
        true,
        T,
    );
    assert_eq!((r.status, r.stdout.trim(), r.stderr.as_str()), (0, "1 1", ""), "{}", r.describe());
}

#[test]
fn threads_see_only_success_or_the_configured_error_while_the_toggle_flips() {
    let dir = scratch_dir("threads-flip");
    let file = dir.join("toggle");
    let f = file.display().to_string();
    write_atomic(&file, b"0\n");
    let child = spawn(&fixture("threads"), &["8", "60000"], &with_toggle(&f, &[("CUDA_FAULT_POLL_MS", "0")]), true);
    let start = Instant::now();
    let mut flips = 0;
    while start.elapsed() < Duration::from_millis(1500) {
        write_atomic(&file, if flips % 2 == 0 { b"1 48\n" } else { b"0\n" });
        flips += 1;
        std::thread::sleep(Duration::from_millis(3));
    }
    let r = finish(child, DEFAULT_TIMEOUT);
    assert!(r.success(), "{}", r.describe());
    let codes: Vec<&str> = r.stdout.trim().strip_prefix("codes ").unwrap().split(' ').collect();
    for c in &codes {
        let code = c.split(':').next().unwrap();
        assert!(code == "0" || code == "214", "unexpected code {c} in {codes:?}");
    }
    assert!(codes.iter().any(|c| c.starts_with("214:")), "the fault never showed: {codes:?} after {flips} flips");
    assert!(codes.iter().any(|c| c.starts_with("0:")), "{codes:?}");
}

#[test]
fn a_million_failing_calls_print_a_bounded_handful_of_lines() {
    let dir = scratch_dir("bounded-log");
    let toggle = dir.join("absent").display().to_string();
    let r = run(
        &fixture("threads"),
        &["8", "50000"],
        &with_toggle(&toggle, &[("CUDA_FAULT_INJECTION_ENABLED", "1"), ("CUDA_XID_TYPE", "95")]),
        true,
        DEFAULT_TIMEOUT,
    );
    assert!(r.success(), "{}", r.describe());
    // 8 threads x 50000 iterations x 3 calls, all failing.
    assert_eq!(r.stdout.trim(), "codes 999:1200000", "{}", r.describe());
    let lines = shim_lines(&r.stderr);
    assert!(lines.len() <= 4, "too many lines:\n{}", r.stderr);
    assert_eq!(lines.iter().filter(|l| l.starts_with("[XID 95 SIM] cudaMalloc -> cudaErrorUnknown (999)")).count(), 1);
}

#[test]
fn a_toggle_replaced_by_rename_mid_read_is_always_read_whole() {
    let dir = scratch_dir("rename-race");
    let file = dir.join("toggle");
    let f = file.display().to_string();
    write_atomic(&file, b"0\n");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, file) = (stop.clone(), file.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                write_atomic(&file, if i.is_multiple_of(2) { b"1 74\n" } else { b"0\n" });
                i += 1;
            }
            i
        })
    };
    let r = run(
        &fixture("threads"),
        &["4", "40000"],
        &with_toggle(&f, &[("CUDA_FAULT_POLL_MS", "0")]),
        true,
        DEFAULT_TIMEOUT,
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = writer.join().unwrap();
    assert!(r.success(), "{}", r.describe());
    for c in r.stdout.trim().strip_prefix("codes ").unwrap().split(' ') {
        let code = c.split(':').next().unwrap();
        assert!(code == "0" || code == "217", "unexpected {c} after {writes} renames");
    }
    // Every line is a fault, or an ON/OFF change: never a complaint about the file.
    for line in shim_lines(&r.stderr) {
        assert!(
            line.starts_with("[XID 74 SIM] ") || line.starts_with("[cuda-fault] faults O"),
            "a rename was seen as a bad file: {line}"
        );
    }
}

#[test]
fn a_plugin_loaded_with_rtld_local_reaches_the_real_runtime_when_faults_are_off() {
    let dir = scratch_dir("rtld-local");
    let toggle = dir.join("absent").display().to_string();
    let plugin = fixture("libplugin.so").display().to_string();
    let bare = run(&fixture("plugin_host"), &[&plugin], &with_toggle(&toggle, &[]), false, T);
    let shim = run(&fixture("plugin_host"), &[&plugin], &with_toggle(&toggle, &[]), true, T);
    assert!(bare.has_line("plugin ok"), "{}", bare.describe());
    assert_eq!(
        (shim.status, &shim.stdout, &shim.stderr),
        (bare.status, &bare.stdout, &bare.stderr),
        "{}",
        shim.describe()
    );
    let on = run(
        &fixture("plugin_host"),
        &[&plugin],
        &with_toggle(&toggle, &[("CUDA_FAULT_INJECTION_ENABLED", "1")]),
        true,
        T,
    );
    assert!(!on.has_line("plugin ok"), "{}", on.describe());
    assert!(on.stderr.contains("[XID 79 SIM] cudaGetDeviceCount -> cudaErrorNoDevice (100)"), "{}", on.describe());
}

#[test]
fn per_thread_default_stream_entry_points_are_interposed() {
    let dir = scratch_dir("ptds");
    // Faults turn on after the workload started, so they hit the _ptsz/_ptds calls of its loop.
    let file = dir.join("toggle");
    let f = file.display().to_string();
    write_atomic(&file, b"0\n");
    let mut child = spawn(
        &fixture("workload_ptds"),
        &["0", "2"],
        &[("CUDA_FAULT_TOGGLE_FILE", f.as_str()), ("WORKLOAD_FOREVER", "1")],
        true,
    );
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("step 2") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0);
    }
    write_atomic(&file, b"1 48\n");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let r = finish(child, T);
    assert_eq!(r.status, 1, "{rest}\n{}", r.describe());
    let fail = rest.lines().find(|l| l.starts_with("FAIL ")).unwrap_or_default();
    assert!(fail.ends_with("cudaErrorECCUncorrectable 214"), "{rest}");
    assert!(
        r.stderr.lines().any(|l| l.starts_with("[XID 48 SIM] cuda") && (l.contains("_ptsz ") || l.contains("_ptds "))),
        "no per-thread entry point faulted:\n{}",
        r.stderr
    );
}

#[test]
fn a_forked_child_restarts_the_poller_and_sees_the_toggle() {
    let dir = scratch_dir("fork");
    let file = dir.join("toggle");
    let f = file.display().to_string();
    write_atomic(&file, b"0\n");
    let mut child = spawn(&fixture("fork_probe"), &[], &with_toggle(&f, &[]), true);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("child ready") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "fork_probe ended early");
    }
    // The child has made its first CUDA call with the toggle off; only its own poller can see this.
    assert_eq!(line.trim(), "child ready 0");
    write_atomic(&file, b"1 95\n");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let r = finish(child, T);
    assert_eq!(rest.trim(), "child saw 999", "{}", r.describe());
    assert_eq!(r.status, 0, "{}", r.describe());
}
