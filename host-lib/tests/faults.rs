//! Faults of the processes around csp-muxd (issue 14): an application that
//! stops reading, an application killed with SIGKILL, and the daemon killed
//! with SIGKILL in the middle of an RDP transfer. Real processes on a Unix
//! socket; every wait is bounded; nothing here measures time.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use host_lib::rdp::ConnState;
use host_lib::{Bind, Client, Conn, ConnOptions, Control, Error, Event, Listener};
use test_support::apps::client;
use test_support::junk::pattern;
use test_support::*;

const NODE: u16 = 5;
/// The echo server's port.
const ECHO_PORT: u8 = 10;

/// The daemon's token of the application holding `NODE:port` (STATUS
/// lines `app TOKEN name=... ports=5:12,... queued=N`), once it holds it.
fn holder_of(d: &Muxd, port: u8) -> u64 {
    let want = format!("{NODE}:{port}");
    let deadline = Instant::now() + WAIT;
    loop {
        let status = d.control(csp_ipc::Control::Status);
        let found = status.lines().find_map(|l| {
            let rest = l.strip_prefix("app ")?;
            let ports = link_field(l, "app ", "ports");
            let held = ports.trim_matches('"').split(',').any(|p| p == want);
            held.then(|| rest.split_whitespace().next()?.parse().ok())?
        });
        if let Some(token) = found {
            return token;
        }
        assert!(Instant::now() < deadline, "nobody holds {want}: {status}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `csp ARGS` against `d` as a process of its own.
fn spawn_csp(d: &Muxd, args: &[&str], stdout: Stdio) -> Child {
    d.csp()
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// An RDP echo server on `port` of `server`, driven by [`Echo::step`]
/// (host-lib runs no thread of its own).
struct Echo {
    listener: Listener,
    conns: Vec<(Conn, Vec<u8>)>,
}

impl Echo {
    fn new(server: &mut Client, port: u8) -> Echo {
        Echo {
            listener: server.listen(port, ConnOptions::default()).unwrap(),
            conns: Vec::new(),
        }
    }

    fn step(&mut self, server: &mut Client) {
        while let Ok(Some(c)) = server.try_accept(&self.listener) {
            self.conns.push((c, Vec::new()));
        }
        let mut buf = [0u8; 4096];
        for (c, out) in &mut self.conns {
            if let Ok(n) = server.try_recv(c, &mut buf) {
                out.extend_from_slice(&buf[..n]);
            }
            if !out.is_empty() {
                if let Ok(n) = server.try_send(c, out) {
                    out.drain(..n);
                }
            }
        }
    }
}

/// Connect to the echo server and move `len` bytes through it while
/// `server` is driven too; the echo must come back byte for byte.
fn echo_through(c: &mut Client, server: &mut Client, echo: &mut Echo, len: usize) {
    let conn = c
        .start_connect(NODE, ECHO_PORT, ConnOptions::default())
        .unwrap();
    let data = pattern(len, 1);
    let (mut sent, mut got) = (0, Vec::with_capacity(len));
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + WAIT * 3;
    while got.len() < len {
        assert!(
            Instant::now() < deadline,
            "echo: sent {sent}, got {} of {len}",
            got.len()
        );
        if sent < len {
            match c.try_send(&conn, &data[sent..]) {
                Ok(n) => sent += n,
                Err(Error::WouldBlock) => {}
                Err(e) => panic!("send after {sent}: {e}"),
            }
        }
        match c.try_recv(&conn, &mut buf) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(Error::WouldBlock) => {}
            Err(e) => panic!("recv after {}: {e}", got.len()),
        }
        echo.step(server);
        c.wait(Some(Duration::from_millis(2))).unwrap();
        server.wait(Some(Duration::from_millis(2))).unwrap();
    }
    assert!(got == data, "echo differs");
    // Closing goes on in the background (the server is not driven here).
    match c.close_conn(conn, Some(Duration::ZERO)) {
        Ok(()) | Err(Error::Timeout) => {}
        Err(e) => panic!("close: {e}"),
    }
}

/// One application stops reading (a real `csp listen` process whose
/// stdout nobody reads: once the pipe is full it blocks and reads its
/// socket no more) while another floods it. Its queue in the daemon
/// overflows by policy, counted against it and shown by `csp status`; the
/// other applications' pings and an RDP echo through the same daemon
/// complete, and none of them loses a packet.
#[test]
fn a_client_that_never_reads_overflows_alone() {
    const FLOOD: usize = 3000;
    const STUCK_PORT: u8 = 12;
    let d = Muxd::start(MuxdConfig::node(NODE).extra("[ipc]\nqueue_len = 32\n"));
    let mut stuck = spawn_csp(&d, &["listen", "--raw", "12"], Stdio::piped());
    let stuck_app = holder_of(&d, STUCK_PORT);

    let mut server = client(&d, "server", false);
    let mut echo = Echo::new(&mut server, ECHO_PORT);
    let mut app = client(&d, "app", false);
    let mut flooder = client(&d, "flooder", false);
    let out = flooder.bind(Bind::Ephemeral).unwrap();
    let payload = [0xa5u8; 1000];
    for round in 0..FLOOD / 100 {
        for _ in 0..100 {
            flooder.sendto(&out, NODE, STUCK_PORT, &payload).unwrap();
        }
        // The others are served between the bursts, all along.
        if round % 10 == 0 {
            app.ping(NODE, 100, WAIT).unwrap();
            echo_through(&mut app, &mut server, &mut echo, 8 * 1024);
        }
    }
    app.ping(NODE, 100, WAIT).unwrap();
    echo_through(&mut app, &mut server, &mut echo, 64 * 1024);

    // Counted against the one that does not read, and only against it.
    let stats = app.control(Control::Stats).unwrap();
    let prefix = format!("app {stuck_app} ");
    let dropped: u64 = link_field(&stats, &prefix, "dropped_overflow")
        .parse()
        .unwrap();
    assert!(dropped > 0, "{stats}");
    for line in stats.lines().filter(|l| l.starts_with("app ")) {
        if !line.starts_with(&prefix) {
            assert!(line.contains("dropped_overflow=0"), "{line}");
        }
    }
    let (code, shown, err) = run(d.csp().arg("status"));
    assert_eq!(code, 0, "{err}");
    let counters = shown
        .split("== counters")
        .nth(1)
        .expect("a counters section");
    let shown: u64 = link_field(counters, &prefix, "dropped_overflow")
        .parse()
        .unwrap();
    assert!(shown >= dropped, "csp status shows the drops: {shown}");
    println!(
        "{FLOOD} datagrams at an application that stopped reading: {dropped} dropped by its \
         queue (32), the rest in its socket and pipe"
    );
    let _ = stuck.kill();
    let _ = stuck.wait();
}

/// `csp listen` processes holding a port and an RDP listener are killed
/// with SIGKILL: the moment they are gone, another application binds the
/// same ports (no wait, no retry).
#[test]
fn a_client_killed_with_sigkill_frees_its_ports_at_once() {
    let d = Muxd::start(MuxdConfig::node(NODE));
    let mut plain = spawn_csp(&d, &["listen", "12"], Stdio::null());
    let mut rdp = spawn_csp(&d, &["listen", "--rdp", "--echo", "13"], Stdio::null());
    holder_of(&d, 12);
    holder_of(&d, 13);
    for child in [&mut plain, &mut rdp] {
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let mut next = client(&d, "next", false);
    next.bind(Bind::Port(12))
        .expect("port 12 free once its holder is dead");
    let listener = next
        .listen(13, ConnOptions::default())
        .expect("port 13 free once its holder is dead");
    // And the new holder is served on them.
    let mut c = client(&d, "c", false);
    let conn = c.start_connect(NODE, 13, ConnOptions::default()).unwrap();
    let deadline = Instant::now() + WAIT;
    while next.try_accept(&listener).unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "no connection to the new listener"
        );
        c.wait(Some(Duration::from_millis(5))).unwrap();
        next.wait(Some(Duration::from_millis(5))).unwrap();
    }
    let _ = c.close_conn(conn, Some(Duration::ZERO));
}

/// What the receiving application read of a connection, to its end.
fn drain_failed(server: &mut Client, conn: &Conn, got: &mut Vec<u8>) {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + WAIT * 2;
    loop {
        assert!(Instant::now() < deadline, "the connection never failed");
        match server.try_recv(conn, &mut buf) {
            Ok(0) => panic!("a clean close, not a failure"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(Error::WouldBlock) => server.wait(Some(Duration::from_millis(5))).unwrap(),
            Err(Error::ConnectionFailed { .. }) => return,
            Err(e) => panic!("{e}"),
        }
    }
}

/// Drive `c` until it reports [`Event::Reconnected`] (bounded; the
/// backoff may be at 2 s by then).
fn until_reconnected(c: &mut Client) {
    let deadline = Instant::now() + WAIT * 2;
    loop {
        while let Some(e) = c.poll_event() {
            if matches!(e, Event::Reconnected) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "no reconnect");
        c.wait(Some(Duration::from_millis(20))).unwrap();
    }
}

/// The daemon is killed with SIGKILL while one application sends to
/// another over RDP, and both also hold a datagram socket. What host-lib
/// promises, and this checks: every byte it reported acknowledged (here:
/// at each `is_acked`) reached the receiving application, in order; the
/// connection fails on both sides (an RDP connection does not survive the
/// daemon: its state lived in the two clients, but the daemon's port
/// table did not); both clients reconnect to the restarted daemon with
/// their listener and sockets registered again, and a new connection and
/// datagrams work. What it does not promise: bytes sent but not yet
/// acknowledged may be lost (the sender learns how many it had sent; the
/// receiver how many it got).
#[test]
fn a_daemon_killed_mid_transfer_comes_back_and_clients_re_register() {
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: usize = 16;
    let mut d = Muxd::start(MuxdConfig::node(NODE));
    let mut server = client(&d, "server", true);
    let mut c = client(&d, "sender", true);
    let listener = server.listen(ECHO_PORT, ConnOptions::default()).unwrap();
    let server_dgram = server.bind(Bind::Port(11)).unwrap();
    let c_dgram = c.bind(Bind::Port(21)).unwrap();

    let data = pattern(CHUNK * CHUNKS, 2);
    let conn = c
        .start_connect(NODE, ECHO_PORT, ConnOptions::default())
        .unwrap();
    let (mut sent, mut acked) = (0usize, 0usize);
    let mut got = Vec::new();
    let mut accepted = None;
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + WAIT * 6;
    // Send chunk by chunk, marking what RDP reported acknowledged after
    // each; the daemon dies half-way through the third chunk.
    loop {
        assert!(Instant::now() < deadline, "sent {sent}, acked {acked}");
        if accepted.is_none() {
            accepted = server.try_accept(&listener).unwrap();
        }
        if let Some(a) = &accepted {
            if let Ok(n) = server.try_recv(a, &mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
        }
        let target = (acked / CHUNK + 1) * CHUNK;
        if sent < target {
            match c.try_send(&conn, &data[sent..target]) {
                Ok(n) => sent += n,
                Err(Error::WouldBlock) => {}
                Err(e) => panic!("send after {sent}: {e}"),
            }
        } else if c.is_acked(&conn).unwrap() {
            acked = sent;
        }
        if acked >= 2 * CHUNK && sent >= acked + CHUNK / 2 {
            break;
        }
        c.wait(Some(Duration::from_millis(2))).unwrap();
        server.wait(Some(Duration::from_millis(2))).unwrap();
    }
    d.kill();

    // Both ends fail the connection; the receiver reads what it got.
    let accepted = accepted.expect("the connection was accepted");
    drain_failed(&mut server, &accepted, &mut got);
    let deadline = Instant::now() + WAIT * 2;
    while !matches!(c.conn_state(&conn).unwrap(), ConnState::Failed(_)) {
        assert!(
            Instant::now() < deadline,
            "the sender's connection never failed"
        );
        c.wait(Some(Duration::from_millis(5))).unwrap();
    }
    assert!(
        got.len() >= acked,
        "{acked} bytes reported acknowledged, {} delivered",
        got.len()
    );
    assert!(got.len() <= sent);
    assert!(
        got == data[..got.len()],
        "what arrived is a prefix, in order"
    );
    println!(
        "daemon killed: {sent} bytes sent, {acked} acknowledged, {} delivered",
        got.len()
    );
    assert!(matches!(
        c.try_send(&conn, b"more"),
        Err(Error::ConnectionFailed { .. })
    ));
    let _ = c.close_conn(conn, Some(Duration::ZERO));
    let _ = server.close_conn(accepted, Some(Duration::ZERO));

    d.restart();
    until_reconnected(&mut server);
    until_reconnected(&mut c);
    // The listener and both datagram sockets were registered again.
    let status = d.control(csp_ipc::Control::Status);
    for port in [ECHO_PORT, 11, 21] {
        assert!(status.contains(&format!("{NODE}:{port}")), "{status}");
    }
    c.sendto(&c_dgram, NODE, 11, b"after the restart").unwrap();
    let dg = server.recvfrom(&server_dgram, Some(WAIT)).unwrap();
    assert_eq!(
        (dg.data.as_slice(), dg.sport()),
        (&b"after the restart"[..], 21)
    );
    // A new connection to the same listener carries a whole transfer.
    let mut echo = Echo {
        listener,
        conns: Vec::new(),
    };
    echo_through(&mut c, &mut server, &mut echo, 4 * CHUNK);
}

/// The receiving application reads nothing while its peer sends in
/// 200-byte steps, each waited on until acknowledged. Once host-lib's
/// buffer of the connection is full (`conn_pending`, 64 KiB), four more
/// steps are acknowledged (they sit in RDP's own queue in the receiver's
/// node), and the daemon is killed with SIGKILL. Every byte the sender saw
/// acknowledged is still handed to the receiver after the failure, in
/// order: host-lib's promise is about what it acknowledged, not about what
/// the application had read.
#[test]
fn acknowledged_bytes_the_receiver_had_not_read_survive_a_daemon_kill() {
    const STEP: usize = 200;
    const STEPS_PAST_THE_BUFFER: usize = 4;
    let mut d = Muxd::start(MuxdConfig::node(NODE));
    let mut server = client(&d, "server", true);
    let mut c = client(&d, "sender", true);
    let listener = server.listen(ECHO_PORT, ConnOptions::default()).unwrap();
    let data = pattern(256 * 1024, 3);
    let conn = c
        .start_connect(NODE, ECHO_PORT, ConnOptions::default())
        .unwrap();
    let (mut sent, mut acked) = (0usize, 0usize);
    let mut accepted = None;
    let mut past_the_buffer = None;
    let deadline = Instant::now() + WAIT * 3;
    loop {
        assert!(Instant::now() < deadline, "sent {sent}, acked {acked}");
        if accepted.is_none() {
            accepted = server.try_accept(&listener).unwrap();
        }
        if sent == acked {
            let full = accepted.as_ref().is_some_and(|a| {
                server.conn_pending(a).unwrap() + host_lib::rdp::MAX_SEGMENT
                    > host_lib::rdp::RX_BUFFER
            });
            if full && past_the_buffer.is_none() {
                past_the_buffer = Some(acked);
            }
            if past_the_buffer.is_some_and(|at| acked >= at + STEPS_PAST_THE_BUFFER * STEP) {
                break;
            }
            match c.try_send(&conn, &data[sent..sent + STEP]) {
                Ok(n) => sent += n,
                Err(Error::WouldBlock) => {}
                Err(e) => panic!("send after {sent}: {e}"),
            }
        } else if c.is_acked(&conn).unwrap() {
            acked = sent;
        }
        c.wait(Some(Duration::from_millis(2))).unwrap();
        server.wait(Some(Duration::from_millis(2))).unwrap();
    }
    let accepted = accepted.expect("the connection was accepted");
    let in_buffer = server.conn_pending(&accepted).unwrap();
    d.kill();
    // The receiver learns of the failure first, then reads.
    let deadline = Instant::now() + WAIT * 2;
    while !matches!(server.conn_state(&accepted).unwrap(), ConnState::Failed(_)) {
        assert!(
            Instant::now() < deadline,
            "the receiver's connection never failed"
        );
        server.wait(Some(Duration::from_millis(5))).unwrap();
    }
    let mut got = Vec::new();
    drain_failed(&mut server, &accepted, &mut got);
    println!(
        "receiver not reading, daemon killed: {sent} bytes sent, {acked} acknowledged \
         ({in_buffer} in host-lib's buffer, the rest in RDP's queue), {} delivered after the \
         failure",
        got.len()
    );
    assert!(
        acked > in_buffer,
        "some acknowledged bytes were still in RDP's queue: {acked} acknowledged, \
         {in_buffer} in host-lib's buffer"
    );
    assert!(
        got.len() >= acked,
        "{acked} acknowledged, {} delivered",
        got.len()
    );
    assert!(
        got == data[..got.len()],
        "what arrived is a prefix, in order"
    );
}
