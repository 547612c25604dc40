//! csp-muxd end to end: real process, real Unix sockets, real UDP on 127.0.0.1.

use csp_core::security::crc32c;
use csp_core::Flags;
use csp_ipc::{ByeReason, Control, ErrorCode, Message, Status, PORT_ANY, PORT_EPHEMERAL};
use test_support::*;

#[test]
fn register_conflicts_wildcard_ephemeral_unregister() {
    let d = Muxd::start(MuxdConfig::node(5));
    let mut a = d.client("a");
    let mut b = d.client("b");
    assert_eq!(a.node, 5);

    assert_eq!(
        a.register(0, 10),
        (Status::Ok, 5, 10),
        "0 means the daemon's address"
    );
    assert_eq!(b.register(5, 10).0, Status::PortInUse);
    assert_eq!(b.register(5, 64).0, Status::Invalid);
    assert_eq!(
        b.register(5, 40).0,
        Status::Invalid,
        "ephemeral range is not bindable by number"
    );
    assert_eq!(b.register(9, 11).0, Status::NotLocalAddr);
    assert_eq!(b.register(5, PORT_ANY), (Status::Ok, 5, PORT_ANY));

    let (st, _, p1) = a.register(0, PORT_EPHEMERAL);
    let (st2, _, p2) = a.register(0, PORT_EPHEMERAL);
    assert_eq!((st, st2), (Status::Ok, Status::Ok));
    assert!((32..=63).contains(&p1) && (32..=63).contains(&p2) && p1 != p2);

    // Exact binding wins over the wildcard; other ports go to the wildcard.
    let mut c = d.client("c");
    let (_, _, cp) = c.register(0, PORT_EPHEMERAL);
    c.send_packet(5, cp, 5, 10, Flags::NONE, b"to-a");
    let (h, data) = a.recv_packet();
    assert_eq!(
        (h.sport.get(), h.dport.get(), data.as_slice()),
        (cp, 10, &b"to-a"[..])
    );
    c.send_packet(5, cp, 5, 12, Flags::NONE, b"to-any");
    let (h, data) = b.recv_packet();
    assert_eq!((h.dport.get(), data.as_slice()), (12, &b"to-any"[..]));

    assert_eq!(b.unregister(5, 10), Status::NotRegistered, "not b's");
    assert_eq!(a.unregister(5, 10), Status::Ok);
    assert_eq!(b.register(5, 10).0, Status::Ok, "freed port can be taken");

    // A closed client frees all its ports at once.
    drop(a);
    let mut e = d.client("e");
    // The daemon processes the close before e's request only if it saw it;
    // retry briefly (bounded) until p1 is free again or time runs out.
    let mut freed = false;
    for _ in 0..100 {
        let st = e.unregister(5, p1);
        assert_eq!(st, Status::NotRegistered);
        let status = e.control(Control::Status);
        if !status.contains("name=\"a\"") {
            freed = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(freed, "client a still listed");
    assert_eq!(e.register(5, 10).0, Status::PortInUse, "b holds 10 now");
}

#[test]
fn loopback_between_two_clients_and_spoofing_refused() {
    let d = Muxd::start(MuxdConfig::node(7));
    let mut server = d.client("server");
    let mut client = d.client("client");
    server.register(0, 10);
    let (_, _, eph) = client.register(0, PORT_EPHEMERAL);

    client.send_packet(7, eph, 7, 10, Flags::NONE, b"request");
    let (h, data) = server.recv_packet();
    assert_eq!(
        (h.src.get(), h.sport.get(), data.as_slice()),
        (7, eph, &b"request"[..])
    );
    server.send_packet(7, 10, 7, eph, Flags::NONE, b"reply");
    let (h, data) = client.recv_packet();
    assert_eq!((h.sport.get(), data.as_slice()), (10, &b"reply"[..]));

    // Source port 10 belongs to the server: the client may not send from it.
    client.send_packet(7, 10, 7, eph, Flags::NONE, b"spoof");
    match client.recv() {
        Some(Msg::Error {
            code: ErrorCode::Spoofed,
            ..
        }) => {}
        other => panic!("expected Spoofed, got {other:?}"),
    }
    // Nor from another node's address.
    client.send_packet(3, eph, 7, 10, Flags::NONE, b"spoof");
    assert!(matches!(
        client.recv(),
        Some(Msg::Error {
            code: ErrorCode::Spoofed,
            ..
        })
    ));
    // The connection is still served after a refused packet.
    client.send_packet(0, eph, 7, 10, Flags::NONE, b"again");
    assert_eq!(server.recv_packet().1, b"again");
    let stats = client.control(Control::Stats);
    assert_eq!(stat(&stats, "rejected_packets"), 2, "{stats}");
}

#[test]
fn builtin_services_answer() {
    let d = Muxd::start(MuxdConfig::node(9));
    let mut c = d.client("svc");
    let (_, _, eph) = c.register(0, PORT_EPHEMERAL);

    // Ping: echo.
    c.send_packet(9, eph, 9, 1, Flags::NONE, b"ping-payload");
    let (h, data) = c.recv_packet();
    assert_eq!((h.src.get(), h.sport.get(), h.dport.get()), (9, 1, eph));
    assert_eq!(data, b"ping-payload");

    // Uptime with CRC32 as libcsp's client helper sends it: reply carries a
    // valid CRC too.
    c.send_packet(9, eph, 9, 6, Flags::CRC32, &crc32c(&[]).to_be_bytes());
    let (h, data) = c.recv_packet();
    assert!(h.flags.contains(Flags::CRC32));
    assert_eq!(data.len(), 8);
    assert_eq!(crc32c(&data[..4]).to_be_bytes(), data[4..]);

    // A bad CRC gets no answer; the next good request does.
    c.send_packet(9, eph, 9, 1, Flags::CRC32, &[1, 2, 3, 4, 0, 0, 0, 0]);
    c.send_packet(9, eph, 9, 3, Flags::NONE, &[]);
    let (h, data) = c.recv_packet();
    assert_eq!(h.sport.get(), 3, "memfree answered, bad-CRC ping not");
    assert!(u32::from_be_bytes(data[..4].try_into().unwrap()) > 0);

    // CMP ident: 93-byte request, reply names the daemon.
    let mut ident = vec![0u8; 93];
    ident[1] = 1;
    c.send_packet(9, eph, 9, 0, Flags::NONE, &ident);
    let (_, data) = c.recv_packet();
    assert_eq!((data.len(), data[0], data[1]), (93, 0xff, 1));
    assert!(data[2..].starts_with(b"csp-muxd\0"));

    // Reboot is logged and ignored (no hook): no reply, daemon still serves.
    c.send_packet(9, eph, 9, 4, Flags::NONE, &0x8007_8007u32.to_be_bytes());
    c.send_packet(9, eph, 9, 5, Flags::NONE, &[]);
    let (h, _) = c.recv_packet();
    assert_eq!(h.sport.get(), 5);
}

#[test]
fn forwarding_udp_to_udp_through_a_middle_daemon() {
    // A (1) -> B (2) -> C (3), each hop a UDP link on 127.0.0.1; B has no
    // clients and only forwards. C speaks v1 headers, so B re-emits.
    let (pa, pb, pc) = (free_udp_port(), free_udp_port(), free_udp_port());
    let a = Muxd::start(
        MuxdConfig::node(1)
            .udp(Udp::Port(pa))
            .route(format!("0/0 udp 127.0.0.1:{pb}")),
    );
    let b = Muxd::start(
        MuxdConfig::node(2)
            .udp(Udp::Port(pb))
            .route(format!("1 udp 127.0.0.1:{pa}"))
            .route(format!("3 udp 127.0.0.1:{pc}")),
    );
    let c = Muxd::start(
        MuxdConfig::node(3)
            .udp(Udp::Port(pc))
            .route(format!("0/0 udp 127.0.0.1:{pb}")),
    );
    let mut app_a = a.client("a");
    let mut app_c = c.client("c");
    app_c.register(0, 10);
    let (_, _, eph) = app_a.register(0, PORT_EPHEMERAL);

    app_a.send_packet(1, eph, 3, 10, Flags::NONE, b"over two hops");
    let (h, data) = app_c.recv_packet();
    assert_eq!(
        (h.src.get(), h.dst.get(), data.as_slice()),
        (1, 3, &b"over two hops"[..])
    );
    app_c.send_packet(3, 10, 1, eph, Flags::NONE, b"and back");
    let (h, data) = app_a.recv_packet();
    assert_eq!((h.src.get(), data.as_slice()), (3, &b"and back"[..]));

    // Ping C's services from A.
    app_a.send_packet(1, eph, 3, 1, Flags::NONE, b"p");
    let (h, _) = app_a.recv_packet();
    assert_eq!((h.src.get(), h.sport.get()), (3, 1));

    let mut ctl = b.client("ctl");
    let stats = ctl.control(Control::Stats);
    assert!(stat(&stats, "forwarded") >= 4, "{stats}");
    // Unroutable from B's point of view: nothing for 99.
    let (_, _, beph) = ctl.register(0, PORT_EPHEMERAL);
    ctl.send_packet(2, beph, 99, 1, Flags::NONE, b"x");
    let routes = ctl.control(Control::Routes);
    assert!(
        routes.contains(&format!("3 udp:127.0.0.1:{pc}")),
        "{routes}"
    );
    let stats = ctl.control(Control::Stats);
    assert_eq!(stat(&stats, "unroutable"), 1, "{stats}");
    assert!(
        stats.contains(&format!("route 3 udp:127.0.0.1:{pc} packets=2")),
        "{stats}"
    );
    assert!(stats.contains("app "), "per-client counters: {stats}");
    assert!(
        stats.contains("link udp rx_frames="),
        "per-link counters: {stats}"
    );
}

#[test]
fn v1_link_header_version() {
    let (pa, pb) = (free_udp_port(), free_udp_port());
    let _a = Muxd::start(
        MuxdConfig::node(1)
            .udp(Udp::Port(pa))
            .route(format!("0/0 udp 127.0.0.1:{pb}"))
            .udp_keys("version = 1"),
    );
    // A raw UDP peer in B's place sees v1 headers.
    let peer = std::net::UdpSocket::bind(("127.0.0.1", pb)).unwrap();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    let mut app = _a.client("a");
    let (_, _, eph) = app.register(0, PORT_EPHEMERAL);
    app.send_packet(1, eph, 2, 10, Flags::NONE, b"v1");
    let mut buf = [0u8; 64];
    let (n, _) = peer.recv_from(&mut buf).unwrap();
    assert_eq!(n, 4 + 2);
    let h = csp_core::Header::parse(&buf[..n], csp_core::Version::V1).unwrap();
    assert_eq!(
        (h.src.get(), h.dst.get(), h.sport.get(), h.dport.get()),
        (1, 2, eph, 10)
    );
    // And v1 frames from the peer reach the app.
    let reply = header(2, 10, 1, eph, Flags::NONE);
    let (bytes, hl) = reply.to_bytes(csp_core::Version::V1).unwrap();
    let mut frame = bytes[..hl].to_vec();
    frame.extend_from_slice(b"ok");
    peer.send_to(&frame, ("127.0.0.1", pa)).unwrap();
    let (h, data) = app.recv_packet();
    assert_eq!((h.src.get(), data.as_slice()), (2, &b"ok"[..]));
}

#[test]
fn queue_overflow_policies() {
    for (policy, oldest) in [("drop-oldest", true), ("drop-newest", false)] {
        let d = Muxd::start(
            MuxdConfig::node(4).extra(&format!("[ipc]\nqueue_len = 4\noverflow = \"{policy}\"")),
        );
        let mut slow = d.client("slow");
        slow.register(0, 10);
        let mut fast = d.client("fast");
        let (_, _, eph) = fast.register(0, PORT_EPHEMERAL);
        // Far more than the kernel socket buffer holds, so the daemon's own
        // queue fills while `slow` is not reading.
        const N: u32 = 3000;
        let payload = [0x5a; 1000];
        for i in 0..N {
            let mut data = i.to_be_bytes().to_vec();
            data.extend_from_slice(&payload);
            fast.send_packet(4, eph, 4, 10, Flags::NONE, &data);
        }
        // A control round trip guarantees the daemon processed every DATA.
        let stats = fast.control(Control::Stats);
        assert!(stats.contains("dropped_overflow="), "{stats}");
        let mut got = Vec::new();
        slow.stream
            .set_read_timeout(Some(std::time::Duration::from_millis(300)))
            .unwrap();
        while let Some(Msg::Data(frame)) = slow.recv() {
            got.push(u32::from_be_bytes(frame[6..10].try_into().unwrap()));
        }
        assert!((got.len() as u32) < N, "{policy}: nothing was dropped");
        assert!(got.windows(2).all(|w| w[0] < w[1]), "{policy}: order kept");
        if oldest {
            assert_eq!(got.last(), Some(&(N - 1)), "drop-oldest keeps the newest");
        } else {
            let prefix: Vec<u32> = (0..got.len() as u32).collect();
            assert_eq!(got, prefix, "drop-newest keeps a prefix");
        }
        let stats = fast.control(Control::Stats);
        let dropped: u64 = stats
            .lines()
            .filter_map(|l| l.split("dropped_overflow=").nth(1))
            .map(|v| v.split_whitespace().next().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(
            dropped + got.len() as u64,
            N as u64,
            "{policy}: every packet delivered or counted"
        );
    }
}

#[test]
fn bad_ipc_frames_get_errors_and_others_are_served() {
    let d = Muxd::start(MuxdConfig::node(6));
    let mut good = d.client("good");
    let (_, _, eph) = good.register(0, PORT_EPHEMERAL);

    let cases: Vec<(&str, Vec<u8>, ErrorCode)> = vec![
        (
            "garbage",
            vec![0xde, 0xad, 0xbe, 0xef, 0x00],
            ErrorCode::BadLength,
        ),
        ("oversized", vec![0x20, 0x00, 0x04], ErrorCode::BadLength),
        ("zero length", vec![0x00, 0x00], ErrorCode::BadLength),
        (
            "unknown type",
            vec![0x00, 0x01, 0x42],
            ErrorCode::UnknownType,
        ),
        (
            "truncated body",
            vec![0x00, 0x02, 0x02, 0x00],
            ErrorCode::BadBody,
        ),
        (
            "no hello",
            csp_ipc::encode_to_vec(&Message::Register { addr: 0, port: 1 }).unwrap(),
            ErrorCode::NoHello,
        ),
        (
            "wrong version",
            csp_ipc::encode_to_vec(&Message::Hello {
                version: 99,
                name: "x",
            })
            .unwrap(),
            ErrorCode::BadVersion,
        ),
        (
            // A client of the first protocol (one text CONTROL_REPLY) would
            // misread paged replies: refused, not half served.
            "version 1",
            csp_ipc::encode_to_vec(&Message::Hello {
                version: 1,
                name: "x",
            })
            .unwrap(),
            ErrorCode::BadVersion,
        ),
    ];
    for (what, bytes, code) in cases {
        let mut bad = Ipc::raw(&d.socket);
        bad.send_raw(&bytes);
        match bad.recv() {
            Some(Msg::Error { code: got, .. }) => assert_eq!(got, code, "{what}"),
            other => panic!("{what}: expected ERROR, got {other:?}"),
        }
        assert_eq!(
            bad.recv(),
            None,
            "{what}: connection closed after the error"
        );
        // The well-behaved client is still served.
        good.send_packet(6, eph, 6, 1, Flags::NONE, what.as_bytes());
        assert_eq!(good.recv_packet().1, what.as_bytes());
    }
    // A truncated frame followed by EOF: nothing to answer, nothing breaks.
    let mut cut = Ipc::raw(&d.socket);
    cut.send_raw(&[0x00, 0x10, 0x01, 0x00]);
    drop(cut);
    good.send_packet(6, eph, 6, 1, Flags::NONE, b"still here");
    assert_eq!(good.recv_packet().1, b"still here");
    let stats = good.control(Control::Stats);
    assert_eq!(stat(&stats, "ipc_errors"), 5, "{stats}");
}

#[test]
fn stale_socket_replaced_live_socket_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap()); // stale file
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_csp-muxd"))
            .arg("--socket")
            .arg(&path)
            .args(extra)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!("[udp]\nbind = \"127.0.0.1:{}\"\n", free_udp_port()),
    )
    .unwrap();
    let mut first = run(&["--config", cfg.to_str().unwrap()]);
    let deadline = std::time::Instant::now() + WAIT;
    while std::os::unix::net::UnixStream::connect(&path).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "stale socket not replaced"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::fs::write(
        &cfg,
        format!("[udp]\nbind = \"127.0.0.1:{}\"\n", free_udp_port()),
    )
    .unwrap();
    let second = run(&["--config", cfg.to_str().unwrap()])
        .wait_with_output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("in use"), "{err}");
    first.kill().unwrap();
    first.wait().unwrap();
}

#[test]
fn sigterm_says_bye_and_removes_the_socket() {
    let mut d = Muxd::start(MuxdConfig::node(8));
    let mut c = d.client("c");
    c.register(0, 10);
    let status = d.terminate();
    assert!(status.success(), "{status}");
    assert_eq!(c.recv(), Some(Msg::Bye(ByeReason::Shutdown)));
    assert_eq!(c.recv(), None);
    assert!(!d.socket.exists(), "socket file removed");
}

#[test]
fn bad_config_exits_2_naming_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[node]\naddress = 1\n\n[ipc]\nqueue_len = 0\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_csp-muxd"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":5") && err.contains("queue_len"), "{err}");
}

#[test]
fn printed_default_config_is_valid() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_csp-muxd"))
        .arg("--print-default-config")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let parsed = host_muxd::config::Config::parse(&text, None).unwrap();
    assert_eq!(parsed, host_muxd::config::Config::default());
}

#[test]
fn tcp_endpoint_needs_the_token() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let d = Muxd::start(MuxdConfig::node(2).extra(&format!(
        "[ipc]\ntcp_listen = \"127.0.0.1:{port}\"\ntcp_token = \"s3cret-s3cret-s3cret\""
    )));
    let hello = |token: &str| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        use std::io::{Read, Write};
        s.write_all(
            &csp_ipc::encode_to_vec(&Message::Hello {
                version: csp_ipc::VERSION,
                name: token,
            })
            .unwrap(),
        )
        .unwrap();
        let mut buf = vec![0u8; 256];
        let mut got = Vec::new();
        while csp_ipc::decode(&got).unwrap().is_none() {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed without an answer");
            got.extend_from_slice(&buf[..n]);
        }
        let (m, _) = csp_ipc::decode(&got).unwrap().unwrap();
        format!("{m:?}")
    };
    assert!(
        hello("s3cret-s3cret-s3cret").starts_with("HelloAck"),
        "right token"
    );
    assert!(hello("wrong").starts_with("Error"), "wrong token");
    drop(d);
}

#[test]
fn reboot_request_runs_the_hook() {
    let marker = tempfile::tempdir().unwrap();
    let file = marker.path().join("rebooted");
    let d = Muxd::start(MuxdConfig::node(3).extra(&format!(
            "[services]\nallow_shutdown = true\nallow_unauthenticated = true\nreboot_hook = \"echo $CSP_REQUEST from $CSP_FROM > {}\"",
            file.display()
        )));
    let mut c = d.client("op");
    let (_, _, eph) = c.register(0, PORT_EPHEMERAL);
    c.send_packet(3, eph, 3, 4, Flags::NONE, &0xD1E5_529Au32.to_be_bytes());
    let deadline = std::time::Instant::now() + WAIT;
    while std::fs::read_to_string(&file).map_or(true, |s| !s.ends_with('\n')) {
        assert!(std::time::Instant::now() < deadline, "hook did not run");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "shutdown from 3\n");
}

#[test]
fn broadcast_from_a_link_is_answered_locally() {
    let (pa, pb) = (free_udp_port(), free_udp_port());
    let _d = Muxd::start(
        MuxdConfig::node(4)
            .udp(Udp::Port(pa))
            .route(format!("0/0 udp 127.0.0.1:{pb}")),
    );
    let peer = std::net::UdpSocket::bind(("127.0.0.1", pb)).unwrap();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    // Node 7 on the link pings the broadcast address.
    let (bytes, n) = header(7, 20, 16383, 1, Flags::NONE)
        .to_bytes(csp_core::Version::V2)
        .unwrap();
    let mut frame = bytes[..n].to_vec();
    frame.extend_from_slice(b"anyone?");
    peer.send_to(&frame, ("127.0.0.1", pa)).unwrap();
    let mut buf = [0u8; 64];
    let (len, _) = peer.recv_from(&mut buf).unwrap();
    let h = csp_core::Header::parse(&buf[..len], csp_core::Version::V2).unwrap();
    assert_eq!(
        (h.src.get(), h.dst.get(), h.sport.get()),
        (4, 7, 1),
        "answered from our own address"
    );
    assert_eq!(&buf[6..len], b"anyone?");
}
