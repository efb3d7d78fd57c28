//! The cuda-fault helper driving the shim end to end on the fake CUDA stack: `enable` flips a
//! running workload to failing, `disable` lets the next run pass, `clean` hands control back to
//! the environment, and scenario flags produce a file the shim accepts.

use std::io::{BufRead, BufReader, Read};
use std::process::Command;
use std::time::Duration;

use cuda_fault_tests::{finish, fixture, helper_path, run, scratch_dir, shim_lines, spawn};

const T: Duration = Duration::from_secs(30);

fn cuda_fault(args: &[&str], file: &str) {
    let out = Command::new(helper_path()).args(args).args(["--file", file]).output().expect("run cuda-fault");
    assert!(out.status.success(), "cuda-fault {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn enable_flips_a_running_workload_and_disable_lets_the_next_run_pass() {
    let dir = scratch_dir("helper-e2e");
    let f = dir.join("host-fault").join("cuda_fault_enabled").display().to_string();
    let env = [("CUDA_FAULT_TOGGLE_FILE", f.as_str()), ("WORKLOAD_FOREVER", "1")];
    let mut child = spawn(&fixture("workload"), &["0", "2"], &env, true);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("step 3 ok") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "workload ended early");
    }
    cuda_fault(&["enable", "--xid", "48"], &f);
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let r = finish(child, T);
    assert_eq!(r.status, 1, "{rest}\n{}", r.describe());
    assert!(rest.lines().any(|l| l.starts_with("FAIL ") && l.ends_with(" cudaErrorECCUncorrectable 214")), "{rest}");
    assert!(r.stderr.contains("[XID 48 SIM] "), "{}", r.describe());

    cuda_fault(&["disable"], &f);
    let env = [("CUDA_FAULT_TOGGLE_FILE", f.as_str()), ("CUDA_FAULT_INJECTION_ENABLED", "1")];
    let r = run(&fixture("workload"), &["3"], &env, true, T);
    assert!(r.success() && r.has_line("workload ok"), "disable must win over the environment:\n{}", r.describe());
    cuda_fault(&["clean"], &f);
    let r = run(&fixture("workload"), &["3"], &env, true, T);
    assert!(
        r.has_line("FAIL cudaGetDeviceCount cudaErrorNoDevice 100"),
        "after clean the environment decides:\n{}",
        r.describe()
    );
}

#[test]
fn scenario_flags_written_by_the_helper_are_understood_by_the_shim() {
    let dir = scratch_dir("helper-scenario");
    let f = dir.join("cuda_fault_enabled").display().to_string();
    cuda_fault(&["enable", "--xid", "79", "--devices", "1", "--after", "300ms", "--sticky"], &f);
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "1 79 devices=1 after_ms=300 sticky=1\n");
    // Device 0 keeps working.
    let r = run(&fixture("workload"), &["3"], &[("CUDA_FAULT_TOGGLE_FILE", f.as_str())], true, T);
    assert!(r.success(), "{}", r.describe());
    assert_eq!(
        shim_lines(&r.stderr),
        [format!("[cuda-fault] faults ON: simulating XID 79 (GPU fell off the bus) (devices 1; after 300 ms; sticky; surface immediate; scope device) [toggle file {f}]").as_str()]
    );
    // Device 1 serves for 300 ms, then fails.
    let env = [("CUDA_FAULT_TOGGLE_FILE", f.as_str()), ("WORKLOAD_DEVICE", "1"), ("WORKLOAD_FOREVER", "1")];
    let r = run(&fixture("workload"), &["0", "10"], &env, true, T);
    assert_eq!(r.status, 1, "{}", r.describe());
    let steps = r.lines().iter().filter(|l| l.starts_with("step ")).count();
    assert!(steps >= 10, "only {steps} steps before the fault: after_ms was not honoured\n{}", r.describe());
    assert!(r.stdout.lines().last().unwrap().ends_with("cudaErrorNoDevice 100"), "{}", r.describe());
    cuda_fault(&["enable", "--mode", "hang"], &f);
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "1 mode=hang\n");
    // Hang mode: the workload's first synchronizing call blocks; the harness kills it.
    let r = run(&fixture("workload"), &["1"], &[("CUDA_FAULT_TOGGLE_FILE", f.as_str())], true, Duration::from_secs(2));
    assert!(r.timed_out, "the workload should hang:\n{}", r.describe());
    assert!(r.stderr.contains(" -> hangs (CUDA_FAULT_MODE=hang)"), "{}", r.describe());
}
