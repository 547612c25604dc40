//! A `csp-muxd` process for a test: its config generated from a
//! [`MuxdConfig`] into a temp directory that also holds its socket and its
//! stderr (a file, so a chatty daemon never blocks on a full pipe, and
//! what it said is there after it died).

use std::cell::OnceCell;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::Instant;

use crate::ipc::Ipc;
use crate::process::{terminate, POLL};
use crate::{stats, WAIT};

/// The daemon's UDP link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Udp {
    /// `[udp] enabled = false`.
    Off,
    /// Bound to 127.0.0.1 port 0: the kernel picks the port at the daemon's
    /// bind (nothing can race for it); [`Muxd::udp_port`] reads it back.
    #[default]
    Loopback,
    /// Bound to this port on 127.0.0.1, for daemons whose routes must name
    /// each other's ports before they start. A taken port fails the start.
    Port(u16),
}

/// What a test's daemon is: named fields, so call sites say what each
/// value is. Build it with [`MuxdConfig::node`] and the setters.
#[derive(Debug, Clone, Default)]
pub struct MuxdConfig {
    /// `[node] address`.
    pub address: u16,
    pub udp: Udp,
    /// More keys of the `[udp]` table (`version = 1`).
    pub udp_keys: String,
    /// Items of the top-level `routes` list, e.g. `"0/0 kiss0"`.
    pub routes: Vec<String>,
    /// TOML appended after the generated tables (link tables, `[ipc]`,
    /// `[services]`).
    pub extra: String,
    /// The daemon's `RUST_LOG`; `info` if empty.
    pub log: String,
}

impl MuxdConfig {
    /// Node `address` with UDP on a kernel-picked loopback port.
    pub fn node(address: u16) -> MuxdConfig {
        MuxdConfig {
            address,
            ..MuxdConfig::default()
        }
    }

    pub fn udp(mut self, udp: Udp) -> Self {
        self.udp = udp;
        self
    }

    /// Add keys to the `[udp]` table.
    pub fn udp_keys(mut self, keys: &str) -> Self {
        self.udp_keys.push_str(keys);
        self.udp_keys.push('\n');
        self
    }

    /// Add one route (`"DST[/MASK] LINK [VIA]"`).
    pub fn route(mut self, route: impl Into<String>) -> Self {
        self.routes.push(route.into());
        self
    }

    /// Append TOML after the generated tables.
    pub fn extra(mut self, toml: &str) -> Self {
        self.extra.push_str(toml);
        self.extra.push('\n');
        self
    }

    pub fn log(mut self, filter: &str) -> Self {
        self.log = filter.to_string();
        self
    }

    /// The configuration file's text.
    pub fn toml(&self) -> String {
        let mut t = String::new();
        if !self.routes.is_empty() {
            let items: Vec<String> = self.routes.iter().map(|r| format!("{r:?}")).collect();
            t += &format!("routes = [{}]\n", items.join(", "));
        }
        t += &format!("[node]\naddress = {}\n[udp]\n", self.address);
        t += &match self.udp {
            Udp::Off => "enabled = false\n".to_string(),
            Udp::Loopback => "bind = \"127.0.0.1:0\"\n".to_string(),
            Udp::Port(p) => format!("bind = \"127.0.0.1:{p}\"\n"),
        };
        t += &self.udp_keys;
        t += &self.extra;
        t
    }
}

/// A running `csp-muxd`. Killed (SIGKILL) on drop; its temp directory
/// (config, socket, stderr) goes with it. If the test is failing, the
/// daemon's stderr is printed first.
pub struct Muxd {
    pub child: Child,
    pub config: MuxdConfig,
    /// The IPC socket (in [`dir`](Self::dir)).
    pub socket: PathBuf,
    pub dir: tempfile::TempDir,
    config_path: PathBuf,
    stderr_path: PathBuf,
    udp_port: OnceCell<u16>,
}

impl Muxd {
    /// Start the daemon and wait (bounded) until it answers HELLO on its
    /// socket; panics with its stderr if it exits first. A port the
    /// caller picked (a [`Udp::Port`], a KISS TCP listener) may have been
    /// taken meanwhile: such callers start with [`try_start`](Self::try_start)
    /// under [`retry_on_port_clash`](crate::retry_on_port_clash), picking
    /// fresh ports each time.
    pub fn start(config: MuxdConfig) -> Muxd {
        Self::try_start(config).unwrap_or_else(|e| panic!("{e}"))
    }

    /// As [`start`](Self::start); a daemon that exits early is `Err` with
    /// what it said on stderr.
    pub fn try_start(config: MuxdConfig) -> Result<Muxd, String> {
        let dir = tempfile::tempdir().expect("a temp dir");
        let socket = dir.path().join("muxd.sock");
        let config_path = dir.path().join("muxd.toml");
        let stderr_path = dir.path().join("muxd.stderr");
        std::fs::write(&config_path, config.toml()).expect("write the daemon's config");
        let mut m = Muxd {
            child: spawn(&config, &config_path, &socket, &stderr_path),
            config,
            socket,
            dir,
            config_path,
            stderr_path,
            udp_port: OnceCell::new(),
        };
        m.wait_ready()?;
        Ok(m)
    }

    /// Poll until the daemon answers HELLO ([`WAIT`] at most).
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + WAIT;
        loop {
            if answers_hello(&self.socket) {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait().expect("wait for csp-muxd") {
                return Err(format!(
                    "csp-muxd {} exited early ({status}): {}",
                    self.config.address,
                    self.stderr()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "csp-muxd {} did not open {} within {WAIT:?}: {}",
                    self.config.address,
                    self.socket.display(),
                    self.stderr()
                ));
            }
            sleep(POLL);
        }
    }

    /// Node address.
    pub fn addr(&self) -> u16 {
        self.config.address
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The UDP port the daemon bound (asked over IPC once, for
    /// [`Udp::Loopback`]).
    pub fn udp_port(&self) -> u16 {
        *self.udp_port.get_or_init(|| match self.config.udp {
            Udp::Port(p) => p,
            Udp::Off => panic!("csp-muxd {} has no UDP link", self.config.address),
            Udp::Loopback => {
                let status = self.control(csp_ipc::Control::Status);
                let bind = stats::link_field(&status, "link udp ", "bind");
                bind.rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| panic!("no port in udp bind={bind}"))
            }
        })
    }

    /// A raw IPC client that said HELLO as `name`.
    pub fn client(&self, name: &str) -> Ipc {
        Ipc::connect(&self.socket, name)
    }

    /// One control request on a client of its own (STATS, STATUS...).
    pub fn control(&self, c: csp_ipc::Control) -> String {
        self.client("test-control").control(c)
    }

    /// What the daemon wrote to stderr so far (all its runs).
    pub fn stderr(&self) -> String {
        std::fs::read(&self.stderr_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// SIGKILL: no goodbye to clients, no clean-up (the socket file stays).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and its exit status ([`WAIT`] at most).
    pub fn terminate(&mut self) -> ExitStatus {
        terminate(&mut self.child, "csp-muxd")
    }

    /// Kill (SIGKILL, if still running) and start a new process on the same
    /// config and socket; wait until it is ready.
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn(
            &self.config,
            &self.config_path,
            &self.socket,
            &self.stderr_path,
        );
        if let Err(e) = self.wait_ready() {
            panic!("restart: {e}");
        }
    }
}

impl Drop for Muxd {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            // The end is what explains a failure; a debug log can be long.
            let err = std::fs::read(&self.stderr_path).unwrap_or_default();
            let tail = &err[err.len().saturating_sub(16 * 1024)..];
            eprintln!(
                "--- csp-muxd {} stderr (last {} bytes) ---\n{}",
                self.config.address,
                tail.len(),
                String::from_utf8_lossy(tail)
            );
        }
    }
}

/// Ready means the event loop answers HELLO, not only that the socket
/// accepts: the socket is bound before the links open (start-up order), so
/// a pty link may not exist yet when a connect succeeds. The read is
/// bounded by [`WAIT`].
fn answers_hello(socket: &std::path::Path) -> bool {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return false;
    };
    let hello = csp_ipc::encode_to_vec(&csp_ipc::Message::Hello {
        version: csp_ipc::VERSION,
        name: "ready?",
    })
    .expect("encode HELLO");
    let mut reply = [0u8; 1];
    s.set_read_timeout(Some(WAIT)).is_ok()
        && s.write_all(&hello).is_ok()
        && s.read(&mut reply).is_ok_and(|n| n > 0)
}

fn spawn(
    config: &MuxdConfig,
    config_path: &std::path::Path,
    socket: &std::path::Path,
    stderr_path: &std::path::Path,
) -> Child {
    let stderr: File = OpenOptions::new()
        .create(true)
        .append(true)
        .open(stderr_path)
        .expect("open the daemon's stderr file");
    let log = if config.log.is_empty() {
        "info"
    } else {
        &config.log
    };
    Command::new(crate::bins::muxd())
        .arg("--config")
        .arg(config_path)
        .arg("--socket")
        .arg(socket)
        .env("RUST_LOG", log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start csp-muxd")
}

impl Muxd {
    /// Start `csp ARGS` against this daemon (stdout and stderr piped) and
    /// wait until its first stderr line starts with `ready` ("listening
    /// on "); the read is bounded by the tool's own `--idle` or timeout,
    /// which the caller passes. The child and the rest of its stderr.
    pub fn spawn_csp_ready(&self, args: &[&str], ready: &str) -> (Child, BufReader<ChildStderr>) {
        let mut child = self
            .csp()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start csp");
        let mut err = BufReader::new(child.stderr.take().expect("piped stderr"));
        let mut line = String::new();
        err.read_line(&mut line).expect("read csp's stderr");
        assert!(line.starts_with(ready), "csp said {line:?}, not {ready:?}");
        (child, err)
    }

    /// The `csp` tool ([`bins::csp`](crate::bins::csp)) talking to this
    /// daemon; add its arguments.
    pub fn csp(&self) -> Command {
        let mut c = Command::new(crate::bins::csp());
        c.arg("--socket").arg(&self.socket);
        c
    }
}

impl Muxd {
    /// The daemon's STATS text.
    pub fn stats(&self) -> String {
        self.control(csp_ipc::Control::Stats)
    }

    /// Value of `key=N` on the STATS line of link `link`.
    pub fn link_stat(&self, link: &str, key: &str) -> u64 {
        stats::link_stat(&self.stats(), link, key)
    }
}

/// Run csp-muxd on the configuration text `config` with `--socket socket`
/// until it exits (bounded: killed after [`WAIT`]), for start-ups that must
/// fail: its exit code and stderr. The config file is written into `dir`
/// under a name of its own.
pub fn run_to_exit(dir: &std::path::Path, socket: &std::path::Path, config: &str) -> (i32, String) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let cfg = dir.join(format!(
        "run-to-exit-{}.toml",
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&cfg, config).expect("writing the config");
    let (code, _, err) = crate::process::run(
        Command::new(crate::bins::muxd())
            .arg("--config")
            .arg(&cfg)
            .arg("--socket")
            .arg(socket),
    );
    (code, err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_text_puts_routes_first_and_keys_in_their_tables() {
        let c = MuxdConfig::node(7)
            .udp(Udp::Port(9700))
            .udp_keys("version = 1")
            .route("0/0 zmqhub")
            .route("20 zmqhub 12")
            .extra("[ipc]\nqueue_len = 4");
        assert_eq!(
            c.toml(),
            "routes = [\"0/0 zmqhub\", \"20 zmqhub 12\"]\n[node]\naddress = 7\n[udp]\n\
             bind = \"127.0.0.1:9700\"\nversion = 1\n[ipc]\nqueue_len = 4\n"
        );
        let off = MuxdConfig::node(1).udp(Udp::Off).toml();
        assert_eq!(off, "[node]\naddress = 1\n[udp]\nenabled = false\n");
        assert!(MuxdConfig::node(1)
            .toml()
            .contains("bind = \"127.0.0.1:0\""));
    }
}
