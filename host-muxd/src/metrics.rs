//! The Prometheus text endpoint (`[metrics] listen = "127.0.0.1:9190"`).
//!
//! The numbers are the daemon's STATS records (one home for what is
//! counted, `csp status` shows the same), turned into the text exposition
//! format: `csp_<kind>` for a daemon counter, `csp_<kind>_<key>{<kind>=...}`
//! for a link, interface, route or application. HTTP is served from the
//! daemon's own event loop without blocking it: a few connections at a
//! time, a bounded request read within a deadline, one response, close.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use csp_ipc::record::Record;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

/// Scrapes served at once; more are closed at once and counted. Prometheus
/// scrapes one at a time, so a few leave room for a person with curl.
pub const MAX_CONNS: usize = 4;
/// Longest request head read; a longer one gets 431.
pub const MAX_REQUEST: usize = 4096;
/// A scraper must send its request within this long of connecting.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// After the response, input is read and dropped for at most this long
/// before closing: closing with unread input would reset the connection
/// and could destroy the response before the scraper read it.
pub const LINGER: Duration = Duration::from_millis(500);

/// Counters of the endpoint itself (shown with the daemon's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsStats {
    /// `GET /metrics` answered.
    pub scrapes: u64,
    /// Requests answered with an error status (bad request, 404, 405, 431).
    pub bad_requests: u64,
    /// Connections closed at once: MAX_CONNS were being served.
    pub refused_busy: u64,
    /// Connections closed for not sending a request in time.
    pub timeouts: u64,
}

struct Conn {
    stream: TcpStream,
    request: Vec<u8>,
    response: Vec<u8>,
    written: usize,
    deadline: Instant,
    /// Response sent and write side shut: dropping input until EOF.
    lingering: bool,
}

/// The listener and the connections being served.
pub struct MetricsServer {
    listener: TcpListener,
    listener_token: Token,
    /// Tokens `listener_token + 1 ..= listener_token + MAX_CONNS`.
    conns: [Option<Conn>; MAX_CONNS],
    pub stats: MetricsStats,
}

/// What a request asks of the daemon.
enum Reply {
    Metrics,
    Error(&'static str),
}

impl MetricsServer {
    /// Bind `addr`; the listener gets `token`, connections the next
    /// [`MAX_CONNS`] tokens (the caller keeps them free).
    pub fn bind(addr: SocketAddr, registry: &Registry, token: Token) -> io::Result<MetricsServer> {
        let mut listener = TcpListener::bind(addr)?;
        registry.register(&mut listener, token, Interest::READABLE)?;
        Ok(MetricsServer {
            listener,
            listener_token: token,
            conns: Default::default(),
            stats: MetricsStats::default(),
        })
    }

    /// Whether `token` is the listener's or one of its connections'.
    pub fn owns(&self, token: Token) -> bool {
        (self.listener_token.0..=self.listener_token.0 + MAX_CONNS).contains(&token.0)
    }

    /// The address bound (port 0 resolved).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Earliest request deadline, for the event loop's timeout.
    pub fn deadline(&self) -> Option<Instant> {
        self.conns.iter().flatten().map(|c| c.deadline).min()
    }

    /// Handle an event on `token`; `render` makes the exposition text
    /// (given the endpoint's own counters) when a scrape asks for it.
    pub fn on_event(
        &mut self,
        registry: &Registry,
        token: Token,
        render: impl FnOnce(&MetricsStats) -> String,
    ) {
        if token == self.listener_token {
            return self.accept(registry);
        }
        let i = token.0 - self.listener_token.0 - 1;
        let Some(conn) = self.conns.get_mut(i).and_then(Option::as_mut) else {
            return;
        };
        if conn.lingering {
            if drain(conn) {
                self.close(registry, i);
            }
            return;
        }
        if conn.response.is_empty() {
            match read_request(conn) {
                Ok(Some(Reply::Metrics)) => {
                    self.stats.scrapes += 1;
                    conn.response = response("200 OK", &render(&self.stats));
                }
                Ok(Some(Reply::Error(status))) => {
                    self.stats.bad_requests += 1;
                    conn.response = response(status, &format!("{status}\n"));
                }
                Ok(None) => return,
                Err(_) => return self.close(registry, i),
            }
        }
        match write_response(conn, registry, token) {
            Ok(false) => {}
            Err(_) => self.close(registry, i),
            Ok(true) => {
                // Sent: shut our side, then drop input until the peer closes.
                conn.lingering = true;
                conn.deadline = Instant::now() + LINGER;
                let _ = conn.stream.shutdown(std::net::Shutdown::Write);
                let _ = registry.reregister(&mut conn.stream, token, Interest::READABLE);
                if drain(conn) {
                    self.close(registry, i);
                }
            }
        }
    }

    /// Close connections past their request deadline.
    pub fn expire(&mut self, registry: &Registry, now: Instant) {
        for i in 0..MAX_CONNS {
            if let Some(c) = self.conns[i].as_ref().filter(|c| now >= c.deadline) {
                if !c.lingering {
                    self.stats.timeouts += 1;
                }
                self.close(registry, i);
            }
        }
    }

    fn accept(&mut self, registry: &Registry) {
        loop {
            let (mut stream, _) = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    log::warn!("metrics: accept: {e}");
                    return;
                }
            };
            let Some(i) = self.conns.iter().position(Option::is_none) else {
                self.stats.refused_busy += 1;
                continue; // dropped: closed at once
            };
            let token = Token(self.listener_token.0 + 1 + i);
            if registry
                .register(&mut stream, token, Interest::READABLE)
                .is_err()
            {
                continue;
            }
            self.conns[i] = Some(Conn {
                stream,
                request: Vec::new(),
                response: Vec::new(),
                written: 0,
                deadline: Instant::now() + REQUEST_DEADLINE,
                lingering: false,
            });
        }
    }

    fn close(&mut self, registry: &Registry, i: usize) {
        if let Some(mut c) = self.conns[i].take() {
            let _ = registry.deregister(&mut c.stream);
        }
    }
}

/// Read what is there; `Some` once the request head is complete (or can
/// never be), `Err` when the peer is gone.
fn read_request(conn: &mut Conn) -> io::Result<Option<Reply>> {
    let mut buf = [0u8; 1024];
    loop {
        match conn.stream.read(&mut buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                let room = MAX_REQUEST - conn.request.len();
                conn.request.extend_from_slice(&buf[..n.min(room)]);
                if let Some(reply) = parse_request(&conn.request) {
                    return Ok(Some(reply));
                }
                if conn.request.len() == MAX_REQUEST {
                    return Ok(Some(Reply::Error("431 Request Header Fields Too Large")));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Drop what the peer still sends; true once it closed (or failed).
fn drain(conn: &mut Conn) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match conn.stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

/// The reply to a request head, None while it is incomplete.
fn parse_request(head: &[u8]) -> Option<Reply> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Partial) => None,
        Err(_) => Some(Reply::Error("400 Bad Request")),
        Ok(httparse::Status::Complete(_)) => Some(match (req.method, req.path) {
            (Some("GET"), Some(path)) if path.split('?').next() == Some("/metrics") => {
                Reply::Metrics
            }
            (Some("GET"), _) => Reply::Error("404 Not Found"),
            _ => Reply::Error("405 Method Not Allowed"),
        }),
    }
}

fn response(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Write what the socket takes; true when all is written.
fn write_response(conn: &mut Conn, registry: &Registry, token: Token) -> io::Result<bool> {
    while conn.written < conn.response.len() {
        match conn.stream.write(&conn.response[conn.written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => conn.written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // The rest when the socket drains; the deadline still holds.
                registry.reregister(&mut conn.stream, token, Interest::WRITABLE)?;
                return Ok(false);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Metric kinds that go up and down; everything else only counts up.
const GAUGES: &[&str] = &["csp_app_queued", "csp_link_up"];

/// The text exposition of STATS records (and the endpoint's own counters).
pub fn exposition(records: &[Record], own: &MetricsStats) -> String {
    // name -> lines, so each family's TYPE comes once, families sorted.
    let mut families: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut add = |name: String, labels: &[(&str, &str)], value: &str| {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
            .collect();
        let line = if labels.is_empty() {
            format!("{name} {value}")
        } else {
            format!("{name}{{{}}} {value}", labels.join(","))
        };
        families.entry(name).or_default().push(line);
    };
    for r in records {
        let kind = metric_word(&r.kind);
        match (r.args.as_slice(), r.fields.is_empty()) {
            // A daemon counter: `delivered 5`.
            ([value], true) if is_number(value) => add(format!("csp_{kind}"), &[], value),
            (args, false) if !args.is_empty() => {
                // A link, interface, route or application: its first word
                // (or all of them, for a route) names it.
                let who = if r.kind == "route" {
                    args.join(" ")
                } else {
                    args[0].clone()
                };
                let name = r.get("name");
                let mut labels = vec![(kind.as_str(), who.as_str())];
                if let Some(n) = name {
                    labels.push(("name", n));
                }
                for (key, value) in &r.fields {
                    if key == "state" {
                        let up = if value == "up" { "1" } else { "0" };
                        add(format!("csp_{kind}_up"), &labels, up);
                    } else if is_number(value) {
                        add(format!("csp_{kind}_{}", metric_word(key)), &labels, value);
                    }
                }
            }
            _ => {}
        }
    }
    for (key, value) in [
        ("scrapes", own.scrapes),
        ("bad_requests", own.bad_requests),
        ("refused_busy", own.refused_busy),
        ("timeouts", own.timeouts),
    ] {
        add(format!("csp_metrics_{key}"), &[], &value.to_string());
    }
    let mut out = String::new();
    for (name, lines) in families {
        let kind = if GAUGES.contains(&name.as_str()) {
            "gauge"
        } else {
            "counter"
        };
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
    }
    out
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// A record word as a metric name part: `[a-zA-Z0-9_]`, others `_`.
fn metric_word(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(line: &str) -> Record {
        csp_ipc::record::parse(line).unwrap()
    }

    #[test]
    fn records_become_families_with_labels() {
        let records = [
            rec("delivered 5"),
            rec("link udp rx_frames=3 tx_frames=4"),
            rec("link radio state=up rx_frames=7"),
            rec("route 10/5 radio packets=2"),
            rec("app 17 name=\"ground \\\"1\\\"\" rx=1 tx=2 queued=0"),
            rec("app 18 rx=0 tx=0"),
        ];
        let text = exposition(&records, &MetricsStats::default());
        for want in [
            "# TYPE csp_delivered counter\ncsp_delivered 5\n",
            "csp_link_rx_frames{link=\"udp\"} 3\n",
            "csp_link_rx_frames{link=\"radio\"} 7\n",
            "# TYPE csp_link_up gauge\ncsp_link_up{link=\"radio\"} 1\n",
            "csp_route_packets{route=\"10/5 radio\"} 2\n",
            "csp_app_tx{app=\"17\",name=\"ground \\\"1\\\"\"} 2\n",
            "csp_app_tx{app=\"18\"} 0\n",
            "# TYPE csp_app_queued gauge\n",
            "csp_metrics_scrapes 0\n",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
        // One TYPE line per family.
        assert_eq!(text.matches("# TYPE csp_link_rx_frames ").count(), 1);
    }

    #[test]
    fn requests_are_parsed_totally() {
        assert!(parse_request(b"GET /metrics HTTP/1.1\r\n").is_none());
        assert!(matches!(
            parse_request(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(Reply::Metrics)
        ));
        assert!(matches!(
            parse_request(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Some(Reply::Metrics)
        ));
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\n\r\n"),
            Some(Reply::Error(s)) if s.starts_with("404")
        ));
        assert!(matches!(
            parse_request(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Some(Reply::Error(s)) if s.starts_with("405")
        ));
        assert!(matches!(
            parse_request(b"\x00\x01garbage\r\n\r\n"),
            Some(Reply::Error(s)) if s.starts_with("400")
        ));
    }
}
