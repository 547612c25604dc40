//! Lock-outs an unauthenticated or greedy local peer could cause (issue 14),
//! each reproduced against a real csp-muxd process over its Unix socket:
//! silent connections holding every client slot, a frame left half-sent,
//! one application registering every port, and 1000 applications at once.

use csp_ipc::{Control, ErrorCode, Status, PORT_ANY, PORT_EPHEMERAL};
use test_support::*;

/// Until EOF (bounded by the read timeout of `Ipc`): what the daemon said
/// before it closed the connection.
fn until_closed(c: &mut Ipc) -> Vec<Msg> {
    let mut said = Vec::new();
    while let Some(m) = c.recv() {
        said.push(m);
        assert!(said.len() < 16, "still open: {said:?}");
    }
    said
}

#[test]
fn connections_without_hello_are_closed_and_their_slots_come_back() {
    let d =
        Muxd::start(MuxdConfig::node(1).extra("[ipc]\nmax_clients = 65\nhello_timeout_ms = 300\n"));
    // The daemon has seen the start-up probe connection go (a HELLO round
    // trip on a later connection), so 64 slots are free.
    drop(d.client("first"));
    let mut second = d.client("second");
    // Every other slot taken by a connection that never says HELLO.
    let mut silent: Vec<Ipc> = (0..64).map(|_| Ipc::raw(&d.socket)).collect();
    for c in &mut silent {
        let said = until_closed(c);
        assert!(
            matches!(
                said.as_slice(),
                [Msg::Error {
                    code: ErrorCode::NoHello,
                    ..
                }]
            ),
            "{said:?}"
        );
    }
    // The slots are free again: an application gets in, and the one that
    // said HELLO in time was never disturbed.
    assert_eq!(second.register(0, 11).0, Status::Ok);
    let mut app = d.client("app");
    assert_eq!(app.register(0, 10).0, Status::Ok);
    let stats = app.control(Control::Stats);
    assert_eq!(stat(&stats, "ipc_hello_timeouts"), 64, "{stats}");
}

#[test]
fn a_frame_left_half_sent_closes_the_connection() {
    let d = Muxd::start(MuxdConfig::node(1).extra("[ipc]\nframe_timeout_ms = 300\n"));
    let mut stalled = d.client("stalled");
    // A length prefix promising 10 bytes, then one byte, then nothing.
    stalled.send_raw(&[0, 10, 0x05]);
    let said = until_closed(&mut stalled);
    assert!(
        matches!(
            said.as_slice(),
            [Msg::Error {
                code: ErrorCode::BadLength,
                ..
            }]
        ),
        "{said:?}"
    );
    let mut other = d.client("other");
    let stats = other.control(Control::Stats);
    assert_eq!(stat(&stats, "ipc_frame_timeouts"), 1, "{stats}");
    assert_eq!(stat(&stats, "ipc_hello_timeouts"), 0, "{stats}");
}

#[test]
fn one_application_can_not_take_every_port() {
    let d = Muxd::start(MuxdConfig::node(1));
    let mut hog = d.client("hog");
    // Everything it may ask for: CSP_ANY, every numbered port, every
    // ephemeral port. The default quotas stop it at 8 and 4.
    let mut numbered = 0;
    for port in std::iter::once(PORT_ANY).chain(0..=31) {
        match hog.register(0, port).0 {
            Status::Ok => numbered += 1,
            Status::QuotaExceeded => {}
            // The node's service ports 0..=6 are the daemon's.
            Status::PortInUse if port <= 6 => {}
            other => panic!("port {port}: {other:?}"),
        }
    }
    let mut ephemeral = 0;
    for _ in 0..32 {
        match hog.register(0, PORT_EPHEMERAL).0 {
            Status::Ok => ephemeral += 1,
            Status::QuotaExceeded => {}
            other => panic!("ephemeral: {other:?}"),
        }
    }
    assert_eq!((numbered, ephemeral), (8, 4));

    // Another application still binds a numbered and an ephemeral port.
    let mut app = d.client("app");
    assert_eq!(app.register(0, 20), (Status::Ok, 1, 20));
    assert_eq!(app.register(0, PORT_EPHEMERAL).0, Status::Ok);
    // Giving one back makes room under the quota again.
    assert_eq!(hog.unregister(0, 7), Status::Ok);
    assert_eq!(hog.register(0, 21).0, Status::Ok);
    let stats = app.control(Control::Stats);
    assert_eq!(
        stat(&stats, "quota_refused"),
        (33 - 7 - 8) + (32 - 4),
        "{stats}"
    );
}

#[test]
fn a_thousand_applications_each_hold_a_connection() {
    // This process holds 1000 sockets too: lift its soft descriptor limit
    // (often 1024) as far as the hard limit allows.
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < 2048 {
        setrlimit(Resource::RLIMIT_NOFILE, hard.min(2048), hard).unwrap();
    }
    // The default configuration: max_clients and the port ranges as shipped.
    let d = Muxd::start(MuxdConfig::node(1));
    let before = rss_kib(d.child.id());
    let mut apps: Vec<Ipc> = (0..1000).map(|i| d.client(&format!("app{i}"))).collect();
    let after = rss_kib(d.child.id());
    println!(
        "1000 applications: daemon RSS {before} KiB -> {after} KiB ({} bytes each)",
        (after.saturating_sub(before)) * 1024 / 1000
    );
    // CSP v2 has 64 ports per address: the 32 of the ephemeral range go to
    // the first 32 who ask; the rest are told so, and keep working.
    let mut held = Vec::new();
    for (i, app) in apps.iter_mut().enumerate() {
        match app.register(0, PORT_EPHEMERAL) {
            (Status::Ok, 1, port) => held.push((i, port)),
            (Status::NoEphemeralPort, ..) => {}
            other => panic!("app {i}: {other:?}"),
        }
    }
    assert_eq!(held.len(), 32, "one ephemeral port each for the first 32");
    // Every connection is alive and answered (a REGISTER round trip;
    // paged STATUS with this many: boundaries.rs).
    for app in apps.iter_mut().step_by(37) {
        assert_eq!(app.unregister(0, 5), Status::NotRegistered);
    }
    // An application that leaves frees its port at once for the next.
    let (first, port) = held[0];
    drop(apps.remove(first));
    let last = apps.last_mut().unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match last.register(0, PORT_EPHEMERAL) {
            (Status::Ok, _, p) => {
                assert_eq!(p, port);
                break;
            }
            (Status::NoEphemeralPort, ..) if std::time::Instant::now() < deadline => {
                // The daemon sees the close on its next round.
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => panic!("{other:?}"),
        }
    }
}
