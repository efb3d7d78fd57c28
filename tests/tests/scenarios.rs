//! Fault scenarios beyond on/off: one GPU of many (ordinals and UUIDs, runtime, driver,
//! NVML), delayed faults (after N calls, after T ms), hang mode, sticky faults, and the same
//! settings through the toggle file, including every malformed form.

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cuda_fault_tests::calls::line_starting;
use cuda_fault_tests::{finish, fixture, run, scratch_dir, shim_lines, spawn, write_atomic, Run};

const T: Duration = Duration::from_secs(30);
/// The fake stack's device 0 and 1 UUIDs (the fake driver and the fake NVML agree).
const UUID0: &str = "GPU-fa4ec0da-0000-4000-8000-000000000000";
const UUID1: &str = "GPU-fa4ec0da-0000-4000-8000-000000000001";

fn env<'a>(toggle: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut e = vec![("CUDA_FAULT_TOGGLE_FILE", toggle)];
    e.extend_from_slice(extra);
    e
}

fn workload_on(toggle: &str, device: &str, devices: &str) -> Run {
    let e = env(
        toggle,
        &[("CUDA_FAULT_INJECTION_ENABLED", "1"), ("WORKLOAD_DEVICE", device), ("CUDA_FAULT_DEVICES", devices)],
    );
    run(&fixture("workload"), &["3"], &e, true, T)
}

#[test]
fn only_the_listed_device_fails_by_ordinal_or_uuid() {
    let dir = scratch_dir("devices");
    let toggle = dir.join("absent").display().to_string();
    for (devices, bad) in [("1", "1"), (UUID1, "1"), ("0", "0"), (UUID0, "0"), ("0,1", "both")] {
        for device in ["0", "1"] {
            let r = workload_on(&toggle, device, devices);
            let should_fail = bad == device || bad == "both";
            if should_fail {
                assert_eq!(r.status, 1, "devices={devices} device={device}:\n{}", r.describe());
                // cudaGetDeviceCount concerns every device and still answers; the device's own calls fail.
                assert!(r.has_line("devices 2"), "{}", r.describe());
                assert!(r.has_line("FAIL cudaSetDevice cudaErrorNoDevice 100"), "{}", r.describe());
            } else {
                assert!(
                    r.success() && r.has_line("workload ok"),
                    "devices={devices} device={device}:\n{}",
                    r.describe()
                );
            }
        }
    }
    let r = workload_on(&toggle, "1", "1");
    assert!(
        r.stderr.starts_with("[cuda-fault] faults ON: simulating XID 79 (GPU fell off the bus) (devices 1; surface immediate; scope device) ["),
        "{}",
        r.describe()
    );
}

#[test]
fn driver_calls_are_attributed_to_the_current_context_and_device_arguments() {
    let dir = scratch_dir("devices-driver");
    let toggle = dir.join("absent").display().to_string();
    // triton_like works on device 0 only.
    for (devices, fails) in [("1", false), (UUID1, false), ("0", true), (UUID0, true)] {
        let e = env(&toggle, &[("CUDA_FAULT_INJECTION_ENABLED", "1"), ("CUDA_FAULT_DEVICES", devices)]);
        let r = run(&fixture("triton_like"), &[], &e, true, T);
        if fails {
            // cuInit and the device count concern every device; the context of device 0 fails,
            // so the launch has no context: the driver itself answers CUDA_ERROR_INVALID_CONTEXT.
            assert_eq!(
                r.lines(),
                ["cuInit 0", "count 2", "ctx 100", "launch 201", "kernel not-run"],
                "{devices}:\n{}",
                r.describe()
            );
        } else {
            assert_eq!(
                r.lines(),
                ["cuInit 0", "count 2", "ctx 0", "launch 0", "kernel ok"],
                "{devices}:\n{}",
                r.describe()
            );
        }
    }
}

#[test]
fn nvml_handles_of_the_faulted_gpu_are_lost_while_the_others_work() {
    let dir = scratch_dir("devices-nvml");
    let toggle = dir.join("absent").display().to_string();
    // nvml_probe asks for device 0.
    let e = env(&toggle, &[("CUDA_FAULT_INJECTION_ENABLED", "1"), ("CUDA_FAULT_DEVICES", "0")]);
    let r = run(&fixture("nvml_probe"), &[], &e, true, T);
    assert!(r.has_line("nvmlInit_v2 0") && r.has_line("count 2"), "{}", r.describe());
    assert!(r.has_line("nvmlDeviceGetHandleByIndex_v2 15"), "{}", r.describe());
    for devices in ["1", UUID1] {
        let e = env(&toggle, &[("CUDA_FAULT_INJECTION_ENABLED", "1"), ("CUDA_FAULT_DEVICES", devices)]);
        let r = run(&fixture("nvml_probe"), &[], &e, true, T);
        let bare = run(&fixture("nvml_probe"), &[], &env(&toggle, &[]), false, T);
        assert_eq!(r.stdout, bare.stdout, "devices={devices} must leave device 0 alone");
    }
    let e = env(&toggle, &[("CUDA_FAULT_INJECTION_ENABLED", "1"), ("CUDA_FAULT_DEVICES", UUID0)]);
    let r = run(&fixture("nvml_probe"), &[], &e, true, T);
    assert!(r.has_line("nvmlDeviceGetHandleByIndex_v2 15"), "{}", r.describe());
}

#[test]
fn after_calls_lets_the_first_n_calls_pass() {
    let dir = scratch_dir("after-calls");
    let toggle = dir.join("absent").display().to_string();
    // driver_linked calls cuInit, cuDriverGetVersion (a lookup, never counted), cuDeviceGetCount,
    // cuDeviceGet, cuDevicePrimaryCtxRetain, ... directly.
    let e = env(&toggle, &[("CUDA_FAULT_INJECTION_ENABLED", "1"), ("CUDA_FAULT_AFTER_CALLS", "3")]);
    let r = run(&fixture("driver_linked"), &[], &e, true, T);
    assert_eq!(
        r.lines()[..6],
        [
            "cuInit 0",
            "cuDriverGetVersion 0",
            "cuDeviceGetCount 0",
            "cuDeviceGet 0",
            "cuDevicePrimaryCtxRetain 100",
            "cuCtxSetCurrent 100"
        ],
        "{}",
        r.describe()
    );
    // The same through the toggle file.
    let file = dir.join("toggle");
    write_atomic(&file, b"1 48 after_calls=1\n");
    let f = file.display().to_string();
    let r = run(&fixture("driver_linked"), &[], &env(&f, &[]), true, T);
    // Device enumeration (cuInit, the count) is not faulted by an XID that keeps the GPU, so
    // not counted: cuDeviceGet is the one call spared.
    assert_eq!(
        r.lines()[..5],
        ["cuInit 0", "cuDriverGetVersion 0", "cuDeviceGetCount 0", "cuDeviceGet 0", "cuDevicePrimaryCtxRetain 214"],
        "{}",
        r.describe()
    );
}

/// Spawns the endless workload and returns a channel of its stdout lines.
fn endless(envs: &[(&str, &str)], sleep_ms: &str) -> (std::process::Child, mpsc::Receiver<(Instant, String)>) {
    let mut e = envs.to_vec();
    e.push(("WORKLOAD_FOREVER", "1"));
    let mut child = spawn(&fixture("workload"), &["0", sleep_ms], &e, true);
    let out = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in out.lines() {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn wait_for(rx: &mpsc::Receiver<(Instant, String)>, pred: impl Fn(&str) -> bool) -> (Instant, String) {
    loop {
        let (t, l) = rx.recv_timeout(T).expect("no such line before the timeout");
        if pred(&l) {
            return (t, l);
        }
    }
}

#[test]
fn after_ms_delays_the_fault_after_turning_on() {
    let dir = scratch_dir("after-ms");
    let file = dir.join("toggle");
    let f = file.display().to_string();
    let (child, rx) = endless(&env(&f, &[]), "5");
    wait_for(&rx, |l| l == "step 2 ok");
    write_atomic(&file, b"1 48 after_ms=400\n");
    let written = Instant::now();
    let (failed_at, line) = wait_for(&rx, |l| l.starts_with("FAIL "));
    assert!(line.ends_with("cudaErrorECCUncorrectable 214"), "{line}");
    let delay = failed_at - written;
    // The lower bound is the point: the workload kept serving for the configured time.
    assert!(delay >= Duration::from_millis(400), "failed after {delay:?}");
    assert!(delay < Duration::from_secs(5), "failed after {delay:?}");
    let r = finish(child, T);
    assert_eq!(r.status, 1);
    assert!(r.stderr.contains("(after 400 ms; surface immediate; scope device)"), "{}", r.describe());
}

/// Whether thread `tid` of process `pid` is asleep in (clock_)nanosleep, read from
/// /proc/PID/task/TID/syscall (the syscall number comes first).
fn sleeping_in_nanosleep(pid: u32, tid: u32) -> bool {
    #[cfg(target_arch = "x86_64")]
    const NANOSLEEP: [&str; 2] = ["35", "230"];
    #[cfg(target_arch = "aarch64")]
    const NANOSLEEP: [&str; 2] = ["101", "115"];
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall"))
        .is_ok_and(|s| NANOSLEEP.contains(&s.split_whitespace().next().unwrap_or("")))
}

/// Waits until the main thread of `pid` sits in the shim's hang loop: it prints the hang marker
/// and then sleeps in nanosleep (the workload itself never sleeps: it runs with sleep_ms 0).
fn wait_until_hung(pid: u32, stderr: &mpsc::Receiver<String>, marker: &str) {
    let deadline = Instant::now() + T;
    loop {
        let line = stderr.recv_timeout(T).expect("no hang marker on stderr");
        if line == marker {
            break;
        }
    }
    while !sleeping_in_nanosleep(pid, pid) {
        assert!(Instant::now() < deadline, "the hung call never parked in nanosleep");
        std::thread::yield_now();
    }
}

#[test]
fn hang_mode_blocks_synchronizing_calls_until_the_toggle_goes_off() {
    let dir = scratch_dir("hang");
    let file = dir.join("toggle");
    let f = file.display().to_string();
    write_atomic(&file, b"0\n");
    let (mut child, rx) = endless(&env(&f, &[("CUDA_FAULT_MODE", "hang")]), "0");
    let err = BufReader::new(child.stderr.take().unwrap());
    let (etx, erx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in err.lines().map_while(Result::ok) {
            let _ = etx.send(line);
        }
    });
    wait_for(&rx, |l| l == "step 2 ok");
    write_atomic(&file, b"1 79\n");
    let marker = "[XID 79 SIM] cudaStreamSynchronize -> hangs (CUDA_FAULT_MODE=hang)";
    wait_until_hung(child.id(), &erx, marker);
    // Parked in the hang loop: the steps printed so far are all there will be until the toggle
    // goes off, and the process is alive.
    let mut last = String::new();
    while let Ok((_, l)) = rx.try_recv() {
        last = l;
    }
    assert!(child.try_wait().unwrap().is_none(), "the workload must hang, not exit");
    assert!(sleeping_in_nanosleep(child.id(), child.id()), "still parked");
    assert!(rx.try_recv().is_err(), "the workload stepped while parked");
    write_atomic(&file, b"0\n");
    // The shim's own word that it saw the "0": a step line alone may be one the workload printed
    // before it hung that the reader thread forwarded late, and writing "1 79" again before the
    // shim saw the "0" would leave the first hang in place rather than start a new one.
    line_starting(&erx, "[cuda-fault] faults OFF", "stderr", T);
    let (_, line) = wait_for(&rx, |l| l.starts_with("step "));
    assert!(line.ends_with(" ok"), "{line}");
    if let Some(k) = last.strip_prefix("step ").and_then(|r| r.strip_suffix(" ok")) {
        let next = k.parse::<u64>().unwrap() + 1;
        assert_eq!(line, format!("step {next} ok"), "the hung step completes once the toggle is off");
    }
    // A hung process can still be killed normally: hang again (a new on-period logs again), then
    // SIGTERM while it is parked.
    write_atomic(&file, b"1 79\n");
    wait_until_hung(child.id(), &erx, marker);
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc_kill(child.id() as i32, 15) }, 0);
    let r = finish(child, Duration::from_secs(10));
    assert!(!r.timed_out, "SIGTERM did not end the hung process");
    assert_eq!(r.status, 128 + 15, "{}", r.describe());
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// flip_probe running under the shim (the toggle polled every millisecond), with channels of its
/// stdout and stderr lines.
struct Flips {
    child: std::process::Child,
    out: mpsc::Receiver<String>,
    err: mpsc::Receiver<String>,
}

impl Flips {
    fn start(toggle: &std::path::Path, extra: &[(&str, &str)]) -> Flips {
        let f = toggle.display().to_string();
        let mut e = env(&f, &[("CUDA_FAULT_POLL_MS", "1")]);
        e.extend_from_slice(extra);
        let mut child = spawn(&fixture("flip_probe"), &["60000"], &e, true);
        let lines = |pipe: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
            rx
        };
        let out = lines(Box::new(child.stdout.take().unwrap()));
        let err = lines(Box::new(child.stderr.take().unwrap()));
        Flips { child, out, err }
    }

    /// The next stdout line, which must be `want`.
    fn expect(&self, want: &str) {
        assert_eq!(self.out.recv_timeout(T).expect("flip_probe said nothing"), want);
    }

    /// Waits for this line on stderr.
    fn expect_err(&self, want: &str) {
        while self.err.recv_timeout(T).expect("no such stderr line") != want {}
    }

    /// What a call returns now (SIGUSR1 makes the probe print "now N").
    fn now(&self) -> String {
        // SAFETY: kill(2) on our own child.
        assert_eq!(unsafe { libc_kill(self.child.id() as i32, 10) }, 0);
        self.out.recv_timeout(T).expect("no answer to SIGUSR1")
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn sticky_faults_survive_the_toggle_going_off() {
    let dir = scratch_dir("sticky");
    let file = dir.join("toggle");
    let sticky_note =
        "[cuda-fault] the toggle changed, but the fault is sticky: this process stays faulted until it restarts";
    // Not sticky (the default): the process recovers.
    write_atomic(&file, b"0\n");
    let p = Flips::start(&file, &[]);
    p.expect("code 0");
    write_atomic(&file, b"1 48\n");
    p.expect("code 214");
    write_atomic(&file, b"0\n");
    p.expect("code 0");
    p.stop();
    // Sticky by environment, then by the toggle file: it does not recover.
    for (extra, on, code) in
        [(&[("CUDA_FAULT_STICKY", "1")][..], &b"1 48\n"[..], "214"), (&[], b"1 95 sticky=1\n", "999")]
    {
        write_atomic(&file, b"0\n");
        let p = Flips::start(&file, extra);
        p.expect("code 0");
        write_atomic(&file, on);
        p.expect(&format!("code {code}"));
        write_atomic(&file, b"0\n");
        p.expect_err(sticky_note);
        assert_eq!(p.now(), format!("now {code}"), "still faulted after the toggle went off");
        p.stop();
    }
    // A new process on the same node starts clean (the toggle says off).
    let p = Flips::start(&file, &[]);
    p.expect("code 0");
    assert_eq!(p.now(), "now 0");
    p.stop();
}

#[test]
fn the_toggle_file_carries_the_scenario_and_bad_keys_turn_it_off_with_one_warning() {
    let dir = scratch_dir("toggle-keys");
    let file = dir.join("toggle");
    let f = file.display().to_string();
    // devices= in the file overrides the environment's list.
    write_atomic(&file, b"1 79 devices=1\n");
    let e = env(&f, &[("CUDA_FAULT_DEVICES", "0")]);
    assert!(run(&fixture("workload"), &["3"], &e, true, T).success());
    let mut e1 = e.clone();
    e1.push(("WORKLOAD_DEVICE", "1"));
    let r = run(&fixture("workload"), &["3"], &e1, true, T);
    assert!(r.has_line("FAIL cudaSetDevice cudaErrorNoDevice 100"), "{}", r.describe());
    assert!(
        r.stderr.contains("faults ON: simulating XID 79 (GPU fell off the bus) (devices 1; surface immediate; scope device) [toggle file "),
        "{}",
        r.describe()
    );

    // The grammar's own words, one line each (the full set is the toggle-grammar crate's tests).
    let cases: &[(&[u8], &str)] = &[
        (b"1 79 devices=\n", "devices: has an empty item"),
        (b"1 79 devices=64\n", "devices: device '64' is outside 0..63"),
        (b"1 79 devices=GPU-123\n", "devices: 'GPU-123' is neither an ordinal 0..63 nor a GPU-/MIG- UUID"),
        (b"1 after_ms=soon\n", "after_ms: 'soon' is not a number"),
        (b"1 after_calls=-1\n", "after_calls: '-1' is not a number"),
        (b"1 mode=crash\n", "mode: 'crash' is not error or hang"),
        (b"1 sticky=2\n", "sticky: '2' is not 1, 0, true or false"),
        (b"1 colour=blue\n", "'colour=blue' is not a key"),
        (b"1 mode=hang mode=error\n", "mode: is given twice"),
        (b"1 mode=hang 48\n", "'48' is neither the XID (right after 1) nor key=value"),
        (b"1 percent=101\n", "percent: '101' is not above 0 and at most 100"),
        (b"1 functions=cudaMallocc\n", "functions: 'cudaMallocc' is not a function in hooks.list"),
    ];
    for (content, why) in cases {
        write_atomic(&file, content);
        let r = run(&fixture("workload"), &["3"], &env(&f, &[("CUDA_FAULT_INJECTION_ENABLED", "1")]), true, T);
        assert!(r.success(), "{:?}:\n{}", String::from_utf8_lossy(content), r.describe());
        let lines = shim_lines(&r.stderr);
        assert_eq!(lines.len(), 1, "{}", r.describe());
        assert!(lines[0].starts_with(&format!("[cuda-fault] toggle file {f} {why}")), "{} vs {why}", lines[0]);
    }
}

#[test]
fn bad_scenario_environment_values_warn_once_and_fall_back() {
    let dir = scratch_dir("scenario-env");
    let toggle = dir.join("absent").display().to_string();
    let cases = [
        ("CUDA_FAULT_DEVICES", "gpu1", "[cuda-fault] CUDA_FAULT_DEVICES: 'gpu1' is neither an ordinal 0..63 nor a GPU-/MIG- UUID (GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx); ignored"),
        ("CUDA_FAULT_AFTER_CALLS", "x", "[cuda-fault] CUDA_FAULT_AFTER_CALLS: 'x' is not a number; ignored"),
        ("CUDA_FAULT_AFTER_CALLS", "18446744073709551616", "[cuda-fault] CUDA_FAULT_AFTER_CALLS: '18446744073709551616' is out of range (at most 18446744073709551615); ignored"),
        ("CUDA_FAULT_AFTER_MS", "5s", "[cuda-fault] CUDA_FAULT_AFTER_MS: '5s' is not a number; ignored"),
        ("CUDA_FAULT_MODE", "freeze", "[cuda-fault] CUDA_FAULT_MODE: 'freeze' is not error or hang; ignored"),
        ("CUDA_FAULT_STICKY", "maybe", "[cuda-fault] CUDA_FAULT_STICKY: 'maybe' is not 1, 0, true or false; ignored"),
        ("CUDA_FAULT_PERCENT", "0", "[cuda-fault] CUDA_FAULT_PERCENT: '0' is not above 0 and at most 100; ignored"),
        ("CUDA_FAULT_COUNT", "0", "[cuda-fault] CUDA_FAULT_COUNT: must be at least 1; ignored"),
        ("CUDA_FAULT_FUNCTIONS", "@kernels", "[cuda-fault] CUDA_FAULT_FUNCTIONS: '@kernels' is not a family (@launch, @memcpy, @sync, @alloc); ignored"),
        ("CUDA_FAULT_SEED", "-1", "[cuda-fault] CUDA_FAULT_SEED: '-1' is not a number; ignored"),
    ];
    for (var, value, warning) in cases {
        let r = run(
            &fixture("workload"),
            &["3"],
            &env(&toggle, &[("CUDA_FAULT_INJECTION_ENABLED", "1"), (var, value)]),
            true,
            T,
        );
        assert!(r.has_line("FAIL cudaGetDeviceCount cudaErrorNoDevice 100"), "{var}:\n{}", r.describe());
        assert_eq!(shim_lines(&r.stderr)[0], warning, "{}", r.describe());
    }
}
