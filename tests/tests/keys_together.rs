//! Scenario keys together, the way users combine them: a hang with a budget, a sticky hang, a
//! sticky fault with a budget, the last fault of a budget and `cudaGetLastError`, re-arming by
//! writing the file again, and what a forked child inherits (draws, budget, latch).
//!
//! Every process here checks the toggle file on each call (`CUDA_FAULT_POLL_MS=0`), so a call
//! made after a write sees it, and no poller thread sleeps beside the hung calls counted.

use std::time::Duration;

use cuda_fault_tests::calls::{wait_asleep, Calls};
use cuda_fault_tests::{fixture, helper_path, run, scratch_dir, shim_lines, write_atomic, Scratch};

const T: Duration = Duration::from_secs(30);
const STICKY_NOTE: &str =
    "[cuda-fault] the toggle changed, but the fault is sticky: this process stays faulted until it restarts";

struct Setup {
    _dir: Scratch,
    file: std::path::PathBuf,
    path: String,
}

fn setup(tag: &str, first: &str) -> Setup {
    let dir = scratch_dir(tag);
    let file = dir.join("toggle");
    write_atomic(&file, format!("{first}\n").as_bytes());
    let path = file.display().to_string();
    Setup { _dir: dir, file, path }
}

impl Setup {
    fn write(&self, line: &str) {
        write_atomic(&self.file, format!("{line}\n").as_bytes());
    }

    fn probe(&self, extra: &[(&str, &str)]) -> Calls {
        let mut env = vec![("CUDA_FAULT_TOGGLE_FILE", self.path.as_str()), ("CUDA_FAULT_POLL_MS", "0")];
        env.extend_from_slice(extra);
        Calls::start("call_probe", &env)
    }
}

// ---- mode=hang with count ---------------------------------------------------------------------

#[test]
fn hang_with_count_blocks_exactly_n_calls_until_the_toggle_goes_off() {
    let s = setup("hang-count", "0");
    let mut p = s.probe(&[]);
    assert_eq!(p.call("cuinit"), 0);
    s.write("1 48 mode=hang count=2");
    let threads: Vec<u32> = (0..3).map(|_| p.thread("devsync")).collect();
    // The budget is two hangs: the third synchronize goes through, the first two stay parked.
    let passed = p.line_where("a thread that went through", |l| l.starts_with("thread ") && l.ends_with(" devsync 0"));
    wait_asleep(p.pid(), 2);
    // Running out of the budget releases nothing: many calls later they are still parked.
    assert_eq!(p.repeat(500, "streamquery"), (0, "0".repeat(500)));
    assert!(!p.thread_has_returned(), "a hung call was released by the budget");
    wait_asleep(p.pid(), 2);
    s.write("0");
    let rest: Vec<u32> = threads.iter().copied().filter(|t| !passed.starts_with(&format!("thread {t} "))).collect();
    assert_eq!(rest.len(), 2);
    for t in rest {
        assert_eq!(p.thread_returned(t), 0, "off: the GPU is back, the call goes through");
    }
    let r = p.finish();
    assert_eq!(
        shim_lines(&r.stderr).iter().filter(|l| l.contains("cudaDeviceSynchronize -> hangs")).count(),
        1,
        "{}",
        r.describe()
    );
}

#[test]
fn with_count_1_one_call_hangs_and_one_released_while_on_fails_never_succeeds() {
    let s = setup("hang-count-1", "0");
    let mut p = s.probe(&[]);
    assert_eq!(p.call("cuinit"), 0);
    s.write("1 48 mode=hang count=1");
    let t = p.thread("cuctxsync");
    wait_asleep(p.pid(), 1);
    assert_eq!(p.repeat(500, "streamquery").0, 0);
    assert!(!p.thread_has_returned(), "count=1 must still hang");
    wait_asleep(p.pid(), 1);
    // Faults stay on, in error mode: the hung call returns the XID's error, not success.
    s.write("1 48 mode=error");
    assert_eq!(p.thread_returned(t), 214);
    assert_eq!(p.call("cuctxsync"), 214);
    drop(p);

    // The same when the XID changes while the call hangs: the error of the XID now in force.
    let s = setup("hang-to-79", "1 48 mode=hang");
    let mut p = s.probe(&[]);
    let t = p.thread("cuctxsync");
    wait_asleep(p.pid(), 1);
    s.write("1 79");
    assert_eq!(p.thread_returned(t), 100);
}

// ---- sticky with hang and with count ----------------------------------------------------------

#[test]
fn a_sticky_hang_latches_and_the_toggle_can_no_longer_release_it() {
    let s = setup("sticky-hang", "1 48 mode=hang sticky=1");
    let mut p = s.probe(&[]);
    let t = p.thread("cuctxsync");
    wait_asleep(p.pid(), 1);
    s.write("0");
    assert_eq!(p.call("streamquery"), 0, "in hang mode other calls pass");
    p.stderr_where("the sticky note", |l| l == STICKY_NOTE);
    assert!(!p.thread_has_returned(), "the toggle went off, but the hang is sticky");
    wait_asleep(p.pid(), 1);
    // New synchronizing calls hang too: the process stays stuck until it is killed.
    let _t2 = p.thread("devsync");
    wait_asleep(p.pid(), 2);
    assert!(!p.thread_has_returned(), "thread {t} returned");
    // The process still ends normally while two calls are parked.
    let r = p.exit();
    assert_eq!((r.status, r.timed_out), (0, false), "{}", r.describe());
}

#[test]
fn sticky_with_count_latches_at_the_first_fault_and_count_no_longer_ends_it() {
    let s = setup("sticky-count", "1 48 sticky=1 count=1");
    let mut p = s.probe(&[]);
    assert_eq!(p.calls(&["streamquery", "streamquery", "streamquery"]), [214, 214, 214]);
    s.write("0");
    assert_eq!(p.call("streamquery"), 214);
    p.stderr_where("the sticky note", |l| l == STICKY_NOTE);
    // A new fault line cannot change a latched process: it stays on its first XID.
    s.write("1 79");
    assert_eq!(p.calls(&["streamquery", "cuctxsync", "launch"]), [214, 214, 214]);
    // A new process follows the toggle.
    let mut fresh = s.probe(&[]);
    assert_eq!(fresh.call("streamquery"), 100);
}

// ---- the last fault of a budget and cudaGetLastError -------------------------------------------

#[test]
fn the_last_fault_of_a_count_budget_reaches_cuda_get_last_error() {
    let s = setup("count-lasterror", "1 48 functions=@launch count=1");
    let mut p = s.probe(&[]);
    assert_eq!(p.calls(&["launch", "lasterror", "lasterror", "launch", "lasterror"]), [214, 214, 0, 0, 0]);
    // cudaPeekAtLastError keeps it until cudaGetLastError reads it.
    s.write("1 48 functions=cudaLaunchKernel count=1");
    assert_eq!(p.calls(&["launch", "peek", "peek", "lasterror", "peek", "lasterror"]), [214, 214, 214, 214, 0, 0]);
    drop(p);
    // PyTorch's shape (launch, then cudaGetLastError), with the poller's default interval.
    let e = [("CUDA_FAULT_TOGGLE_FILE", s.path.as_str()), ("WORKLOAD_FOREVER", "1")];
    s.write("1 48 functions=cudaLaunchKernel count=1");
    let r = run(&fixture("workload"), &["0"], &e, true, T);
    assert!(r.has_line("FAIL cudaGetLastError cudaErrorECCUncorrectable 214"), "{}", r.describe());
}

// ---- re-arming: a write is a new on-period -----------------------------------------------------

#[test]
fn every_write_starts_a_new_on_period_even_with_the_same_words() {
    let s = setup("rearm", "1 48 count=1");
    let mut p = s.probe(&[]);
    assert_eq!(p.calls(&["streamquery", "streamquery"]), [214, 0]);
    // The same line again (a new file, as every atomic writer makes).
    s.write("1 48 count=1");
    assert_eq!(p.calls(&["streamquery", "streamquery"]), [214, 0]);
    // 0, then the same line, with no CUDA call in between.
    s.write("0");
    s.write("1 48 count=1");
    assert_eq!(p.calls(&["streamquery", "streamquery"]), [214, 0]);
    // Rewritten in place (same inode), a later modification time.
    let before = std::fs::metadata(&s.file).unwrap().modified().unwrap();
    let f = std::fs::OpenOptions::new().write(true).truncate(true).open(&s.file).unwrap();
    use std::io::Write as _;
    (&f).write_all(b"1 48 count=1\n").unwrap();
    f.set_modified(before + Duration::from_secs(5)).unwrap();
    drop(f);
    assert_eq!(p.calls(&["streamquery", "streamquery"]), [214, 0]);
    // Through the helper: each `enable` it reports as "faults on" is a fault again.
    for _ in 0..2 {
        let out = std::process::Command::new(helper_path())
            .args(["enable", "--xid", "48", "--count", "1", "--file", &s.path])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("faults on: XID 48"));
        assert_eq!(p.calls(&["streamquery", "streamquery"]), [214, 0]);
    }
    let r = p.finish();
    let ons = shim_lines(&r.stderr).iter().filter(|l| l.contains("faults ON")).count();
    assert_eq!(ons, 6, "one faults-ON line per on-period:\n{}", r.describe());
}

// ---- fork ---------------------------------------------------------------------------------------

/// The seed a "faults ON" line printed.
fn seeds(stderr: &[String]) -> Vec<u64> {
    stderr
        .iter()
        .filter(|l| l.contains("faults ON"))
        .filter_map(|l| l.split("seed ").nth(1))
        .map(|s| s.split([';', ')']).next().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn a_forked_child_draws_with_a_fresh_seed_and_prints_it() {
    let s = setup("fork-seed", "1 48 percent=50");
    let mut p = s.probe(&[]);
    assert_eq!(p.line("count"), "count 0 2", "device counts are no draw");
    let (child, status) = p.fork(&["repeat 64 streamquery"]);
    assert_eq!(status, 0);
    let (_, parent) = p.repeat(64, "streamquery");
    let child_pattern = child[0].rsplit(' ').next().unwrap().to_string();
    assert_ne!(child_pattern, parent, "the child replayed the parent's draws");
    let stderr = p.stderr();
    let seeds = seeds(&stderr);
    assert_eq!(seeds.len(), 2, "the parent's and the child's seed: {stderr:?}");
    assert_ne!(seeds[0], seeds[1]);
    drop(p);
    // With seed=, parent and child draw the same sequence, each from its own start.
    s.write("1 48 percent=50 seed=7");
    let mut p = s.probe(&[]);
    assert_eq!(p.line("count"), "count 0 2");
    let (child, _) = p.fork(&["repeat 64 streamquery"]);
    let (_, parent) = p.repeat(64, "streamquery");
    assert_eq!(child[0].rsplit(' ').next().unwrap(), parent);
}

#[test]
fn count_is_per_process_and_a_forked_child_starts_with_the_full_budget() {
    let s = setup("fork-count", "1 48 count=5");
    let mut p = s.probe(&[]);
    assert_eq!(p.repeat(2, "streamquery").0, 2);
    let (child, _) = p.fork(&["repeat 10 streamquery"]);
    assert!(child[0].contains(" failed 5 "), "{child:?}");
    assert_eq!(p.repeat(10, "streamquery").0, 3, "the parent's own budget is untouched by the child");
    // A child of an exhausted parent has a budget of its own.
    let (child, _) = p.fork(&["repeat 10 streamquery"]);
    assert!(child[0].contains(" failed 5 "), "{child:?}");
    assert_eq!(p.repeat(10, "streamquery").0, 0);
}

#[test]
fn a_forked_child_of_a_latched_process_follows_the_toggle() {
    let s = setup("fork-sticky", "1 48 sticky=1");
    let mut p = s.probe(&[]);
    assert_eq!(p.call("streamquery"), 214);
    s.write("0");
    assert_eq!(p.call("streamquery"), 214, "latched");
    let (child, _) = p.fork(&["streamquery"]);
    assert_eq!(child, ["streamquery 0"], "a child is a new process: its own context, the toggle's state");
    s.write("1 79");
    let (child, _) = p.fork(&["streamquery"]);
    assert_eq!(child, ["streamquery 100"]);
    assert_eq!(p.call("streamquery"), 214);
}
