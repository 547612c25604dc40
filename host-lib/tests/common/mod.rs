//! Test harness: a real `csp-muxd` process on a temp socket and a free UDP
//! port on 127.0.0.1. The daemon binary belongs to another package, so it is
//! built once (the first test that needs it runs `cargo build -p host-muxd`
//! into this test's own target directory and profile). Every wait is bounded.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const WAIT: Duration = Duration::from_secs(10);

/// Path of the csp-muxd binary, built on first use.
pub fn muxd_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // target/<profile>/deps/<test binary>: the daemon goes to
        // target/<profile>/csp-muxd when built with the same profile.
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let target_dir = profile_dir.parent().unwrap().to_path_buf();
        let profile = profile_dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let profile_arg = if profile == "debug" {
            "dev".to_string()
        } else {
            profile
        };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "host-muxd",
                "--bin",
                "csp-muxd",
                "--profile",
            ])
            .arg(&profile_arg)
            .arg("--target-dir")
            .arg(&target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("running cargo to build csp-muxd");
        assert!(status.success(), "building csp-muxd failed");
        let bin = profile_dir.join("csp-muxd");
        assert!(bin.exists(), "{} missing after build", bin.display());
        bin
    })
}

/// The `csp` tool of this package.
pub fn csp_bin() -> &'static str {
    env!("CARGO_BIN_EXE_csp")
}

pub struct Muxd {
    pub child: Child,
    pub socket: PathBuf,
    pub addr: u16,
    pub dir: tempfile::TempDir,
}

impl Muxd {
    /// A daemon with node `addr`, UDP on a loopback port the kernel picks
    /// at bind time (no test here talks UDP, and port 0 can not race with
    /// other processes), `extra` TOML appended after the generated tables.
    pub fn start(addr: u16, extra: &str) -> Muxd {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("muxd.sock");
        Self::start_in(dir, socket, addr, "", extra)
    }

    /// As [`start`](Self::start), with `top` (root keys such as `routes`)
    /// written before the generated tables.
    pub fn start_with_top(addr: u16, top: &str, extra: &str) -> Muxd {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("muxd.sock");
        Self::start_in(dir, socket, addr, top, extra)
    }

    fn start_in(
        dir: tempfile::TempDir,
        socket: PathBuf,
        addr: u16,
        top: &str,
        extra: &str,
    ) -> Muxd {
        let config =
            format!("{top}\n[node]\naddress = {addr}\n[udp]\nbind = \"127.0.0.1:0\"\n{extra}\n");
        let cfg_path = dir.path().join("muxd.toml");
        std::fs::write(&cfg_path, config).unwrap();
        let child = Command::new(muxd_bin())
            .arg("--config")
            .arg(&cfg_path)
            .arg("--socket")
            .arg(&socket)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // A file, not a pipe: a pipe nobody reads would fill with the
            // daemon's warnings and block it.
            .stderr(std::fs::File::create(dir.path().join("muxd.log")).unwrap())
            .spawn()
            .unwrap();
        let mut m = Muxd {
            child,
            socket,
            addr,
            dir,
        };
        m.wait_ready();
        m
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            // Ready means the event loop answers a HELLO: the socket is
            // bound before the links open, so connecting alone is too early.
            if let Ok(mut s) = UnixStream::connect(&self.socket) {
                let hello = csp_ipc::encode_to_vec(&csp_ipc::Message::Hello {
                    version: csp_ipc::VERSION,
                    name: "ready?",
                })
                .unwrap();
                s.set_read_timeout(Some(WAIT)).unwrap();
                let mut reply = [0u8; 1];
                if s.write_all(&hello).is_ok() && s.read(&mut reply).is_ok_and(|n| n > 0) {
                    return;
                }
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                let err =
                    std::fs::read_to_string(self.dir.path().join("muxd.log")).unwrap_or_default();
                panic!("csp-muxd exited early ({status}): {err}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("csp-muxd did not open {} in time", self.socket.display());
    }

    /// SIGKILL: the daemon gets no chance to say goodbye or clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Start a new daemon on the same socket (and config) as this one,
    /// which must be dead.
    pub fn restart(self) -> Muxd {
        let mut old = self;
        old.kill();
        let dir = std::mem::replace(&mut old.dir, tempfile::tempdir().unwrap());
        let (socket, addr) = (old.socket.clone(), old.addr);
        drop(old);
        Self::start_in(dir, socket, addr, "", "")
    }
}

impl Drop for Muxd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `csp` talking to daemon `d`.
pub fn csp(d: &Muxd) -> Command {
    let mut c = Command::new(csp_bin());
    c.arg("--socket").arg(&d.socket);
    c
}

/// Wait (bounded) for a child to finish and collect its output.
pub fn finish(mut child: Child) -> Output {
    let deadline = Instant::now() + WAIT;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "csp did not finish in time; stdout {:?} stderr {:?}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Run `cmd` to its end (bounded): exit code, stdout, stderr.
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = finish(child);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
