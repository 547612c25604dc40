//! Issue 16: where one application, peer or setting could take something
//! from everyone else. Real csp-muxd processes on loopback, bounded waits.

mod common;

use std::time::Duration;

use common::*;
use csp_core::Flags;
use csp_ipc::{Control, ErrorCode, Status, PORT_ANY, PORT_EPHEMERAL};

/// A CSP_ANY holder or an echo server on port 1 used to swallow every
/// other application's ping; the service ports are the daemon's.
#[test]
fn service_ports_belong_to_the_daemon() {
    let d = Muxd::start(4, "", "");
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
    let d = Muxd::start(4, "", "[services]\napp_ports = [1]\n");
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
    let d = Muxd::start(1, "", "");
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
    assert_eq!(shown.len(), record::MAX_VALUE_LEN, "long names are cut");
    assert!(long_name.starts_with(shown));
    assert_eq!(listed[1].get("name"), Some("app 0"));

    // STATS the same way, from another application; both stay served.
    let stats = apps[500].control(Control::Stats);
    let records = record::parse_all(&stats).unwrap();
    assert_eq!(records.iter().filter(|r| r.kind == "app").count(), 1000);
    assert_eq!(stat(&stats, "delivered"), 0, "{}", &stats[..200]);
    assert_eq!(apps[998].register(0, 20).0, Status::Ok);
    assert_eq!(big.register(0, 21).0, Status::Ok);
}
