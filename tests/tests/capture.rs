//! `csp capture` end to end: csp-muxd with a UDP link on 127.0.0.1, the
//! capture tool as a real process writing pcapng, traffic from a UDP socket
//! (a remote node 5) and from an application (host-lib), and the file read
//! back by tshark with the CSP dissector: every frame's link, direction,
//! header, trailers and payload compared with what was sent.
//!
//! Also: `--link` filters, captures running side by side, `-w -` into
//! `tshark -r -`, Ctrl-C and a stopping daemon leave a valid file, clients
//! the daemon does not trust are refused (TCP; another uid when run as
//! root), and a capture client that stops reading does not slow the daemon
//! (every ping answered; the frames that did not fit are dropped and the
//! counts add up exactly).
//!
//! Without tshark the dissecting tests are skipped (CI=true: they fail).
//! Every wait is bounded; processes are killed on drop.

#[path = "dissector/tshark.rs"]
mod tshark;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::UdpSocket;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use csp_core::security::{crc_trailer, hmac_trailer, HmacKey};
use csp_core::{Addr, Flags, Header, Port, Prio, Version};
use csp_ipc::Message;
use host_lib::{Bind, Client, ClientConfig, Control, Options};
use test_support::{link_field as field, retry_on_port_clash, stat as counter, MuxdConfig, WAIT};

const KEY: &[u8] = b"capture test key";
/// The remote node behind the UDP link (the test's UDP socket).
const REMOTE: u16 = 5;
/// The application's port on the daemon's node (1).
const APP_PORT: u8 = 10;

// ---- processes -------------------------------------------------------------

fn csp_bin() -> &'static Path {
    test_support::bins::csp()
}

/// csp-muxd as node 1 (test-support's daemon: ready when it answers
/// HELLO, stderr in a file, killed on drop) with its UDP link on a
/// loopback port the kernel picks, a route to node 5 at `peer`, and
/// `extra` TOML; its clients here are host-lib's.
struct Muxd {
    inner: test_support::Muxd,
    /// Where the UDP link is bound.
    udp: std::net::SocketAddr,
}

impl std::ops::Deref for Muxd {
    type Target = test_support::Muxd;
    fn deref(&self) -> &test_support::Muxd {
        &self.inner
    }
}

impl std::ops::DerefMut for Muxd {
    fn deref_mut(&mut self) -> &mut test_support::Muxd {
        &mut self.inner
    }
}

impl Muxd {
    fn start(peer: u16, extra: &str) -> Muxd {
        Muxd::try_start_with(peer, &[], extra).unwrap_or_else(|e| panic!("{e}"))
    }

    /// As `start`, with more routes (`"7 radio"`); `Err` (with what the
    /// daemon said) if it exits early, e.g. on a port taken meanwhile.
    fn try_start_with(peer: u16, routes: &[&str], extra: &str) -> Result<Muxd, String> {
        let mut config = MuxdConfig::node(1)
            .route(format!("{REMOTE} udp 127.0.0.1:{peer}"))
            .extra(extra)
            .log("warn");
        for r in routes {
            config = config.route(*r);
        }
        let inner = test_support::Muxd::try_start(config)?;
        let udp = std::net::SocketAddr::from(([127, 0, 0, 1], inner.udp_port()));
        Ok(Muxd { inner, udp })
    }

    fn client(&self, name: &str) -> Client {
        Client::with_config(ClientConfig {
            socket: Some(self.socket.clone()),
            name: name.into(),
            reconnect: false,
            ..ClientConfig::default()
        })
        .unwrap()
    }

    fn stats(&self) -> String {
        self.client("stats").control(Control::Stats).unwrap()
    }

    /// `csp --socket S capture ARGS`, stderr piped.
    fn capture(&self, args: &[&str]) -> CaptureProc {
        let child = Command::new(csp_bin())
            .arg("--socket")
            .arg(&self.socket)
            .arg("capture")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        CaptureProc::new(child)
    }
}

/// A running `csp capture`, its stderr read by a thread line by line.
struct CaptureProc {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl CaptureProc {
    fn new(mut child: Child) -> CaptureProc {
        let stderr: ChildStderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        CaptureProc {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Wait (bounded) for the line saying the daemon accepted the capture.
    fn wait_started(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let started = line.starts_with("capturing on ");
                    self.seen.push(line);
                    if started {
                        return;
                    }
                }
                Err(_) => panic!("capture did not start: {:?}", self.seen),
            }
        }
    }

    /// Wait (bounded) for the exit; the exit code and all of stderr.
    fn finish(mut self) -> (i32, String) {
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "csp capture did not end: {:?}",
                self.seen
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(line);
        }
        (status.code().unwrap_or(-1), self.seen.join("\n"))
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    }
}

impl Drop for CaptureProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- frames ------------------------------------------------------------------

fn header(src: u16, sport: u8, dst: u16, dport: u8, flags: u8) -> Header {
    Header {
        prio: Prio::Normal,
        src: Addr::new(src).unwrap(),
        dst: Addr::new(dst).unwrap(),
        sport: Port::new(sport).unwrap(),
        dport: Port::new(dport).unwrap(),
        flags: Flags::from_bits(flags),
    }
}

/// header | data | HMAC | CRC32 (as libcsp and host-lib append them), v2.
fn frame(h: &Header, data: &[u8]) -> Vec<u8> {
    let mut body = data.to_vec();
    if h.flags.bits() & 0x08 != 0 {
        let t = hmac_trailer(&HmacKey::from_key_string(KEY), None, &body);
        body.extend_from_slice(&t);
    }
    if h.flags.bits() & 0x01 != 0 {
        let t = crc_trailer(None, &body);
        body.extend_from_slice(&t);
    }
    let (hb, n) = h.to_bytes(Version::V2).unwrap();
    let mut f = hb[..n].to_vec();
    f.extend_from_slice(&body);
    f
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A frame and the link and direction it must be captured with.
#[derive(Debug, Clone)]
struct Seen {
    link: &'static str,
    inbound: bool,
    frame: Vec<u8>,
    /// Header version of the link.
    version: Version,
}

/// What tshark must show for `s`: link, direction, header, trailers,
/// payload, length.
fn expected(s: &Seen) -> Vec<(&'static str, String)> {
    let h = Header::parse(&s.frame, s.version).unwrap();
    let hlen = s.version.header_len();
    let flags = h.flags.bits();
    let mut payload_end = s.frame.len();
    let mut e = vec![
        ("frame.interface_name", s.link.to_string()),
        // epb_flags direction: 1 inbound, 2 outbound.
        (
            "frame.packet_flags_direction",
            if s.inbound {
                "0x00000001"
            } else {
                "0x00000002"
            }
            .to_string(),
        ),
        ("frame.len", s.frame.len().to_string()),
        (
            "csp.version",
            if s.version == Version::V1 { "1" } else { "2" }.to_string(),
        ),
        ("csp.src", h.src.get().to_string()),
        ("csp.dst", h.dst.get().to_string()),
        ("csp.sport", h.sport.get().to_string()),
        ("csp.dport", h.dport.get().to_string()),
        ("csp.flags.crc", u8::from(flags & 0x01 != 0).to_string()),
        ("csp.flags.hmac", u8::from(flags & 0x08 != 0).to_string()),
    ];
    if flags & 0x01 != 0 {
        payload_end -= 4;
        e.push(("csp.crc.status", "1".into()));
    }
    if flags & 0x08 != 0 {
        e.push(("csp.hmac", hex(&s.frame[payload_end - 4..payload_end])));
        payload_end -= 4;
    }
    e.push(("csp.payload", hex(&s.frame[hlen..payload_end])));
    e
}

fn fields_of(seen: &[Seen]) -> Vec<&'static str> {
    let mut f = vec!["_ws.malformed", "_ws.expert.message"];
    for s in seen {
        for (k, _) in expected(s) {
            if !f.contains(&k) {
                f.push(k);
            }
        }
    }
    f
}

/// Dissect `file` and compare every frame with `seen`, in order.
fn check_file(tshark: &Path, file: &Path, seen: &[Seen]) {
    let fields = fields_of(seen);
    let got = tshark::dissect(tshark, file, &[], &fields);
    check_dissected(&got, seen);
}

fn check_dissected(got: &[BTreeMap<String, String>], seen: &[Seen]) {
    assert_eq!(got.len(), seen.len(), "frames in the file: {got:#?}");
    for (i, (g, s)) in got.iter().zip(seen).enumerate() {
        assert_eq!(g["_ws.malformed"], "", "frame {i}");
        assert!(!g["_ws.expert.message"].contains("Lua"), "frame {i}: {g:?}");
        for (k, want) in expected(s) {
            let have = g.get(k).map(String::as_str).unwrap_or("<missing>");
            assert_eq!(
                have, want,
                "frame {i} ({} {}): field {k}",
                s.link, s.inbound
            );
        }
    }
}

/// The traffic of the round-trip test: a ping from node 5 over UDP
/// (answered by the daemon), then a packet with CRC32 + HMAC from node 5
/// to an application, and its answer with CRC32 + HMAC. Returns the
/// frames in the order the daemon sees them, with their links.
fn traffic(m: &Muxd, peer: &UdpSocket, app: &mut Client, sock: &host_lib::Socket) -> Vec<Seen> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 2048];
    // 1. Ping from node 5:40 to the daemon's ping service.
    let ping = frame(&header(REMOTE, 40, 1, 1, 0), b"0123456789");
    peer.send_to(&ping, m.udp).unwrap();
    let (n, _) = peer.recv_from(&mut buf).expect("ping answered over UDP");
    let reply = buf[..n].to_vec();
    assert_eq!(&reply[6..], b"0123456789");
    seen.push(Seen {
        link: "udp",
        inbound: true,
        frame: ping,
        version: Version::V2,
    });
    seen.push(Seen {
        link: "udp",
        inbound: false,
        frame: reply,
        version: Version::V2,
    });
    // 2. CRC32 + HMAC from node 5:41 to the application on port 10.
    let secured = frame(&header(REMOTE, 41, 1, APP_PORT, 0x09), b"capture me");
    peer.send_to(&secured, m.udp).unwrap();
    let d = app
        .recvfrom(sock, Some(WAIT))
        .expect("packet reached the app");
    assert_eq!(
        d.data, b"capture me",
        "trailers checked and removed by host-lib"
    );
    seen.push(Seen {
        link: "udp",
        inbound: true,
        frame: secured.clone(),
        version: Version::V2,
    });
    // On the IPC socket the same frame, v2 header and trailers untouched.
    seen.push(Seen {
        link: "local",
        inbound: false,
        frame: secured,
        version: Version::V2,
    });
    // 3. The application answers; host-lib adds HMAC and CRC32.
    app.sendto(sock, REMOTE, 41, b"captured").unwrap();
    let (n, _) = peer.recv_from(&mut buf).expect("answer over UDP");
    let answer = buf[..n].to_vec();
    let expect = frame(&header(1, APP_PORT, REMOTE, 41, 0x09), b"captured");
    assert_eq!(answer[6..], expect[6..], "HMAC and CRC32 as computed here");
    seen.push(Seen {
        link: "local",
        inbound: true,
        frame: answer.clone(),
        version: Version::V2,
    });
    seen.push(Seen {
        link: "udp",
        inbound: false,
        frame: answer,
        version: Version::V2,
    });
    seen
}

fn peer_socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

fn app(m: &Muxd) -> (Client, host_lib::Socket) {
    let mut c = m.client("app");
    let sock = c
        .bind_with(
            Bind::Port(APP_PORT),
            Options::NONE.with_crc().with_hmac_key(KEY),
        )
        .unwrap();
    (c, sock)
}

// ---- tests -------------------------------------------------------------------

/// Three captures at once (every link; `--link udp`; `--link local`),
/// each with `--count` ending it by itself; every file dissected and
/// compared frame by frame with what went over the UDP socket and the
/// application's connection.
#[test]
fn captures_dissect_to_what_was_sent_with_filters_side_by_side() {
    let Some(tshark) = tshark::tshark() else {
        return;
    };
    let peer = peer_socket();
    let m = Muxd::start(peer.local_addr().unwrap().port(), "");
    let (mut app, sock) = app(&m);
    let dir = m.dir.path().to_path_buf();
    let all = dir.join("all.pcapng");
    let udp = dir.join("udp.pcapng");
    let local = dir.join("local.pcapng");
    let mut c_all = m.capture(&["-w", all.to_str().unwrap(), "--count", "6"]);
    let mut c_udp = m.capture(&["-w", udp.to_str().unwrap(), "--link", "udp", "-c", "4"]);
    let mut c_local = m.capture(&["-w", local.to_str().unwrap(), "--link", "local", "-c", "2"]);
    for c in [&mut c_all, &mut c_udp, &mut c_local] {
        c.wait_started();
    }
    let seen = traffic(&m, &peer, &mut app, &sock);
    for (c, n) in [(c_all, 6), (c_udp, 4), (c_local, 2)] {
        let (code, err) = c.finish();
        assert_eq!(code, 0, "{err}");
        assert!(
            err.contains(&format!("{n} frames captured, 0 dropped by the daemon")),
            "{err}"
        );
    }
    check_file(&tshark, &all, &seen);
    let only =
        |link: &str| -> Vec<Seen> { seen.iter().filter(|s| s.link == link).cloned().collect() };
    check_file(&tshark, &udp, &only("udp"));
    check_file(&tshark, &local, &only("local"));

    let stats = m.stats();
    assert_eq!(counter(&stats, "capture_started"), 3, "{stats}");
    assert_eq!(counter(&stats, "capture_frames"), 12, "{stats}");
    assert_eq!(counter(&stats, "capture_dropped"), 0, "{stats}");
}

/// tshark's stdout for `file` with `args` (lines).
fn tshark_out(tshark: &Path, file: &Path, args: &[&str]) -> Vec<String> {
    let out = Command::new(tshark)
        .arg("-n")
        .arg("-X")
        .arg(format!("lua_script:{}", tshark::script().display()))
        .arg("-r")
        .arg(file)
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// A KISS link with v1 headers (a tcp-server; the test is the radio on
/// the other end): the capture holds the CSP frames without their KISS
/// framing (FEND, escapes, KISS CRC32), on an interface of link type
/// USER1, so tshark decodes them as v1 with no preference set.
#[test]
fn kiss_v1_frames_are_captured_without_their_framing() {
    let Some(tshark) = tshark::tshark() else {
        return;
    };
    let peer = peer_socket();
    // A port found free may be taken before the daemon binds it: retry.
    let (m, listen) = retry_on_port_clash(|| {
        let listen = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let kiss = format!(
            "[[kiss]]\nname = \"radio\"\nmode = \"tcp-server\"\nlisten = \"{listen}\"\nversion = 1\n"
        );
        let port = peer.local_addr().unwrap().port();
        Muxd::try_start_with(port, &["7 radio"], &kiss).map(|m| (m, listen))
    });
    let mut radio = std::net::TcpStream::connect(listen).unwrap();
    radio.set_read_timeout(Some(WAIT)).unwrap();
    let mut c = m.client("status");
    let deadline = Instant::now() + WAIT;
    while field(&c.control(Control::Status).unwrap(), "link radio ", "state") != "up" {
        assert!(Instant::now() < deadline, "KISS link not up");
        std::thread::sleep(Duration::from_millis(10));
    }
    let file = m.dir.path().join("kiss.pcapng");
    let mut cap = m.capture(&["-w", file.to_str().unwrap(), "--link", "radio", "-c", "2"]);
    cap.wait_started();

    // A ping from node 7 whose data needs KISS escapes (FEND, FESC).
    let h = header(7, 40, 1, 1, 0);
    let (hb, n) = h.to_bytes(Version::V1).unwrap();
    let mut request = hb[..n].to_vec();
    request.extend_from_slice(b"\xc0\xdbping\xc0");
    let mut wire = vec![0u8; 2 * request.len() + 16];
    let len = csp_core::kiss::encode(&request, Version::V1, &mut wire).unwrap();
    radio.write_all(&wire[..len]).unwrap();
    // The answer, KISS-decoded here.
    let mut decoder = csp_core::kiss::KissDecoder::<512>::new(Version::V1);
    let mut reply = None;
    let mut buf = [0u8; 256];
    while reply.is_none() {
        let n = radio.read(&mut buf).expect("ping answered over KISS");
        assert!(n > 0, "link closed");
        for &b in &buf[..n] {
            if let Some(Ok(f)) = decoder.push(b) {
                reply = Some(f.to_vec());
            }
        }
    }
    let reply = reply.unwrap();
    assert_eq!(&reply[4..], b"\xc0\xdbping\xc0");
    let (code, err) = cap.finish();
    assert_eq!(code, 0, "{err}");
    let seen = [
        Seen {
            link: "radio",
            inbound: true,
            frame: request,
            version: Version::V1,
        },
        Seen {
            link: "radio",
            inbound: false,
            frame: reply,
            version: Version::V1,
        },
    ];
    check_file(&tshark, &file, &seen);
}

/// `csp capture -w - | tshark -r -`: the stream is a pcapng file as it
/// grows, and tshark reads it from the pipe.
#[test]
fn capture_to_stdout_pipes_into_tshark() {
    let Some(tshark) = tshark::tshark() else {
        return;
    };
    let peer = peer_socket();
    let m = Muxd::start(peer.local_addr().unwrap().port(), "");
    let mut cap = Command::new(csp_bin())
        .arg("--socket")
        .arg(&m.socket)
        .args(["capture", "-w", "-", "--link", "local", "-c", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pipe = cap.stdout.take().unwrap();
    let reader = Command::new(&tshark)
        .arg("-n")
        .arg("-X")
        .arg(format!("lua_script:{}", tshark::script().display()))
        .args(["-r", "-", "-T", "fields", "-e", "frame.interface_name"])
        .args([
            "-e",
            "csp.src",
            "-e",
            "csp.dst",
            "-e",
            "csp.dport",
            "-e",
            "csp.service",
        ])
        .stdin(Stdio::from(pipe))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut cap = CaptureProc::new(cap);
    cap.wait_started();
    // An application pings the daemon's node: request in, reply out.
    let mut c = m.client("pinger");
    c.ping(1, 10, WAIT).unwrap();
    let (code, err) = cap.finish();
    assert_eq!(code, 0, "{err}");
    let out = reader.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(
        lines[0][..4],
        ["local", "1", "1", "1"],
        "the request: {text}"
    );
    assert_eq!(lines[1][0], "local");
    assert_eq!(lines[1][1], "1", "the reply from the daemon's node: {text}");
    assert!(lines.iter().all(|l| l[4] == "1"), "ping service: {text}");
}

/// Ctrl-C (SIGINT) ends a capture with no count: exit 0, the file valid
/// with every frame so far; and a daemon that stops ends it too.
#[test]
fn ctrl_c_and_a_stopping_daemon_leave_a_valid_file() {
    let Some(tshark) = tshark::tshark() else {
        return;
    };
    let peer = peer_socket();
    let m = Muxd::start(peer.local_addr().unwrap().port(), "");
    let file = m.dir.path().join("int.pcapng");
    let mut cap = m.capture(&["-w", file.to_str().unwrap()]);
    cap.wait_started();
    let mut c = m.client("pinger");
    c.ping(1, 10, WAIT).unwrap();
    // Both frames queued for the capture before the signal (STATUS says).
    let deadline = Instant::now() + WAIT;
    loop {
        let status = c.control(Control::Status).unwrap();
        if field(&status, "capture ", "frames") == "2" {
            break;
        }
        assert!(Instant::now() < deadline, "{status}");
        std::thread::sleep(Duration::from_millis(10));
    }
    cap.signal("-INT");
    let (code, err) = cap.finish();
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("2 frames captured, 0 dropped by the daemon"),
        "{err}"
    );
    let lines = tshark_out(&tshark, &file, &["-T", "fields", "-e", "csp.dport"]);
    assert_eq!(lines.len(), 2, "{lines:?}");

    // SIGTERM to the daemon: the capture ends, and says why.
    let file2 = m.dir.path().join("term.pcapng");
    let mut cap = m.capture(&["-w", file2.to_str().unwrap()]);
    cap.wait_started();
    c.ping(1, 10, WAIT).unwrap();
    drop(c);
    let pid = m.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let (code, err) = cap.finish();
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("(csp-muxd stopped)"), "{err}");
    let lines = tshark_out(&tshark, &file2, &["-T", "fields", "-e", "csp.dport"]);
    assert_eq!(lines.len(), 2, "{lines:?}");
}

/// `cmd` run to its end (bounded: killed after WAIT): exit code, stderr.
fn run_bounded(cmd: &mut Command) -> (Option<i32>, String) {
    let (code, _, err) = test_support::run_within(cmd, WAIT);
    (Some(code), err)
}

/// `--duration` ends a capture with nothing to capture; a daemon killed
/// outright (no CAPTURE_END) ends one with status 1, the file valid up to
/// there.
#[test]
fn duration_and_a_killed_daemon_end_a_capture() {
    let Some(tshark) = tshark::tshark() else {
        return;
    };
    let peer = peer_socket();
    let mut m = Muxd::start(peer.local_addr().unwrap().port(), "");
    let file = m.dir.path().join("quiet.pcapng");
    let mut cap = m.capture(&["-w", file.to_str().unwrap(), "--duration", "0.3"]);
    cap.wait_started();
    let (code, err) = cap.finish();
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("0 frames captured, 0 dropped by the daemon"),
        "{err}"
    );
    assert!(tshark_out(&tshark, &file, &[]).is_empty());

    let file = m.dir.path().join("killed.pcapng");
    let mut cap = m.capture(&["-w", file.to_str().unwrap()]);
    cap.wait_started();
    m.client("pinger").ping(1, 10, WAIT).unwrap();
    let deadline = Instant::now() + WAIT;
    while field(
        &m.client("s").control(Control::Status).unwrap(),
        "capture ",
        "frames",
    ) != "2"
    {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    // Give the tool a moment to have the frames (not a timing assertion:
    // the count below is checked against what the tool says it wrote).
    std::thread::sleep(Duration::from_millis(200));
    let _ = m.child.kill();
    let _ = m.child.wait();
    let (code, err) = cap.finish();
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("capture ended early"), "{err}");
    let written: usize = err
        .lines()
        .find_map(|l| {
            l.split(" frames captured")
                .next()
                .filter(|_| l.contains(" frames captured"))
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{err}"));
    assert!(err.contains("dropped by the daemon unknown"), "{err}");
    assert_eq!(tshark_out(&tshark, &file, &[]).len(), written, "{err}");
}

fn euid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid())
}

const TCP_TOKEN: &str = "capture-test-token-0123456789";

/// A daemon with a TCP endpoint too (token [`TCP_TOKEN`]) and `extra`
/// TOML after it; its TCP address.
fn tcp_daemon(peer: &UdpSocket, extra: &str) -> (Muxd, std::net::SocketAddr) {
    // A port found free can be taken before the daemon binds it: retry.
    retry_on_port_clash(|| {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let toml = format!("[ipc]\ntcp_listen = \"{tcp}\"\ntcp_token = \"{TCP_TOKEN}\"\n{extra}");
        Muxd::try_start_with(peer.local_addr().unwrap().port(), &[], &toml).map(|m| (m, tcp))
    })
}

/// With `capture.allow_tcp` a TCP client (token holder) captures.
#[test]
fn allow_tcp_lets_a_tcp_client_capture() {
    let peer = peer_socket();
    let (m, tcp) = tcp_daemon(&peer, "[capture]\nallow_tcp = true\n");
    let file = m.dir.path().join("tcp.pcapng");
    let child = Command::new(csp_bin())
        .args(["--tcp", &tcp.to_string(), "--tcp-token", TCP_TOKEN])
        .args(["capture", "--link", "local", "-c", "2", "-w"])
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut cap = CaptureProc::new(child);
    cap.wait_started();
    m.client("pinger").ping(1, 10, WAIT).unwrap();
    let (code, err) = cap.finish();
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("2 frames captured, 0 dropped by the daemon"),
        "{err}"
    );
    assert!(file.exists());
}

/// Refused: a TCP client (capture.allow_tcp is off), another user (when
/// the test runs as root and can be uid 65534); a link the daemon does
/// not have. Each is a clear error, no file is created, and the refusals
/// are counted.
#[test]
fn untrusted_clients_and_unknown_links_are_refused() {
    let peer = peer_socket();
    let token = TCP_TOKEN;
    let (m, tcp) = tcp_daemon(&peer, "");
    let dir = m.dir.path().to_path_buf();

    let file = dir.join("tcp.pcapng");
    let (code, err) = run_bounded(
        Command::new(csp_bin())
            .args(["--tcp", &tcp.to_string(), "--tcp-token", token])
            .args(["capture", "-w"])
            .arg(&file),
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("not allowed over the TCP endpoint"), "{err}");
    assert!(err.contains("NotAllowed"), "{err}");
    assert!(!file.exists(), "nothing written for a refused capture");

    let file = dir.join("nope.pcapng");
    let (code, err) = run_bounded(
        Command::new(csp_bin())
            .arg("--socket")
            .arg(&m.socket)
            .args(["capture", "--link", "radio", "-w"])
            .arg(&file),
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("no link named \"radio\" (links: udp, local)"),
        "{err}"
    );
    assert!(!file.exists());

    let mut refused = 1;
    if euid() == 0 {
        // Another user reaches the socket (opened up for it) and is
        // refused by its peer credentials.
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&m.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
        // A copy of the tool that user can run: the build's own directory
        // may sit under a checkout only its owner can enter (mktemp -d).
        let csp_copy = dir.join("csp");
        std::fs::copy(csp_bin(), &csp_copy).unwrap();
        std::fs::set_permissions(&csp_copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (code, err) = run_bounded(
            Command::new(&csp_copy)
                .uid(65534)
                .gid(65534)
                .arg("--socket")
                .arg(&m.socket)
                .args(["capture", "-w", "/tmp/never-written.pcapng"]),
        );
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("you are uid 65534"), "{err}");
        refused += 1;
    } else {
        test_support::say_skipped(
            "refusing another uid's capture",
            "not root, so no other uid to be refused (the TCP case ran)",
        );
    }
    let stats = m.stats();
    assert_eq!(counter(&stats, "capture_refused"), refused, "{stats}");
    assert_eq!(counter(&stats, "capture_unavailable"), 1, "{stats}");
    assert_eq!(counter(&stats, "capture_started"), 0, "{stats}");
}

/// A capture client that never reads: the daemon answers every ping all
/// the same, drops the frames that do not fit the capture's queue, counts
/// them (STATS, STATUS), and when the client reads at last, what it got
/// and what was dropped add up to every frame.
#[test]
fn a_capture_client_that_stops_reading_does_not_slow_the_daemon() {
    let peer = peer_socket();
    let m = Muxd::start(
        peer.local_addr().unwrap().port(),
        "[capture]\nqueue_len = 8\n",
    );
    let mut stalled = UnixStream::connect(&m.socket).unwrap();
    stalled.set_read_timeout(Some(WAIT)).unwrap();
    let send = |s: &mut UnixStream, msg: &Message<'_>| {
        s.write_all(&csp_ipc::encode_to_vec(msg).unwrap()).unwrap();
    };
    send(
        &mut stalled,
        &Message::Hello {
            version: csp_ipc::VERSION,
            name: "stalled capture",
        },
    );
    send(
        &mut stalled,
        &Message::CaptureStart {
            count: 0,
            link: "local",
        },
    );
    let mut rx = IpcReader::default();
    loop {
        match rx.next(&mut stalled) {
            Message::CaptureStarted { queue_len } => {
                assert_eq!(queue_len, 8);
                break;
            }
            Message::HelloAck { .. } | Message::CaptureLink { .. } => {}
            other => panic!("{other:?}"),
        }
        rx.consume();
    }
    rx.consume();

    // 1000 pings of 1000 bytes: 2000 frames of about 1 KB for a client
    // that reads none, far more than its socket buffer and queue hold.
    let pings = 1000u64;
    let mut c = m.client("pinger");
    for i in 0..pings {
        c.ping(1, 1000, WAIT)
            .unwrap_or_else(|e| panic!("ping {i} not answered: {e}"));
    }
    let stats = m.stats();
    let dropped = counter(&stats, "capture_dropped");
    assert!(dropped > 0, "{stats}");
    let status = c.control(Control::Status).unwrap();
    assert_eq!(field(&status, "capture ", "dropped"), dropped.to_string());

    // Now read: the frames that were queued, then the end with the counts.
    send(&mut stalled, &Message::CaptureStop);
    let mut frames = 0u64;
    let (captured, end_dropped) = loop {
        match rx.next(&mut stalled) {
            Message::CaptureFrame { .. } => frames += 1,
            Message::CaptureEnd {
                captured, dropped, ..
            } => break (captured, dropped),
            other => panic!("{other:?}"),
        }
        rx.consume();
    };
    assert_eq!(frames, captured, "every queued frame arrived");
    assert_eq!(end_dropped, dropped);
    assert_eq!(
        captured + dropped,
        2 * pings,
        "each ping is two local frames"
    );
}

/// Decodes IPC messages from a blocking stream (bounded by its timeout).
#[derive(Default)]
struct IpcReader {
    buf: Vec<u8>,
    used: usize,
}

impl IpcReader {
    /// The next message; call `consume` before the next `next`.
    fn next(&mut self, s: &mut UnixStream) -> Message<'_> {
        loop {
            if let Some((_, n)) = csp_ipc::decode(&self.buf).unwrap() {
                self.used = n;
                break;
            }
            let mut chunk = [0u8; 65536];
            let n = s.read(&mut chunk).expect("daemon answers in time");
            assert!(n > 0, "daemon closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
        csp_ipc::decode(&self.buf).unwrap().unwrap().0
    }

    fn consume(&mut self) {
        self.buf.drain(..self.used);
        self.used = 0;
    }
}
