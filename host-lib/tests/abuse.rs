//! Floods from an unauthenticated UDP peer against a real csp-muxd with
//! applications behind it (issue 14): made-up RDP SYNs against a listener,
//! and a flood of random and malformed datagrams during an RDP transfer.
//! Loopback only; every wait is bounded.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use csp_core::node::SynLimits;
use csp_core::Flags;
use host_lib::{Client, ClientConfig, ConnOptions, Control};
use test_support::junk::{frame, junk_frame, Junk};
use test_support::*;

fn client(d: &Muxd, name: &str) -> Client {
    apps::client(d, name, false)
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
    let d = Muxd::start(MuxdConfig::node(3));
    // The server's own limits, tighter than the default 8 half-open.
    let mut server = Client::with_config(ClientConfig {
        socket: Some(d.socket.clone()),
        name: "server".into(),
        reconnect: false,
        syn_limits: SynLimits {
            half_open_per_listener: 4,
            ..SynLimits::DEFAULT
        },
        ..ClientConfig::default()
    })
    .unwrap();
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
    // At most 4 half-open for this listener: the other 60 made-up SYNs,
    // and one more for the real SYN, gave way.
    assert!(dropped >= 61, "{dropped}");
}

/// 10^5 random and malformed datagrams into the UDP link while two
/// applications move 256 KiB over RDP through the same daemon: the
/// transfer arrives byte for byte, the daemon's memory stays flat, and its
/// counters account for every datagram.
#[test]
fn a_udp_flood_during_an_rdp_transfer() {
    const FLOOD: u64 = 100_000;
    const LEN: usize = 256 * 1024;
    let d = Muxd::start(MuxdConfig::node(3));
    let pid = d.child.id();
    let mut server = client(&d, "server");
    let listener = server.listen(10, ConnOptions::default()).unwrap();
    let mut watch = client(&d, "watch");
    let udp = udp_addr(&mut watch);
    let rss_before = rss_kib(pid);

    let srv = thread::spawn(move || {
        let conn = server.accept(&listener, Some(WAIT)).unwrap();
        let mut got = Vec::with_capacity(LEN);
        let mut buf = vec![0u8; 4096];
        while got.len() < LEN {
            let n = server.recv(&conn, &mut buf, Some(WAIT)).unwrap();
            assert!(n > 0, "closed after {} bytes", got.len());
            got.extend_from_slice(&buf[..n]);
        }
        // Keep serving (acknowledgements) until the sender closes.
        let end = server.recv(&conn, &mut buf, Some(WAIT * 6)).unwrap();
        assert_eq!(end, 0, "nothing after the {LEN} bytes");
        server.close_conn(conn, Some(WAIT)).unwrap();
        got
    });
    // The transfer is paced by the flood: chunk k goes once k/32 of the
    // flood is out, so the two overlap from start to end whatever the speed.
    let flooded = Arc::new(AtomicU64::new(0));
    // The flood starts once the connection is up: the flood's own SYNs to
    // port 10 take the listener's half-open slots, and on a loaded machine
    // they can displace the sender's handshake for longer than `WAIT`
    // (the SYN-flood test above covers that case on its own).
    let connected = Arc::new(AtomicBool::new(false));
    let sender = thread::spawn({
        let socket = d.socket.clone();
        let flooded = flooded.clone();
        let connected = connected.clone();
        move || {
            let mut c = Client::with_config(ClientConfig {
                socket: Some(socket),
                name: "sender".into(),
                reconnect: false,
                ..ClientConfig::default()
            })
            .unwrap();
            let conn = c
                .connect_to(3, 10, ConnOptions::default(), Some(WAIT))
                .unwrap();
            connected.store(true, Ordering::Relaxed);
            let data: Vec<u8> = (0..LEN).map(|i| (i * 7 + i / 251) as u8).collect();
            for (k, chunk) in data.chunks(LEN / 32).enumerate() {
                let due = FLOOD * k as u64 / 32;
                let deadline = Instant::now() + WAIT * 6;
                while flooded.load(Ordering::Relaxed) < due {
                    assert!(Instant::now() < deadline, "the flood stalled");
                    // Keep the connection served while waiting.
                    c.wait(Some(Duration::from_millis(5))).unwrap();
                }
                // Generous: the flood shares the daemon with this transfer.
                c.send(&conn, chunk, Some(WAIT * 6)).unwrap();
            }
            c.wait_acked(&conn, Some(WAIT * 6)).unwrap();
            c.close_conn(conn, Some(WAIT)).unwrap();
            data
        }
    });

    // The flood, in batches small enough for the socket buffer: the next
    // batch goes once the daemon has read the last (so the kernel drops
    // nothing and every datagram is the daemon's to count).
    let flood = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut j = Junk(0x1234_5678_9abc_def1);
    let mut sent = 0u64;
    let mut rss_peak = rss_before;
    let deadline = Instant::now() + WAIT * 2;
    while !connected.load(Ordering::Relaxed) {
        assert!(Instant::now() < deadline, "the sender never connected");
        thread::sleep(Duration::from_millis(2));
    }
    while sent < FLOOD {
        for _ in 0..200 {
            flood.send_to(&junk_frame(&mut j, 3), udp).unwrap();
            sent += 1;
        }
        wait_udp_frames(&mut watch, sent);
        flooded.store(sent, Ordering::Relaxed);
        rss_peak = rss_peak.max(rss_kib(pid));
    }
    let sent_data = sender.join().unwrap();
    let got = srv.join().unwrap();
    assert!(got == sent_data, "the transfer arrived byte for byte");

    let rss_after = rss_kib(pid);
    let stats = watch.control(Control::Stats).unwrap();
    let link = stats.lines().find(|l| l.starts_with("link udp ")).unwrap();
    println!("flood of {sent} datagrams: daemon RSS {rss_before} KiB before, peak {rss_peak} KiB, {rss_after} KiB after");
    println!("{link}");
    for key in ["unroutable", "no_listener", "rejected_packets", "delivered"] {
        println!("{key} {}", stat(&stats, key));
    }
    assert_eq!(udp_stat(&mut watch, "rx_frames"), sent);
    assert!(
        udp_stat(&mut watch, "rx_errors") > 0,
        "runts counted: {link}"
    );
    assert!(
        stat(&stats, "unroutable") + stat(&stats, "no_listener") > 0,
        "{stats}"
    );
    // Flat: the daemon holds no per-datagram state; queues are bounded.
    assert!(
        rss_peak < rss_before + 8 * 1024,
        "RSS grew from {rss_before} to {rss_peak} KiB"
    );
}

/// Value of `key N` in a STATS text.
fn stat(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {text}"))
}
