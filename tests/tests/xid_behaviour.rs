//! Each XID behaves as its row of the XID table says: where the error surfaces (`surface`), which
//! processes meet it (`scope`), whether the GPU is gone (device counts, NVML "GPU is lost") and
//! what NVML's ECC queries report; the overrides through the environment, the file and the
//! helper; and an asynchronous fault with every other scenario key.
//!
//! Processes here check the toggle file on each call (`CUDA_FAULT_POLL_MS=0`), so a call made
//! after a write sees it. "A process started after the write" runs against a file whose mtime is
//! set two seconds back, as a restarted pod's is: a process that starts within the kernel's
//! timestamp tick after a write counts as started before it.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use cuda_fault_tests::calls::{wait_asleep, Calls};
use cuda_fault_tests::{
    fixture, helper_path, require_real_cudart, run, run_python_fixture, scratch_dir, shim_lines, workload_under,
    write_atomic, Run, Scratch,
};

const T: Duration = Duration::from_secs(60);

struct Toggle {
    _dir: Scratch,
    file: PathBuf,
    path: String,
}

fn toggle(tag: &str) -> Toggle {
    let dir = scratch_dir(tag);
    let file = dir.join("toggle");
    let path = file.display().to_string();
    Toggle { _dir: dir, file, path }
}

impl Toggle {
    fn write(&self, line: &str) {
        write_atomic(&self.file, format!("{line}\n").as_bytes());
    }

    /// The file as a restarted process finds it: written a while ago.
    fn age(&self) {
        let f = std::fs::File::options().write(true).open(&self.file).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(2)).unwrap();
    }

    fn env<'a>(&'a self, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut e = vec![("CUDA_FAULT_TOGGLE_FILE", self.path.as_str()), ("CUDA_FAULT_POLL_MS", "0")];
        e.extend_from_slice(extra);
        e
    }

    fn probe(&self, extra: &[(&str, &str)]) -> Calls {
        Calls::start("call_probe", &self.env(extra))
    }

    fn helper(&self, args: &[&str]) {
        let out = std::process::Command::new(helper_path()).args(args).args(["--file", &self.path]).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// The PyTorch shape: an allocation, a launch, its check, a copy back, a synchronize.
const TORCH: [&str; 5] = ["malloc", "launch", "lasterror", "memcpy", "devsync"];

// ---- XID 31: asynchronous, process scope --------------------------------------------------------

#[test]
fn xid_31_launch_succeeds_the_next_sync_fails_and_every_later_call_fails() {
    let t = toggle("xid31");
    t.write("0");
    let mut p = t.probe(&[]);
    assert_eq!(p.line("count"), "count 0 2");
    assert_eq!(p.call("malloc"), 0);
    t.write("1 31");
    // Nothing was launched yet: calls behave normally.
    assert_eq!(p.calls(&["memcpy", "devsync", "streamquery", "count"]), [0, 0, 0, 0]);
    assert_eq!(p.calls(&TORCH), [0, 0, 0, 700, 700], "XID 31 reported at the copy, not at the launch check");
    // A broken context: every call returns it, also device counts and the error functions,
    // and cudaGetLastError does not clear it.
    assert_eq!(p.line("count"), "count 700 -1");
    assert_eq!(
        p.calls(&["malloc", "set 0", "launch", "streamquery", "lasterror", "lasterror", "peek", "cuctxsync"]),
        [700, 700, 700, 700, 700, 700, 700, 700]
    );
    // The toggle going off does not repair it.
    t.write("0");
    assert_eq!(p.calls(&["streamquery", "devsync"]), [700, 700]);
    let r = p.finish();
    let lines = shim_lines(&r.stderr);
    assert!(
        lines.contains(&"[XID 31 SIM] cudaLaunchKernel -> accepted; the fault surfaces at the next synchronizing call"),
        "{}",
        r.describe()
    );
    assert!(lines.iter().any(|l| l.starts_with("[cuda-fault] XID 31 surfaced at cudaMemcpy: ")), "{}", r.describe());
    assert!(
        lines.iter().any(|l| l.contains("faults ON: simulating XID 31 (GPU memory page fault (MMU fault)) (surface async; scope process) [toggle file")),
        "{}",
        r.describe()
    );
}

#[test]
fn xid_31_surfaces_at_a_stream_or_event_query_and_in_another_thread() {
    let t = toggle("xid31-query");
    t.write("0");
    let mut p = t.probe(&[]);
    assert_eq!(p.call("event"), 0);
    t.write("1 31");
    assert_eq!(p.calls(&["memsetasync", "record", "eventquery", "record"]), [0, 0, 700, 700]);
    drop(p);
    let mut p = t.probe(&[]);
    t.write("1 31");
    assert_eq!(p.calls(&["memcpyasync", "streamquery"]), [0, 700]);
    drop(p);
    // Pending in the process, not the thread: a launch on one thread, the sync on another.
    let mut p = t.probe(&[]);
    assert_eq!(p.call("count"), 0);
    t.write("1 31");
    let th = p.thread("launch");
    assert_eq!(p.thread_returned(th), 0);
    assert_eq!(p.call("streamsync"), 700);
}

#[test]
fn a_process_that_never_launches_never_sees_an_asynchronous_fault() {
    let t = toggle("xid31-quiet");
    t.write("0");
    let mut p = t.probe(&[]);
    assert_eq!(p.call("count"), 0);
    t.write("1 31");
    assert_eq!(p.calls(&["malloc", "memcpy", "devsync", "streamsync", "streamquery", "set 0", "lasterror"]), [0; 7]);
}

#[test]
fn a_process_started_after_the_write_runs_clean_and_the_environment_always_applies() {
    let t = toggle("xid31-restart");
    t.write("1 31");
    t.age();
    let mut p = t.probe(&[]);
    assert_eq!(p.calls(&TORCH), [0, 0, 0, 0, 0]);
    let r = p.finish();
    let on = shim_lines(&r.stderr).into_iter().find(|l| l.contains("faults ON")).unwrap_or_default().to_string();
    assert!(on.ends_with("; not in this process: it started after the file was written]"), "{}", r.describe());
    // A rewrite while it runs is a new fault, and it was running before it.
    let mut p = t.probe(&[]);
    assert_eq!(p.calls(&TORCH), [0, 0, 0, 0, 0]);
    t.write("1 31");
    assert_eq!(p.calls(&TORCH), [0, 0, 0, 700, 700]);
    drop(p);
    // From the environment (no toggle file): every process meets it.
    let none = toggle("xid31-env");
    let mut p = none.probe(&[("CUDA_FAULT_INJECTION_ENABLED", "1"), ("CUDA_XID_TYPE", "31")]);
    assert_eq!(p.calls(&TORCH), [0, 0, 0, 700, 700]);
}

#[test]
fn the_pytorch_shaped_workload_fails_at_a_synchronize_not_at_its_launch_check() {
    let t = toggle("xid31-workload");
    let e =
        [("CUDA_FAULT_TOGGLE_FILE", t.path.as_str()), ("CUDA_FAULT_INJECTION_ENABLED", "1"), ("CUDA_XID_TYPE", "31")];
    let r = run(&fixture("workload"), &["3"], &e, true, T);
    // Its first asynchronous work is a memset, a launch, a graph and a copy, then a synchronize.
    assert_eq!(r.lines(), ["devices 2", "FAIL cudaStreamSynchronize cudaErrorIllegalAddress 700"], "{}", r.describe());
}

// ---- the same on NVIDIA's real runtime --------------------------------------------------------

#[test]
fn on_the_real_runtime_xid_31_surfaces_at_the_sync_and_a_new_process_runs_clean() {
    require_real_cudart(12);
    require_real_cudart(13);
    for program in ["call_probe_rt12", "call_probe_rt13"] {
        let t = toggle("xid31-real");
        t.write("0");
        // Faults off: the real runtime cannot start on the fake driver and answers 801.
        let mut off = Calls::start(program, &t.env(&[]));
        let reference: Vec<i64> = off.calls(&["count", "launch", "lasterror", "memcpy", "devsync"]);
        assert_eq!(reference[0], 801, "{program}");
        drop(off);
        let mut p = Calls::start(program, &t.env(&[]));
        assert_eq!(p.call("count"), 801);
        t.write("1 31");
        let got = p.calls(&["launch", "lasterror", "memcpy", "devsync", "count", "malloc", "lasterror"]);
        // The launch check reads what the runtime itself recorded (no fault there).
        assert_eq!(got, [0, reference[2], 700, 700, 700, 700, 700], "{program}");
        drop(p);
        t.age();
        let mut fresh = Calls::start(program, &t.env(&[]));
        assert_eq!(fresh.calls(&["count", "launch", "lasterror", "memcpy", "devsync"]), reference, "{program}");
    }
}

#[test]
fn on_the_static_real_runtime_calls_that_reach_the_driver_follow_the_surface() {
    require_real_cudart(12);
    // libcudart_static.a is inside the program: only its driver calls reach the shim, and on the
    // fake driver it stops at start-up, before any launch reaches the driver. So an asynchronous
    // XID changes nothing there, and an immediate one fails it at cuInit.
    let t = toggle("static-real");
    t.write("0");
    let cmds = ["count", "launch", "lasterror", "memcpy", "devsync"];
    let mut off = Calls::start("call_probe_rt12_static", &t.env(&[]));
    let reference = off.calls(&cmds);
    drop(off);
    t.write("1 31");
    let mut p = Calls::start("call_probe_rt12_static", &t.env(&[("CUDA_FAULT_SCOPE", "device")]));
    assert_eq!(p.calls(&cmds), reference);
    t.write("1 79");
    let mut p = Calls::start("call_probe_rt12_static", &t.env(&[]));
    assert_eq!(p.calls(&cmds), [100, 100, 100, 100, 100]);
    let r = p.finish();
    assert!(r.stderr.contains("[XID 79 SIM] cuInit -> CUDA_ERROR_NO_DEVICE (100)"), "{}", r.describe());
}

// ---- XID 79: immediate, device scope, the GPU is lost ---------------------------------------------

#[test]
fn xid_79_fails_every_call_of_every_process_and_nvml_reports_the_gpu_lost() {
    let t = toggle("xid79");
    t.write("1 79");
    t.age();
    let mut p = t.probe(&[]);
    assert_eq!(p.line("count"), "count 100 0");
    assert_eq!(p.calls(&["cuinit", "cucount", "launch", "lasterror", "memcpy"]), [100, 100, 100, 100, 100]);
    drop(p);
    let r = run_python_fixture("pynvml_probe.py", &t.env(&[]), true, T);
    assert_eq!(
        r.lines(),
        ["nvmlInit error 15", "count error 15", "handle error 15", "name skipped", "shutdown error 1"],
        "{}",
        r.describe()
    );
    // XID 143 loses the GPU too.
    t.write("1 143");
    let mut p = t.probe(&[]);
    assert_eq!(p.line("count"), "count 100 0");
    let r = run_python_fixture("pynvml_probe.py", &t.env(&[]), true, T);
    assert_eq!(r.lines()[0], "nvmlInit error 15", "{}", r.describe());
}

#[test]
fn an_xid_that_does_not_lose_the_gpu_leaves_enumeration_working() {
    let t = toggle("xid48-enumeration");
    t.write("1 48");
    let mut p = t.probe(&[]);
    assert_eq!(p.line("count"), "count 0 2");
    assert_eq!(p.calls(&["cuinit", "cucount", "set 0", "malloc", "launch"]), [0, 0, 214, 214, 214]);
    drop(p);
    // Named in functions=, a count fails as asked, without losing the devices.
    t.write("1 48 functions=cudaGetDeviceCount");
    let mut p = t.probe(&[]);
    assert_eq!(p.line("count"), "count 214 -1");
    drop(p);
    // NVML still enumerates the GPU (this XID has no NVML error).
    let r = run_python_fixture("pynvml_probe.py", &t.env(&[]), true, T);
    assert_eq!(r.lines()[..3], ["nvmlInit ok", "count 2", "handle ok"], "{}", r.describe());
    // An XID with an NVML error that keeps the GPU: enumeration works, the device fails.
    t.write("1 119");
    let r = run_python_fixture("pynvml_probe.py", &t.env(&[]), true, T);
    assert_eq!(r.lines()[..3], ["nvmlInit ok", "count 2", "handle error 10"], "{}", r.describe());
}

// ---- NVML's ECC state ---------------------------------------------------------------------------------

fn ecc(t: &Toggle, extra: &[(&str, &str)]) -> Run {
    let r = run_python_fixture("pynvml_ecc_probe.py", &t.env(extra), true, T);
    assert!(r.success(), "{}", r.describe());
    r
}

fn healthy(device: u32) -> [String; 4] {
    let c = 3 + device;
    [
        format!("device {device} uncorrected volatile 0 aggregate 0"),
        format!("device {device} corrected volatile {c} aggregate {c}"),
        format!("device {device} retired pending 0"),
        format!("device {device} remapped corrected 0 uncorrected 0 pending 0 failure 0"),
    ]
}

#[test]
fn ecc_xids_show_in_nvml_s_ecc_queries() {
    let t = toggle("ecc");
    t.write("0");
    let bare = run_python_fixture("pynvml_ecc_probe.py", &t.env(&[]), false, T);
    let mut clean: Vec<String> = healthy(0).to_vec();
    clean.extend(healthy(1));
    assert_eq!(bare.lines(), clean, "{}", bare.describe());
    assert_eq!(ecc(&t, &[]).stdout, bare.stdout, "faults off: untouched");
    let dbe = [
        "device 0 uncorrected volatile 1 aggregate 1",
        "device 0 corrected volatile 3 aggregate 3",
        "device 0 retired pending 1",
        "device 0 remapped corrected 0 uncorrected 1 pending 1 failure 0",
    ];
    for x in ["48", "95", "140"] {
        t.write(&format!("1 {x}"));
        let r = ecc(&t, &[]);
        assert_eq!(r.lines()[..4], dbe, "XID {x}:\n{}", r.describe());
    }
    t.write("1 64");
    let r = ecc(&t, &[]);
    assert_eq!(
        r.lines()[2..4],
        ["device 0 retired pending 0", "device 0 remapped corrected 0 uncorrected 1 pending 0 failure 1"]
    );
    // Only the listed device; and nothing for an XID without ECC state.
    t.write("1 48 devices=1");
    let r = ecc(&t, &[]);
    assert_eq!(r.lines()[..4], healthy(0), "{}", r.describe());
    assert_eq!(r.lines()[4], "device 1 uncorrected volatile 1 aggregate 1");
    t.write("1 31");
    assert_eq!(ecc(&t, &[]).stdout, bare.stdout);
    // XID 94's scope is the process, but its ECC state is the GPU's: a monitor started after the
    // write sees it, while its own CUDA calls run clean.
    t.write("1 94");
    t.age();
    let r = ecc(&t, &[]);
    assert_eq!(r.lines()[0], "device 0 uncorrected volatile 1 aggregate 1", "{}", r.describe());
    let mut p = t.probe(&[]);
    assert_eq!(p.calls(&TORCH), [0, 0, 0, 0, 0]);
}

// ---- overrides: environment, file, helper -------------------------------------------------------------

#[test]
fn surface_and_scope_are_overridden_by_the_environment_the_file_and_the_helper() {
    let t = toggle("overrides");
    // surface=immediate for 31: the launch itself fails.
    let immediate: [(&str, &[(&str, &str)]); 2] =
        [("1 31", &[("CUDA_FAULT_SURFACE", "immediate")]), ("1 31 surface=immediate", &[])];
    // (XID 31's scope is the process: these processes are running when the line is written.)
    for (line, extra) in immediate {
        let mut p = running(&t, line, extra);
        assert_eq!(p.calls(&TORCH), [700, 700, 700, 700, 700], "{line} {extra:?}");
    }
    let mut p = running(&t, "0", &[]);
    t.helper(&["enable", "--xid", "31", "--surface", "immediate"]);
    assert_eq!(std::fs::read_to_string(&t.file).unwrap(), "1 31 surface=immediate\n");
    assert_eq!(p.calls(&TORCH), [700, 700, 700, 700, 700]);
    drop(p);
    // surface=async for 79 (device scope): device counts answer, the launch succeeds, the sync
    // fails.
    t.helper(&["enable", "--xid", "79", "--surface", "async"]);
    let mut p = t.probe(&[]);
    assert_eq!(p.line("count"), "count 0 2");
    assert_eq!(p.calls(&TORCH), [0, 0, 0, 100, 100]);
    drop(p);
    // scope=device for 31: a new process meets it too.
    for (line, extra) in [("1 31 scope=device", &[][..]), ("1 31", &[("CUDA_FAULT_SCOPE", "device")][..])] {
        t.write(line);
        t.age();
        let mut p = t.probe(extra);
        assert_eq!(p.calls(&TORCH), [0, 0, 0, 700, 700], "{line} {extra:?}");
    }
    // scope=process for 79: a new process runs clean; a running one fails.
    t.write("0");
    let mut running = t.probe(&[]);
    assert_eq!(running.call("count"), 0);
    t.helper(&["enable", "--xid", "79", "--scope", "process"]);
    assert_eq!(running.call("malloc"), 100);
    t.age();
    let mut fresh = t.probe(&[]);
    assert_eq!(fresh.calls(&["count", "malloc", "launch", "devsync"]), [0, 0, 0, 0]);
    // The file's key beats the variable.
    t.write("1 79 scope=device");
    t.age();
    let mut p = t.probe(&[("CUDA_FAULT_SCOPE", "process")]);
    assert_eq!(p.call("malloc"), 100);
}

// ---- an asynchronous fault with every other key -----------------------------------------------------

/// A probe that was running before `line` was written.
fn running(t: &Toggle, line: &str, extra: &[(&str, &str)]) -> Calls {
    t.write("0");
    let mut p = t.probe(extra);
    assert_eq!(p.call("count"), 0);
    t.write(line);
    p
}

#[test]
fn async_with_count_percent_and_the_delays() {
    let t = toggle("async-keys");
    // count: the first fault breaks the context; the budget does not end a broken context.
    let mut p = running(&t, "1 31 count=1", &[]);
    assert_eq!(p.calls(&["launch", "devsync", "devsync", "malloc"]), [0, 700, 700, 700]);
    drop(p);
    // after_calls: the first two launches are spared (they run), the third faults.
    let mut p = running(&t, "1 31 after_calls=2", &[]);
    assert_eq!(p.calls(&["launch", "launch", "devsync", "launch", "devsync"]), [0, 0, 0, 0, 700]);
    drop(p);
    // percent: launches are drawn; with a share this small nothing faults, with 100 all do.
    let mut p = running(&t, "1 31 percent=0.000001 seed=1", &[]);
    assert_eq!(p.repeat(200, "launch").0, 0);
    assert_eq!(p.call("devsync"), 0);
    drop(p);
    let mut p = running(&t, "1 31 percent=100", &[]);
    assert_eq!(p.calls(&["launch", "devsync"]), [0, 700]);
    drop(p);
    // after_ms: launches run until the delay has passed, then one faults.
    let mut p = running(&t, "1 31 after_ms=300", &[]);
    let start = std::time::Instant::now();
    loop {
        let codes = p.calls(&["launch", "devsync"]);
        if codes == [0, 700] {
            break;
        }
        assert_eq!(codes, [0, 0]);
        assert!(start.elapsed() < T, "never surfaced");
    }
    assert!(start.elapsed() >= Duration::from_millis(300), "surfaced after {:?}", start.elapsed());
}

#[test]
fn async_with_devices_and_functions() {
    let t = toggle("async-select");
    // devices=1: work on device 0 runs; on device 1 it faults, and only device 1 is broken.
    let mut p = running(&t, "1 31 devices=1", &[]);
    assert_eq!(p.calls(&["launch", "devsync", "set 1", "launch", "devsync", "malloc"]), [0, 0, 0, 0, 700, 700]);
    assert_eq!(p.calls(&["set 0", "malloc", "devsync"]), [0, 0, 0]);
    drop(p);
    // functions= picks the work that faults; the error surfaces at any synchronizing call.
    let mut p = running(&t, "1 31 functions=cudaMemcpyAsync", &[]);
    assert_eq!(p.calls(&["malloc", "launch", "devsync", "memcpyasync", "streamquery"]), [0, 0, 0, 0, 700]);
    drop(p);
    let mut p = running(&t, "1 31 functions=@sync", &[]);
    assert_eq!(
        p.calls(&["malloc", "launch", "memcpyasync", "devsync", "memcpy"]),
        [0; 5],
        "no asynchronous work named"
    );
}

#[test]
fn async_with_hang_sticky_fork_and_threads() {
    let t = toggle("async-modes");
    // mode=hang: a hang is how it shows; the synchronize blocks instead of failing.
    let mut p = running(&t, "1 31 mode=hang", &[]);
    assert_eq!(p.call("launch"), 0);
    let th = p.thread("devsync");
    wait_asleep(p.pid(), 1);
    t.write("0");
    assert_eq!(p.thread_returned(th), 0);
    drop(p);
    // sticky=0 does not mend a broken context, and neither does the toggle going off while the
    // fault is pending.
    let mut p = running(&t, "1 31 sticky=0", &[]);
    assert_eq!(p.call("launch"), 0);
    t.write("0");
    assert_eq!(p.calls(&["devsync", "malloc"]), [700, 700]);
    drop(p);
    // fork: the child is a new process; under process scope it started after the write.
    let mut p = running(&t, "1 31", &[]);
    assert_eq!(p.calls(&["launch", "devsync"]), [0, 700]);
    t.age(); // the child starts well after the write (it starts at the fork)
    let (child, _) = p.fork(&["launch", "devsync"]);
    assert_eq!(child, ["launch 0", "devsync 0"]);
    let mut p = running(&t, "1 31 scope=device", &[]);
    assert_eq!(p.calls(&["launch", "devsync"]), [0, 700]);
    let (child, _) = p.fork(&["malloc", "launch", "devsync"]);
    assert_eq!(child, ["malloc 0", "launch 0", "devsync 700"], "device scope: the child meets its own fault");
    // threads: every thread of the broken process fails.
    let th = p.thread("malloc");
    assert_eq!(p.thread_returned(th), 700);
}

#[test]
fn process_scope_with_hang_sticky_and_a_rewrite() {
    let t = toggle("scope-keys");
    // A hang reaches only the processes that were running.
    t.write("1 79 scope=process mode=hang");
    t.age();
    let mut fresh = t.probe(&[]);
    assert_eq!(fresh.calls(&["devsync", "cuctxsync"]), [0, 0]);
    drop(fresh);
    let mut p = running(&t, "1 79 scope=process mode=hang", &[]);
    let th = p.thread("devsync");
    wait_asleep(p.pid(), 1);
    t.write("0");
    assert_eq!(p.thread_returned(th), 0);
    drop(p);
    // A sticky fault latches a running process; a new one runs clean.
    let mut p = running(&t, "1 48 scope=process sticky=1", &[]);
    assert_eq!(p.call("malloc"), 214);
    t.age();
    let mut fresh = t.probe(&[]);
    assert_eq!(fresh.call("malloc"), 0);
    t.write("0");
    assert_eq!(p.call("malloc"), 214);
}

/// The XID table's behaviour for each XID, through the workload: where it stops.
#[test]
fn every_xid_stops_the_workload_where_its_behaviour_says() {
    let dir = scratch_dir("every-xid-behaviour");
    let toggle = dir.join("absent").display().to_string();
    for row in xid_table::table() {
        let xid = row.xid.to_string();
        let e = [
            ("CUDA_FAULT_TOGGLE_FILE", toggle.as_str()),
            ("CUDA_FAULT_INJECTION_ENABLED", "1"),
            ("CUDA_XID_TYPE", &xid),
        ];
        let r = run(&fixture("workload"), &["3"], &e, true, T);
        let (lines, function) = workload_under(&row);
        assert_eq!(r.lines(), lines, "XID {xid}:\n{}", r.describe());
        let sim = format!("[XID {xid} SIM] {function} -> {} ({})", row.runtime.name, row.runtime.code);
        assert!(r.stderr.lines().any(|l| l == sim), "{}", r.describe());
        // Spelled out for the kinds, so that the helper above cannot drift.
        match row.xid {
            31 => assert_eq!(lines[1], "FAIL cudaStreamSynchronize cudaErrorIllegalAddress 700"),
            48 => assert_eq!(lines[1], "FAIL cudaSetDevice cudaErrorECCUncorrectable 214"),
            79 => assert_eq!(lines, ["FAIL cudaGetDeviceCount cudaErrorNoDevice 100"]),
            _ => {}
        }
    }
}

#[test]
fn process_scope_decides_before_every_other_key() {
    // Whatever else the line says, a process that started after it was written runs clean, on
    // every thread; one that was running meets the scenario as the other keys make it.
    let t = toggle("scope-any-key");
    for keys in ["count=1", "percent=100", "after_calls=1", "after_ms=0", "devices=0", "functions=@alloc,@launch"] {
        let line = format!("1 48 scope=process {keys}");
        t.write(&line);
        t.age();
        let mut fresh = t.probe(&[]);
        assert_eq!(fresh.calls(&["set 0", "malloc", "malloc", "launch"]), [0, 0, 0, 0], "{line}");
        let th = fresh.thread("malloc");
        assert_eq!(fresh.thread_returned(th), 0, "{line}");
        drop(fresh);
        let mut p = running(&t, &line, &[]);
        let codes = p.calls(&["malloc", "malloc"]);
        let want = if keys == "after_calls=1" { [0, 214] } else { [214, if keys == "count=1" { 0 } else { 214 }] };
        assert_eq!(codes, want, "{line}");
    }
}
