//! The Prometheus endpoint (`[metrics] listen`): real csp-muxd processes,
//! scraped over TCP on 127.0.0.1. The numbers must be STATS' numbers, the
//! text must parse as the exposition format, and no scraper (slow, silent,
//! malformed, too many) may hold up the daemon. Waits bounded.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use csp_core::Flags;
use csp_ipc::{Control, PORT_EPHEMERAL};
use test_support::*;

/// A daemon with the endpoint on a free loopback port (another is tried
/// if that one is taken before the daemon binds it).
fn start_with_metrics(addr: u16) -> (Muxd, u16) {
    retry_on_port_clash(|| {
        let port = free_tcp_port();
        let extra = format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n");
        Muxd::try_start(MuxdConfig::node(addr).extra(&extra)).map(|d| (d, port))
    })
}

/// Send `request` and read the whole response (the server closes).
fn http(port: u16, request: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(request).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn scrape(port: u16) -> String {
    let r = http(port, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let (head, body) = r.split_once("\r\n\r\n").expect("a response head");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(len, body.len());
    check_exposition(body);
    body.to_string()
}

/// The text exposition format, as far as a scraper relies on it: every
/// sample `name{labels} value` or `name value`, its family's TYPE line
/// before it, each family in one block.
fn check_exposition(text: &str) {
    let mut typed = Vec::<String>::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            let (name, kind) = t.split_once(' ').unwrap();
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            assert!(!typed.contains(&name.to_string()), "TYPE twice: {line}");
            typed.push(name.to_string());
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        value.parse::<u64>().unwrap_or_else(|_| panic!("{line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        assert_eq!(typed.last().map(String::as_str), Some(name), "{line}");
        if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
        }
    }
}

fn sample(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[test]
fn a_scrape_shows_the_counters_of_stats() {
    let (d, port) = start_with_metrics(3);
    let mut app = d.client("ground \"one\"");
    let (_, _, eph) = app.register(0, PORT_EPHEMERAL);
    // Three pings of the daemon's service, through the node.
    for _ in 0..3 {
        app.send_packet(3, eph, 3, 1, Flags::NONE, b"ping");
        app.recv_packet();
    }
    // One datagram on the UDP link for nobody.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut frame = vec![0u8; 6];
    header(9, 20, 3, 30, Flags::NONE)
        .emit(&mut frame, csp_core::Version::V2)
        .unwrap();
    frame.extend_from_slice(b"lost");
    udp.send_to(&frame, ("127.0.0.1", d.udp_port())).unwrap();
    let stats = loop {
        let s = app.control(Control::Stats);
        if stat(&s, "no_listener") == 1 {
            break s;
        }
    };

    let text = scrape(port);
    for key in ["service_replies", "no_listener", "delivered", "forwarded"] {
        assert_eq!(
            sample(&text, &format!("csp_{key}")),
            stat(&stats, key),
            "{key}"
        );
    }
    assert_eq!(sample(&text, "csp_service_replies"), 3);
    assert_eq!(
        sample(&text, "csp_link_rx_frames{link=\"udp\"}"),
        link_stat(&stats, "udp", "rx_frames")
    );
    let me = text
        .lines()
        .find(|l| l.starts_with("csp_app_tx{") && l.contains("name=\"ground \\\"one\\\"\""))
        .unwrap_or_else(|| panic!("no app line in\n{text}"));
    assert!(me.ends_with(" 3"), "{me}");
    // The endpoint counts itself; a second scrape sees the first.
    assert_eq!(sample(&scrape(port), "csp_metrics_scrapes"), 2);
}

#[test]
fn bad_requests_get_an_error_status_and_are_counted() {
    let (d, port) = start_with_metrics(4);
    let status = |req: &[u8]| http(port, req).lines().next().unwrap_or("").to_string();
    assert!(status(b"POST /metrics HTTP/1.1\r\n\r\n").contains("405"));
    assert!(status(b"GET / HTTP/1.1\r\n\r\n").contains("404"));
    assert!(status(b"\x16\x03\x01 tls hello\r\n\r\n").contains("400"));
    let mut huge = b"GET /metrics HTTP/1.1\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 5000));
    assert!(status(&huge).contains("431"));
    let text = scrape(port);
    assert_eq!(sample(&text, "csp_metrics_bad_requests"), 4);
    let mut app = d.client("app");
    let stats = app.control(Control::Stats);
    assert_eq!(stat(&stats, "metrics_bad_requests"), 4, "{stats}");
}

/// Silent connections fill the few slots; the rest are closed at once, the
/// silent ones at their deadline; the daemon serves pings all along, and a
/// scrape works again afterwards.
#[test]
fn silent_scrapers_never_hold_up_the_daemon() {
    let (d, port) = start_with_metrics(5);
    let silent: Vec<TcpStream> = (0..10)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    let mut app = d.client("app");
    let (_, _, eph) = app.register(0, PORT_EPHEMERAL);
    app.send_packet(5, eph, 5, 1, Flags::NONE, b"still here");
    assert_eq!(app.recv_packet().1, b"still here");

    // Every silent connection ends: refused at once or closed at its
    // deadline (bounded wait: the deadline is 2 s).
    let deadline = Instant::now() + WAIT;
    for mut s in silent {
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = [0u8; 16];
        assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
        assert!(Instant::now() < deadline, "a silent scraper was kept");
    }
    let text = scrape(port);
    let refused = sample(&text, "csp_metrics_refused_busy");
    let timeouts = sample(&text, "csp_metrics_timeouts");
    assert_eq!(refused + timeouts, 10, "{text}");
    assert!(timeouts >= 1 && refused >= 1, "{text}");
}

#[test]
fn a_busy_metrics_port_stops_start_up_and_names_the_key() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("muxd.sock");
    let (code, err) = run_to_exit(
        dir.path(),
        &socket,
        &format!(
            "[node]\naddress = 6\n[udp]\nbind = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"
        ),
    );
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains(&format!("metrics.listen = \"127.0.0.1:{port}\"")),
        "{err}"
    );
    assert!(!socket.exists(), "the socket file was left behind");
}
