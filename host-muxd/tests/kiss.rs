//! KISS links end to end: daemons joined by TCP (directly and through a
//! relay the test cuts), by a pty pair (one daemon's pty opened by the other
//! as a serial device), and a daemon's pty spoken to by the test itself with
//! csp-core's KISS codec. All on 127.0.0.1 and ptys; every wait is bounded.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use csp_core::kiss::{encode, max_encoded_len, KissDecoder, FEND};
use csp_core::{Flags, Header, Version};
use csp_ipc::{Control, PORT_EPHEMERAL};
use test_support::*;

/// Bytes that need escaping on a KISS line, so every test frame exercises it.
const AWKWARD: &[u8] = &[0xC0, 0xDB, 0xDC, 0xDD, 0xC0, 0xC0, 0xDB];

fn kiss_table(name: &str, body: &str) -> String {
    format!("[[kiss]]\nname = \"{name}\"\n{body}\n")
}

/// Daemons A (1, tcp-server) and B (2, tcp-client to `connect_port`, which
/// is A's port unless a relay sits between).
fn tcp_pair(version: u8, a_port: u16, connect_port: u16) -> (Muxd, Muxd) {
    let a = Muxd::start(MuxdConfig::node(1).route("2 kiss0").extra(&kiss_table(
        "kiss0",
        &format!("mode = \"tcp-server\"\nlisten = \"127.0.0.1:{a_port}\"\nversion = {version}"),
    )));
    let b = Muxd::start(MuxdConfig::node(2).route("0/0 KISS0").extra(&kiss_table(
        "kiss0",
        &format!(
            "mode = \"tcp-client\"\nconnect = \"127.0.0.1:{connect_port}\"\nversion = {version}"
        ),
    )));
    (a, b)
}

/// Ping B's service from A and trade app packets both ways.
fn exchange(a: &Muxd, b: &Muxd, tag: &str) {
    let mut app_a = a.client("a");
    let mut app_b = b.client("b");
    wait_link_up(&mut app_a, "kiss0");
    wait_link_up(&mut app_b, "kiss0");
    let (_, _, eph) = app_a.register(0, PORT_EPHEMERAL);
    app_b.register(0, 10);

    let mut ping = tag.as_bytes().to_vec();
    ping.extend_from_slice(AWKWARD);
    app_a.send_packet(1, eph, 2, 1, Flags::NONE, &ping);
    let (h, data) = app_a.recv_packet();
    assert_eq!((h.src.get(), h.sport.get(), h.dport.get()), (2, 1, eph));
    assert_eq!(data, ping, "ping echoed unchanged");

    for i in 0..20u8 {
        let mut payload = vec![i; usize::from(i) * 10];
        payload.extend_from_slice(AWKWARD);
        app_a.send_packet(1, eph, 2, 10, Flags::NONE, &payload);
        let (h, data) = app_b.recv_packet();
        assert_eq!((h.src.get(), h.sport.get()), (1, eph));
        assert_eq!(data, payload, "packet {i}");
        app_b.send_packet(2, 10, 1, eph, Flags::CRC32, &[i, 0xC0]);
        let (h, data) = app_a.recv_packet();
        assert_eq!((h.src.get(), data.as_slice()), (2, &[i, 0xC0][..]));
        assert!(h.flags.contains(Flags::CRC32), "flags cross the link");
    }
}

#[test]
fn tcp_kiss_link_carries_ping_and_app_packets() {
    let port = free_tcp_port();
    let (a, b) = tcp_pair(2, port, port);
    exchange(&a, &b, "v2");
    let stats = a.client("s").control(Control::Stats);
    assert!(link_stat(&stats, "kiss0", "rx_frames") >= 21, "{stats}");
    assert_eq!(link_stat(&stats, "kiss0", "bad_crc"), 0, "{stats}");
    let routes = b.client("r").control(Control::Routes);
    assert!(routes.contains("0/0 kiss0"), "{routes}");
}

#[test]
fn tcp_kiss_link_with_v1_headers() {
    let port = free_tcp_port();
    let (a, b) = tcp_pair(1, port, port);
    exchange(&a, &b, "v1");
}

#[test]
fn tcp_client_backs_off_without_a_server() {
    let port = free_tcp_port(); // nobody listens here
    let b = Muxd::start(MuxdConfig::node(2).extra(&kiss_table(
        "up",
        &format!("mode = \"tcp-client\"\nconnect = \"127.0.0.1:{port}\""),
    )));
    let mut c = b.client("c");
    std::thread::sleep(Duration::from_millis(1600));
    let stats = c.control(Control::Stats);
    // 0, 100, 300, 700, 1500 ms: about five attempts, never a busy loop.
    let tries = link_stat(&stats, "up", "connect_failures");
    assert!(
        (2..=7).contains(&tries),
        "{tries} attempts in 1.6 s: {stats}"
    );
    assert_eq!(link_stat(&stats, "up", "connects"), 0);

    // A server appearing later is found within the backoff ceiling.
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        if listener.accept().is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "no reconnect attempt");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A TCP relay between B and A whose connections the test can cut.
struct Relay {
    port: u16,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    accepted: Arc<Mutex<u32>>,
}

impl Relay {
    fn start(upstream: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(Mutex::new(0));
        let (stop2, conns2, accepted2) = (stop.clone(), conns.clone(), accepted.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let Ok((down, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                down.set_nonblocking(false).unwrap();
                let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue; // dropping `down` closes it; the client retries
                };
                *accepted2.lock().unwrap() += 1;
                let mut list = conns2.lock().unwrap();
                list.push(down.try_clone().unwrap());
                list.push(up.try_clone().unwrap());
                for (mut from, mut to) in [
                    (down.try_clone().unwrap(), up.try_clone().unwrap()),
                    (up, down),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Relay {
            port,
            stop,
            conns,
            accepted,
        }
    }

    /// Cut every relayed connection, both sides (the daemons see EOF).
    fn cut(&self) {
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn accepted(&self) -> u32 {
        *self.accepted.lock().unwrap()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.cut();
    }
}

#[test]
fn dropped_tcp_link_reconnects_and_traffic_resumes() {
    let a_port = free_tcp_port();
    let relay = Relay::start(a_port);
    let (a, b) = tcp_pair(2, a_port, relay.port);
    exchange(&a, &b, "before");

    // A stream of numbered packets A -> B; the relay is cut mid-stream.
    let mut app_a = a.client("stream-a");
    let mut app_b = b.client("stream-b");
    let (_, _, eph) = app_a.register(0, PORT_EPHEMERAL);
    app_b.register(0, 11);
    let total = 200u32;
    let mut got = Vec::new();
    for i in 0..total {
        app_a.send_packet(1, eph, 2, 11, Flags::NONE, &i.to_be_bytes());
        if i == total / 2 {
            relay.cut();
        }
        std::thread::sleep(Duration::from_millis(2));
        while let Some((_, data)) = app_b.recv_packet_within(Duration::from_millis(1)) {
            got.push(u32::from_be_bytes(data[..4].try_into().unwrap()));
        }
    }
    // The last packet was sent after the cut; it must arrive.
    let deadline = Instant::now() + WAIT;
    while got.last() != Some(&(total - 1)) {
        assert!(Instant::now() < deadline, "stream did not resume: {got:?}");
        if let Some((_, data)) = app_b.recv_packet_within(Duration::from_millis(100)) {
            got.push(u32::from_be_bytes(data[..4].try_into().unwrap()));
        }
    }
    assert!(
        got.windows(2).all(|w| w[0] <= w[1]),
        "order kept (a retried frame may repeat): {got:?}"
    );
    // Frames queued while the link was down are sent after reconnecting;
    // only what was written into the dying connection can be lost.
    assert!(
        got.len() as u32 >= total - 10,
        "{} of {total}: {got:?}",
        got.len()
    );
    assert!(relay.accepted() >= 2, "B reconnected through the relay");

    let stats = b.client("s").control(Control::Stats);
    assert!(link_stat(&stats, "kiss0", "connects") >= 2, "{stats}");
    assert!(link_stat(&stats, "kiss0", "disconnects") >= 1, "{stats}");
    exchange(&a, &b, "after");
}

/// The test's end of a daemon's pty, speaking KISS with csp-core's codec.
struct PtyPeer {
    file: File,
    dec: KissDecoder<8192>,
    version: Version,
}

impl PtyPeer {
    fn open(path: &Path, version: Version) -> PtyPeer {
        let deadline = Instant::now() + WAIT;
        while !path.exists() {
            assert!(Instant::now() < deadline, "{} not created", path.display());
            std::thread::sleep(Duration::from_millis(10));
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::fcntl::OFlag::O_NOCTTY.bits() | nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(path)
            .unwrap();
        PtyPeer {
            file,
            dec: KissDecoder::new(version),
            version,
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        let deadline = Instant::now() + WAIT;
        while !rest.is_empty() {
            match self.file.write(rest) {
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "pty does not take bytes");
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => panic!("pty write: {e}"),
            }
        }
    }

    fn kiss(&self, header: &Header, data: &[u8]) -> Vec<u8> {
        let (bytes, n) = header.to_bytes(self.version).unwrap();
        let mut frame = bytes[..n].to_vec();
        frame.extend_from_slice(data);
        let mut out = vec![0u8; max_encoded_len(frame.len())];
        let len = encode(&frame, self.version, &mut out).unwrap();
        out.truncate(len);
        out
    }

    fn send(&mut self, header: &Header, data: &[u8]) {
        let wire = self.kiss(header, data);
        self.write(&wire);
    }

    /// The next intact frame from the daemon: header and data.
    fn recv(&mut self) -> (Header, Vec<u8>) {
        let deadline = Instant::now() + WAIT;
        let mut buf = [0u8; 512];
        loop {
            match self.file.read(&mut buf) {
                Ok(n) => {
                    for &b in &buf[..n] {
                        if let Some(Ok(frame)) = self.dec.push(b) {
                            let h = Header::parse(frame, self.version).unwrap();
                            let data = frame[self.version.header_len()..].to_vec();
                            return (h, data);
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "no frame on the pty");
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => panic!("pty read: {e}"),
            }
        }
    }
}

#[test]
fn pty_link_skips_garbage_and_bad_frames_but_not_their_neighbours() {
    let dir = tempfile::tempdir().unwrap();
    let pty = dir.path().join("kiss-a");
    let a = Muxd::start(MuxdConfig::node(1).route("5 radio").extra(&kiss_table(
        "radio",
        &format!("mode = \"pty\"\npty_link = \"{}\"", pty.display()),
    )));
    let mut peer = PtyPeer::open(&pty, Version::V2);
    let mut app = a.client("app");
    app.register(0, 10);
    let to_app = header(5, 20, 1, 10, Flags::NONE);
    let good = |i: u8| {
        let mut d = vec![i; 3];
        d.extend_from_slice(AWKWARD);
        d
    };

    let mut line = Vec::new();
    line.extend_from_slice(b"noise"); // before the first FEND: garbage
    line.extend(peer.kiss(&to_app, &good(1)));
    line.extend_from_slice(b"\r\nAT+RESET\r\n"); // between frames
    line.extend(peer.kiss(&to_app, &good(2)));
    line.extend(peer.kiss(&to_app, &[0x55; 400])); // over max_frame (262)
    line.extend(peer.kiss(&to_app, &good(3)));
    line.extend(peer.kiss(&to_app, &[0x66; 5000])); // over the decoder's 4096
    line.extend(peer.kiss(&to_app, &good(4)));
    let mut bad_crc = peer.kiss(&to_app, b"corrupted");
    let at = bad_crc.len() - 3;
    bad_crc[at] ^= 0x01;
    line.extend(bad_crc);
    line.extend(peer.kiss(&to_app, &good(5)));
    line.extend_from_slice(&[FEND, 0x00, 0x01, 0xDB, 0x41, 0x02, FEND]); // bad escape
    line.extend(peer.kiss(&to_app, &good(6)));
    line.extend_from_slice(&[FEND, 0x00, 0x01, 0x02, FEND]); // too short
    line.extend(peer.kiss(&to_app, &good(7)));
    // Written in odd-sized pieces: frames straddle reads.
    for chunk in line.chunks(37) {
        peer.write(chunk);
    }
    for i in 1..=7 {
        let (h, data) = app.recv_packet();
        assert_eq!((h.src.get(), h.sport.get()), (5, 20));
        assert_eq!(data, good(i), "frame {i} survived its neighbours");
    }

    let stats = app.control(Control::Stats);
    let s = |k| link_stat(&stats, "radio", k);
    assert_eq!(s("rx_frames"), 7, "{stats}");
    assert_eq!(s("garbage_bytes"), 5, "{stats}");
    assert_eq!(s("rx_too_long"), 1, "{stats}");
    assert_eq!(s("oversize"), 1, "{stats}");
    assert_eq!(s("bad_crc"), 1, "{stats}");
    assert_eq!(s("bad_escape"), 1, "{stats}");
    assert_eq!(s("too_short"), 1, "{stats}");
    assert!(s("non_data_command") >= 1, "{stats}");

    // The daemon speaks KISS back: its ping service and an app, over the pty.
    peer.send(&header(5, 33, 1, 1, Flags::NONE), b"ping over pty\xc0");
    let (h, data) = peer.recv();
    assert_eq!((h.src.get(), h.sport.get(), h.dst.get()), (1, 1, 5));
    assert_eq!(data, b"ping over pty\xc0");
    app.send_packet(1, 10, 5, 20, Flags::NONE, &good(9));
    let (h, data) = peer.recv();
    assert_eq!((h.src.get(), h.sport.get(), h.dport.get()), (1, 10, 20));
    assert_eq!(data, good(9));

    // Over max_frame on the way out: dropped and counted, not sent.
    app.send_packet(1, 10, 5, 20, Flags::NONE, &[7; 300]);
    app.send_packet(1, 10, 5, 20, Flags::NONE, b"small");
    assert_eq!(peer.recv().1, b"small");
    let stats = app.control(Control::Stats);
    assert_eq!(link_stat(&stats, "radio", "tx_errors"), 1, "{stats}");
    let status = app.control(Control::Status);
    assert!(
        status.contains("link radio kiss mode=pty at=/dev/pts/"),
        "{status}"
    );
}

#[test]
fn pty_pair_joins_two_daemons_serial_mode_on_a_real_tty() {
    let dir = tempfile::tempdir().unwrap();
    let pty = dir.path().join("kiss-a");
    let a = Muxd::start(MuxdConfig::node(1).route("2 line").extra(&kiss_table(
        "line",
        &format!("mode = \"pty\"\npty_link = \"{}\"", pty.display()),
    )));
    let b = Muxd::start(MuxdConfig::node(2).route("1 kiss0").extra(&kiss_table(
        "kiss0",
        &format!(
            "mode = \"serial\"\ndevice = \"{}\"\nbaud = 9600",
            pty.display()
        ),
    )));
    let mut app_a = a.client("a");
    let mut app_b = b.client("b");
    let (_, _, eph) = app_b.register(0, PORT_EPHEMERAL);
    app_a.register(0, 10);

    app_b.send_packet(2, eph, 1, 1, Flags::NONE, AWKWARD);
    let (h, data) = app_b.recv_packet();
    assert_eq!(
        (h.src.get(), h.sport.get(), data.as_slice()),
        (1, 1, AWKWARD)
    );
    for i in 0..10u8 {
        let payload = vec![i; 100];
        app_b.send_packet(2, eph, 1, 10, Flags::NONE, &payload);
        let (h, data) = app_a.recv_packet();
        assert_eq!((h.src.get(), data), (2, payload));
        app_a.send_packet(1, 10, 2, eph, Flags::NONE, &[i, 0xDB]);
        assert_eq!(app_b.recv_packet().1, [i, 0xDB]);
    }
    let status = app_b.control(Control::Status);
    assert!(
        status.contains(&format!(
            "link kiss0 kiss mode=serial at={}@9600 state=up",
            pty.display()
        )),
        "{status}"
    );
}

#[test]
fn serial_link_reopens_after_the_far_side_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let pty = dir.path().join("kiss-a");
    let start_a = || {
        Muxd::start(MuxdConfig::node(1).route("2 line").extra(&kiss_table(
            "line",
            &format!("mode = \"pty\"\npty_link = \"{}\"", pty.display()),
        )))
    };
    let mut a = start_a();
    let b = Muxd::start(MuxdConfig::node(2).route("1 kiss0").extra(&kiss_table(
        "kiss0",
        &format!("mode = \"serial\"\ndevice = \"{}\"", pty.display()),
    )));
    let mut app_b = b.client("b");
    let (_, _, eph) = app_b.register(0, PORT_EPHEMERAL);
    app_b.send_packet(2, eph, 1, 1, Flags::NONE, b"first");
    assert_eq!(app_b.recv_packet().1, b"first");

    // The pty goes away with A (and A removes its symlink); B's device
    // fails and B retries with backoff until a new A makes a new pty there.
    a.terminate();
    assert!(!pty.exists(), "A removed its pty link on shutdown");
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = app_b.control(Control::Stats);
        if link_stat(&stats, "kiss0", "disconnects") >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "B did not notice: {stats}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _a2 = start_a();
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = app_b.control(Control::Stats);
        if link_stat(&stats, "kiss0", "connects") >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "B did not reopen: {stats}");
        std::thread::sleep(Duration::from_millis(20));
    }
    app_b.send_packet(2, eph, 1, 1, Flags::NONE, b"second");
    assert_eq!(app_b.recv_packet().1, b"second");
}
