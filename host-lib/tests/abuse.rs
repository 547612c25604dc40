//! Floods from an unauthenticated UDP peer against a real csp-muxd with
//! applications behind it (issue 14): made-up RDP SYNs against a listener,
//! and a flood of random and malformed datagrams during an RDP transfer.
//! Loopback only; every wait is bounded.

mod common;

use std::net::UdpSocket;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use csp_core::{Addr, Flags, Header, Packet, Port, Prio, Version};
use host_lib::{Client, ClientConfig, ConnOptions, Control};

fn client(d: &Muxd, name: &str) -> Client {
    Client::with_config(ClientConfig {
        socket: Some(d.socket.clone()),
        name: name.into(),
        reconnect: false,
        ..ClientConfig::default()
    })
    .unwrap()
}

/// The daemon's UDP link address, from STATUS (`link udp bind=...`).
fn udp_addr(c: &mut Client) -> std::net::SocketAddr {
    let status = c.control(Control::Status).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("link udp bind="))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no UDP link in {status}"))
}

/// `key=N` on the daemon's `link udp` STATS line.
fn udp_stat(c: &mut Client, key: &str) -> u64 {
    let stats = c.control(Control::Stats).unwrap();
    stats
        .lines()
        .find(|l| l.starts_with("link udp "))
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {stats}"))
}

/// Wait (bounded) until the daemon has read `n` UDP frames.
fn wait_udp_frames(c: &mut Client, n: u64) {
    let deadline = Instant::now() + WAIT;
    while udp_stat(c, "rx_frames") < n {
        assert!(
            Instant::now() < deadline,
            "the daemon did not read the flood"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// A v2 frame from `src:sport` to `dst:dport` with `flags`.
fn frame(src: u16, sport: u8, dst: u16, dport: u8, flags: Flags, data: &[u8]) -> Vec<u8> {
    let h = Header {
        prio: Prio::Normal,
        src: Addr::new(src).unwrap(),
        dst: Addr::new(dst).unwrap(),
        dport: Port::new(dport).unwrap(),
        sport: Port::new(sport).unwrap(),
        flags,
    };
    let mut p = Packet::<512>::with_data(h, data).unwrap();
    p.frame(Version::V2).unwrap().to_vec()
}

/// An RDP SYN (option block, then RDP header) asking for one-hour
/// connection and packet timeouts and the largest window.
fn greedy_syn(isn: u16) -> Vec<u8> {
    let hour = csp_rdp::time::Duration::from_millis(3_600_000);
    let opts = csp_rdp::Options {
        conn_timeout: hour,
        packet_timeout: hour,
        max_backoff: hour,
        ..csp_rdp::Options::default()
    };
    let mut c =
        csp_rdp::Connection::<4, 64>::connect(csp_rdp::time::Instant::ZERO, opts, isn).unwrap();
    let mut seg = [0u8; 64];
    let t = c
        .poll_transmit(csp_rdp::time::Instant::ZERO, &mut seg)
        .unwrap();
    seg[..4].copy_from_slice(&0x3fffu32.to_be_bytes());
    seg[..t.len].to_vec()
}

#[test]
fn a_syn_flood_from_made_up_sources_does_not_lock_out_a_listener() {
    const FLOOD: u16 = 64;
    let d = Muxd::start(3, "");
    let mut server = client(&d, "server");
    let listener = server.listen(10, ConnOptions::default()).unwrap();
    let mut watch = client(&d, "watch");
    let udp = udp_addr(&mut watch);
    // 64 SYNs from 64 made-up addresses, one-hour timeouts asked for.
    let flood = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..FLOOD {
        let f = frame(200 + i, 20, 3, 10, Flags::RDP, &greedy_syn(i));
        flood.send_to(&f, udp).unwrap();
    }
    wait_udp_frames(&mut watch, u64::from(FLOOD));
    // The server's node takes the flood first (the daemon queued it
    // before the real SYN), then a real client connects and is echoed.
    let srv = thread::spawn(move || {
        let conn = server.accept(&listener, Some(WAIT)).unwrap();
        let mut buf = [0u8; 64];
        let n = server.recv(&conn, &mut buf, Some(WAIT)).unwrap();
        server.send(&conn, &buf[..n], Some(WAIT)).unwrap();
        let (counters, _) = server.rdp_counters().unwrap();
        (server, conn, counters.half_open_dropped)
    });
    let mut c = client(&d, "real");
    let conn = c
        .connect_to(3, 10, ConnOptions::default(), Some(WAIT))
        .unwrap();
    c.send(&conn, b"through the flood", Some(WAIT)).unwrap();
    let mut buf = [0u8; 64];
    let n = c.recv(&conn, &mut buf, Some(WAIT)).unwrap();
    assert_eq!(&buf[..n], b"through the flood");
    let (_server, _conn, dropped) = srv.join().unwrap();
    println!("half-open connections dropped by the listener: {dropped}");
    // At most 8 half-open per listener: the other 56 made-up SYNs, and one
    // more for the real SYN, gave way.
    assert!(dropped >= 57, "{dropped}");
}
