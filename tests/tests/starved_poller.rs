//! A toggle change must take effect even when the shim's poller thread gets no CPU (busy threads
//! outnumber the cores and the scheduler gives a sleeper no head start). The poller is stopped
//! here outright, alone of the process's threads (ptrace stops one thread): while faults are on,
//! the application's own calls notice that the last check is overdue and check the file
//! themselves, so turning faults off or changing them still lands within the poll interval.
//! (Turning faults on is seen by the poller alone: calls with faults off cost only the gate test.)

use std::sync::mpsc;
use std::time::Duration;

use cuda_fault_tests::calls::{line_starting, lines};
use cuda_fault_tests::{fixture, scratch_dir, spawn, write_atomic};

const T: Duration = Duration::from_secs(30);

unsafe extern "C" {
    fn ptrace(request: i32, ...) -> i64;
    fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
}

const PTRACE_DETACH: i32 = 17;
const PTRACE_SEIZE: i32 = 0x4206;
const PTRACE_INTERRUPT: i32 = 0x4207;
const WALL: i32 = 0x4000_0000;

/// The thread of `pid` named `name`, waiting until it exists.
fn thread_named(pid: u32, name: &str) -> i32 {
    let deadline = std::time::Instant::now() + T;
    loop {
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim_end() == name {
                return task.file_name().to_string_lossy().parse().unwrap();
            }
        }
        assert!(std::time::Instant::now() < deadline, "no thread {name} in process {pid}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Stops one thread (not its process) until [`resume`].
fn freeze(tid: i32) {
    let null = std::ptr::null_mut::<std::ffi::c_void>();
    // SAFETY: ptrace/waitpid on a thread of our own child, with no memory handed over.
    unsafe {
        assert_eq!(
            ptrace(PTRACE_SEIZE, tid, null, null),
            0,
            "cannot ptrace the poller thread {tid}: {} (this test needs ptrace of a child: kernel.yama.ptrace_scope <= 1, no seccomp filter against it)",
            std::io::Error::last_os_error()
        );
        assert_eq!(ptrace(PTRACE_INTERRUPT, tid, null, null), 0, "{}", std::io::Error::last_os_error());
        let mut status = 0;
        assert_eq!(waitpid(tid, &mut status, WALL), tid, "{}", std::io::Error::last_os_error());
    }
}

fn resume(tid: i32) {
    let null = std::ptr::null_mut::<std::ffi::c_void>();
    // SAFETY: as in freeze.
    assert_eq!(unsafe { ptrace(PTRACE_DETACH, tid, null, null) }, 0, "{}", std::io::Error::last_os_error());
}

#[test]
fn with_the_poller_stopped_faults_still_turn_off_and_change() {
    let dir = scratch_dir("starved");
    let file = dir.join("toggle");
    write_atomic(&file, b"1 48\n");
    let f = file.display().to_string();
    let env = [("CUDA_FAULT_TOGGLE_FILE", f.as_str()), ("CUDA_FAULT_POLL_MS", "10")];
    let mut child = spawn(&fixture("flip_probe"), &["60000"], &env, true);
    let out = lines(child.stdout.take().unwrap());
    let next = || out.recv_timeout(T).unwrap_or_else(|_| panic!("flip_probe printed nothing new within {T:?}"));
    assert_eq!(next(), "code 214");
    let poller = thread_named(child.id(), "cuda-fault-poll");
    freeze(poller);
    write_atomic(&file, b"0\n");
    assert_eq!(next(), "code 0", "faults stayed on with the poller stopped");
    // Back on, then changed, while the poller is stopped: "on" waits for the poller.
    write_atomic(&file, b"1 79\n");
    resume(poller);
    assert_eq!(next(), "code 100");
    freeze(poller);
    write_atomic(&file, b"1 48\n");
    assert_eq!(next(), "code 214", "a changed fault was not seen with the poller stopped");
    resume(poller);
    let _ = child.kill();
    let _ = child.wait();
}

/// A call parked by hang mode checks the file itself too: with the poller stopped, turning the
/// toggle off still releases it (and the shim says so), rather than leaving the workload hung
/// until the poller runs again.
#[test]
fn with_the_poller_stopped_a_hung_call_is_released_when_faults_turn_off() {
    let dir = scratch_dir("starved-hang");
    let file = dir.join("toggle");
    write_atomic(&file, b"0\n");
    let f = file.display().to_string();
    let env = [("CUDA_FAULT_TOGGLE_FILE", f.as_str()), ("CUDA_FAULT_POLL_MS", "10"), ("WORKLOAD_FOREVER", "1")];
    let mut child = spawn(&fixture("workload"), &["0", "5"], &env, true);
    let out = lines(child.stdout.take().unwrap());
    let err = lines(child.stderr.take().unwrap());
    let until = |rx: &mpsc::Receiver<String>, what: &str, prefix: &str| line_starting(rx, prefix, what, T);
    until(&out, "stdout", "step 2 ok");
    write_atomic(&file, b"1 79 mode=hang\n");
    until(&err, "stderr", "[XID 79 SIM] cudaStreamSynchronize -> hangs (CUDA_FAULT_MODE=hang)");
    let poller = thread_named(child.id(), "cuda-fault-poll");
    freeze(poller);
    write_atomic(&file, b"0\n");
    until(&err, "stderr", "[cuda-fault] faults OFF");
    // Released: the workload steps again (a step line printed before it hung may come first).
    until(&out, "stdout", "step ");
    let fresh = until(&out, "stdout", "step ");
    assert!(fresh.ends_with(" ok"), "{fresh}");
    resume(poller);
    let _ = child.kill();
    let _ = child.wait();
}
