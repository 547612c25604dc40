//! The event loop: one mio `Poll`, a token per source, each arm calling into
//! csp-core and draining what it produced.
//!
//! Packet paths (DESIGN.md "Data flow"):
//! - client DATA -> ownership check -> [`Daemon::route`]
//! - link frame  -> header parsed with the link's version -> [`Daemon::route`]
//! - route: local address -> bound client, else built-in service, else
//!   counted; other addresses -> route table -> link (header re-emitted for
//!   the link's version, payload untouched), or counted as unroutable.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, UnixListener};
use mio::{Events, Interest, Poll, Token};
use signal_hook_mio::v1_0::Signals;

use csp_core::bind::{BindAddr, BindError, BindPort, PortTable};
use csp_core::header::HeaderView;
use csp_core::route::{IfaceId, Prefix, RouteTable};
use csp_core::{Addr, Header, Version};
use csp_ipc::record::Record;
use csp_ipc::{ByeReason, Control, Direction, ErrorCode, Message, Status};

use crate::auth::TokenGate;
use crate::capture::{Captures, LinkRef};
use crate::client::{Client, Deadline, Queued, ReadOutcome, Request, Stream};
use crate::config::Config;
use crate::links::{Links, RoutePlan};
use crate::metrics::MetricsServer;
use crate::services::{Answer, NodeView, Request as ServiceRequest, Services};
use crate::stats::Stats;
use crate::udp::RxBatch;

const LISTENER: Token = Token(0);
const TCP_LISTENER: Token = Token(1);
const UDP: Token = Token(2);
const SIGNALS: Token = Token(3);
/// The metrics listener; its connections take the next
/// [`crate::metrics::MAX_CONNS`] tokens, below [`FIRST_CLIENT`].
const METRICS: Token = Token(8);
/// Client tokens start here; everything below is a fixed source.
const FIRST_CLIENT: usize = 16;
/// Bytes read from one client per round of the loop, and datagrams from the
/// UDP link: fairness between sources (a flood from one waits its turn).
const CLIENT_READ_BUDGET: usize = 64 * 1024;
const UDP_READ_BUDGET: usize = 64;
/// Messages taken from one ZMQ hub link per round.
const ZMQ_READ_BUDGET: usize = 64;
/// KISS link `i` has tokens `KISS_TOKENS + 2i` (its stream) and the one
/// after (a tcp-server's listener); clients never count up this far.
const KISS_TOKENS: usize = usize::MAX / 2;

fn kiss_token(i: usize) -> Token {
    Token(KISS_TOKENS + 2 * i)
}

/// ZMQ link `i` has tokens `ZMQ_TOKENS + 2i` (its SUB socket) and the one
/// after (its PUB socket), far above the KISS links'.
const ZMQ_TOKENS: usize = KISS_TOKENS + usize::MAX / 4;

fn zmq_token(i: usize) -> Token {
    Token(ZMQ_TOKENS + 2 * i)
}

/// SocketCAN link `i` is registered under `SOCKETCAN_TOKENS + i`.
const SOCKETCAN_TOKENS: usize = ZMQ_TOKENS + usize::MAX / 8;

fn socketcan_token(i: usize) -> Token {
    Token(SOCKETCAN_TOKENS + i)
}

/// How often client deadlines (HELLO, half-sent frame) are checked: a check
/// looks at every client, so it runs on this period rather than every loop
/// round, and deadlines are met within this much.
const DEADLINE_SWEEP: Duration = Duration::from_millis(100);

/// Most (address, port) bindings held by all clients together.
pub const MAX_BINDINGS: usize = 256;
/// Most routing table entries.
pub const MAX_ROUTES: usize = 64;

/// A client handle in the port table.
type ClientId = Token;

/// The daemon: owns the node address, the links, the app table and the IPC
/// endpoint.
pub struct Daemon {
    poll: Poll,
    cfg: Config,
    node: Addr,
    socket_path: PathBuf,
    listener: UnixListener,
    tcp: Option<TcpListener>,
    /// The TCP endpoint's token check (with `tcp`).
    token_gate: Option<TokenGate>,
    metrics: Option<MetricsServer>,
    clients: HashMap<Token, Client>,
    next_token: usize,
    apps: PortTable<ClientId, MAX_BINDINGS>,
    routes: RouteTable<MAX_ROUTES>,
    /// Packets sent per route entry.
    route_hits: HashMap<Prefix, u64>,
    links: Links,
    services: Services,
    /// Packet captures running for clients (`csp capture`).
    captures: Captures,
    stats: Stats,
    signals: Signals,
    started: Instant,
    shutdown: bool,
    /// Sources whose read budget ran out: served again next round.
    again: Vec<Token>,
    /// Clients with packets queued this round, written before the wait.
    unflushed: Vec<Token>,
    /// When client deadlines are checked next.
    next_sweep: Instant,
    /// The UDP link's datagrams of one wakeup.
    udp_rx: RxBatch,
}

impl Daemon {
    /// Open every endpoint and link named by `cfg`; `socket_path` is where
    /// applications connect.
    pub fn new(cfg: Config, socket_path: PathBuf) -> Result<Daemon, Box<dyn std::error::Error>> {
        let poll = Poll::new()?;
        raise_fd_limit(cfg.ipc.max_clients);
        let node = Addr::new(cfg.node.address)?;
        let bind_config = cfg.bind_config()?;

        let plan = RoutePlan::<MAX_ROUTES>::from_config(&cfg).map_err(|e| e.message)?;

        // Start-up is all-or-nothing (docs/RELIABILITY.md). The IPC
        // endpoints come first: a busy socket (another daemon) is the
        // commonest failure and must stop us before we touch any link that
        // daemon may be using (a pty symlink). Everything created is undone
        // on the way out of an error: the socket file by its guard, pty
        // links by `KissLink`'s drop. Errors name the key and the address.
        let mut listener = crate::endpoint::bind(&socket_path)
            .map_err(|e| format!("ipc.socket (--socket): {e}"))?;
        let socket_file = crate::endpoint::Created::new(&socket_path);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let mut tcp = match cfg.ipc.tcp_listen {
            Some(addr) => Some(
                TcpListener::bind(addr).map_err(|e| format!("ipc.tcp_listen = \"{addr}\": {e}"))?,
            ),
            None => None,
        };
        let metrics = match cfg.metrics.listen {
            Some(addr) => Some(
                MetricsServer::bind(addr, poll.registry(), METRICS)
                    .map_err(|e| format!("metrics.listen = \"{addr}\": {e}"))?,
            ),
            None => None,
        };
        let mut links = Links::open(
            &cfg,
            plan.ifaces,
            poll.registry(),
            kiss_token,
            zmq_token,
            socketcan_token,
        )?;
        let routes = plan.table;
        if let Some(t) = tcp.as_mut() {
            poll.registry()
                .register(t, TCP_LISTENER, Interest::READABLE)?;
        }
        if let Some(udp) = links.udp.as_mut() {
            poll.registry()
                .register(udp.socket(), UDP, Interest::READABLE)?;
        }
        // SIGCHLD too: a finished reboot hook is reaped at once, even when
        // the daemon is otherwise idle.
        let mut signals = Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGCHLD,
        ])?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;

        let keys = match &cfg.services.key_file {
            Some(path) => crate::keys::load(path)?,
            None => crate::keys::ServiceKeys::default(),
        };
        let services = Services::new(&cfg, keys);
        let captures = Captures::new(&cfg);
        socket_file.keep();
        // A ZMQ descriptor signalled before it was registered gives no
        // edge: drain every hub link once in the first round.
        let again = (0..links.zmq.len()).map(zmq_token).collect();
        Ok(Daemon {
            poll,
            node,
            socket_path,
            listener,
            token_gate: cfg.ipc.tcp_token.as_deref().map(TokenGate::new),
            metrics,
            tcp,
            clients: HashMap::new(),
            next_token: FIRST_CLIENT,
            apps: PortTable::new(bind_config),
            routes,
            route_hits: HashMap::new(),
            links,
            services,
            captures,
            stats: Stats::default(),
            signals,
            started: Instant::now(),
            shutdown: false,
            again,
            unflushed: Vec::new(),
            next_sweep: Instant::now(),
            udp_rx: RxBatch::default(),
            cfg,
        })
    }

    /// Where the UDP link is bound (after binding port 0 in tests).
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.links.udp.as_ref().and_then(|u| u.local_addr().ok())
    }

    /// The links, for their state and counters.
    pub fn links(&self) -> &Links {
        &self.links
    }

    /// Run until SIGINT or SIGTERM, then tell clients and clean up.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        log::info!(
            "csp-muxd: node {} listening on {}",
            self.node,
            self.socket_path.display()
        );
        while !self.shutdown {
            // What this round queued leaves before the daemon waits.
            self.stats.link_errors += self.links.flush();
            for token in std::mem::take(&mut self.unflushed) {
                self.flush_client(token);
            }
            // Sleep until the next link timer (reconnect backoff) at most.
            // Sources that used up their budget go again at once.
            let timeout = if self.again.is_empty() {
                let metrics = self.metrics.as_ref().and_then(MetricsServer::deadline);
                let busy = !self.clients.is_empty() || metrics.is_some();
                let sweep = busy.then_some(self.next_sweep);
                let deadline = match (self.links.deadline(), sweep) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                deadline.map(|d| d.saturating_duration_since(Instant::now()))
            } else {
                Some(std::time::Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_unix(),
                    TCP_LISTENER => self.accept_tcp(),
                    UDP => self.on_udp(),
                    SIGNALS => self.on_signals(),
                    token if self.metrics.as_ref().is_some_and(|m| m.owns(token)) => {
                        self.on_metrics(token)
                    }
                    token if token.0 >= SOCKETCAN_TOKENS => self.on_socketcan(token),
                    token if token.0 >= ZMQ_TOKENS => self.on_zmq(token),
                    token if token.0 >= KISS_TOKENS => self.on_kiss(token),
                    token => self.on_client(token, event.is_readable(), event.is_writable()),
                }
            }
            for token in std::mem::take(&mut self.again) {
                match token {
                    UDP => self.on_udp(),
                    token if token.0 >= SOCKETCAN_TOKENS => self.on_socketcan(token),
                    token if token.0 >= ZMQ_TOKENS => self.on_zmq(token),
                    token => self.on_client(token, true, false),
                }
            }
            // Capture frames queued this round go out in one write per
            // capturing client, not one per frame.
            for token in self.captures.take_dirty() {
                self.flush_client(token);
            }
            self.links.on_timers(self.poll.registry(), Instant::now());
            let now = Instant::now();
            if now >= self.next_sweep {
                self.expire_clients(now);
                if let Some(m) = self.metrics.as_mut() {
                    m.expire(self.poll.registry(), now);
                }
                self.next_sweep = now + DEADLINE_SWEEP;
            }
        }
        self.close();
        Ok(())
    }

    /// A scrape (or a stray connection) on the metrics endpoint: the same
    /// numbers as STATS, as Prometheus text.
    fn on_metrics(&mut self, token: Token) {
        let Some(mut m) = self.metrics.take() else {
            return;
        };
        m.on_event(self.poll.registry(), token, |own| {
            crate::metrics::exposition(&self.control_records(Control::Stats), own)
        });
        self.metrics = Some(m);
    }

    fn on_signals(&mut self) {
        for sig in self.signals.pending() {
            if sig == signal_hook::consts::SIGCHLD {
                self.services.reap_hooks();
                continue;
            }
            log::info!("signal {sig}: shutting down");
            self.shutdown = true;
        }
    }

    /// Tell every client, flush what the sockets take, remove the socket file.
    fn close(&mut self) {
        // A capture's end goes behind its frames, before the goodbye.
        self.captures.end_all(&mut self.clients);
        for client in self.clients.values_mut() {
            let _ = client.flush();
        }
        self.stats.link_errors += self.links.flush();
        for client in self.clients.values_mut() {
            client.send_control(&Message::Bye(ByeReason::Shutdown));
            let _ = client.flush();
        }
        self.clients.clear();
        for k in &mut self.links.kiss {
            k.close();
        }
        for z in &mut self.links.zmq {
            z.close(self.poll.registry());
        }
        crate::endpoint::remove(&self.socket_path);
        log::info!("csp-muxd stopped");
    }

    fn accept_unix(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => self.add_client(Stream::Unix(stream)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    log::warn!("accept: {e}");
                    return;
                }
            }
        }
    }

    fn accept_tcp(&mut self) {
        let Some(listener) = self.tcp.as_ref() else {
            return;
        };
        let mut accepted = Vec::new();
        loop {
            match listener.accept() {
                Ok((stream, peer)) => {
                    let gate = self.token_gate.as_mut();
                    if gate.is_some_and(|g| !g.admits(peer.ip(), Instant::now())) {
                        // Slowed down after wrong tokens: closed unanswered.
                        continue;
                    }
                    log::debug!("tcp client from {peer}");
                    accepted.push(stream);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    log::warn!("tcp accept: {e}");
                    break;
                }
            }
        }
        for s in accepted {
            self.add_client(Stream::Tcp(s));
        }
    }

    fn add_client(&mut self, stream: Stream) {
        if self.clients.len() >= self.cfg.ipc.max_clients {
            self.stats.clients_refused += 1;
            log::warn!("refusing client: {} connected already", self.clients.len());
            return; // dropping the stream closes it
        }
        let token = Token(self.next_token);
        self.next_token += 1;
        let hello_by = Instant::now() + Duration::from_millis(self.cfg.ipc.hello_timeout_ms);
        let mut client = Client::new(
            stream,
            self.cfg.ipc.queue_len,
            self.cfg.ipc.overflow,
            hello_by,
        );
        if let Err(e) = self.poll.registry().register(
            client.stream.source(),
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::warn!("register client: {e}");
            return;
        }
        self.clients.insert(token, client);
    }

    /// Close the clients whose deadline ran out, and count why.
    fn expire_clients(&mut self, now: Instant) {
        let expired: Vec<(Token, Deadline)> = self
            .clients
            .iter()
            .filter_map(|(t, c)| c.deadline.filter(|d| d.at() <= now).map(|d| (*t, d)))
            .collect();
        for (token, deadline) in expired {
            match deadline {
                Deadline::Hello(_) => {
                    self.stats.ipc_hello_timeouts += 1;
                    self.fail_client(token, ErrorCode::NoHello, "no HELLO in time");
                }
                Deadline::Frame(_) => {
                    self.stats.ipc_frame_timeouts += 1;
                    self.fail_client(token, ErrorCode::BadLength, "frame left half-sent");
                }
            }
        }
    }

    fn drop_client(&mut self, token: Token, why: &str) {
        self.captures.stop(token, None);
        if let Some(mut client) = self.clients.remove(&token) {
            let _ = self.poll.registry().deregister(client.stream.source());
            let freed = self.apps.unbind_owner(&token);
            log::debug!(
                "client {} ({}) gone: {why}; {freed} binding(s) freed",
                token.0,
                client.name
            );
        }
    }

    fn on_client(&mut self, token: Token, readable: bool, writable: bool) {
        if readable {
            let mut requests = Vec::new();
            let outcome = match self.clients.get_mut(&token) {
                Some(c) => c.read(&mut requests, CLIENT_READ_BUDGET),
                None => return,
            };
            for req in requests {
                if !self.clients.contains_key(&token) {
                    break;
                }
                self.on_request(token, req);
            }
            if let Some(c) = self.clients.get_mut(&token) {
                let timeout = Duration::from_millis(self.cfg.ipc.frame_timeout_ms);
                c.track_partial_frame(Instant::now(), timeout);
            }
            match outcome {
                ReadOutcome::Open => {}
                ReadOutcome::More => self.read_again(token),
                ReadOutcome::Closed => return self.drop_client(token, "closed"),
                ReadOutcome::ProtocolError(e) => {
                    self.stats.ipc_errors += 1;
                    let msg = e.to_string();
                    self.fail_client(token, e.code(), &msg);
                    return;
                }
            }
        }
        if writable || readable {
            self.flush_client(token);
        }
    }

    fn read_again(&mut self, token: Token) {
        if !self.again.contains(&token) {
            self.again.push(token);
        }
    }

    fn flush_client(&mut self, token: Token) {
        if let Some(c) = self.clients.get_mut(&token) {
            if let Err(e) = c.flush() {
                self.drop_client(token, &format!("write failed: {e}"));
            }
        }
    }

    /// Answer with an error and close: the client broke the protocol.
    fn fail_client(&mut self, token: Token, code: ErrorCode, message: &str) {
        if let Some(c) = self.clients.get_mut(&token) {
            log::info!("client {} ({}): {message}; closing", token.0, c.name);
            c.send_control(&Message::Error { code, message });
            let _ = c.flush();
        }
        self.drop_client(token, message);
    }

    /// Queue a control frame; a client that lets them pile up is dropped.
    fn reply(&mut self, token: Token, msg: &Message<'_>) {
        if let Some(c) = self.clients.get_mut(&token) {
            if !c.send_control(msg) {
                self.drop_client(token, "not reading its replies");
            }
        }
    }

    fn on_request(&mut self, token: Token, req: Request) {
        let hello_done = self.clients.get(&token).is_some_and(|c| c.hello_done);
        match req {
            Request::Hello { version, name } => self.on_hello(token, version, name),
            _ if !hello_done => {
                self.fail_client(token, ErrorCode::NoHello, "HELLO must come first")
            }
            Request::Register { addr, port } => self.on_register(token, addr, port),
            Request::Unregister { addr, port } => self.on_unregister(token, addr, port),
            Request::Data(frame) => self.on_client_data(token, &frame),
            Request::Control(c) => {
                let records = self.control_records(c);
                self.reply_records(token, c, &records);
            }
            Request::CaptureStart { count, link } => self.on_capture_start(token, count, &link),
            Request::CaptureStop => {
                let client = self.clients.get_mut(&token);
                if !self.captures.stop(token, client) {
                    self.reply(
                        token,
                        &Message::Error {
                            code: ErrorCode::Unavailable,
                            message: "no capture runs on this connection",
                        },
                    );
                }
            }
            Request::Unexpected(what) => self.fail_client(
                token,
                ErrorCode::UnknownType,
                &format!("{what} is sent by the daemon, not to it"),
            ),
        }
    }

    fn on_capture_start(&mut self, token: Token, count: u32, link: &str) {
        let Some(client) = self.clients.get_mut(&token) else {
            return;
        };
        // A refusal is an error for the client, and the connection stays.
        if let Err(r) = self.captures.start(token, client, count, link) {
            self.reply(
                token,
                &Message::Error {
                    code: r.code,
                    message: &r.message,
                },
            );
        }
    }

    /// A frame seen on `link` going `direction`, for the captures.
    fn tap(&mut self, link: LinkRef, direction: Direction, parts: &[&[u8]]) {
        if !self.captures.is_idle() {
            self.captures.tap(&mut self.clients, link, direction, parts);
        }
    }

    fn on_hello(&mut self, token: Token, version: u16, name: String) {
        let Some(c) = self.clients.get_mut(&token) else {
            return;
        };
        if c.hello_done {
            return self.fail_client(token, ErrorCode::BadBody, "second HELLO");
        }
        if version != csp_ipc::VERSION {
            let msg = format!(
                "protocol version {version} not supported (daemon speaks {})",
                csp_ipc::VERSION
            );
            return self.fail_client(token, ErrorCode::BadVersion, &msg);
        }
        if let Stream::Tcp(t) = &c.stream {
            let peer = t.peer_addr().map(|a| a.ip());
            let accepted = match (self.token_gate.as_mut(), peer) {
                (Some(gate), Ok(ip)) => gate.check(ip, &name, Instant::now()),
                _ => false,
            };
            if !accepted {
                // Closed quietly: the gate logs, rate-limited.
                c.send_control(&Message::Error {
                    code: ErrorCode::BadBody,
                    message: "bad token",
                });
                let _ = c.flush();
                return self.drop_client(token, "bad token");
            }
        }
        c.hello_done = true;
        c.deadline = None;
        c.name = if matches!(c.stream, Stream::Tcp(_)) {
            "tcp".into()
        } else {
            crate::client::kept_name(&name)
        };
        let ack = Message::HelloAck {
            version: csp_ipc::VERSION,
            node_addr: self.node.get(),
            mtu: crate::MAX_IPC_DATA as u16,
        };
        self.reply(token, &ack);
    }

    /// The daemon's own address stands in for 0; other addresses are not ours.
    fn local_addr(&self, addr: u16) -> Option<Addr> {
        if addr == csp_ipc::ADDR_DAEMON || addr == self.node.get() {
            Some(self.node)
        } else {
            None
        }
    }

    fn on_register(&mut self, token: Token, addr: u16, port: u8) {
        let ack = |status, port| Message::RegisterAck { status, addr, port };
        let Some(local) = self.local_addr(addr) else {
            return self.reply(token, &ack(Status::NotLocalAddr, port));
        };
        if self.cfg.daemon_owns_port(port) {
            // The node's own service: the daemon holds it (docs/ipc.md).
            return self.reply(token, &ack(Status::PortInUse, port));
        }
        if !self.within_quota(token, port) {
            self.stats.quota_refused += 1;
            return self.reply(token, &ack(Status::QuotaExceeded, port));
        }
        let result = if port == csp_ipc::PORT_EPHEMERAL {
            self.apps
                .bind_ephemeral(BindAddr::Addr(local), token)
                .map(|p| p.get())
        } else {
            self.apps
                .bind_raw(BindAddr::Addr(local), port, token)
                .map(|()| port)
        };
        let msg = match result {
            Ok(bound) => {
                if let Some(c) = self.clients.get_mut(&token) {
                    c.bindings.push((local.get(), bound));
                }
                Message::RegisterAck {
                    status: Status::Ok,
                    addr: local.get(),
                    port: bound,
                }
            }
            Err(e) => Message::RegisterAck {
                status: bind_status(e),
                addr: local.get(),
                port,
            },
        };
        self.reply(token, &msg);
    }

    /// Whether `token` may hold one more binding of the kind `port` asks
    /// for: ephemeral ports and the rest (numbered, CSP_ANY) have separate
    /// quotas, so that no one application can take a whole port space.
    fn within_quota(&self, token: Token, port: u8) -> bool {
        let Some(c) = self.clients.get(&token) else {
            return false;
        };
        let p = &self.cfg.ports;
        let ephemeral = |b: &&(u16, u8)| (p.ephemeral_first..=p.ephemeral_last).contains(&b.1);
        let held_ephemeral = c.bindings.iter().filter(ephemeral).count();
        if port == csp_ipc::PORT_EPHEMERAL {
            held_ephemeral < self.cfg.ipc.max_ephemeral_per_client
        } else {
            c.bindings.len() - held_ephemeral < self.cfg.ipc.max_ports_per_client
        }
    }

    fn on_unregister(&mut self, token: Token, addr: u16, port: u8) {
        let status = match (self.local_addr(addr), BindPort::from_raw(port)) {
            (None, _) => Status::NotLocalAddr,
            (_, Err(_)) => Status::Invalid,
            (Some(local), Ok(bp)) => {
                if self.apps.get(BindAddr::Addr(local), bp) == Some(&token) {
                    let _ = self.apps.unbind(BindAddr::Addr(local), bp);
                    if let Some(c) = self.clients.get_mut(&token) {
                        c.bindings.retain(|&b| b != (local.get(), port));
                    }
                    Status::Ok
                } else {
                    Status::NotRegistered
                }
            }
        };
        self.reply(token, &Message::UnregisterAck { status, addr, port });
    }

    fn on_client_data(&mut self, token: Token, frame: &[u8]) {
        // As the application sent it, refused or not.
        self.tap(LinkRef::Local, Direction::Inbound, &[frame]);
        let Ok(view) = HeaderView::new_checked(frame, Version::V2) else {
            self.stats.rejected_packets += 1;
            if let Some(c) = self.clients.get_mut(&token) {
                c.stats.rejected += 1;
            }
            return self.reply(
                token,
                &Message::Error {
                    code: ErrorCode::BadPacket,
                    message: "DATA shorter than a v2 header",
                },
            );
        };
        let mut header = view.header();
        if header.src == Addr::LOCAL {
            header.src = self.node;
        }
        // A client may send only from an (address, port) whose traffic the
        // port table would hand to it: no spoofing another app's port.
        // The service ports are the daemon's, even for a CSP_ANY holder.
        let owns = header.src == self.node
            && !self.cfg.daemon_owns_port(header.sport.get())
            && self.apps.lookup(header.src, header.sport) == Some(&token);
        if !owns {
            self.stats.rejected_packets += 1;
            if let Some(c) = self.clients.get_mut(&token) {
                c.stats.rejected += 1;
            }
            let msg = format!(
                "source {}:{} is not registered by this client",
                header.src, header.sport
            );
            return self.reply(
                token,
                &Message::Error {
                    code: ErrorCode::Spoofed,
                    message: &msg,
                },
            );
        }
        if let Some(c) = self.clients.get_mut(&token) {
            c.stats.rx_packets += 1;
        }
        self.route(header, view.payload(), Origin::Client);
    }

    fn on_udp(&mut self) {
        let Some(udp) = self.links.udp.as_mut() else {
            return;
        };
        let version = udp.version;
        // The batch leaves `self` while its frames are routed (routing
        // needs `self` whole) and comes back with its buffer.
        let mut batch = std::mem::take(&mut self.udp_rx);
        if udp.recv_batch(UDP_READ_BUDGET, &mut batch) {
            self.read_again(UDP);
        }
        for (frame, from) in batch.frames() {
            self.tap(LinkRef::Udp, Direction::Inbound, &[frame]);
            let Ok(view) = HeaderView::new_checked(frame, version) else {
                continue; // runts were counted by the link
            };
            self.links.note_rx(from);
            let origin = Origin::Link {
                iface: None,
                version,
            };
            self.route(view.header(), view.payload(), origin);
        }
        batch.clear();
        self.udp_rx = batch;
    }

    fn on_kiss(&mut self, token: Token) {
        let index = (token.0 - KISS_TOKENS) / 2;
        let mut frames = Vec::new();
        let Some(link) = self.links.kiss.get_mut(index) else {
            return;
        };
        if !link.owns(token) {
            return;
        }
        let version = link.version;
        link.on_event(token, self.poll.registry(), Instant::now(), &mut frames);
        self.route_from_link(LinkRef::Kiss(index), frames, version, None);
    }

    fn on_socketcan(&mut self, token: Token) {
        let index = token.0 - SOCKETCAN_TOKENS;
        let mut frames = Vec::new();
        let Some(link) = self.links.socketcan.get_mut(index) else {
            return;
        };
        let version = link.version;
        if link.on_event(self.poll.registry(), Instant::now(), &mut frames) {
            self.read_again(token);
        }
        self.route_from_link(LinkRef::SocketCan(index), frames, version, None);
    }

    fn on_zmq(&mut self, token: Token) {
        let index = (token.0 - ZMQ_TOKENS) / 2;
        let iface = self.links.zmq_iface(index);
        let mut frames = Vec::new();
        let Some(link) = self.links.zmq.get_mut(index) else {
            return;
        };
        match link.owns(token) {
            Some(true) => {}
            Some(false) => return link.on_pub_event(),
            None => return,
        }
        let version = link.version;
        if link.recv_all(ZMQ_READ_BUDGET, |f| frames.push(f.to_vec())) {
            self.read_again(token);
        }
        self.route_from_link(LinkRef::Zmq(index), frames, version, iface);
    }

    /// The frames a stream, hub or CAN link received: each captured,
    /// counted against the link's interface and routed with the link's
    /// header version (`iface` for links a frame can come back to, see
    /// [`Origin::Link`]). One shorter than a header was counted by its
    /// link and goes no further.
    fn route_from_link(
        &mut self,
        link: LinkRef,
        frames: Vec<Vec<u8>>,
        version: Version,
        iface: Option<IfaceId>,
    ) {
        for frame in frames {
            self.tap(link, Direction::Inbound, &[&frame]);
            let Ok(view) = HeaderView::new_checked(&frame, version) else {
                continue;
            };
            self.links.note_link_rx(link);
            self.route(
                view.header(),
                view.payload(),
                Origin::Link { iface, version },
            );
        }
    }

    /// Deliver or forward one packet.
    fn route(&mut self, header: Header, data: &[u8], origin: Origin) {
        // Broadcast (the v2 all-ones address) is delivered here as libcsp
        // does, and not forwarded: with no TTL a forwarded broadcast could
        // circle between daemons forever.
        let broadcast = header.dst.is_broadcast(Version::V2);
        if broadcast && origin == Origin::Client {
            // An application's broadcast (`csp ident --all`) also goes out
            // on the route for the broadcast address, once: only broadcasts
            // made here leave, never one that came in from a link.
            if let Some(&route) = self.routes.lookup_route(header.dst) {
                self.stats.forwarded += 1;
                *self.route_hits.entry(route.prefix).or_default() += 1;
                if !self
                    .links
                    .send(route.iface, route.via, &header, data, self.poll.registry())
                {
                    self.stats.link_errors += 1;
                }
            }
        }
        if header.dst == self.node || header.dst == Addr::LOCAL || broadcast {
            return self.deliver_local(header, data, origin);
        }
        let Some(&route) = self.routes.lookup_route(header.dst) else {
            self.stats.unroutable += 1;
            log::debug!("no route to {}", header.dst);
            return;
        };
        if let Origin::Link {
            iface: Some(from), ..
        } = origin
        {
            if from == route.iface {
                self.stats.same_link += 1;
                log::trace!(
                    "{} back into {}: dropped",
                    header.dst,
                    self.links.name(from)
                );
                return;
            }
        }
        self.stats.forwarded += 1;
        *self.route_hits.entry(route.prefix).or_default() += 1;
        if !self
            .links
            .send(route.iface, route.via, &header, data, self.poll.registry())
        {
            self.stats.link_errors += 1;
        } else if !self.captures.is_idle() {
            // The header as the link emitted it, in its version.
            if let Some((link, version)) = self.links.capture_link(route.iface) {
                if let Ok((bytes, n)) = header.to_bytes(version) {
                    self.tap(link, Direction::Outbound, &[&bytes[..n], data]);
                }
            }
        }
    }

    fn deliver_local(&mut self, mut header: Header, data: &[u8], origin: Origin) {
        header.dst = self.node;
        // A service port the daemon keeps never reaches an application,
        // not even the CSP_ANY holder: pings are answered by the daemon.
        let app = if self.cfg.daemon_owns_port(header.dport.get()) {
            None
        } else {
            self.apps.lookup(header.dst, header.dport).copied()
        };
        if let Some(token) = app {
            let mut frame = Vec::with_capacity(6 + data.len());
            frame.extend_from_slice(&[0; 6]);
            frame.extend_from_slice(data);
            if header.emit(&mut frame, Version::V2).is_err() {
                self.stats.rejected_packets += 1;
                return;
            }
            // Counted once, by what the client's queue made of it.
            let outcome = match self.clients.get_mut(&token) {
                Some(c) => c.send_packet(&frame),
                None => Queued::Dropped,
            };
            if outcome == Queued::Yes {
                self.tap(LinkRef::Local, Direction::Outbound, &[&frame]);
            }
            match outcome {
                Queued::Yes => self.stats.delivered += 1,
                Queued::Dropped => self.stats.queue_dropped += 1,
                Queued::TooLarge => self.stats.too_large += 1,
            }
            // Written before the daemon waits, so that a burst for one
            // application goes out in one `writev`; at once if its queue is
            // half full, so deferring never makes the queue overflow.
            let half = (self.cfg.ipc.queue_len / 2).max(1);
            if self
                .clients
                .get(&token)
                .is_some_and(|c| c.queued_packets() >= half)
            {
                self.flush_client(token);
            } else if !self.unflushed.contains(&token) {
                self.unflushed.push(token);
            }
            return;
        }
        // Replies of our own services are never fed back into the services:
        // a request from a service port to a service port must not loop.
        if origin != Origin::Service && self.cfg.services.enabled {
            let version = match origin {
                Origin::Link { version, .. } => version,
                _ => Version::V2,
            };
            let request = ServiceRequest {
                header: &header,
                data,
                version,
            };
            let node = NodeView {
                uptime_s: self.started.elapsed().as_secs(),
                buf_free: self.free_slots(),
                links: &self.links,
                apps: if header.dport == csp_core::Port::PS {
                    self.ps_lines()
                } else {
                    Vec::new()
                },
            };
            match self.services.answer(request, &node) {
                Answer::Reply(reply, body) => {
                    self.stats.service_replies += 1;
                    return self.route(reply, &body, Origin::Service);
                }
                Answer::Handled => return self.stats.service_no_reply += 1,
                Answer::TooLarge => return self.stats.too_large += 1,
                Answer::NotAService => {}
            }
        }
        self.stats.no_listener += 1;
    }

    /// One line per connected application for the ps service, in
    /// connection order: id, name (cut to 24 bytes), ports.
    fn ps_lines(&self) -> Vec<String> {
        let mut clients: Vec<_> = self.clients.iter().collect();
        clients.sort_by_key(|(t, _)| t.0);
        clients
            .into_iter()
            .map(|(token, c)| {
                let mut name: String = c.name.chars().take(24).collect();
                while name.len() > 24 {
                    name.pop();
                }
                let ports: Vec<String> = c
                    .bindings
                    .iter()
                    .map(|&(_, p)| match p {
                        csp_ipc::PORT_ANY => "ANY".to_string(),
                        p => p.to_string(),
                    })
                    .collect();
                format!("{:>4} {name} ports {}", token.0, ports.join(","))
            })
            .collect()
    }

    /// Free packet slots across client queues: what "buffer free" reports.
    fn free_slots(&self) -> u32 {
        let total = self.cfg.ipc.queue_len * self.cfg.ipc.max_clients;
        let used: usize = self.clients.values().map(Client::queued_packets).sum();
        u32::try_from(total.saturating_sub(used)).unwrap_or(u32::MAX)
    }

    /// The answer to a control request as records (csp-ipc's `record`
    /// grammar): bounded values, so any number of them pages cleanly.
    fn control_records(&self, c: Control) -> Vec<Record> {
        let mut out = Vec::new();
        let mut clients: Vec<_> = self.clients.iter().collect();
        clients.sort_by_key(|(t, _)| t.0);
        match c {
            Control::Status => {
                out.push(Record::new("node").arg(self.node));
                out.push(Record::new("uptime").arg(self.started.elapsed().as_secs()));
                out.push(Record::new("socket").arg(self.socket_path.display()));
                out.extend(self.links.describe().iter().map(|l| as_record("link", l)));
                for (token, client) in clients {
                    let ports: Vec<String> = client
                        .bindings
                        .iter()
                        .map(|&(a, p)| match p {
                            csp_ipc::PORT_ANY => format!("{a}:ANY"),
                            p => format!("{a}:{p}"),
                        })
                        .collect();
                    out.push(
                        Record::new("app")
                            .arg(token.0)
                            .field("name", &client.name)
                            .field("ports", ports.join(","))
                            .field("queued", client.queued_packets()),
                    );
                }
                for (token, link, frames, dropped) in self.captures.describe() {
                    let queued = self
                        .clients
                        .get(&Token(token))
                        .map_or(0, Client::queued_captures);
                    out.push(
                        Record::new("capture")
                            .arg(token)
                            .field("link", link)
                            .field("frames", frames)
                            .field("dropped", dropped)
                            .field("queued", queued),
                    );
                }
            }
            Control::Stats => {
                let counters = self.stats.to_string();
                out.extend(counters.lines().map(|l| as_record("", l)));
                let refused = self.services.refused;
                out.push(Record::new("hook_refused_no_hook").arg(refused.no_hook));
                out.push(Record::new("hook_refused_busy").arg(refused.busy));
                out.push(Record::new("hook_refused_rate").arg(refused.rate_limited));
                let cap = self.captures.stats;
                out.push(Record::new("capture_started").arg(cap.started));
                out.push(Record::new("capture_refused").arg(cap.refused));
                out.push(Record::new("capture_unavailable").arg(cap.unavailable));
                out.push(Record::new("capture_frames").arg(cap.frames));
                out.push(Record::new("capture_dropped").arg(cap.dropped));
                for (name, n) in self.services.dropped.named() {
                    out.push(Record::new(name).arg(n));
                }
                if let Some(m) = &self.metrics {
                    out.push(Record::new("metrics_scrapes").arg(m.stats.scrapes));
                    out.push(Record::new("metrics_bad_requests").arg(m.stats.bad_requests));
                    out.push(Record::new("metrics_refused_busy").arg(m.stats.refused_busy));
                    out.push(Record::new("metrics_timeouts").arg(m.stats.timeouts));
                }
                if let Some(g) = &self.token_gate {
                    out.push(Record::new("tcp_token_failures").arg(g.failures));
                    out.push(Record::new("tcp_throttled").arg(g.throttled));
                }
                out.extend(self.links.describe_stats().iter().map(|l| as_record("", l)));
                for r in self.routes.iter() {
                    let hits = self.route_hits.get(&r.prefix).copied().unwrap_or(0);
                    let entry = r.display_with(self.routes.version(), |i| self.links.name(i));
                    out.push(as_record("route", &format!("{entry} packets={hits}")));
                }
                for (token, c) in clients {
                    let s = c.stats;
                    out.push(
                        Record::new("app")
                            .arg(token.0)
                            .field("name", &c.name)
                            .field("rx", s.rx_packets)
                            .field("tx", s.tx_packets)
                            .field("dropped_overflow", s.dropped_overflow)
                            .field("rejected", s.rejected),
                    );
                }
            }
            Control::Routes => {
                for r in self.routes.iter() {
                    let entry = r.display_with(self.routes.version(), |i| self.links.name(i));
                    out.push(as_record("route", &entry.to_string()));
                }
            }
        }
        out
    }

    /// Send a control reply as pages, the last marked; the client's control
    /// queue bounds how many replies may wait, not how long one is.
    fn reply_records(&mut self, token: Token, request: Control, records: &[Record]) {
        let pages = csp_ipc::record::page(records);
        let Some(c) = self.clients.get_mut(&token) else {
            return;
        };
        if !c.send_reply_pages(request, &pages) {
            self.drop_client(token, "not reading its replies");
        }
    }
}

/// A line the daemon formats elsewhere (`text`, links' and counters'
/// descriptions) as a record of `kind` (empty: the line's first word is
/// the kind); a line outside the grammar is carried whole as `text=`.
fn as_record(kind: &str, text: &str) -> Record {
    let line = if kind.is_empty() {
        text.to_string()
    } else {
        format!("{kind} {text}")
    };
    csp_ipc::record::parse(&line).unwrap_or_else(|_| {
        let kind = if kind.is_empty() { "line" } else { kind };
        Record::new(kind).field("text", text)
    })
}

/// Where a packet entered routing; services never answer their own replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Client,
    /// From a link; `iface` is set for links where a frame can come back
    /// to the interface it would be routed to (the ZMQ hub).
    Link {
        iface: Option<IfaceId>,
        /// Header version of the link (XTEA exists on v1 links only).
        version: Version,
    },
    Service,
}

/// Descriptors the daemon needs besides its clients: links, listeners,
/// the poll and signal descriptors, hook processes, log files.
const FD_RESERVE: u64 = 64;

/// Raise the soft `RLIMIT_NOFILE` so `max_clients` connections fit (up to
/// the hard limit; a shortfall is logged, and accept then fails and is
/// logged per connection rather than stopping the daemon).
fn raise_fd_limit(max_clients: usize) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let want = max_clients as u64 + FD_RESERVE;
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft >= want {
        return;
    }
    let new = want.min(hard);
    if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, new, hard) {
        log::warn!("cannot raise RLIMIT_NOFILE to {new}: {e}");
    } else if new < want {
        log::warn!(
            "RLIMIT_NOFILE hard limit {hard} is below the {want} that ipc.max_clients needs"
        );
    }
}

fn bind_status(e: BindError) -> Status {
    match e {
        BindError::PortInUse(_) => Status::PortInUse,
        BindError::PortOutOfRange { .. } | BindError::InvalidConfig => Status::Invalid,
        BindError::TableFull => Status::TableFull,
        BindError::NotBound => Status::NotRegistered,
        BindError::EphemeralExhausted => Status::NoEphemeralPort,
    }
}
