//! Issue 16: where one application, peer or setting could take something
//! from everyone else. Real csp-muxd processes on loopback, bounded waits.

use std::time::Duration;

use csp_core::Flags;
use csp_ipc::{Control, ErrorCode, Status, PORT_ANY, PORT_EPHEMERAL};
use test_support::*;

/// A CSP_ANY holder or an echo server on port 1 used to swallow every
/// other application's ping; the service ports are the daemon's.
#[test]
fn service_ports_belong_to_the_daemon() {
    let d = Muxd::start(MuxdConfig::node(4));
    let mut any = d.client("any");
    assert_eq!(any.register(0, PORT_ANY).0, Status::Ok);
    let mut echo = d.client("echo");
    for port in 0..=6 {
        assert_eq!(echo.register(0, port).0, Status::PortInUse, "port {port}");
    }
    assert_eq!(echo.register(0, 7).0, Status::Ok, "7 is an application's");

    let mut pinger = d.client("pinger");
    let (_, _, eph) = pinger.register(0, PORT_EPHEMERAL);
    pinger.send_packet(4, eph, 4, 1, Flags::NONE, b"ping");
    let (h, data) = pinger.recv_packet();
    assert_eq!((h.sport.get(), data.as_slice()), (1, &b"ping"[..]));
    pinger.send_packet(4, eph, 4, 6, Flags::NONE, &[]);
    assert_eq!(pinger.recv_packet().0.sport.get(), 6, "uptime answered");
    assert!(
        any.recv_packet_within(Duration::from_millis(200)).is_none(),
        "the CSP_ANY holder saw a service request"
    );

    // Sending from a service port is spoofing, even for the ANY holder.
    any.send_packet(4, 1, 4, eph, Flags::NONE, b"fake pong");
    match any.recv() {
        Some(Msg::Error {
            code: ErrorCode::Spoofed,
            ..
        }) => {}
        other => panic!("expected Spoofed, got {other:?}"),
    }
    // Other ports still reach the ANY holder.
    pinger.send_packet(4, eph, 4, 20, Flags::NONE, b"to-any");
    assert_eq!(any.recv_packet().1, b"to-any");
    let stats = pinger.control(Control::Stats);
    assert_eq!(stat(&stats, "rejected_packets"), 1, "{stats}");
}

/// `services.app_ports` hands a service port to applications.
#[test]
fn a_configured_service_port_goes_to_applications() {
    let d = Muxd::start(MuxdConfig::node(4).extra("[services]\napp_ports = [1]\n"));
    let mut echo = d.client("echo");
    assert_eq!(echo.register(0, 1).0, Status::Ok);
    assert_eq!(echo.register(0, 6).0, Status::PortInUse);
    let mut pinger = d.client("pinger");
    let (_, _, eph) = pinger.register(0, PORT_EPHEMERAL);
    pinger.send_packet(4, eph, 4, 1, Flags::NONE, b"mine");
    let (h, data) = echo.recv_packet();
    assert_eq!((h.dport.get(), data.as_slice()), (1, &b"mine"[..]));
    echo.send_packet(4, 1, 4, eph, Flags::NONE, b"pong");
    assert_eq!(pinger.recv_packet().1, b"pong");
}

/// STATUS and STATS used to be one text frame: past ~80 applications, or
/// with one 4000-byte HELLO name, it could not be encoded, nothing was sent
/// and the client timed out. Now they come as pages of bounded records.
#[test]
fn control_replies_are_paged_for_a_thousand_applications() {
    use csp_ipc::record;
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < 2048 {
        setrlimit(Resource::RLIMIT_NOFILE, hard.min(2048), hard).unwrap();
    }
    let d = Muxd::start(MuxdConfig::node(1));
    let long_name = format!("{}\"end", "x".repeat(4000));
    let mut big = d.client(&long_name);
    let mut apps: Vec<Ipc> = (0..999).map(|i| d.client(&format!("app {i}"))).collect();

    // The raw pages: several, each within the frame limit, the last marked.
    big.send(&csp_ipc::Message::Control(Control::Status));
    let mut pages = Vec::new();
    loop {
        match big.recv() {
            Some(Msg::ControlPage(t)) => pages.push(t),
            Some(Msg::ControlReply(t)) => {
                pages.push(t);
                break;
            }
            other => panic!("expected CONTROL_REPLY, got {other:?}"),
        }
        assert!(pages.len() < 1000, "no end marker");
    }
    assert!(pages.len() > 10, "{} pages", pages.len());
    assert!(pages.iter().all(|p| p.len() <= csp_ipc::MAX_TEXT_LEN));
    let records = record::parse_all(&pages.concat()).unwrap();
    let listed: Vec<&record::Record> = records.iter().filter(|r| r.kind == "app").collect();
    assert_eq!(listed.len(), 1000);
    let shown = listed[0].get("name").unwrap();
    // The daemon keeps only MAX_NAME_LEN bytes of a HELLO name (it used to
    // store all 4004 and cut them only when printing).
    assert_eq!(
        shown,
        &long_name[..csp_ipc::MAX_NAME_LEN],
        "long names are cut"
    );
    assert_eq!(listed[1].get("name"), Some("app 0"));

    // STATS the same way, from another application; both stay served.
    let stats = apps[500].control(Control::Stats);
    let records = record::parse_all(&stats).unwrap();
    assert_eq!(records.iter().filter(|r| r.kind == "app").count(), 1000);
    assert_eq!(stat(&stats, "delivered"), 0, "{}", &stats[..200]);
    assert_eq!(apps[998].register(0, 20).0, Status::Ok);
    assert_eq!(big.register(0, 21).0, Status::Ok);
}

/// Start-up used to bind the TCP endpoint after the socket with no
/// clean-up: "Address already in use" with no key nor address, and the
/// socket file left behind.
#[test]
fn startup_failing_on_the_tcp_port_names_it_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("muxd.sock");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap();
    let config = format!(
        "[udp]\nbind = \"127.0.0.1:{}\"\n[ipc]\ntcp_listen = \"{addr}\"\n\
         tcp_token = \"0123456789abcdef-long-enough\"\n",
        free_udp_port()
    );
    let (code, err) = run_to_exit(dir.path(), &socket, &config);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("ipc.tcp_listen"), "{err}");
    assert!(err.contains(&addr.to_string()), "{err}");
    assert!(!socket.exists(), "socket file left behind: {err}");
}

/// A link that fails after the socket was bound: the socket goes again.
#[test]
fn startup_failing_on_the_udp_link_removes_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("muxd.sock");
    let busy = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap();
    let (code, err) = run_to_exit(dir.path(), &socket, &format!("[udp]\nbind = \"{addr}\"\n"));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("udp.bind = \"{addr}\"")), "{err}");
    assert!(!socket.exists(), "socket file left behind: {err}");
}

/// Links used to be opened before the socket was bound: a second daemon on
/// a busy socket replaced the first one's pty symlink and left it dangling.
#[test]
fn startup_on_a_busy_socket_touches_no_pty_link() {
    let pty = |link: &std::path::Path| {
        format!(
            "[[kiss]]\nname = \"radio\"\nmode = \"pty\"\npty_link = \"{}\"\n",
            link.display()
        )
    };
    let first_link = tempfile::tempdir().unwrap();
    let link = first_link.path().join("radio");
    let d = Muxd::start(MuxdConfig::node(1).extra(&pty(&link)));
    let target = std::fs::read_link(&link).unwrap();

    let other_link = d.dir.path().join("other-radio");
    for link_of_second in [&other_link, &link] {
        let config = format!(
            "[udp]\nbind = \"127.0.0.1:{}\"\n{}",
            free_udp_port(),
            pty(link_of_second)
        );
        let (code, err) = run_to_exit(d.dir.path(), &d.socket, &config);
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains("ipc.socket") && err.contains("in use"),
            "{err}"
        );
    }
    assert!(
        std::fs::symlink_metadata(&other_link).is_err(),
        "dangling pty link left behind"
    );
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        target,
        "first daemon's link replaced"
    );
    // The first daemon still serves.
    let mut c = d.client("still-here");
    assert_eq!(c.register(0, 10).0, Status::Ok);
}

/// A 1-character token used to be accepted.
#[test]
fn a_short_tcp_token_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("muxd.sock");
    let (code, err) = run_to_exit(
        dir.path(),
        &socket,
        "[ipc]\ntcp_listen = \"127.0.0.1:9701\"\ntcp_token = \"x\"\n",
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("ipc.tcp_token") && err.contains("at least 16"),
        "{err}"
    );
    assert!(!socket.exists());
}

/// 20,000 wrong tokens went at 7,200 a second with a log line each: now a
/// source is slowed down after three, counted, and logged rate-limited.
#[test]
fn guessing_the_tcp_token_is_slowed_down() {
    use std::io::{Read, Write};
    let port = free_tcp_port();
    let token = "0123456789abcdef0123";
    let d = Muxd::start(MuxdConfig::node(2).extra(&format!(
        "[ipc]\ntcp_listen = \"127.0.0.1:{port}\"\ntcp_token = \"{token}\""
    )));
    // What the daemon says to a HELLO with `name`: a message, or None when
    // it closes the connection unanswered.
    let hello = |name: &str| -> Option<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let bytes = csp_ipc::encode_to_vec(&csp_ipc::Message::Hello {
            version: csp_ipc::VERSION,
            name,
        })
        .unwrap();
        let _ = s.write_all(&bytes);
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            if let Some((m, _)) = csp_ipc::decode(&got).unwrap() {
                return Some(format!("{m:?}"));
            }
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    let mut answered = 0;
    let mut refused = 0;
    for i in 0..20 {
        match hello(&format!("guess-{i}-padding-padding")) {
            Some(m) => {
                assert!(m.starts_with("Error"), "{m}");
                answered += 1;
            }
            None => refused += 1,
        }
    }
    assert!(answered >= 3, "the first wrong tokens are answered");
    assert!(refused > 0, "20 guesses in a row were all served");
    let mut app = d.client("watcher");
    let stats = app.control(Control::Stats);
    assert_eq!(stat(&stats, "tcp_token_failures"), answered, "{stats}");
    assert_eq!(stat(&stats, "tcp_throttled"), refused, "{stats}");
    // The right token gets through once the penalty (at most 2 s) passed.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match hello(token) {
            Some(m) if m.starts_with("HelloAck") => break,
            None if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            other => panic!("right token: {other:?}"),
        }
    }
}

/// Children of `pid` that are zombies (exited, not yet reaped).
fn zombie_children(pid: u32) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces, so split
        // after its closing parenthesis.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let (state, ppid) = (fields.next(), fields.next());
        if state == Some("Z") && ppid == Some(&pid.to_string()) {
            n += 1;
        }
    }
    n
}

/// A reboot hook that finished while the daemon was idle stayed a zombie
/// until the next event; now SIGCHLD reaps it. The hook runs once at a
/// time and at most once per 10 s; refusals are counted by cause.
#[test]
fn reboot_hooks_are_reaped_while_idle_and_rate_limited() {
    let marker = tempfile::tempdir().unwrap();
    let file = marker.path().join("requests");
    let d = Muxd::start(MuxdConfig::node(3).extra(&format!(
            "[services]\nallow_reboot = true\nallow_unauthenticated = true\nreboot_hook = \"echo $CSP_REQUEST >> {}\"",
            file.display()
        )));
    // From the UDP link, with no application connected: nothing else
    // wakes the daemon up.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let reboot = || {
        let mut frame = vec![0u8; 6];
        header(9, 20, 3, 4, Flags::NONE)
            .emit(&mut frame, csp_core::Version::V2)
            .unwrap();
        frame.extend_from_slice(&0x8007_8007u32.to_be_bytes());
        udp.send_to(&frame, ("127.0.0.1", d.udp_port())).unwrap();
    };
    reboot();
    let deadline = std::time::Instant::now() + WAIT;
    while std::fs::read_to_string(&file).map_or(true, |s| !s.ends_with('\n')) {
        assert!(std::time::Instant::now() < deadline, "hook did not run");
        std::thread::sleep(Duration::from_millis(10));
    }
    let deadline = std::time::Instant::now() + WAIT;
    while zombie_children(d.child.id()) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the finished hook is still a zombie"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Two more right away: within the 10 s period, refused.
    reboot();
    reboot();
    let mut c = d.client("op");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let stats = c.control(Control::Stats);
        if stat(&stats, "hook_refused_rate") == 2 {
            assert_eq!(stat(&stats, "hook_refused_busy"), 0, "{stats}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{stats}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "reboot\n");
}

/// A 4,200-byte frame for an application was counted `delivered` globally
/// and `dropped_overflow` for the application; an oversized ping counted
/// as `no_listener`. Now each packet counts once, by its final outcome.
#[test]
fn counters_count_a_packet_once_by_its_outcome() {
    let d = Muxd::start(MuxdConfig::node(6));
    let mut app = d.client("app");
    assert_eq!(app.register(0, 10).0, Status::Ok);
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let send = |dport: u8, len: usize| {
        let mut frame = vec![0u8; 6];
        header(9, 20, 6, dport, Flags::NONE)
            .emit(&mut frame, csp_core::Version::V2)
            .unwrap();
        frame.resize(6 + len, 0x55);
        udp.send_to(&frame, ("127.0.0.1", d.udp_port())).unwrap();
    };
    send(10, 4194); // 4,200 bytes with its header: no DATA frame holds it
    send(1, 4194); // an oversized ping
    send(10, 100); // a normal one, delivered: every earlier one was seen
    let (h, data) = app.recv_packet();
    assert_eq!((h.dport.get(), data.len()), (10, 100));
    let stats = app.control(Control::Stats);
    assert_eq!(stat(&stats, "delivered"), 1, "{stats}");
    assert_eq!(stat(&stats, "too_large"), 2, "{stats}");
    assert_eq!(stat(&stats, "no_listener"), 0, "{stats}");
    let records = csp_ipc::record::parse_all(&stats).unwrap();
    let mine = records.iter().find(|r| r.kind == "app").unwrap();
    assert_eq!(mine.get("dropped_overflow"), Some("0"), "{stats}");
    assert_eq!(mine.get("tx"), Some("1"), "{stats}");
}
