//! Bounded waits for child processes.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::WAIT;

/// Poll interval of every wait here.
pub const POLL: Duration = Duration::from_millis(10);

/// Wait for `child` at most `limit`; past it, kill it and panic naming
/// `what` (with its stderr, if piped).
pub fn wait_bounded(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for a child") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("{what} did not finish within {limit:?}; stderr: {err}");
        }
        sleep(POLL);
    }
}

/// Wait ([`WAIT`] at most) for a child to finish and collect its output
/// (stdout and stderr piped); past the bound it is killed and the test fails with what it printed.
pub fn finish(child: Child) -> Output {
    finish_within(child, WAIT)
}

/// As [`finish`], bounded by `within`. Stdout and stderr are read while
/// the child runs (a child writing more than a pipe holds would otherwise
/// block until the bound).
pub fn finish_within(mut child: Child, within: Duration) -> Output {
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for a child") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        sleep(POLL);
    };
    let out = Output {
        status: status.unwrap_or_else(|| child.wait().expect("wait for a child")),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    if status.is_none() {
        panic!(
            "child did not finish within {within:?}; stdout (end) {:?} stderr (end) {:?}",
            tail(&out.stdout),
            tail(&out.stderr)
        );
    }
    out
}

/// Read a child's pipe to its end in a thread of its own.
fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// The last 4 KiB of `bytes` as text, for failure messages.
fn tail(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(4096)..]).into_owned()
}

/// Run `cmd` to its end ([`WAIT`] at most) with no stdin: exit code (-1
/// if killed by a signal), stdout, stderr.
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    run_within(cmd, WAIT)
}

/// As [`run`], bounded by `within`.
pub fn run_within(cmd: &mut Command, within: Duration) -> (i32, String, String) {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a child process");
    let out = finish_within(child, within);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// SIGTERM `child` and wait ([`WAIT`] at most) for its exit status.
pub fn terminate(child: &mut Child, what: &str) -> ExitStatus {
    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {what}");
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(s) = child.try_wait().expect("wait for a child") {
            return s;
        }
        assert!(Instant::now() < deadline, "{what} ignored SIGTERM");
        sleep(POLL);
    }
}

/// Resident set of process `pid`, in KiB (Linux `/proc`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in {status}"))
}
