//! Two applications on one csp-muxd, connectionless.

use std::time::Duration;

use csp_core::Flags;
use host_lib::{Bind, Client, Error, Options};
use test_support::*;

const T: Option<Duration> = Some(WAIT);

#[test]
fn two_clients_both_ways_plain() {
    let d = Muxd::start(MuxdConfig::node(9));
    let mut server = Client::connect(&d.socket).unwrap();
    let mut client = Client::connect(&d.socket).unwrap();
    assert_eq!(server.node(), 9);
    let s = server.bind(Bind::Port(10)).unwrap();
    let c = client.bind(Bind::Ephemeral).unwrap();
    client.sendto(&c, 9, 10, b"hello").unwrap();
    let got = server.recvfrom(&s, T).unwrap();
    assert_eq!(got.data, b"hello");
    assert_eq!(got.src(), 9);
    assert_eq!(got.sport(), client.local_port(&c).unwrap());
    server.sendto(&s, got.src(), got.sport(), b"world").unwrap();
    let back = client.recvfrom(&c, T).unwrap();
    assert_eq!((back.data.as_slice(), back.sport()), (&b"world"[..], 10));
}

#[test]
fn crc_and_hmac_both_ways_wrong_key_dropped_and_counted() {
    let d = Muxd::start(MuxdConfig::node(9));
    let secure = Options::NONE.with_crc().with_hmac_key(b"secret");
    let mut server = Client::connect(&d.socket).unwrap();
    let mut client = Client::connect(&d.socket).unwrap();
    let mut intruder = Client::connect(&d.socket).unwrap();
    let s = server.bind_with(Bind::Port(11), secure).unwrap();
    let c = client.bind_with(Bind::Ephemeral, secure).unwrap();
    let bad = intruder
        .bind_with(
            Bind::Ephemeral,
            Options::NONE.with_crc().with_hmac_key(b"guess"),
        )
        .unwrap();
    let plain = intruder.bind(Bind::Ephemeral).unwrap();

    client.sendto(&c, 9, 11, b"command").unwrap();
    let got = server.recvfrom(&s, T).unwrap();
    assert_eq!(got.data, b"command", "trailers stripped after verifying");
    assert!(got.header.flags.contains(Flags::HMAC) && got.header.flags.contains(Flags::CRC32));
    server.sendto(&s, got.src(), got.sport(), b"ack").unwrap();
    assert_eq!(client.recvfrom(&c, T).unwrap().data, b"ack");

    // A wrong key, and no trailers at all, are both refused by a socket
    // that requires them; the good packet after them still gets through.
    intruder.sendto(&bad, 9, 11, b"forged").unwrap();
    intruder.sendto(&plain, 9, 11, b"bare").unwrap();
    // Packets from two connections reach the daemon in no fixed order:
    // drive the server until both refusals are counted (bounded).
    let deadline = std::time::Instant::now() + WAIT;
    while server.socket_stats(&s).unwrap().dropped_security < 2 {
        assert!(std::time::Instant::now() < deadline, "refusals not counted");
        server.wait(Some(Duration::from_millis(20))).unwrap();
    }
    assert!(
        server.try_recvfrom(&s).unwrap().is_none(),
        "nothing delivered"
    );
    client.sendto(&c, 9, 11, b"second").unwrap();
    assert_eq!(server.recvfrom(&s, T).unwrap().data, b"second");
    let stats = server.socket_stats(&s).unwrap();
    assert_eq!(stats.dropped_security, 2, "{stats:?}");
    assert_eq!(stats.delivered, 2);
    assert!(server.try_recvfrom(&s).unwrap().is_none());
}

#[test]
fn sfp_transfer_of_5_kb() {
    let d = Muxd::start(MuxdConfig::node(9));
    let opts = Options::NONE.with_sfp().with_crc();
    let mut rx = Client::connect(&d.socket).unwrap();
    let mut tx = Client::connect(&d.socket).unwrap();
    let r = rx.bind_with(Bind::Port(12), opts).unwrap();
    let t = tx.bind_with(Bind::Ephemeral, opts).unwrap();
    let payload: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();

    // Bigger than one packet: refused without SFP, fragmented with it.
    let err = tx
        .sendto_with(&t, 9, 12, &vec![0u8; 5000], &Options::NONE)
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    tx.sendto(&t, 9, 12, &payload).unwrap();
    let got = rx.recvfrom(&r, T).unwrap();
    assert_eq!(got.data.len(), payload.len());
    assert!(got.data == payload, "byte-exact");
    assert!(!got.header.flags.contains(Flags::FRAG));
    assert_eq!(tx.socket_stats(&t).unwrap().tx_packets, 2);

    // Small fragments (as a link with a small MTU would need).
    let small = Options {
        sfp_mtu: Some(200),
        ..opts
    };
    tx.sendto_with(&t, 9, 12, &payload, &small).unwrap();
    assert!(rx.recvfrom(&r, T).unwrap().data == payload);
    assert_eq!(tx.socket_stats(&t).unwrap().tx_packets, 2 + 25);
}

#[test]
fn port_in_use_any_and_close() {
    let d = Muxd::start(MuxdConfig::node(9));
    let mut a = Client::connect(&d.socket).unwrap();
    let mut b = Client::connect(&d.socket).unwrap();
    let s = a.bind(Bind::Port(10)).unwrap();
    let err = b.bind(Bind::Port(10)).unwrap_err();
    assert_eq!(err.to_string(), "port 10 is in use by another application");
    assert!(matches!(
        b.bind(Bind::Port(64)),
        Err(Error::InvalidPort(64))
    ));

    // ANY gets what no exact binding takes; it can not send.
    let any = b.bind(Bind::Any).unwrap();
    let e = a.bind(Bind::Ephemeral).unwrap();
    a.sendto(&e, 9, 20, b"to-any").unwrap();
    let got = b.recvfrom(&any, T).unwrap();
    assert_eq!((got.dport(), got.data.as_slice()), (20, &b"to-any"[..]));
    assert!(b.sendto(&any, 9, 10, b"x").is_err());

    // Closing frees the port for someone else.
    a.close(s).unwrap();
    assert!(matches!(
        a.sendto(&s, 9, 10, b"x"),
        Err(Error::UnknownSocket)
    ));
    let s2 = b.bind(Bind::Port(10)).unwrap();
    a.sendto(&e, 9, 10, b"new owner").unwrap();
    assert_eq!(b.recvfrom(&s2, T).unwrap().data, b"new owner");
    assert!(matches!(
        b.recvfrom(&s2, Some(Duration::from_millis(50))),
        Err(Error::Timeout)
    ));
}

#[test]
fn services_of_the_daemon() {
    let d = Muxd::start(MuxdConfig::node(9));
    let mut c = Client::connect(&d.socket).unwrap();
    let rtt = c.ping(9, 100, WAIT).unwrap();
    assert!(rtt < WAIT);
    c.ping(0, 0, WAIT).expect("0 is the local node");
    assert!(c.uptime(9, WAIT).unwrap() < 3600);
    assert!(c.buffree(9, WAIT).unwrap() > 0);
    c.memfree(9, WAIT).unwrap();
    assert_eq!(c.ident(9, WAIT).unwrap().hostname, "csp-muxd");
    // The daemon holds no HMAC key: such a request gets no answer.
    c.set_service_options(Options::NONE.with_hmac_key(b"k"));
    assert!(matches!(
        c.ping(9, 4, Duration::from_millis(200)),
        Err(Error::Timeout)
    ));
    c.set_service_options(Options::NONE.with_crc());
    c.ping(9, 4, WAIT).expect("CRC is checked and answered");
}

#[test]
fn non_blocking_core() {
    let d = Muxd::start(MuxdConfig::node(9));
    let mut a = Client::connect(&d.socket).unwrap();
    let mut b = Client::connect(&d.socket).unwrap();
    let s = a.bind(Bind::Port(10)).unwrap();
    let e = b.bind(Bind::Ephemeral).unwrap();
    assert!(a.as_raw_fd().is_some());
    assert_eq!(
        a.poll_timeout(),
        None,
        "nothing due while connected and idle"
    );
    assert!(a.try_recvfrom(&s).unwrap().is_none());
    for i in 0..10u8 {
        b.try_sendto(&e, 9, 10, &[i], &Options::NONE).unwrap();
    }
    // Drive `a` as an event loop would: wait on its fd, then handle it.
    let deadline = std::time::Instant::now() + WAIT;
    let mut got = Vec::new();
    while got.len() < 10 && std::time::Instant::now() < deadline {
        a.wait(Some(Duration::from_millis(100))).unwrap();
        a.handle_readable();
        while let Some(d) = a.try_recvfrom(&s).unwrap() {
            got.push(d.data[0]);
        }
    }
    assert_eq!(got, (0..10).collect::<Vec<u8>>());
}

#[test]
fn xtea_hmac_crc_between_two_clients() {
    // XTEA exists only in libcsp 1.x; between two host-lib clients the
    // daemon carries its flag through the v2 IPC header untouched.
    let d = Muxd::start(MuxdConfig::node(9));
    let opts = Options::NONE
        .with_xtea_key(b"xtea key")
        .with_hmac_key(b"hmac key")
        .with_crc();
    let mut a = Client::connect(&d.socket).unwrap();
    let mut b = Client::connect(&d.socket).unwrap();
    let sa = a.bind_with(Bind::Ephemeral, opts).unwrap();
    let sb = b.bind_with(Bind::Port(14), opts).unwrap();
    let eavesdropper = b.bind(Bind::Port(15)).unwrap();
    a.sendto(&sa, 9, 14, b"secret telecommand").unwrap();
    let got = b.recvfrom(&sb, T).unwrap();
    assert_eq!(got.data, b"secret telecommand");
    assert!(got.header.flags.contains(Flags::XTEA));
    // What goes over the wire is not the plaintext: a socket without the
    // key (and without XTEA, a v2 notion) sees ciphertext and the nonce.
    let xtea_only = Options::NONE.with_xtea_key(b"xtea key");
    a.sendto_with(&sa, 9, 15, b"secret telecommand", &xtea_only)
        .unwrap();
    let raw = b.recvfrom(&eavesdropper, T).unwrap();
    assert_eq!(raw.data.len(), b"secret telecommand".len() + 4);
    assert!(!raw.data.windows(6).any(|w| w == b"secret"));
    // HMAC-flagged data it has no key for is refused and counted.
    a.sendto(&sa, 9, 15, b"secret telecommand").unwrap();
    let refused = b.recvfrom(&eavesdropper, Some(Duration::from_millis(300)));
    assert!(matches!(refused, Err(Error::Timeout)), "{refused:?}");
    assert_eq!(b.socket_stats(&eavesdropper).unwrap().dropped_security, 1);
}

#[test]
fn a_fast_sender_never_blocks_on_a_slow_receiver() {
    let d = Muxd::start(MuxdConfig::node(9).extra("[ipc]\nqueue_len = 32\n"));
    let mut tx = Client::connect(&d.socket).unwrap();
    let mut rx = Client::connect(&d.socket).unwrap();
    let r = rx.bind(Bind::Port(10)).unwrap();
    let t = tx.bind(Bind::Ephemeral).unwrap();
    let block = vec![0xA5u8; 4000];
    // Each sendto would fail with a timeout if the daemon let the sender
    // block behind the receiver that is not reading.
    for _ in 0..2000 {
        tx.sendto(&t, 9, 10, &block).unwrap();
    }
    // The control round trip comes after every DATA on tx's connection, so
    // the daemon has routed all 2000 by the time it answers.
    tx.control(host_lib::Control::Stats).unwrap();
    // The receiver gets what its queues held, each packet whole. Under load
    // the daemon may still be writing to it: keep draining until every
    // packet is accounted for (bounded).
    let mut got = 0;
    let deadline = std::time::Instant::now() + WAIT;
    let accounted = |got: u64, tx: &mut Client, rx: &Client| {
        let stats = tx.control(host_lib::Control::Stats).unwrap();
        let daemon_dropped: u64 = stats
            .lines()
            .filter(|l| l.starts_with("app "))
            .filter_map(|l| l.split("dropped_overflow=").nth(1))
            .filter_map(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .sum();
        let client_dropped = rx.socket_stats(&r).unwrap().dropped_overflow;
        (
            got + daemon_dropped + client_dropped,
            daemon_dropped,
            client_dropped,
        )
    };
    loop {
        while let Ok(p) = rx.recvfrom(&r, Some(Duration::from_millis(300))) {
            assert!(p.data == block);
            got += 1;
        }
        if accounted(got, &mut tx, &rx).0 >= 2000 || std::time::Instant::now() > deadline {
            break;
        }
    }
    assert!(got > 0 && got < 2000, "{got}");
    // Nothing is lost silently: every packet was delivered or counted as
    // dropped, by the daemon's queue or by the client's.
    let (total, daemon_dropped, client_dropped) = accounted(got, &mut tx, &rx);
    assert_eq!(
        total, 2000,
        "got {got}, daemon dropped {daemon_dropped}, client dropped {client_dropped}"
    );
}

#[test]
fn over_the_daemons_tcp_listener_with_its_token() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = Muxd::start(MuxdConfig::node(9).extra(&format!(
        "[ipc]\ntcp_listen = \"127.0.0.1:{port}\"\ntcp_token = \"t0k3n-t0k3n-t0k3n-t0k3n\"\n"
    )));
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let tcp = |token: &str| host_lib::ClientConfig {
        tcp: Some((addr, token.to_string())),
        ..host_lib::ClientConfig::default()
    };
    let err = Client::with_config(tcp("wrong")).unwrap_err();
    assert!(matches!(err, Error::Refused { .. }), "{err}");

    let mut remote = Client::with_config(tcp("t0k3n-t0k3n-t0k3n-t0k3n")).unwrap();
    assert_eq!(remote.node(), 9);
    let mut local = Client::connect(&d.socket).unwrap();
    let r = remote
        .bind_with(Bind::Port(10), Options::NONE.with_crc())
        .unwrap();
    let l = local
        .bind_with(Bind::Ephemeral, Options::NONE.with_crc())
        .unwrap();
    local.sendto(&l, 9, 10, b"over tcp").unwrap();
    let got = remote.recvfrom(&r, T).unwrap();
    assert_eq!(got.data, b"over tcp");
    remote
        .sendto(&r, got.src(), got.sport(), b"and back")
        .unwrap();
    assert_eq!(local.recvfrom(&l, T).unwrap().data, b"and back");
    remote.ping(9, 8, WAIT).unwrap();
    assert_eq!(remote.endpoint().to_string(), format!("tcp:{addr}"));
}
