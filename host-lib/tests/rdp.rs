//! RDP between two clients of a real csp-muxd: echo with and without
//! CRC+HMAC, a 10 MB transfer byte for byte, the daemon killed mid-transfer
//! (both ends fail, nothing passes for delivered), refusals that say why.
//! Every wait is bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use host_lib::rdp::MAX_SEGMENT;
use host_lib::{Client, Conn, ConnOptions, ConnState, Error, Event, Listener};
use test_support::apps::client;
use test_support::junk::pattern;
use test_support::*;

/// Serve one connection on `listener`: echo everything until the peer
/// closes; the bytes echoed.
fn echo_one(server: &mut Client, listener: &Listener) -> usize {
    let conn = server.accept(listener, Some(WAIT)).unwrap();
    let mut buf = vec![0u8; 4096];
    let mut total = 0;
    loop {
        match server.recv(&conn, &mut buf, Some(WAIT)) {
            Ok(0) => break,
            Ok(n) => {
                total += n;
                server.send(&conn, &buf[..n], Some(WAIT)).unwrap();
            }
            Err(e) => panic!("echo server: {e}"),
        }
    }
    server.close_conn(conn, Some(WAIT)).unwrap();
    assert_no_daemon_errors(server);
    total
}

/// Nothing we sent was refused by the daemon (a segment from a port
/// already given back would be, as spoofed).
fn assert_no_daemon_errors(c: &mut Client) {
    for _ in 0..4 {
        c.wait(Some(Duration::from_millis(25))).unwrap();
    }
    while let Some(e) = c.poll_event() {
        assert!(!matches!(e, Event::DaemonError { .. }), "{e:?}");
    }
}

/// Read exactly `len` bytes (bounded).
fn recv_exact(c: &mut Client, conn: &Conn, len: usize) -> Vec<u8> {
    let mut got = Vec::with_capacity(len);
    let mut buf = vec![0u8; 8192];
    let deadline = Instant::now() + WAIT;
    while got.len() < len {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "only {} of {len} bytes", got.len());
        let n = c.recv(conn, &mut buf, Some(left)).unwrap();
        assert!(n > 0, "peer closed after {} of {len} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
    }
    got
}

fn echo_round_trip(options: ConnOptions) {
    let d = Muxd::start(MuxdConfig::node(3));
    let mut server = client(&d, "server", false);
    let listener = server.listen(10, options).unwrap();
    let srv = thread::spawn(move || echo_one(&mut server, &listener));

    let mut c = client(&d, "client", false);
    let conn = c.connect_to(3, 10, options, Some(WAIT)).unwrap();
    assert_eq!(c.conn_state(&conn).unwrap(), ConnState::Open);
    assert_eq!(c.conn_peer(&conn).unwrap(), (3, 10));
    // More than one segment and more than one window of them.
    let data = pattern(5000, 1);
    c.send(&conn, &data, Some(WAIT)).unwrap();
    c.wait_acked(&conn, Some(WAIT)).unwrap();
    assert!(c.is_acked(&conn).unwrap());
    assert_eq!(recv_exact(&mut c, &conn, data.len()), data);
    c.close_conn(conn, Some(WAIT)).unwrap();
    assert_no_daemon_errors(&mut c);
    assert_eq!(srv.join().unwrap(), data.len());
}

#[test]
fn echo_between_two_clients() {
    echo_round_trip(ConnOptions::default());
}

/// Issue 13: a tiny exchange (connect, one segment, acknowledged, closed)
/// is round trips, not timers: the client asks for immediate ACKs in its
/// SYN and its close sends the reset right after the data. Prints the
/// times (`-- --nocapture`); asserts only what happened, never how long.
#[test]
fn tiny_exchanges_against_our_listener() {
    let d = Muxd::start(MuxdConfig::node(3));
    let mut server = client(&d, "server", false);
    let listener = server.listen(11, ConnOptions::default()).unwrap();
    // 14 connections: fewer than the listener's 16 slots, which each stay
    // taken for the close wait (2 s) after a close.
    const RUNS: usize = 7;
    let srv = thread::spawn(move || {
        let mut got = Vec::new();
        for _ in 0..2 * RUNS {
            let conn = server.accept(&listener, Some(WAIT)).unwrap();
            let mut buf = [0u8; 64];
            loop {
                match server.recv(&conn, &mut buf, Some(WAIT)) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) => panic!("sink: {e}"),
                }
            }
            let _ = server.close_conn(conn, Some(WAIT));
        }
        got
    });
    let mut c = client(&d, "client", false);
    for wait_acked in [false, true] {
        let mut times = Vec::new();
        for _ in 0..RUNS {
            let started = Instant::now();
            let conn = c
                .connect_to(3, 11, ConnOptions::default(), Some(WAIT))
                .unwrap();
            c.send(&conn, b"hi", Some(WAIT)).unwrap();
            if wait_acked {
                c.wait_acked(&conn, Some(WAIT)).unwrap();
            }
            c.close_conn(conn, Some(WAIT)).unwrap();
            times.push(started.elapsed());
        }
        times.sort();
        println!(
            "tiny exchange (connect, \"hi\",{} close) through csp-muxd: median {:?}, max {:?}",
            if wait_acked { " wait_acked," } else { "" },
            times[RUNS / 2],
            times[RUNS - 1]
        );
    }
    assert_eq!(srv.join().unwrap(), b"hi".repeat(2 * RUNS));
}

#[test]
fn echo_between_two_clients_with_crc_and_hmac() {
    echo_round_trip(ConnOptions::default().with_crc().with_hmac_key(b"secret"));
}

#[test]
fn a_wrong_hmac_key_never_connects() {
    let d = Muxd::start(MuxdConfig::node(3));
    let mut server = client(&d, "server", false);
    let listener = server
        .listen(11, ConnOptions::default().with_hmac_key(b"right"))
        .unwrap();
    let mut c = client(&d, "client", false);
    let opts = ConnOptions::default().with_hmac_key(b"wrong");
    // The server never runs here: the SYN waits in its socket, and would
    // be dropped for its HMAC anyway. Either way: no connection.
    let err = c
        .connect_to(3, 11, opts, Some(Duration::from_millis(1500)))
        .unwrap_err();
    assert!(matches!(err, Error::ConnectionFailed { .. }), "{err}");
    assert!(err.to_string().contains("no answer from 3:11"), "{err}");
    // The server reads what came: SYNs dropped for their HMAC, counted.
    let deadline = Instant::now() + WAIT;
    while server.rdp_counters().unwrap().0.rx_security == 0 {
        assert!(Instant::now() < deadline, "no SYN seen");
        server.wait(Some(Duration::from_millis(50))).unwrap();
    }
    assert!(server.try_accept(&listener).unwrap().is_none());
}

#[test]
fn connecting_to_a_port_nobody_listens_on_fails_in_time_and_says_so() {
    let d = Muxd::start(MuxdConfig::node(3));
    let mut c = client(&d, "client", false);
    let started = Instant::now();
    let err = c
        .connect_to(
            3,
            12,
            ConnOptions::default(),
            Some(Duration::from_millis(800)),
        )
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    let msg = err.to_string();
    assert!(msg.contains("no answer from 3:12"), "{msg}");
    assert!(msg.contains("listening"), "{msg}");
    assert_no_daemon_errors(&mut c);
    // The ephemeral port went back: the daemon lists no app port for us
    // but the control socket.
    let status = c.control(host_lib::Control::Status).unwrap();
    assert!(
        !status.contains("client") || !status.contains(":17"),
        "{status}"
    );
}

/// Receive until the connection ends; what arrived and how it ended.
fn drain(c: &mut Client, conn: &Conn, progress: &AtomicUsize) -> (Vec<u8>, Result<(), Error>) {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match c.recv(conn, &mut buf, Some(WAIT)) {
            Ok(0) => return (got, Ok(())),
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                progress.store(got.len(), Ordering::Relaxed);
            }
            Err(e) => return (got, Err(e)),
        }
    }
}

#[test]
fn ten_megabytes_arrive_byte_for_byte() {
    const LEN: usize = 10 * 1024 * 1024;
    let d = Muxd::start(MuxdConfig::node(3));
    // Two local applications: large segments and a large window (the
    // 200-byte default is for radio links).
    let options = ConnOptions::default()
        .with_segment(MAX_SEGMENT)
        .with_window(32);
    let mut server = client(&d, "sink", false);
    let listener = server.listen(10, options).unwrap();
    let sink = thread::spawn(move || {
        let conn = server.accept(&listener, Some(WAIT)).unwrap();
        let (got, end) = drain(&mut server, &conn, &AtomicUsize::new(0));
        server.close_conn(conn, Some(WAIT)).unwrap();
        (got, end)
    });
    let data = pattern(LEN, 7);
    let mut c = client(&d, "source", false);
    let started = Instant::now();
    let conn = c.connect_to(3, 10, options, Some(WAIT)).unwrap();
    c.send(&conn, &data, Some(WAIT)).unwrap();
    c.wait_acked(&conn, Some(WAIT)).unwrap();
    c.close_conn(conn, Some(WAIT)).unwrap();
    let elapsed = started.elapsed();
    let (got, end) = sink.join().unwrap();
    end.unwrap();
    assert_eq!(got.len(), LEN);
    assert!(got == data, "10 MB arrived, not byte for byte");
    let mbps = LEN as f64 / 1e6 / elapsed.as_secs_f64();
    eprintln!("10 MiB over RDP through csp-muxd: {elapsed:.2?}, {mbps:.1} MB/s");
}

#[test]
fn a_daemon_killed_mid_transfer_fails_both_ends_never_silently() {
    let mut d = Muxd::start(MuxdConfig::node(3));
    let options = ConnOptions::default()
        .with_segment(MAX_SEGMENT)
        .with_window(32);
    // Reconnecting clients: the daemon coming back does not bring the
    // connection back, and nothing passes for delivered.
    let mut server = client(&d, "sink", true);
    let listener = server.listen(10, options).unwrap();
    let progress = Arc::new(AtomicUsize::new(0));
    let p = progress.clone();
    let sink = thread::spawn(move || {
        let conn = server.accept(&listener, Some(WAIT)).unwrap();
        let (got, end) = drain(&mut server, &conn, &p);
        let mut events = Vec::new();
        while let Some(e) = server.poll_event() {
            events.push(e);
        }
        (got, end, events)
    });
    let mut c = client(&d, "source", true);
    let conn = c.connect_to(3, 10, options, Some(WAIT)).unwrap();
    // Far more than gets through before the kill.
    let data = pattern(64 * 1024 * 1024, 9);
    let source = thread::spawn(move || {
        let sent = c.send(&conn, &data, Some(WAIT * 2));
        let acked = c.wait_acked(&conn, Some(WAIT));
        let closed = c.close_conn(conn, Some(WAIT));
        let mut events = Vec::new();
        while let Some(e) = c.poll_event() {
            events.push(e);
        }
        (sent, acked, closed, events, data)
    });
    let deadline = Instant::now() + WAIT;
    while progress.load(Ordering::Relaxed) < 512 * 1024 {
        assert!(Instant::now() < deadline, "the transfer never got going");
        thread::sleep(Duration::from_millis(5));
    }
    d.kill();

    let (sent, acked, closed, events, data) = source.join().unwrap();
    for (what, r) in [("send", sent), ("wait_acked", acked), ("close", closed)] {
        let err = r.expect_err(what);
        assert!(
            err.to_string().contains("csp-muxd went away"),
            "{what}: {err}"
        );
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ConnectionFailed { reason, .. } if reason.contains("csp-muxd went away"))),
        "{events:?}"
    );
    let (got, end, events) = sink.join().unwrap();
    let err = end.expect_err("the receiving end must fail, not end cleanly");
    assert!(err.to_string().contains("csp-muxd went away"), "{err}");
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::ConnectionFailed { .. })));
    assert!(got.len() < data.len());
    assert!(
        got == data[..got.len()],
        "what arrived is a prefix, in order"
    );
}

// ---- the `csp` tool as processes -------------------------------------------

/// Run `csp rdp ARGS` with `input` on stdin: exit code, stdout, stderr.
fn csp_rdp(d: &Muxd, args: &[&str], input: Vec<u8>) -> (i32, Vec<u8>, String) {
    let mut child = d
        .csp()
        .arg("rdp")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = finish_within(child, WAIT * 2);
    writer.join().unwrap();
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Start `csp listen --rdp ARGS` and wait until it listens.
fn listen_rdp(d: &Muxd, args: &[&str]) -> (Child, BufReader<ChildStderr>) {
    // Bounded by the listener's --idle.
    let args: Vec<&str> = ["listen", "--rdp", "--idle", "20000"]
        .iter()
        .chain(args)
        .copied()
        .collect();
    d.spawn_csp_ready(&args, "listening for RDP connections on ")
}

#[test]
fn cli_echo_hello_through_listen_rdp_echo() {
    let d = Muxd::start(MuxdConfig::node(1));
    let (listener, mut err) = listen_rdp(&d, &["--echo", "-c", "1", "10"]);
    let (code, out, stderr) = csp_rdp(&d, &["1", "10"], b"hello\n".to_vec());
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out), "hello\n");
    let out = finish(listener);
    assert!(out.status.success());
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("connection from 1:"), "{rest}");
    assert!(rest.contains(" closed"), "{rest}");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("6 bytes: 68 65 6c 6c 6f 0a"), "{printed}");
}

#[test]
fn cli_transfer_with_crc_and_hmac_is_byte_exact() {
    let d = Muxd::start(MuxdConfig::node(1));
    let secure = ["--crc", "--hmac-key", "secret"];
    let (mut listener, _err) = listen_rdp(&d, &[&secure[..], &["--raw", "-c", "1", "10"]].concat());
    // Read what it prints as it comes: a full pipe would stall it.
    let mut stdout = listener.stdout.take().unwrap();
    let printed = thread::spawn(move || {
        let mut all = Vec::new();
        stdout.read_to_end(&mut all).map(|_| all)
    });
    let data = pattern(100_000, 3);
    let (code, out, stderr) = csp_rdp(
        &d,
        &[&secure[..], &["--window", "16", "1", "10"]].concat(),
        data.clone(),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(out.is_empty());
    let out = finish(listener);
    assert!(out.status.success());
    let printed = printed.join().unwrap().unwrap();
    assert!(printed == data, "{} bytes arrived", printed.len());
}

#[test]
fn cli_rdp_to_a_port_nobody_listens_on_fails_clearly() {
    let d = Muxd::start(MuxdConfig::node(1));
    let (code, out, err) = csp_rdp(
        &d,
        &["--connect-timeout", "800", "1", "12"],
        b"anyone?".to_vec(),
    );
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(err.contains("no answer from 1:12"), "{err}");
    assert!(err.contains("listening"), "{err}");
}

#[test]
fn cli_rdp_fails_when_its_data_is_not_acknowledged() {
    let d = Muxd::start(MuxdConfig::node(1));
    // A peer that takes the connection, reads a little, then vanishes
    // (its client is dropped: the daemon frees its port).
    let mut server = client(&d, "vanishing", false);
    let listener = server.listen(10, ConnOptions::default()).unwrap();
    let mut child = d
        .csp()
        .args(["rdp", "--conn-timeout", "1500", "1", "10"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"first\n").unwrap();
    let conn = server.accept(&listener, Some(WAIT)).unwrap();
    assert_eq!(recv_exact(&mut server, &conn, 6), b"first\n");
    drop(server);
    thread::sleep(Duration::from_millis(100));
    stdin.write_all(b"second, never acknowledged\n").unwrap();
    drop(stdin);
    let out = finish(child);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("RDP connection failed"), "{err}");
}

#[test]
fn cli_rdp_fails_when_the_daemon_goes_away() {
    let mut d = Muxd::start(MuxdConfig::node(1));
    let (_listener, _err) = listen_rdp(&d, &["10"]);
    let mut child = d
        .csp()
        .args(["rdp", "1", "10"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"before\n").unwrap();
    thread::sleep(Duration::from_millis(300));
    d.kill();
    // stdin stays open: only the daemon's end can end this.
    let out = finish(child);
    drop(stdin);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("csp-muxd went away"), "{err}");
}

#[test]
fn cli_rdp_help_has_examples() {
    for args in [&["rdp", "--help"][..], &["listen", "--help"]] {
        let out = Command::new(bins::csp()).args(args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success());
        assert!(text.contains("Example"), "{text}");
        assert!(text.contains("--rdp"), "{text}");
    }
}

/// Let both clients work for a moment.
fn drive(a: &mut Client, b: &mut Client) {
    a.wait(Some(Duration::from_millis(5))).unwrap();
    b.wait(Some(Duration::from_millis(5))).unwrap();
}

#[test]
fn a_listener_survives_a_daemon_restart_its_connections_do_not() {
    let mut d = Muxd::start(MuxdConfig::node(3));
    let mut server = client(&d, "server", true);
    let listener = server.listen(10, ConnOptions::default()).unwrap();
    let mut c1 = client(&d, "c1", true);
    // The non-blocking way: start, then drive until both ends see it.
    let conn1 = c1.start_connect(3, 10, ConnOptions::default()).unwrap();
    assert_eq!(c1.conn_state(&conn1).unwrap(), ConnState::Connecting);
    assert!(matches!(
        c1.try_send(&conn1, b"early"),
        Err(Error::WouldBlock)
    ));
    let deadline = Instant::now() + WAIT;
    let accepted = loop {
        assert!(Instant::now() < deadline, "no connection");
        drive(&mut c1, &mut server);
        if let Some(c) = server.try_accept(&listener).unwrap() {
            break c;
        }
    };
    while c1.conn_state(&conn1).unwrap() != ConnState::Open {
        assert!(Instant::now() < deadline, "never open");
        drive(&mut c1, &mut server);
    }

    d.restart();
    let deadline = Instant::now() + WAIT * 2;
    for (c, conn) in [(&mut server, accepted), (&mut c1, conn1)] {
        loop {
            assert!(Instant::now() < deadline, "no failure reported");
            if let ConnState::Failed(why) = c.conn_state(&conn).unwrap() {
                assert!(why.contains("csp-muxd went away"), "{why}");
                break;
            }
            c.wait(Some(Duration::from_millis(20))).unwrap();
        }
        let err = c.try_send(&conn, b"lost").unwrap_err();
        assert!(matches!(err, Error::ConnectionFailed { .. }), "{err}");
        let err = c.close_conn(conn, Some(WAIT)).unwrap_err();
        assert!(err.to_string().contains("csp-muxd went away"), "{err}");
    }
    // The server reconnects and listens again on the same port.
    while !server.is_connected() || server.poll_timeout().is_some_and(|t| t <= Instant::now()) {
        assert!(Instant::now() < deadline, "no reconnect");
        server.wait(Some(Duration::from_millis(20))).unwrap();
    }
    let mut c2 = client(&d, "c2", false);
    let conn2 = c2.start_connect(3, 10, ConnOptions::default()).unwrap();
    let accepted = loop {
        assert!(Instant::now() < deadline, "no connection after the restart");
        drive(&mut c2, &mut server);
        if let Some(c) = server.try_accept(&listener).unwrap() {
            break c;
        }
    };
    while c2.conn_state(&conn2).unwrap() != ConnState::Open {
        assert!(Instant::now() < deadline, "never open");
        drive(&mut c2, &mut server);
    }
    assert_eq!(c2.try_send(&conn2, b"again").unwrap(), 5);
    let mut buf = [0u8; 16];
    let got = loop {
        assert!(Instant::now() < deadline, "nothing arrived");
        drive(&mut c2, &mut server);
        match server.try_recv(&accepted, &mut buf) {
            Ok(n) => break n,
            Err(Error::WouldBlock) => {}
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(&buf[..got], b"again");
    server.close_listener(listener).unwrap();
    assert!(matches!(
        server.try_accept(&listener),
        Err(Error::UnknownConn)
    ));
}

#[test]
fn one_listener_serves_several_clients_at_once() {
    const CLIENTS: usize = 3;
    let d = Muxd::start(MuxdConfig::node(3));
    let mut server = client(&d, "server", false);
    let options = ConnOptions::default().with_crc();
    let listener = server.listen(10, options).unwrap();
    let srv = thread::spawn(move || {
        (0..CLIENTS)
            .map(|_| echo_one(&mut server, &listener))
            .sum::<usize>()
    });
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let mut c = client(&d, &format!("c{i}"), false);
            thread::spawn(move || {
                let conn = c.connect_to(3, 10, options, Some(WAIT)).unwrap();
                let data = pattern(3000, 100 + i as u32);
                c.send(&conn, &data, Some(WAIT)).unwrap();
                // Served one after the other: the echo may take a while,
                // the acknowledgements do not.
                c.wait_acked(&conn, Some(WAIT)).unwrap();
                assert_eq!(recv_exact(&mut c, &conn, data.len()), data);
                c.close_conn(conn, Some(WAIT)).unwrap();
                data.len()
            })
        })
        .collect();
    let sent: usize = clients.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(srv.join().unwrap(), sent);
}

/// `csp listen --rdp --echo` used to serve every connection from one loop
/// with a blocking send: a client that stopped reading mid-transfer held up
/// the others' echo until its own connection timed out (and a client killed
/// with -9 cost the others many seconds, once all of their echo). Now a
/// stuck peer costs only its own connection. The victim here is frozen
/// (SIGSTOP) with a window of one segment (so the server's queue towards it
/// fills at once) and a two-minute connection timeout, so the old loop
/// waited for it far longer than the survivor's bounded wait (seen: the
/// survivor's connection timed out). The server ends after one connection
/// (`-c 1`), which must be the survivor's, while the victim's is still open.
#[test]
fn listen_rdp_echo_survives_a_frozen_client() {
    let d = Muxd::start(MuxdConfig::node(1));
    let mut listener = d
        .csp()
        .args(["listen", "--rdp", "--echo", "--raw", "-c", "1", "10"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(listener.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.starts_with("listening for RDP"), "{line:?}");

    // The victim sends and never reads its echo, then freezes.
    let mut victim = d
        .csp()
        .args([
            "rdp",
            "--window",
            "1",
            "--conn-timeout",
            "120000",
            "1",
            "10",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut vin = victim.stdin.take().unwrap();
    // Killed on every way out, so a failing test leaves no frozen process.
    struct KillOnDrop(Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let victim = KillOnDrop(victim);
    let feeder = thread::spawn(move || {
        let chunk = pattern(64 * 1024, 7);
        for _ in 0..64 {
            if vin.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    line.clear();
    err.read_line(&mut line).unwrap();
    assert!(line.starts_with("connection from"), "{line:?}");
    // Mid-transfer: the victim's echo backs up (nobody reads its stdout).
    thread::sleep(Duration::from_millis(500));
    let stop = |sig: &str, pid: u32| {
        let ok = Command::new("kill").args([sig, &pid.to_string()]).status();
        assert!(ok.unwrap().success(), "kill {sig}");
    };
    stop("-STOP", victim.0.id());

    // The survivor: 1 MB through the same server, every byte back.
    let data = pattern(1 << 20, 3);
    let mut survivor = d
        .csp()
        .args(["rdp", "1", "10"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = survivor.id();
    let mut sin = survivor.stdin.take().unwrap();
    let input = data.clone();
    let writer = thread::spawn(move || {
        let _ = sin.write_all(&input);
    });
    // Bound the wait: kill the survivor if it hangs (its own timeouts
    // should end it long before).
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = {
        let done = done.clone();
        thread::spawn(move || {
            let deadline = Instant::now() + WAIT * 3;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                if Instant::now() > deadline {
                    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                    return;
                }
                thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let out = survivor.wait_with_output().unwrap();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    watchdog.join().unwrap();
    writer.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(out.stdout.len(), data.len(), "{stderr}");
    assert!(out.stdout == data, "echo differs");

    // The server ends after one connection: the survivor's, the victim's
    // is still open.
    let out = finish_within(listener, WAIT * 3);
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    assert!(out.status.success(), "{rest}");
    assert_eq!(rest.matches("connection from").count(), 1, "{rest}");
    assert_eq!(rest.matches(" closed").count(), 1, "{rest}");
    drop(victim);
    feeder.join().unwrap();
}
