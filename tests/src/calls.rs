//! A conversation with `call_probe` (tests/fixtures/call_probe.c) running under the shim: the test
//! sends one command at a time and reads its result, so it can write the toggle file, fork or
//! start threads between two calls and see what each call returned, in order.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use crate::{command, finish, fixture, Run};

/// How long one answer may take on a loaded 2-core machine.
const ANSWER: Duration = Duration::from_secs(30);

pub struct Calls {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    out: Receiver<String>,
    err: Receiver<String>,
    /// stdout lines read while looking for another one (e.g. a thread's late answer).
    backlog: VecDeque<String>,
    /// Every stderr line read so far.
    stderr: Vec<String>,
}

/// A child's pipe as a channel of its lines, read by a thread of its own.
pub fn lines(pipe: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The next line from `rx` that starts with `prefix` (the lines before it are dropped); panics
/// naming `what` when none comes within `timeout`.
pub fn line_starting(rx: &Receiver<String>, prefix: &str, what: &str, timeout: Duration) -> String {
    loop {
        let line =
            rx.recv_timeout(timeout).unwrap_or_else(|e| panic!("no {prefix:?} on {what} within {timeout:?}: {e:?}"));
        if line.starts_with(prefix) {
            return line;
        }
    }
}

impl Calls {
    /// Starts `program` (`call_probe` or one of its `_rt` variants) under the shim with `env`.
    pub fn start(program: &str, env: &[(&str, &str)]) -> Calls {
        let path = fixture(program);
        Calls::start_path(&path, env)
    }

    pub fn start_path(program: &Path, env: &[(&str, &str)]) -> Calls {
        let mut child = command(program, &[], env, true)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let stdin = child.stdin.take();
        let out = lines(child.stdout.take().unwrap());
        let err = lines(child.stderr.take().unwrap());
        Calls { child: Some(child), stdin, out, err, backlog: VecDeque::new(), stderr: Vec::new() }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn send(&mut self, cmd: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{cmd}").and_then(|()| stdin.flush()).unwrap_or_else(|e| panic!("send {cmd:?}: {e}"));
    }

    /// Waits for a stdout line that `want` accepts (earlier lines it skips stay in the backlog).
    pub fn line_where(&mut self, what: &str, want: impl Fn(&str) -> bool) -> String {
        if let Some(i) = self.backlog.iter().position(|l| want(l)) {
            return self.backlog.remove(i).unwrap();
        }
        let deadline = Instant::now() + ANSWER;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.out.recv_timeout(left) {
                Ok(l) if want(&l) => return l,
                Ok(l) => self.backlog.push_back(l),
                Err(_) => {
                    let stderr = self.stderr();
                    panic!("no {what} within {ANSWER:?}; read so far: {:?}; stderr: {stderr:?}", self.backlog)
                }
            }
        }
    }

    /// Sends `cmd` and returns its answer line (`<cmd> ...`).
    pub fn line(&mut self, cmd: &str) -> String {
        self.send(cmd);
        let prefix = format!("{cmd} ");
        self.line_where(&format!("the answer to {cmd:?}"), |l| l.starts_with(&prefix))
    }

    /// Sends `cmd` and returns the code its call returned.
    pub fn call(&mut self, cmd: &str) -> i64 {
        let l = self.line(cmd);
        let code = l[cmd.len() + 1..].split(' ').next().unwrap();
        code.parse().unwrap_or_else(|_| panic!("{l:?}"))
    }

    /// The codes of several calls, one after the other.
    pub fn calls(&mut self, cmds: &[&str]) -> Vec<i64> {
        cmds.iter().map(|c| self.call(c)).collect()
    }

    /// `repeat N CMD`: (calls that failed, the failure pattern as '0'/'1').
    pub fn repeat(&mut self, n: u32, cmd: &str) -> (u32, String) {
        let l = self.line(&format!("repeat {n} {cmd}"));
        let w: Vec<&str> = l.split(' ').collect();
        // repeat N CMD failed F last C pattern P
        let at = w.iter().position(|x| *x == "failed").unwrap();
        (w[at + 1].parse().unwrap(), w.last().unwrap().to_string())
    }

    /// `thread CMD`: starts it and returns the thread's number.
    pub fn thread(&mut self, cmd: &str) -> u32 {
        self.send(&format!("thread {cmd}"));
        let l = self.line_where("a thread start", |l| l.starts_with("thread ") && l.ends_with(" started"));
        l.split(' ').nth(1).unwrap().parse().unwrap()
    }

    /// Waits for thread `t`'s call to return; its code.
    pub fn thread_returned(&mut self, t: u32) -> i64 {
        let prefix = format!("thread {t} ");
        let l =
            self.line_where(&format!("thread {t}'s return"), |l| l.starts_with(&prefix) && !l.ends_with(" started"));
        l.rsplit(' ').next().unwrap().parse().unwrap()
    }

    /// Whether a thread's return is among the lines read so far (without waiting).
    pub fn thread_has_returned(&mut self) -> bool {
        while let Ok(l) = self.out.try_recv() {
            self.backlog.push_back(l);
        }
        self.backlog.iter().any(|l| l.starts_with("thread ") && !l.ends_with(" started"))
    }

    /// `fork A,B,...`: the child's answers (without the "child " prefix) and its exit status.
    pub fn fork(&mut self, cmds: &[&str]) -> (Vec<String>, i64) {
        self.send(&format!("fork {}", cmds.join(",")));
        let mut child = Vec::new();
        loop {
            let l = self.line_where("the forked child's lines", |l| l.starts_with("child ") || l.starts_with("fork "));
            match l.strip_prefix("child ") {
                Some(c) => child.push(c.to_string()),
                None => return (child, l[5..].parse().unwrap()),
            }
        }
    }

    /// Waits for a stderr line that `want` accepts.
    pub fn stderr_where(&mut self, what: &str, want: impl Fn(&str) -> bool) -> String {
        if let Some(l) = self.stderr.iter().find(|l| want(l)) {
            return l.clone();
        }
        let deadline = Instant::now() + ANSWER;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.err.recv_timeout(left) {
                Ok(l) => {
                    self.stderr.push(l.clone());
                    if want(&l) {
                        return l;
                    }
                }
                Err(_) => panic!("no {what} on stderr within {ANSWER:?}: {:?}", self.stderr),
            }
        }
    }

    /// The stderr lines so far.
    pub fn stderr(&mut self) -> Vec<String> {
        while let Ok(l) = self.err.try_recv() {
            self.stderr.push(l);
        }
        self.stderr.clone()
    }

    /// Asks the probe to exit at once (whatever its threads do) and collects the rest.
    pub fn exit(mut self) -> Run {
        self.send("exit");
        self.finish()
    }

    /// Closes stdin (the probe exits) and collects the rest.
    pub fn finish(mut self) -> Run {
        drop(self.stdin.take());
        let mut r = finish(self.child.take().unwrap(), ANSWER);
        let mut out: Vec<String> = self.backlog.drain(..).collect();
        out.extend(drain(&self.out));
        r.stdout = out.iter().map(|l| format!("{l}\n")).collect();
        let mut err = self.stderr.clone();
        err.extend(drain(&self.err));
        r.stderr = err.iter().map(|l| format!("{l}\n")).collect();
        r
    }
}

/// The lines still to come from a pipe whose writer has exited (until its reader sees the end).
fn drain(rx: &Receiver<String>) -> Vec<String> {
    let deadline = Instant::now() + ANSWER;
    let mut v = Vec::new();
    while let Ok(l) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        v.push(l);
    }
    v
}

impl Drop for Calls {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// How many threads of process `pid` sleep in `nanosleep` (the shim's hang loop; the probe
/// itself never sleeps, and without a poller, `CUDA_FAULT_POLL_MS=0`, neither does the shim).
pub fn threads_asleep(pid: u32) -> usize {
    #[cfg(target_arch = "x86_64")]
    const NANOSLEEP: [&str; 2] = ["35", "230"];
    #[cfg(target_arch = "aarch64")]
    const NANOSLEEP: [&str; 2] = ["101", "115"];
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("syscall"))
                .is_ok_and(|s| NANOSLEEP.contains(&s.split_whitespace().next().unwrap_or("")))
        })
        .count()
}

/// Waits until exactly `n` threads of `pid` sleep in `nanosleep`.
pub fn wait_asleep(pid: u32, n: usize) {
    let deadline = Instant::now() + ANSWER;
    while threads_asleep(pid) != n {
        assert!(Instant::now() < deadline, "{} threads asleep, not {n}", threads_asleep(pid));
        std::thread::yield_now();
    }
}
