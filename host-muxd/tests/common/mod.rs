//! Test harness: start `csp-muxd` as a real process on free loopback ports
//! and temp socket paths, and talk to it with a minimal blocking IPC client
//! built on the csp-ipc codec. Every wait is bounded.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::UdpSocket;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use csp_core::{Addr, Flags, Header, Port, Prio, Version};
use csp_ipc::{Message, Status};

pub const WAIT: Duration = Duration::from_secs(10);

/// A free UDP port on 127.0.0.1 (bound and released; loopback only).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Muxd {
    pub child: Child,
    pub socket: PathBuf,
    pub udp_port: u16,
    pub dir: tempfile::TempDir,
}

impl Muxd {
    /// Start a daemon with node `addr`, UDP on a free port, and `extra` TOML
    /// appended to the generated config (routes must come before tables, so
    /// `top` goes first).
    pub fn start(addr: u16, top: &str, extra: &str) -> Muxd {
        // A port picked free can be taken by another process before the
        // daemon binds it: retry with a fresh one (bounded).
        for _ in 0..4 {
            match Self::try_start_on(addr, free_udp_port(), top, extra) {
                Ok(m) => return m,
                Err(e) if e.contains("in use") => continue,
                Err(e) => panic!("{e}"),
            }
        }
        Self::start_on(addr, free_udp_port(), top, extra)
    }

    pub fn start_on(addr: u16, udp_port: u16, top: &str, extra: &str) -> Muxd {
        Self::try_start_on(addr, udp_port, top, extra).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_start_on(addr: u16, udp_port: u16, top: &str, extra: &str) -> Result<Muxd, String> {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("muxd.sock");
        let config = format!(
            "{top}\n[node]\naddress = {addr}\n[udp]\nbind = \"127.0.0.1:{udp_port}\"\n{extra}\n"
        );
        let cfg_path = dir.path().join("muxd.toml");
        std::fs::write(&cfg_path, config).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_csp-muxd"))
            .arg("--config")
            .arg(&cfg_path)
            .arg("--socket")
            .arg(&socket)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // A file, not a pipe: a pipe nobody reads would fill with
            // debug logs and block the daemon.
            .stderr(std::fs::File::create(dir.path().join("muxd.log")).unwrap())
            .spawn()
            .unwrap();
        let mut m = Muxd {
            child,
            socket,
            udp_port,
            dir,
        };
        m.wait_ready()?;
        Ok(m)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            // Ready means the event loop answers, not only that the socket
            // accepts: it is bound before the links open (start-up order),
            // so a pty link may not exist yet when connect succeeds.
            if let Ok(mut s) = UnixStream::connect(&self.socket) {
                let hello = csp_ipc::encode_to_vec(&Message::Hello {
                    version: csp_ipc::VERSION,
                    name: "ready?",
                })
                .unwrap();
                s.set_read_timeout(Some(WAIT)).unwrap();
                let mut reply = [0u8; 1];
                if s.write_all(&hello).is_ok() && s.read(&mut reply).is_ok_and(|n| n > 0) {
                    return Ok(());
                }
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                let err =
                    std::fs::read_to_string(self.dir.path().join("muxd.log")).unwrap_or_default();
                return Err(format!("csp-muxd exited early ({status}): {err}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(format!(
            "csp-muxd did not open {} in time",
            self.socket.display()
        ))
    }

    pub fn client(&self, name: &str) -> Ipc {
        Ipc::connect(&self.socket, name)
    }

    /// SIGTERM and wait (bounded) for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "csp-muxd ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Muxd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An owned copy of a decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    HelloAck {
        node_addr: u16,
    },
    RegisterAck {
        status: Status,
        addr: u16,
        port: u8,
    },
    UnregisterAck {
        status: Status,
    },
    Data(Vec<u8>),
    /// The last (or only) page of a control reply.
    ControlReply(String),
    /// A page of a control reply with more to follow.
    ControlPage(String),
    Bye(csp_ipc::ByeReason),
    Error {
        code: csp_ipc::ErrorCode,
        message: String,
    },
    Other(String),
}

pub struct Ipc {
    pub stream: UnixStream,
    buf: Vec<u8>,
    pub node: u16,
}

impl Ipc {
    /// Connect without HELLO.
    pub fn raw(socket: &Path) -> Ipc {
        let stream = UnixStream::connect(socket).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        Ipc {
            stream,
            buf: Vec::new(),
            node: 0,
        }
    }

    pub fn connect(socket: &Path, name: &str) -> Ipc {
        let mut c = Ipc::raw(socket);
        c.send(&Message::Hello {
            version: csp_ipc::VERSION,
            name,
        });
        match c.recv() {
            Some(Msg::HelloAck { node_addr }) => c.node = node_addr,
            other => panic!("expected HELLO_ACK, got {other:?}"),
        }
        c
    }

    pub fn send(&mut self, m: &Message<'_>) {
        let bytes = csp_ipc::encode_to_vec(m).unwrap();
        self.stream.write_all(&bytes).unwrap();
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// The next message, or None on EOF / timeout.
    pub fn recv(&mut self) -> Option<Msg> {
        loop {
            if let Some((m, n)) = csp_ipc::decode(&self.buf).expect("daemon sent a bad frame") {
                let owned = match m {
                    Message::HelloAck { node_addr, .. } => Msg::HelloAck { node_addr },
                    Message::RegisterAck { status, addr, port } => {
                        Msg::RegisterAck { status, addr, port }
                    }
                    Message::UnregisterAck { status, .. } => Msg::UnregisterAck { status },
                    Message::Data { frame } => Msg::Data(frame.to_vec()),
                    Message::ControlReply {
                        text, more: true, ..
                    } => Msg::ControlPage(text.to_string()),
                    Message::ControlReply { text, .. } => Msg::ControlReply(text.to_string()),
                    Message::Bye(r) => Msg::Bye(r),
                    Message::Error { code, message } => Msg::Error {
                        code,
                        message: message.to_string(),
                    },
                    other => Msg::Other(format!("{other:?}")),
                };
                self.buf.drain(..n);
                return Some(owned);
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next DATA packet, skipping nothing: anything else is a failure.
    pub fn recv_packet(&mut self) -> (Header, Vec<u8>) {
        match self.recv() {
            Some(Msg::Data(frame)) => {
                let h = Header::parse(&frame, Version::V2).unwrap();
                (h, frame[6..].to_vec())
            }
            other => panic!("expected DATA, got {other:?}"),
        }
    }

    pub fn register(&mut self, addr: u16, port: u8) -> (Status, u16, u8) {
        self.send(&Message::Register { addr, port });
        match self.recv() {
            Some(Msg::RegisterAck { status, addr, port }) => (status, addr, port),
            other => panic!("expected REGISTER_ACK, got {other:?}"),
        }
    }

    pub fn unregister(&mut self, addr: u16, port: u8) -> Status {
        self.send(&Message::Unregister { addr, port });
        match self.recv() {
            Some(Msg::UnregisterAck { status }) => status,
            other => panic!("expected UNREGISTER_ACK, got {other:?}"),
        }
    }

    /// A control reply, its pages joined (bounded: the daemon marks the
    /// last page, and a read times out).
    pub fn control(&mut self, c: csp_ipc::Control) -> String {
        self.send(&Message::Control(c));
        let mut text = String::new();
        loop {
            match self.recv() {
                Some(Msg::ControlPage(t)) => text.push_str(&t),
                Some(Msg::ControlReply(t)) => return text + &t,
                other => panic!("expected CONTROL_REPLY, got {other:?}"),
            }
        }
    }

    /// Send `data` from (src, sport) to (dst, dport) with `flags`.
    pub fn send_packet(
        &mut self,
        src: u16,
        sport: u8,
        dst: u16,
        dport: u8,
        flags: Flags,
        data: &[u8],
    ) {
        let h = header(src, sport, dst, dport, flags);
        let mut frame = vec![0u8; 6];
        h.emit(&mut frame, Version::V2).unwrap();
        frame.extend_from_slice(data);
        self.send(&Message::Data { frame: &frame });
    }
}

pub fn header(src: u16, sport: u8, dst: u16, dport: u8, flags: Flags) -> Header {
    Header {
        prio: Prio::Normal,
        src: Addr::new(src).unwrap(),
        dst: Addr::new(dst).unwrap(),
        dport: Port::new(dport).unwrap(),
        sport: Port::new(sport).unwrap(),
        flags,
    }
}

/// Value of `key N` in a STATS/STATUS text.
pub fn stat(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {text}"))
}

/// A free TCP port on 127.0.0.1 (bound and released; loopback only).
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Value of `key=N` on the STATS line `link NAME ...`.
pub fn link_stat(text: &str, link: &str, key: &str) -> u64 {
    link_field(text, &format!("link {link} "), key)
        .parse()
        .unwrap_or_else(|_| panic!("{key} of {link} not a number in {text}"))
}

/// Value of `key=...` on the first line starting with `prefix`.
pub fn link_field(text: &str, prefix: &str, key: &str) -> String {
    let line = text
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line {prefix:?} in {text}"));
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        .to_string()
}

/// Poll STATUS until KISS link `name` is up (bounded by WAIT).
pub fn wait_link_up(ipc: &mut Ipc, name: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let status = ipc.control(csp_ipc::Control::Status);
        if link_field(&status, &format!("link {name} kiss "), "state") == "up" {
            return;
        }
        assert!(Instant::now() < deadline, "link {name} not up: {status}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Ipc {
    /// The next DATA packet within `timeout`, or None.
    pub fn recv_packet_within(&mut self, timeout: Duration) -> Option<(Header, Vec<u8>)> {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
        let got = self.recv();
        self.stream.set_read_timeout(Some(WAIT)).unwrap();
        match got {
            Some(Msg::Data(frame)) => {
                let h = Header::parse(&frame, Version::V2).unwrap();
                Some((h, frame[6..].to_vec()))
            }
            None => None,
            other => panic!("expected DATA, got {other:?}"),
        }
    }
}
