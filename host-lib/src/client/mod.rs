//! The client: one connection to csp-muxd, the sockets bound through it,
//! and the protocol work (CRC, HMAC, XTEA, SFP) done in this process.
//!
//! The core is non-blocking: [`Client::as_raw_fd`], [`Client::wants_write`],
//! [`Client::poll_timeout`], [`Client::handle_readable`],
//! [`Client::handle_writable`], [`Client::handle_timeout`],
//! [`Client::try_recvfrom`], [`Client::try_sendto`], for RDP
//! [`Client::start_connect`], [`Client::try_accept`], [`Client::try_send`],
//! [`Client::try_recv`], [`Client::is_acked`], and [`Client::poll_event`]
//! let a caller with its own event loop drive it (`examples/event_loop.rs`,
//! `examples/rdp_echo.rs`). RDP's timers are part of `poll_timeout`.
//! The blocking calls ([`Client::recvfrom`], [`Client::sendto`], ...) are
//! that same core driven by `poll(2)` on the one descriptor, so the library
//! never starts a thread.
//!
//! When the daemon goes away the client reconnects with backoff (250 ms
//! doubling to 16 s), registers the same ports again, and reports
//! [`Event::Reconnected`]. Bind, unbind and control requests wait for the
//! daemon's answer (a local round trip, bounded by the request timeout).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use csp_core::{Addr, Port};
use csp_ipc::record::Record;
use csp_ipc::{Control, Message, Status};

use crate::endpoint::Endpoint;
use crate::error::{register_error, Error, Result};
use crate::event::Event;
use crate::ipc::{Incoming, Link, ReadEnd};
use crate::options::Options;
use crate::socket::{Bind, Datagram, Entry, Socket, SocketStats};

mod dispatch;
mod rdp;
mod reconnect;
mod send;

/// Events kept for [`Client::poll_event`] before the oldest is dropped.
pub const MAX_EVENTS: usize = 64;
/// Largest control reply gathered from its pages; a daemon sending more is
/// treated as broken (a real reply is well under this: values and client
/// counts are bounded).
pub const MAX_CONTROL_REPLY: usize = 4 << 20;

/// First reconnect delay; doubled after every failed attempt.
pub const RECONNECT_MIN: Duration = Duration::from_millis(250);
/// Longest reconnect delay.
pub const RECONNECT_MAX: Duration = Duration::from_secs(16);

/// How a client connects and behaves.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The daemon's socket; `None` is [`default_socket_path`](crate::default_socket_path).
    pub socket: Option<PathBuf>,
    /// Connect to the daemon's loopback TCP listener instead (for a client
    /// in a container); wins over `socket`.
    pub tcp: Option<(SocketAddr, String)>,
    /// Name shown in `csp status`.
    pub name: String,
    /// Datagrams queued per socket before the oldest is dropped (counted).
    pub queue_len: usize,
    /// Reconnect when the daemon goes away.
    pub reconnect: bool,
    /// Longest wait for the daemon's answer to HELLO, REGISTER, CONTROL.
    pub request_timeout: Duration,
    /// Longest a blocking send waits for room in the socket.
    pub send_timeout: Duration,
    /// Bytes buffered for the daemon before a send blocks (or, non-blocking,
    /// fails with [`Error::WouldBlock`]).
    pub write_buffer: usize,
    /// What this client's RDP listeners adopt from a SYN and how many
    /// half-open connections they hold (`docs/csp-core.md`).
    pub syn_limits: csp_core::node::SynLimits,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            socket: None,
            tcp: None,
            name: default_name(),
            queue_len: 256,
            reconnect: true,
            request_timeout: Duration::from_secs(5),
            send_timeout: Duration::from_secs(5),
            write_buffer: 256 * 1024,
            syn_limits: csp_core::node::SynLimits::DEFAULT,
        }
    }
}

/// The program's name and pid: what `csp status` shows by default.
fn default_name() -> String {
    let exe = std::env::current_exe().ok();
    let prog = exe
        .as_deref()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "host-lib".into());
    format!("{prog}[{}]", std::process::id())
}

/// Counters of the client as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientStats {
    /// Successful reconnects.
    pub reconnects: u64,
    /// Connection attempts that failed while reconnecting.
    pub failed_attempts: u64,
    /// DATA frames that did not hold a CSP header.
    pub bad_packets: u64,
    /// Packets for a port no socket of ours holds (closed meanwhile).
    pub no_socket: u64,
    /// Errors the daemon reported.
    pub daemon_errors: u64,
    /// Events dropped because nobody asked for them ([`MAX_EVENTS`]).
    pub events_dropped: u64,
}

/// An answer to a request (REGISTER, UNREGISTER, CONTROL), in the order
/// the daemon sends them.
#[derive(Debug)]
enum Reply {
    Register { status: Status, port: u8 },
    Unregister { status: Status },
    Control(String),
}

/// A request waiting for its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// A caller waits for it.
    Wanted,
    /// Its caller gave up (timeout), or nobody asked: the answer is dropped.
    Abandoned,
}

/// A connection to csp-muxd and the sockets bound through it.
pub struct Client {
    cfg: ClientConfig,
    endpoint: Endpoint,
    link: Option<Link>,
    node: Addr,
    mtu: usize,
    sockets: HashMap<u64, Entry>,
    next_id: u64,
    /// Frames read but not yet acted on.
    inbox: VecDeque<Incoming>,
    /// The last read stopped at its budget with bytes still waiting.
    more_to_read: bool,
    replies: VecDeque<Reply>,
    /// Pages of a control reply received so far.
    control_pages: String,
    /// Requests sent and not yet answered, oldest first: the daemon
    /// answers in order, so each answer belongs to the front one.
    pending: VecDeque<Pending>,
    events: VecDeque<Event>,
    retry_at: Option<Instant>,
    retry_delay: Duration,
    epoch: Instant,
    nonce: u32,
    use_counter: u64,
    stats: ClientStats,
    pub(crate) service: Option<Socket>,
    pub(crate) service_options: Options,
    /// RDP connections and listeners, with the node that runs them;
    /// created on first use.
    rdp: Option<rdp::Rdp>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .field("connected", &self.link.is_some())
            .field("node", &self.node)
            .field("sockets", &self.sockets.len())
            .finish()
    }
}

impl Client {
    /// Connect to the daemon at `path` with default settings.
    pub fn connect(path: impl AsRef<Path>) -> Result<Client> {
        Client::with_config(ClientConfig {
            socket: Some(path.as_ref().to_path_buf()),
            ..ClientConfig::default()
        })
    }

    /// Connect to the daemon at the default socket path.
    pub fn connect_default() -> Result<Client> {
        Client::with_config(ClientConfig::default())
    }

    /// Connect as `cfg` says. The first connection is not retried: if the
    /// daemon is not there, this says so ([`Error::NotRunning`]).
    pub fn with_config(cfg: ClientConfig) -> Result<Client> {
        let endpoint = match (&cfg.tcp, &cfg.socket) {
            (Some((addr, token)), _) => Endpoint::Tcp {
                addr: *addr,
                token: token.clone(),
            },
            (None, Some(path)) => Endpoint::Unix(path.clone()),
            (None, None) => Endpoint::Unix(csp_ipc::default_socket_path()),
        };
        let (link, hello) = Link::connect(&endpoint, &cfg.name, cfg.request_timeout)?;
        let epoch = Instant::now();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos() ^ (d.as_secs() as u32));
        let mut client = Client {
            cfg,
            endpoint,
            link: Some(link),
            node: Addr::LOCAL,
            mtu: 0,
            sockets: HashMap::new(),
            next_id: 1,
            inbox: VecDeque::new(),
            more_to_read: false,
            replies: VecDeque::new(),
            control_pages: String::new(),
            pending: VecDeque::new(),
            events: VecDeque::new(),
            retry_at: None,
            retry_delay: RECONNECT_MIN,
            epoch,
            nonce: seed ^ std::process::id(),
            use_counter: 0,
            stats: ClientStats::default(),
            service: None,
            service_options: Options::NONE,
            rdp: None,
        };
        client.on_hello(hello.node, hello.mtu)?;
        // Whatever came along with HELLO_ACK (even the end of the stream).
        client.handle_readable();
        Ok(client)
    }

    fn on_hello(&mut self, node: u16, mtu: u16) -> Result<()> {
        self.node = Addr::new(node).map_err(|_| Error::InvalidAddr(node))?;
        self.mtu = usize::from(mtu);
        Ok(())
    }

    /// The daemon's CSP address: the node this process is part of.
    pub fn node(&self) -> u16 {
        self.node.get()
    }

    /// Largest data (after the header, trailers included) one packet carries.
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// Where the daemon is.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// True while connected to the daemon.
    pub fn is_connected(&self) -> bool {
        self.link.is_some()
    }

    /// The client's counters.
    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// A socket's counters.
    pub fn socket_stats(&self, socket: &Socket) -> Result<SocketStats> {
        Ok(self.entry(socket)?.stats)
    }

    /// The port a socket holds now (255 for ANY).
    pub fn local_port(&self, socket: &Socket) -> Result<u8> {
        Ok(self.entry(socket)?.port)
    }

    /// Options used by the service helpers (ping, uptime, ...): CRC and
    /// HMAC of the requests (the helpers add CRC where libcsp's do).
    pub fn set_service_options(&mut self, options: Options) {
        self.service_options = options;
        if let Some(s) = self.service {
            if let Some(e) = self.sockets.get_mut(&s.id) {
                e.options = options;
            }
        }
    }

    fn entry(&self, socket: &Socket) -> Result<&Entry> {
        self.sockets.get(&socket.id).ok_or(Error::UnknownSocket)
    }

    fn entry_mut(&mut self, socket: &Socket) -> Result<&mut Entry> {
        self.sockets.get_mut(&socket.id).ok_or(Error::UnknownSocket)
    }

    fn disconnected(&self) -> Error {
        Error::Disconnected {
            endpoint: self.endpoint.clone(),
            reconnecting: self.cfg.reconnect,
        }
    }

    // ---- binding -------------------------------------------------------

    /// Bind a port with no trailers and no SFP.
    pub fn bind(&mut self, bind: Bind) -> Result<Socket> {
        self.bind_with(bind, Options::NONE)
    }

    /// Bind a port; `options` are what the socket adds on send and requires
    /// on receive.
    pub fn bind_with(&mut self, bind: Bind, options: Options) -> Result<Socket> {
        self.bind_entry(bind, options, false)
    }

    /// Register a port and keep its socket; `rdp`: its RDP segments go to
    /// the node (a listener's or an outgoing connection's port).
    fn bind_entry(&mut self, bind: Bind, options: Options, rdp: bool) -> Result<Socket> {
        if let Bind::Port(p) = bind {
            Port::new(p).map_err(|_| Error::InvalidPort(p))?;
        }
        let port = self.register(bind)?;
        let id = self.next_id;
        self.next_id += 1;
        self.sockets.insert(
            id,
            Entry {
                bind,
                port,
                registered: true,
                rdp,
                lost: None,
                options,
                queue: VecDeque::new(),
                sfp: Vec::new(),
                stats: SocketStats::default(),
            },
        );
        Ok(Socket { id })
    }

    /// REGISTER and wait for the answer; the port the daemon gave.
    fn register(&mut self, bind: Bind) -> Result<u8> {
        let raw = bind.raw();
        let reply = self.request(&Message::Register {
            addr: csp_ipc::ADDR_DAEMON,
            port: raw,
        })?;
        match reply {
            Reply::Register {
                status: Status::Ok,
                port,
            } => Ok(port),
            Reply::Register { status, .. } => Err(register_error(raw, status)),
            other => Err(self.out_of_order(other)),
        }
    }

    fn out_of_order(&mut self, got: Reply) -> Error {
        // Our request/answer bookkeeping and the daemon disagree: start
        // afresh rather than hand anyone the wrong answer.
        let what = format!("{got:?}");
        self.lose_link(format!("answer out of turn: {what}"));
        Error::OutOfTurn(what)
    }

    /// Change a socket's options.
    pub fn set_options(&mut self, socket: &Socket, options: Options) -> Result<()> {
        self.entry_mut(socket)?.options = options;
        Ok(())
    }

    /// Release the socket's port; queued datagrams are dropped.
    pub fn close(&mut self, socket: Socket) -> Result<()> {
        let entry = self
            .sockets
            .remove(&socket.id)
            .ok_or(Error::UnknownSocket)?;
        if self.service == Some(socket) {
            self.service = None;
        }
        if !entry.registered || self.link.is_none() {
            // The daemon forgot it already (it frees a lost client's ports).
            return Ok(());
        }
        match self.request(&Message::Unregister {
            addr: csp_ipc::ADDR_DAEMON,
            port: entry.port,
        })? {
            Reply::Unregister {
                status: Status::Ok | Status::NotRegistered,
            } => Ok(()),
            Reply::Unregister { status } => Err(Error::Register {
                port: entry.port,
                status,
            }),
            other => Err(self.out_of_order(other)),
        }
    }

    /// The daemon's status, statistics or routes as records.
    pub fn control_records(&mut self, request: Control) -> Result<Vec<Record>> {
        let text = self.control(request)?;
        csp_ipc::record::parse_all(&text).map_err(Error::BadRecord)
    }

    /// Ask the daemon for its status, statistics or routes: the text of
    /// every page, one record per line.
    pub fn control(&mut self, request: Control) -> Result<String> {
        match self.request(&Message::Control(request))? {
            Reply::Control(text) => Ok(text),
            other => Err(self.out_of_order(other)),
        }
    }

    /// Send a request and wait (bounded) for its answer, serving everything
    /// else that arrives meanwhile.
    fn request(&mut self, msg: &Message<'_>) -> Result<Reply> {
        let Some(link) = self.link.as_mut() else {
            return Err(self.disconnected());
        };
        link.queue(msg)?;
        self.pending.push_back(Pending::Wanted);
        let deadline = Instant::now() + self.cfg.request_timeout;
        loop {
            self.flush_link();
            // Frames behind the answer wait in the inbox: a DATA frame for
            // the port being bound must find the socket in the table.
            self.pump(true);
            if let Some(r) = self.replies.pop_front() {
                return Ok(r);
            }
            if self.link.is_none() {
                return Err(self.disconnected());
            }
            let now = Instant::now();
            if now >= deadline {
                // Its answer may still come: it must not pass for the
                // answer to a later request.
                if let Some(p) = self
                    .pending
                    .iter_mut()
                    .rev()
                    .find(|p| **p == Pending::Wanted)
                {
                    *p = Pending::Abandoned;
                }
                return Err(Error::Timeout);
            }
            // Only the link is waited on: a reconnect in the middle of a
            // request would make its answer meaningless.
            if let Some(link) = &self.link {
                link.wait(deadline - now)
                    .map_err(Error::io("waiting for csp-muxd"))?;
            }
            if let Some(why) = self.read_link() {
                self.pump(false);
                self.lose_link(why);
            }
        }
    }

    // ---- receiving -----------------------------------------------------

    /// The next datagram for `socket`, if one is queued (reads nothing).
    pub fn try_recvfrom(&mut self, socket: &Socket) -> Result<Option<Datagram>> {
        self.pump(false);
        Ok(self.entry_mut(socket)?.queue.pop_front())
    }

    /// Wait (at most `timeout`; `None` = for ever) for a datagram on
    /// `socket`. Keeps waiting across a daemon restart: the client
    /// reconnects meanwhile (with reconnecting off, a lost daemon is
    /// [`Error::Disconnected`]).
    pub fn recvfrom(&mut self, socket: &Socket, timeout: Option<Duration>) -> Result<Datagram> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(d) = self.try_recvfrom(socket)? {
                return Ok(d);
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(Error::Timeout);
            }
            self.wait(deadline.map(|d| d - now))?;
        }
    }

    /// Block once: until the descriptor is ready, a timer is due, or
    /// `timeout` passes; then do what is due. The building block of every
    /// blocking call, usable as the loop of a simple program. Fails with
    /// [`Error::Disconnected`] only when the daemon is gone and
    /// [`ClientConfig::reconnect`] is off.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<()> {
        let now = Instant::now();
        let mut limit = timeout.map(|t| now + t);
        if let Some(t) = self.poll_timeout() {
            limit = Some(limit.map_or(t, |l| l.min(t)));
        }
        let span = limit.map_or(Duration::from_secs(3600), |l| {
            l.saturating_duration_since(now)
        });
        match &self.link {
            Some(link) => {
                link.wait(span).map_err(Error::io("waiting for csp-muxd"))?;
                self.handle_readable();
                self.handle_writable();
            }
            // Without reconnecting nothing will ever arrive: say so instead
            // of sleeping.
            None if !self.cfg.reconnect => return Err(self.disconnected()),
            None => std::thread::sleep(span),
        }
        self.handle_timeout(Instant::now());
        Ok(())
    }

    // ---- the non-blocking core ------------------------------------------

    /// The descriptor to watch for readability (and writability when
    /// [`wants_write`](Self::wants_write)); `None` while disconnected, when
    /// only [`poll_timeout`](Self::poll_timeout) matters. It changes on a
    /// reconnect ([`Event::Reconnected`]).
    pub fn as_raw_fd(&self) -> Option<RawFd> {
        self.link.as_ref().map(|l| l.fd().as_raw_fd())
    }

    /// The same descriptor, borrowed (for `poll(2)` wrappers that take one).
    pub fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        self.link.as_ref().map(Link::fd)
    }

    /// True if bytes are waiting to be written to the daemon.
    pub fn wants_write(&self) -> bool {
        self.link.as_ref().is_some_and(|l| l.pending_write() > 0)
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next:
    /// the next reconnect attempt, SFP reassembly deadline or RDP timer
    /// (retransmission, delayed acknowledgement, connection timeout).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.inbox.is_empty() || (self.more_to_read && self.link.is_some()) {
            // Frames read during a request wait to be dispatched, or the
            // read budget left bytes in the socket.
            return Some(Instant::now());
        }
        let mut next = if self.link.is_none() && self.cfg.reconnect {
            self.retry_at
        } else {
            None
        };
        for e in self.sockets.values() {
            for s in &e.sfp {
                if let Some(t) = s.rx.poll_timeout() {
                    let at = self.epoch + Duration::from_millis(t.as_millis());
                    next = Some(next.map_or(at, |n: Instant| n.min(at)));
                }
            }
        }
        if let Some(at) = self.rdp_poll_timeout() {
            next = Some(next.map_or(at, |n: Instant| n.min(at)));
        }
        next
    }

    /// Read everything the daemon sent and dispatch it to the sockets.
    pub fn handle_readable(&mut self) {
        let lost = self.read_link();
        self.pump(false);
        if let Some(why) = lost {
            self.lose_link(why);
        }
    }

    /// Move what the daemon sent into the inbox; why the link ended, if it did.
    fn read_link(&mut self) -> Option<String> {
        let link = self.link.as_mut()?;
        let inbox = &mut self.inbox;
        match link.read(&mut |m| inbox.push_back(m)) {
            Ok(ReadEnd::Drained) => {
                self.more_to_read = false;
                None
            }
            Ok(ReadEnd::More) => {
                self.more_to_read = true;
                None
            }
            Ok(ReadEnd::Lost(why)) => Some(why),
            Err(e) => Some(e.to_string()),
        }
    }

    /// Act on the inbox in order; with `until_reply`, stop right after an
    /// answer to a request so the requester sees it before what follows.
    fn pump(&mut self, until_reply: bool) {
        while let Some(frame) = self.inbox.pop_front() {
            if self.on_frame(frame) && until_reply {
                return;
            }
        }
    }

    /// Write what is buffered for the daemon (and RDP segments that waited
    /// for room).
    pub fn handle_writable(&mut self) {
        self.flush_link();
        if self.rdp.is_some() {
            self.rdp_pump();
            self.flush_link();
        }
    }

    /// Do what is due at `now`: a reconnect attempt, SFP timeouts, RDP
    /// timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.more_to_read {
            self.handle_readable();
        }
        self.pump(false);
        let ms = self.core_now(now);
        for e in self.sockets.values_mut() {
            for s in &mut e.sfp {
                if s.rx.handle_timeout(ms).is_err() {
                    e.stats.sfp_errors += 1;
                }
            }
        }
        self.rdp_handle_timeout(now);
        if self.link.is_none() && self.cfg.reconnect && self.retry_at.is_some_and(|t| now >= t) {
            self.try_reconnect();
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Queue an event; an application that never asks for them loses the
    /// oldest (counted), rather than growing memory without bound.
    pub(crate) fn push_event(&mut self, event: Event) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
            self.stats.events_dropped += 1;
        }
        self.events.push_back(event);
    }

    fn core_now(&self, now: Instant) -> csp_core::time::Instant {
        let ms = now.saturating_duration_since(self.epoch).as_millis();
        csp_core::time::Instant::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests;
