//! RDP connections through the client's one csp-core node (see
//! [`crate::rdp`] for the address arrangement).
//!
//! The node sees only RDP: segments from the daemon for a port held by a
//! listener or an outgoing connection go to `handle_frame`; what
//! `poll_transmit` gives goes to the daemon as DATA; its timers are part of
//! [`Client::poll_timeout`]. Received data is moved out of the node into a
//! bounded buffer per connection as it arrives, so acknowledgements and the
//! peer's close are never held up behind data the application has not read
//! yet (up to [`RX_BUFFER`] bytes).
//!
//! When the daemon goes away, every open connection fails at once ("csp-muxd
//! went away"): its peer can no longer be reached and whatever was not
//! acknowledged may be lost. The node is replaced by a fresh one (the old
//! connections' slots and ports are of no use any more); listeners are
//! listening again in it, and registered again with the daemon when the
//! client reconnects.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use csp_core::bind::{BindConfig, BindPort};
use csp_core::node::{
    ConnId, ConnectOptions, Event as NodeEvent, IfaceConfig, NodeConfig, NodeCounters, NodeError,
    SocketId, SocketOptions, SynLimits,
};
use csp_core::route::IfaceId;
use csp_core::{Addr, Header, Port, Version};
use csp_ipc::Message;

use super::{Client, Pending};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::options::Options;
use crate::rdp::{
    fail_text, Conn, ConnCounters, ConnOptions, ConnState, Listener, RdpNode, MAX_SEGMENT,
    RX_BUFFER,
};
use crate::socket::{Bind, Socket};

/// Highest port the node binds by number. The node's port table insists on
/// an ephemeral range above its bindable ports, so port 63 is its (only)
/// ephemeral port: a connection from daemon-given port 63 takes it from
/// there (see `start_connect`).
const NODE_MAX_BIND: u8 = 62;

/// Stack for the thread that builds a node: the node is a large value
/// (every buffer inline) and is built on the stack before it is boxed,
/// which a test thread's 2 MiB might not hold.
const NODE_BUILD_STACK: usize = 16 << 20;

/// The client's RDP half: the node and what the application holds in it.
pub(crate) struct Rdp {
    node: Box<RdpNode>,
    iface: IfaceId,
    conns: HashMap<u64, ConnEntry>,
    by_node: HashMap<ConnId, u64>,
    listeners: HashMap<u64, ListenerEntry>,
    next_id: u64,
    /// `poll_transmit`'s buffer.
    frame: Vec<u8>,
    /// `recv_conn`'s buffer.
    segment: Vec<u8>,
    /// Segments from the daemon the node did not take (logged at debug).
    pub(crate) dropped: u64,
    /// The SYN limits every node of this client is built with.
    syn: SynLimits,
}

struct ConnEntry {
    /// The node's connection; `None` once the node is done with it.
    node: Option<ConnId>,
    /// An outgoing connection's source port, registered with the daemon.
    socket: Option<Socket>,
    /// The listener that accepted it.
    listener: Option<u64>,
    remote: (u16, u8),
    state: ConnState,
    segment: usize,
    rx: VecDeque<u8>,
    last_sent: Option<u16>,
    acked: Option<u16>,
    /// Its owner gave up waiting for the close: forgotten once the node ends it.
    detached: bool,
}

impl ConnEntry {
    fn finished(&self) -> bool {
        matches!(self.state, ConnState::Closed(_) | ConnState::Failed(_))
    }
}

struct ListenerEntry {
    socket: Socket,
    node_socket: Option<SocketId>,
    port: u8,
    options: ConnOptions,
    /// Accepted, not yet handed to the application.
    queue: VecDeque<u64>,
    /// Closed by the application while connections it accepted live on:
    /// the port stays registered with the daemon until they end.
    closing: bool,
}

/// A fresh node whose one interface is the daemon (MTU as HELLO_ACK said,
/// plus the v2 header) and whose default route points there. Built on a
/// thread of its own with a stack big enough for it; fails only if no
/// thread can be started.
fn build_node(mtu: usize, seed: u64, syn: SynLimits) -> std::io::Result<(Box<RdpNode>, IfaceId)> {
    let ports =
        BindConfig::new(NODE_MAX_BIND, NODE_MAX_BIND + 1, Port::MAX).unwrap_or(BindConfig::DEFAULT);
    let config = NodeConfig {
        seed,
        ports,
        // The daemon answers the services; the node only runs connections.
        services: false,
        syn,
        ..NodeConfig::new(Addr::LOCAL)
    };
    let mut node = std::thread::Builder::new()
        .name("csp-node-build".into())
        .stack_size(NODE_BUILD_STACK)
        .spawn(move || make_node(config))?
        .join()
        .map_err(|_| std::io::Error::other("building the RDP node failed"))?;
    let frame_mtu = mtu + Version::V2.header_len();
    // One interface and one route in a node built for exactly that: these
    // can not fail.
    let iface = node
        .add_iface(IfaceConfig::new("IPC", Version::V2, frame_mtu))
        .unwrap_or(IfaceId(0));
    let _ = node.routes_mut().set_default(iface, None);
    Ok((node, iface))
}

/// The node, built on the stack and boxed. Never inlined: its frame holds
/// the whole node and must stay on the builder thread's big stack (an
/// optimised build would otherwise reserve it in its caller's frame).
#[inline(never)]
fn make_node(config: NodeConfig) -> Box<RdpNode> {
    Box::new(RdpNode::new(config))
}

/// Rewrite the destination (or source) address of a v2 frame in place.
fn rewrite(frame: &mut [u8], f: impl FnOnce(&mut Header)) -> bool {
    let Ok(mut h) = Header::parse(frame, Version::V2) else {
        return false;
    };
    f(&mut h);
    h.emit(frame, Version::V2).is_ok()
}

impl Rdp {
    fn new(mtu: usize, seed: u64, syn: SynLimits) -> Result<Rdp> {
        let (node, iface) = build_node(mtu, seed, syn).map_err(Error::io("starting RDP"))?;
        Ok(Rdp {
            syn,
            node,
            iface,
            conns: HashMap::new(),
            by_node: HashMap::new(),
            listeners: HashMap::new(),
            next_id: 1,
            frame: vec![0; RdpNode::MAX_FRAME_LEN],
            segment: vec![0; MAX_SEGMENT],
            dropped: 0,
        })
    }

    /// Replace the node by a fresh one (for `mtu`) with the listeners
    /// listening in it; the old node's connections are gone with it.
    fn renew(&mut self, mtu: usize, seed: u64) {
        let (node, iface) = match build_node(mtu, seed, self.syn) {
            Ok(n) => n,
            Err(e) => {
                // The old node stays: its connections fail by their own
                // timers (they are reported failed already).
                log::warn!("RDP: no fresh node ({e}); keeping the old one");
                return;
            }
        };
        self.node = node;
        self.iface = iface;
        self.by_node.clear();
        let listeners: Vec<(u64, u8, ConnOptions)> = self
            .listeners
            .iter()
            .filter(|(_, l)| !l.closing)
            .map(|(&id, l)| (id, l.port, l.options))
            .collect();
        for (id, port, options) in listeners {
            let s = self.listen_in_node(port, &options);
            if let Err(e) = &s {
                log::warn!("RDP listener on port {port} lost: {e}");
            }
            if let Some(l) = self.listeners.get_mut(&id) {
                l.node_socket = s.ok();
            }
        }
    }

    fn new_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn entry(&self, conn: &Conn) -> Result<&ConnEntry> {
        self.conns.get(&conn.id).ok_or(Error::UnknownConn)
    }

    fn entry_mut(&mut self, conn: &Conn) -> Result<&mut ConnEntry> {
        self.conns.get_mut(&conn.id).ok_or(Error::UnknownConn)
    }

    fn listen_in_node(&mut self, port: u8, options: &ConnOptions) -> Result<SocketId> {
        let port = Port::new(port).map_err(|_| Error::InvalidPort(port))?;
        let opts = SocketOptions {
            max_conns: options.backlog,
            rdp_options: options.rdp,
            ..SocketOptions::listener().with_security(options.security())
        };
        self.node
            .bind(BindPort::Port(port), opts)
            .map_err(Error::Node)
    }

    /// Act on one node event.
    fn on_event(&mut self, now: csp_core::time::Instant, ev: NodeEvent, out: &mut Vec<Event>) {
        match ev {
            NodeEvent::Accepted { socket, conn } => {
                let found = self
                    .listeners
                    .iter()
                    .find(|(_, l)| l.node_socket == Some(socket) && !l.closing)
                    .map(|(&id, l)| (id, l.options.segment));
                let Some((lid, segment)) = found else {
                    // Nobody to hand it to (the listener is going away).
                    let _ = self.node.close(now, conn);
                    return;
                };
                let remote = self
                    .node
                    .conn_endpoints(conn)
                    .map_or((0, 0), |(a, p, _)| (a.get(), p.get()));
                let id = self.new_id();
                self.conns.insert(
                    id,
                    ConnEntry {
                        node: Some(conn),
                        socket: None,
                        listener: Some(lid),
                        remote,
                        state: ConnState::Open,
                        segment,
                        rx: VecDeque::new(),
                        last_sent: None,
                        acked: None,
                        detached: false,
                    },
                );
                self.by_node.insert(conn, id);
                if let Some(l) = self.listeners.get_mut(&lid) {
                    l.queue.push_back(id);
                }
            }
            NodeEvent::Connected { conn } => {
                if let Some(e) = self.by_node(conn) {
                    if e.state == ConnState::Connecting {
                        e.state = ConnState::Open;
                    }
                }
            }
            NodeEvent::Acknowledged { conn, through } => {
                if let Some(e) = self.by_node(conn) {
                    e.acked = Some(through);
                }
            }
            NodeEvent::Closed { conn, reason } => {
                let Some(id) = self.by_node.remove(&conn) else {
                    return;
                };
                if let Some(e) = self.conns.get_mut(&id) {
                    e.node = None;
                    let peer = e.state != ConnState::Closing;
                    e.state = ConnState::Closed(reason);
                    if peer && !e.detached {
                        out.push(Event::ConnectionClosed { conn: Conn { id } });
                    }
                }
            }
            NodeEvent::Failed { conn, reason } => {
                let Some(id) = self.by_node.remove(&conn) else {
                    return;
                };
                if let Some(e) = self.conns.get_mut(&id) {
                    e.node = None;
                    let reason = match (&e.state, reason) {
                        (ConnState::Connecting, csp_core::node::FailReason::Reset) => format!(
                            "{}:{} refused the connection (nothing listening there, or \
                             not with these CRC/HMAC options)",
                            e.remote.0, e.remote.1
                        ),
                        _ => fail_text(reason),
                    };
                    e.state = ConnState::Failed(reason.clone());
                    if !e.detached {
                        out.push(Event::ConnectionFailed {
                            conn: Conn { id },
                            reason,
                        });
                    }
                }
            }
            NodeEvent::Error(e) => log::warn!("RDP node: {e}"),
            NodeEvent::Received { .. }
            | NodeEvent::Readable { .. }
            | NodeEvent::Reboot
            | NodeEvent::Shutdown => {}
        }
    }

    fn by_node(&mut self, conn: ConnId) -> Option<&mut ConnEntry> {
        let id = self.by_node.get(&conn)?;
        self.conns.get_mut(id)
    }

    /// Move received data out of the node while the buffers have room;
    /// true if any moved.
    fn fill_buffers(&mut self) -> bool {
        let mut moved = false;
        for e in self.conns.values_mut() {
            let Some(id) = e.node else { continue };
            while e.rx.len() + MAX_SEGMENT <= RX_BUFFER {
                match self.node.recv_conn(id, &mut self.segment) {
                    Ok(n) => {
                        e.rx.extend(&self.segment[..n]);
                        moved = true;
                    }
                    Err(_) => break,
                }
            }
        }
        moved
    }

    /// Move everything the node still holds for each connection into the
    /// connection's buffer, past [`RX_BUFFER`] (by at most what the node's
    /// receive queue holds): RDP acknowledged it, so it is the
    /// application's even when the node is about to be dropped.
    fn take_all_received(&mut self) {
        for e in self.conns.values_mut() {
            let Some(id) = e.node else { continue };
            while let Ok(n) = self.node.recv_conn(id, &mut self.segment) {
                e.rx.extend(&self.segment[..n]);
            }
        }
    }

    /// Forget connections whose owner left them and that are over; the
    /// sockets they held, to give back to the daemon.
    fn reap(&mut self, now: csp_core::time::Instant, release: &mut Vec<Socket>) {
        let done: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, e)| e.detached && e.finished())
            .map(|(&id, _)| id)
            .collect();
        for id in done {
            self.forget(now, id, release);
        }
    }

    /// Remove a connection; its socket (and a closing listener's whose
    /// last connection it was) go to `release`.
    fn forget(&mut self, now: csp_core::time::Instant, id: u64, release: &mut Vec<Socket>) {
        let Some(e) = self.conns.remove(&id) else {
            return;
        };
        if let Some(c) = e.node {
            self.by_node.remove(&c);
            // Still running: end it (a reset or an abort; the node frees the slot).
            let _ = self.node.close(now, c);
        }
        release.extend(e.socket);
        if let Some(lid) = e.listener {
            if let Some(l) = self.listeners.get_mut(&lid) {
                l.queue.retain(|c| *c != id);
            }
            let orphaned = self.listeners.get(&lid).is_some_and(|l| l.closing)
                && !self.conns.values().any(|c| c.listener == Some(lid));
            if orphaned {
                if let Some(l) = self.listeners.remove(&lid) {
                    release.push(l.socket);
                }
            }
        }
    }
}

impl Client {
    // ---- the node's plumbing ---------------------------------------------

    /// The RDP half, created on first use.
    fn rdp(&mut self) -> Result<&mut Rdp> {
        if self.rdp.is_none() {
            let seed = self.seed();
            self.rdp = Some(Rdp::new(self.mtu, seed, self.cfg.syn_limits)?);
        }
        self.rdp.as_mut().ok_or(Error::UnknownConn)
    }

    fn seed(&mut self) -> u64 {
        self.nonce = self
            .nonce
            .wrapping_mul(0x9e37_79b9)
            .wrapping_add(0x7f4a_7c15);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        t ^ (u64::from(self.nonce) << 32) ^ u64::from(std::process::id())
    }

    /// An RDP segment from the daemon for a port of ours.
    pub(super) fn rdp_input(&mut self, frame: &[u8]) {
        let now = self.core_now(Instant::now());
        let Some(rdp) = self.rdp.as_mut() else {
            return;
        };
        let mut frame = frame.to_vec();
        // For us means for the node's own address (see crate::rdp).
        if !rewrite(&mut frame, |h| h.dst = Addr::LOCAL) {
            rdp.dropped += 1;
            return;
        }
        if let Err(why) = rdp.node.handle_frame(now, rdp.iface, &frame) {
            rdp.dropped += 1;
            log::debug!("RDP segment dropped: {why}");
        }
        self.rdp_pump();
    }

    /// Drain the node: events acted on, data moved to the connections'
    /// buffers, segments queued for the daemon (while its buffer has room;
    /// the rest waits in the node, which is bounded by the windows).
    pub(super) fn rdp_pump(&mut self) {
        let now = self.core_now(Instant::now());
        let daemon = self.node;
        let limit = self.cfg.write_buffer;
        let mut events = Vec::new();
        let mut release = Vec::new();
        let Client { rdp, link, .. } = self;
        let Some(rdp) = rdp.as_mut() else {
            return;
        };
        loop {
            let mut progress = false;
            while let Some(ev) = rdp.node.poll_event() {
                progress = true;
                rdp.on_event(now, ev, &mut events);
            }
            progress |= rdp.fill_buffers();
            while link.as_ref().is_none_or(|l| l.pending_write() < limit) {
                let Some(t) = rdp.node.poll_transmit(now, &mut rdp.frame) else {
                    break;
                };
                progress = true;
                let frame = &mut rdp.frame[..t.len];
                // From the node's address 0 to the daemon's own.
                rewrite(frame, |h| h.src = daemon);
                if let Some(link) = link.as_mut() {
                    if let Err(e) = link.queue(&Message::Data { frame }) {
                        log::warn!("RDP segment not sent: {e}");
                    }
                }
            }
            if !progress {
                break;
            }
        }
        rdp.reap(now, &mut release);
        for e in events {
            self.push_event(e);
        }
        for s in release {
            self.release(s);
        }
    }

    /// Give a socket's port back without waiting for the answer.
    fn release(&mut self, socket: Socket) {
        let Some(entry) = self.sockets.remove(&socket.id) else {
            return;
        };
        if !entry.registered {
            return;
        }
        let unregister = Message::Unregister {
            addr: csp_ipc::ADDR_DAEMON,
            port: entry.port,
        };
        if self
            .link
            .as_mut()
            .is_some_and(|l| l.queue(&unregister).is_ok())
        {
            self.pending.push_back(Pending::Abandoned);
        }
    }

    /// The daemon went away: every connection fails, the node starts afresh
    /// with the listeners in it.
    pub(super) fn rdp_link_lost(&mut self, reason: &str) {
        if self.rdp.is_none() {
            return;
        }
        let now = self.core_now(Instant::now());
        let (mtu, seed) = (self.mtu, self.seed());
        let Some(rdp) = self.rdp.as_mut() else {
            return;
        };
        // What RDP acknowledged must stay readable: it would go with the node.
        rdp.take_all_received();
        let why = format!("csp-muxd went away ({reason})");
        let mut events = Vec::new();
        let mut gone = Vec::new();
        for (&id, e) in rdp.conns.iter_mut() {
            if !e.finished() {
                e.state = ConnState::Failed(why.clone());
                if !e.detached {
                    events.push(Event::ConnectionFailed {
                        conn: Conn { id },
                        reason: why.clone(),
                    });
                }
            }
            e.node = None;
            // The daemon forgot the port with us; it is not registered again.
            gone.extend(e.socket.take());
        }
        rdp.by_node.clear();
        // Accepted connections nobody took yet, and connections nobody
        // waits for, are of no interest to anyone.
        let unclaimed: Vec<u64> = rdp
            .listeners
            .values_mut()
            .flat_map(|l| l.queue.drain(..))
            .chain(
                rdp.conns
                    .iter()
                    .filter(|(_, e)| e.detached)
                    .map(|(&id, _)| id),
            )
            .collect();
        for id in unclaimed {
            rdp.forget(now, id, &mut gone);
        }
        rdp.renew(mtu, seed);
        // Closing listeners have no connections any more.
        let closing: Vec<u64> = rdp
            .listeners
            .iter()
            .filter(|(_, l)| l.closing)
            .map(|(&id, _)| id)
            .collect();
        for id in closing {
            if let Some(l) = rdp.listeners.remove(&id) {
                gone.push(l.socket);
            }
        }
        for s in gone {
            self.sockets.remove(&s.id);
        }
        for e in events {
            self.push_event(e);
        }
    }

    /// Connected again: a daemon with another MTU needs a node whose
    /// interface says so (nothing runs in it yet: connections do not
    /// outlive a disconnect).
    pub(super) fn rdp_reconnected(&mut self) {
        let (mtu, seed) = (self.mtu, self.seed());
        let Some(rdp) = self.rdp.as_mut() else {
            return;
        };
        let current = rdp.node.iface(rdp.iface).map(|i| i.mtu);
        if current != Some(mtu + Version::V2.header_len()) {
            rdp.renew(mtu, seed);
        }
    }

    /// When the node's next timer is due.
    pub(super) fn rdp_poll_timeout(&self) -> Option<Instant> {
        let t = self.rdp.as_ref()?.node.poll_timeout()?;
        Some(self.epoch + Duration::from_millis(t.as_millis()))
    }

    /// Run the node's timers due at `now`, and send what they produced.
    pub(super) fn rdp_handle_timeout(&mut self, now: Instant) {
        let now = self.core_now(now);
        let Some(rdp) = self.rdp.as_mut() else {
            return;
        };
        if rdp.node.poll_timeout().is_some_and(|t| t <= now) {
            rdp.node.handle_timeout(now);
        }
        self.rdp_pump();
        self.flush_link();
    }

    /// Wait (at most until `deadline`) for `check` to give an answer,
    /// serving everything meanwhile.
    fn wait_for<T>(
        &mut self,
        deadline: Option<Instant>,
        mut check: impl FnMut(&mut Client) -> Option<Result<T>>,
    ) -> Result<T> {
        loop {
            if let Some(r) = check(self) {
                return r;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(Error::Timeout);
            }
            if let Err(e) = self.wait(deadline.map(|d| d - now)) {
                // A lost daemon fails the connections first: say that.
                return check(self).unwrap_or(Err(e));
            }
        }
    }

    fn after_app_call(&mut self) {
        self.rdp_pump();
        self.flush_link();
    }

    // ---- listening -----------------------------------------------------

    /// Accept RDP connections on `port` (registered with the daemon, like
    /// [`bind`](Self::bind)); take them with [`accept`](Self::accept).
    /// A listener outlives a daemon restart (its port is registered again),
    /// its connections do not.
    pub fn listen(&mut self, port: u8, options: ConnOptions) -> Result<Listener> {
        options.check(self.mtu)?;
        if port > NODE_MAX_BIND {
            return Err(Error::InvalidPort(port));
        }
        self.rdp()?;
        let socket = self.bind_entry(Bind::Port(port), Options::NONE, true)?;
        let rdp = self.rdp()?;
        let node_socket = match rdp.listen_in_node(port, &options) {
            Ok(s) => s,
            Err(e) => {
                let _ = self.close(socket);
                return Err(e);
            }
        };
        let id = rdp.new_id();
        rdp.listeners.insert(
            id,
            ListenerEntry {
                socket,
                node_socket: Some(node_socket),
                port,
                options,
                queue: VecDeque::new(),
                closing: false,
            },
        );
        Ok(Listener { id })
    }

    /// The next accepted connection, if one is waiting (reads nothing new
    /// beyond what already arrived).
    pub fn try_accept(&mut self, listener: &Listener) -> Result<Option<Conn>> {
        self.pump(false);
        self.rdp_pump();
        let rdp = self.rdp.as_mut().ok_or(Error::UnknownConn)?;
        let l = rdp
            .listeners
            .get_mut(&listener.id)
            .filter(|l| !l.closing)
            .ok_or(Error::UnknownConn)?;
        let socket = l.socket;
        if let Some(id) = l.queue.pop_front() {
            return Ok(Some(Conn { id }));
        }
        // Its port could not be registered again after a reconnect.
        if let (Some(status), true) = (self.entry(&socket)?.lost, self.link.is_some()) {
            return Err(crate::error::register_error(
                self.entry(&socket)?.port,
                status,
            ));
        }
        Ok(None)
    }

    /// Wait (at most `timeout`; `None` = for ever) for a connection to
    /// `listener`. Keeps waiting across a daemon restart.
    pub fn accept(&mut self, listener: &Listener, timeout: Option<Duration>) -> Result<Conn> {
        let deadline = timeout.map(|t| Instant::now() + t);
        self.wait_for(deadline, |c| c.try_accept(listener).transpose())
    }

    /// Stop accepting. Connections it accepted live on (the port stays
    /// registered with the daemon until the last of them ends); accepted
    /// connections not yet taken are reset.
    pub fn close_listener(&mut self, listener: Listener) -> Result<()> {
        let now = self.core_now(Instant::now());
        let rdp = self.rdp.as_mut().ok_or(Error::UnknownConn)?;
        let l = rdp
            .listeners
            .get_mut(&listener.id)
            .filter(|l| !l.closing)
            .ok_or(Error::UnknownConn)?;
        l.closing = true;
        let waiting: Vec<u64> = l.queue.drain(..).collect();
        if let Some(s) = l.node_socket.take() {
            let _ = rdp.node.unbind(s);
        }
        let mut release = Vec::new();
        for id in waiting {
            rdp.forget(now, id, &mut release);
        }
        let alive = rdp.conns.values().any(|c| c.listener == Some(listener.id));
        if !alive {
            if let Some(l) = rdp.listeners.remove(&listener.id) {
                release.push(l.socket);
            }
        }
        self.release_after_pump(release);
        Ok(())
    }

    // ---- connecting ----------------------------------------------------

    /// Open a connection to (`dst`, `dport`) and wait (at most `timeout`;
    /// `None`: as long as RDP keeps trying) for the handshake. The source
    /// port is an ephemeral port registered with the daemon. Address 0 is
    /// this node (the daemon's address). No answer in time, or a refusal,
    /// is [`Error::ConnectionFailed`] saying which.
    pub fn connect_to(
        &mut self,
        dst: u16,
        dport: u8,
        options: ConnOptions,
        timeout: Option<Duration>,
    ) -> Result<Conn> {
        let conn = self.start_connect(dst, dport, options)?;
        let deadline = timeout.map(|t| Instant::now() + t);
        let result = self.wait_for(deadline, |c| match c.conn_state(&conn) {
            Ok(ConnState::Connecting) => None,
            Ok(ConnState::Open) => Some(Ok(())),
            Ok(ConnState::Failed(reason)) => Some(Err(Error::ConnectionFailed {
                reason: format!("connecting to {dst}:{dport}: {reason}"),
            })),
            Ok(other) => Some(Err(Error::ConnectionFailed {
                reason: format!("connecting to {dst}:{dport}: ended as {other:?}"),
            })),
            Err(e) => Some(Err(e)),
        });
        match result {
            Ok(()) => Ok(conn),
            Err(e) => {
                let e = match e {
                    Error::Timeout => Error::ConnectionFailed {
                        reason: format!(
                            "no answer from {dst}:{dport} within {:.1} s: is anything \
                             listening there (with RDP, and these CRC/HMAC options)?",
                            timeout.unwrap_or_default().as_secs_f64()
                        ),
                    },
                    e => e,
                };
                self.forget_conn(conn.id);
                Err(e)
            }
        }
    }

    /// Start opening a connection without waiting for the handshake (only
    /// for the daemon's answer to the port registration, a local round
    /// trip): [`conn_state`](Self::conn_state) says `Open` once it is
    /// done. The non-blocking counterpart of [`connect_to`](Self::connect_to).
    pub fn start_connect(&mut self, dst: u16, dport: u8, options: ConnOptions) -> Result<Conn> {
        options.check(self.mtu)?;
        let dst = if dst == 0 {
            self.node
        } else {
            Addr::new(dst).map_err(|_| Error::InvalidAddr(dst))?
        };
        let dport = Port::new(dport).map_err(|_| Error::InvalidPort(dport))?;
        if self.link.is_none() {
            return Err(self.disconnected());
        }
        self.rdp()?;
        let socket = self.bind_entry(Bind::Ephemeral, Options::NONE, true)?;
        let port = self.entry(&socket)?.port;
        let now = self.core_now(Instant::now());
        let rdp = self.rdp()?;
        let opts = ConnectOptions {
            prio: options.prio,
            security: options.security(),
            rdp: options.rdp,
        };
        let opened = match Port::new(port) {
            Ok(p) if port <= NODE_MAX_BIND => rdp.node.connect_from(now, p, dst, dport, &opts),
            // The node's one ephemeral port (63) is the port the daemon gave.
            _ => rdp.node.connect(now, dst, dport, &opts),
        };
        let node_conn = opened.and_then(|c| match rdp.node.conn_endpoints(c) {
            Ok((_, _, lport)) if lport.get() == port => Ok(c),
            _ => {
                let _ = rdp.node.close(now, c);
                Err(NodeError::NoFreeConnection)
            }
        });
        let node_conn = match node_conn {
            Ok(c) => c,
            Err(e) => {
                let _ = self.close(socket);
                return Err(match e {
                    NodeError::NoFreeConnection => Error::InvalidOptions(format!(
                        "no free RDP connection slot (at most {} per client)",
                        crate::rdp::MAX_CONNS
                    )),
                    e => Error::Node(e),
                });
            }
        };
        let id = rdp.new_id();
        rdp.conns.insert(
            id,
            ConnEntry {
                node: Some(node_conn),
                socket: Some(socket),
                listener: None,
                remote: (dst.get(), dport.get()),
                state: ConnState::Connecting,
                segment: options.segment,
                rx: VecDeque::new(),
                last_sent: None,
                acked: None,
                detached: false,
            },
        );
        rdp.by_node.insert(node_conn, id);
        self.after_app_call();
        Ok(Conn { id })
    }

    // ---- data ----------------------------------------------------------

    /// Queue as much of `data` as the window takes, cut into segments; the
    /// bytes queued. Errors are only the real ones: [`Error::WouldBlock`]
    /// (window full, or still connecting: nothing queued),
    /// [`Error::ConnectionFailed`], [`Error::ConnectionClosed`].
    pub fn try_send(&mut self, conn: &Conn, data: &[u8]) -> Result<usize> {
        self.pump(false);
        self.rdp_pump();
        let now = self.core_now(Instant::now());
        let rdp = self.rdp.as_mut().ok_or(Error::UnknownConn)?;
        let Rdp { node, conns, .. } = rdp;
        let e = conns.get_mut(&conn.id).ok_or(Error::UnknownConn)?;
        let id = match (&e.state, e.node) {
            (ConnState::Failed(reason), _) => {
                return Err(Error::ConnectionFailed {
                    reason: reason.clone(),
                })
            }
            (ConnState::Connecting, _) => return Err(Error::WouldBlock),
            (ConnState::Open, Some(id)) => id,
            _ => return Err(Error::ConnectionClosed),
        };
        let mut sent = 0;
        let mut failure = None;
        for chunk in data.chunks(e.segment) {
            match node.send(now, id, chunk) {
                Ok(seq) => {
                    e.last_sent = Some(seq);
                    sent += chunk.len();
                }
                Err(NodeError::WouldBlock) => break,
                Err(NodeError::Send(csp_rdp::SendError::Failed(r))) => {
                    failure = Some(Error::ConnectionFailed {
                        reason: fail_text(r),
                    });
                    break;
                }
                Err(NodeError::Send(csp_rdp::SendError::NotConnected)) => {
                    failure = Some(Error::ConnectionClosed);
                    break;
                }
                Err(e) => {
                    failure = Some(Error::Node(e));
                    break;
                }
            }
        }
        self.after_app_call();
        match (sent, failure) {
            (0, Some(e)) => Err(e),
            (0, None) if !data.is_empty() => Err(Error::WouldBlock),
            (n, _) => Ok(n),
        }
    }

    /// Queue all of `data`, waiting for the window while it is full (at
    /// most `timeout`; `None`: for as long as the connection lives: RDP
    /// fails it when the peer stops acknowledging). Returning means
    /// queued, not delivered: [`wait_acked`](Self::wait_acked) says when
    /// the peer has it.
    pub fn send(&mut self, conn: &Conn, data: &[u8], timeout: Option<Duration>) -> Result<()> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut sent = 0;
        while sent < data.len() {
            let r = self.wait_for(deadline, |c| match c.try_send(conn, &data[sent..]) {
                Err(Error::WouldBlock) => None,
                r => Some(r),
            });
            match r {
                Ok(n) => sent += n,
                Err(Error::Timeout) => return Err(Error::SendTimeout { sent }),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Copy received bytes into `buf`; how many. `Ok(0)` once the peer
    /// closed and everything was read; [`Error::WouldBlock`] if nothing is
    /// there yet; [`Error::ConnectionFailed`] once a failed connection's
    /// received data is all read.
    pub fn try_recv(&mut self, conn: &Conn, buf: &mut [u8]) -> Result<usize> {
        self.pump(false);
        self.rdp_pump();
        let rdp = self.rdp.as_mut().ok_or(Error::UnknownConn)?;
        let e = rdp.entry_mut(conn)?;
        if !e.rx.is_empty() {
            let n = buf.len().min(e.rx.len());
            for (dst, src) in buf.iter_mut().zip(e.rx.drain(..n)) {
                *dst = src;
            }
            // Room again: the node may hold more.
            self.after_app_call();
            return Ok(n);
        }
        match &e.state {
            ConnState::Closed(_) => Ok(0),
            ConnState::Failed(reason) => Err(Error::ConnectionFailed {
                reason: reason.clone(),
            }),
            _ => Err(Error::WouldBlock),
        }
    }

    /// Wait (at most `timeout`; `None` = until the connection ends) for
    /// received bytes; as [`try_recv`](Self::try_recv) otherwise.
    pub fn recv(
        &mut self,
        conn: &Conn,
        buf: &mut [u8],
        timeout: Option<Duration>,
    ) -> Result<usize> {
        let deadline = timeout.map(|t| Instant::now() + t);
        self.wait_for(deadline, |c| match c.try_recv(conn, buf) {
            Err(Error::WouldBlock) => None,
            r => Some(r),
        })
    }

    /// True once the peer acknowledged everything sent so far (also on a
    /// connection that closed normally: closing waits for that). A failed
    /// connection is [`Error::ConnectionFailed`].
    pub fn is_acked(&mut self, conn: &Conn) -> Result<bool> {
        let rdp = self.rdp.as_ref().ok_or(Error::UnknownConn)?;
        let e = rdp.entry(conn)?;
        match &e.state {
            ConnState::Failed(reason) => Err(Error::ConnectionFailed {
                reason: reason.clone(),
            }),
            ConnState::Closed(_) => Ok(true),
            _ => Ok(e.last_sent.is_none() || e.acked == e.last_sent),
        }
    }

    /// Wait (at most `timeout`; `None`: as long as RDP keeps trying) until
    /// the peer acknowledged everything sent so far.
    pub fn wait_acked(&mut self, conn: &Conn, timeout: Option<Duration>) -> Result<()> {
        let deadline = timeout.map(|t| Instant::now() + t);
        self.wait_for(deadline, |c| match c.is_acked(conn) {
            Ok(false) => None,
            Ok(true) => Some(Ok(())),
            Err(e) => Some(Err(e)),
        })
    }

    // ---- closing and state -----------------------------------------------

    /// Begin RDP's close (after everything sent is acknowledged) without
    /// waiting: the handle stays, [`Client::conn_state`] tells when it is
    /// `Closed` (or `Failed`), and [`Client::close_conn`] then releases it
    /// at once. For event loops serving many connections, where one peer's
    /// slow close must not hold up the others.
    pub fn start_close(&mut self, conn: &Conn) -> Result<()> {
        let now = self.core_now(Instant::now());
        let rdp = self.rdp.as_mut().ok_or(Error::UnknownConn)?;
        let Rdp { node, conns, .. } = rdp;
        let e = conns.get_mut(&conn.id).ok_or(Error::UnknownConn)?;
        if let (Some(id), ConnState::Connecting | ConnState::Open) = (e.node, &e.state) {
            e.state = ConnState::Closing;
            let _ = node.close(now, id);
        }
        self.after_app_call();
        Ok(())
    }

    /// Close: RDP's close (after everything sent is acknowledged), then the
    /// source port goes back to the daemon. `Ok` means the connection ended
    /// with all data acknowledged; [`Error::ConnectionFailed`] that it did
    /// not. After `timeout` ([`Error::Timeout`]) the close finishes in the
    /// background; the handle is gone either way.
    pub fn close_conn(&mut self, conn: Conn, timeout: Option<Duration>) -> Result<()> {
        self.start_close(&conn)?;
        let deadline = timeout.map(|t| Instant::now() + t);
        let result = self.wait_for(deadline, |c| match c.conn_state(&conn) {
            Ok(ConnState::Closed(_)) => Some(Ok(())),
            Ok(ConnState::Failed(reason)) => Some(Err(Error::ConnectionFailed { reason })),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        });
        match result {
            Err(Error::Timeout) => {
                if let Some(e) = self.rdp.as_mut().and_then(|r| r.conns.get_mut(&conn.id)) {
                    e.detached = true;
                }
                Err(Error::Timeout)
            }
            other => {
                self.forget_conn(conn.id);
                other
            }
        }
    }

    fn forget_conn(&mut self, id: u64) {
        let now = self.core_now(Instant::now());
        let mut release = Vec::new();
        if let Some(rdp) = self.rdp.as_mut() {
            rdp.forget(now, id, &mut release);
        }
        self.release_after_pump(release);
    }

    /// Send what the node has (a reset or abort of a connection just
    /// forgotten leaves from its port), then give the ports back: the
    /// daemon would take a segment from a port already given back for a
    /// spoofed one.
    fn release_after_pump(&mut self, release: Vec<Socket>) {
        self.rdp_pump();
        for s in release {
            self.release(s);
        }
        self.flush_link();
    }

    /// Where the connection is in its life.
    pub fn conn_state(&self, conn: &Conn) -> Result<ConnState> {
        let rdp = self.rdp.as_ref().ok_or(Error::UnknownConn)?;
        Ok(rdp.entry(conn)?.state.clone())
    }

    /// The peer's address and port.
    pub fn conn_peer(&self, conn: &Conn) -> Result<(u16, u8)> {
        let rdp = self.rdp.as_ref().ok_or(Error::UnknownConn)?;
        Ok(rdp.entry(conn)?.remote)
    }

    /// Received bytes waiting to be read.
    pub fn conn_pending(&self, conn: &Conn) -> Result<usize> {
        let rdp = self.rdp.as_ref().ok_or(Error::UnknownConn)?;
        Ok(rdp.entry(conn)?.rx.len())
    }

    /// RDP's counters of a live connection (`None` once RDP is done with it).
    pub fn conn_counters(&self, conn: &Conn) -> Result<Option<ConnCounters>> {
        let rdp = self.rdp.as_ref().ok_or(Error::UnknownConn)?;
        let e = rdp.entry(conn)?;
        Ok(e.node.and_then(|id| rdp.node.conn_counters(id).ok()))
    }

    /// The RDP node's counters (`None` before the first RDP call), and RDP
    /// segments from the daemon it did not take.
    pub fn rdp_counters(&self) -> Option<(NodeCounters, u64)> {
        self.rdp.as_ref().map(|r| (*r.node.counters(), r.dropped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_built_off_the_callers_stack_and_routes_everything_out() {
        let (mut node, iface) = build_node(4000, 1, SynLimits::DEFAULT).unwrap();
        assert_eq!(node.addr(), Addr::LOCAL);
        // The daemon's address (and any other) goes out, not to the loopback.
        let c = node
            .connect(
                csp_core::time::Instant::ZERO,
                Addr::new(1).unwrap(),
                Port::new(10).unwrap(),
                &ConnectOptions::default(),
            )
            .unwrap();
        let mut buf = vec![0u8; RdpNode::MAX_FRAME_LEN];
        let t = node
            .poll_transmit(csp_core::time::Instant::ZERO, &mut buf)
            .unwrap();
        assert_eq!(t.iface, iface);
        let h = Header::parse(&buf[..t.len], Version::V2).unwrap();
        assert_eq!((h.dst.get(), h.dport.get(), h.sport.get()), (1, 10, 63));
        let _ = node.close(csp_core::time::Instant::ZERO, c);
    }

    #[test]
    fn rewriting_keeps_the_rest_of_the_header() {
        let h = Header {
            prio: csp_core::Prio::High,
            src: Addr::new(7).unwrap(),
            dst: Addr::new(1).unwrap(),
            dport: Port::new(10).unwrap(),
            sport: Port::new(20).unwrap(),
            flags: csp_core::Flags::RDP.with(csp_core::Flags::CRC32),
        };
        let mut frame = vec![0u8; 10];
        h.emit(&mut frame, Version::V2).unwrap();
        frame[6..].copy_from_slice(b"data");
        assert!(rewrite(&mut frame, |h| h.dst = Addr::LOCAL));
        let got = Header::parse(&frame, Version::V2).unwrap();
        assert_eq!(
            got,
            Header {
                dst: Addr::LOCAL,
                ..h
            }
        );
        assert_eq!(&frame[6..], b"data");
        assert!(!rewrite(&mut [0u8; 3], |h| h.dst = Addr::LOCAL));
    }
}
