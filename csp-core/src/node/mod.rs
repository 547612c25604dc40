//! The sans-IO CSP node: addresses, interfaces, routes, bound ports,
//! connectionless sockets, RDP connections and the standard services,
//! composed into one object that the caller drives.
//!
//! # Driving it
//!
//! The caller owns every link, the clock and the application loop:
//!
//! - [`Node::handle_frame`]`(now, iface, frame)`: a frame (CSP header, data,
//!   trailers; link framing such as KISS already removed) arrived.
//! - [`Node::poll_transmit`]`(now, buf)`: drain until `None`; each
//!   [`Transmit`] says which interface (and next hop) `buf[..len]` goes to.
//! - [`Node::poll_event`]: drain until `None`: packets received, connections
//!   accepted, data readable, acknowledgements, closes, reboot requests.
//! - [`Node::poll_timeout`] / [`Node::handle_timeout`]`(now)`: timers.
//! - Application side: [`Node::bind`], [`Node::connect`], [`Node::send`],
//!   [`Node::send_to`], [`Node::reply`], [`Node::recv`], [`Node::recv_conn`],
//!   [`Node::close`], [`Node::unbind`].
//!
//! After any input, drain `poll_transmit` and `poll_event`, then wait for
//! I/O or `poll_timeout`. No call blocks, sleeps, allocates or reads a
//! clock; time is an argument ([`Instant`], milliseconds).
//!
//! # Capacities
//!
//! Everything is a fixed array sized by const generics:
//!
//! | parameter | what |
//! |-----------|------|
//! | `PKT`     | bytes of one packet buffer (6 bytes of header room, then data and trailers); also the largest frame handled |
//! | `RXQ`     | connectionless packets queued for all sockets together (shared pool) |
//! | `TXQ`     | outgoing frames queued (connectionless sends, service replies, forwarded and loopback packets) |
//! | `BINDS`   | bound ports: sockets plus one per outgoing connection (its ephemeral port) |
//! | `CONNS`   | RDP connection slots |
//! | `W`, `SEG`| per connection: segments in flight (and held on receive), user bytes per segment |
//! | `IFACES`  | interfaces |
//! | `ROUTES`  | routing table entries |
//!
//! RDP segments are not queued: a connection's next segment is pulled when
//! `poll_transmit` has nothing queued, so `TXQ` stays small. A segment with
//! its RDP header and HMAC + CRC trailers must fit a packet buffer
//! (`SEG + 5 + 8 <= PKT - 6`, checked at compile time when `new` is used),
//! and the frame must fit the interface MTU (else it is dropped and
//! counted; there is no per-connection SFP).
//!
//! # Decisions
//!
//! - **Identity.** One own address; address 0 and the broadcast address of
//!   the receiving interface's version are delivered locally too. A packet
//!   sent to the own address or to 0 goes through an internal loopback
//!   (queued, delivered inside `poll_transmit`, at most [`LOOPBACK_BUDGET`]
//!   per call, so two services answering each other can not hang the node).
//!   Loopback packets use version 2 headers and carry their trailers.
//! - **Forwarding** (off by default): a packet for another address is routed
//!   out with its header re-emitted for the outgoing interface's version and
//!   its data and trailers untouched. A packet is never sent back out of the
//!   interface it came from (routing loops are a configuration error).
//! - **Ports.** Sockets bind a port or the wildcard through [`PortTable`];
//!   outgoing connections take an ephemeral port from the same table. An
//!   exactly bound port wins over the services, which win over a wildcard
//!   socket, for ports 0..=6 on this node.
//! - **Receive.** Connectionless packets are verified with the socket's
//!   [`SecurityOptions`] and kept (trailers stripped) in a pool shared by all
//!   sockets, with an optional per-socket limit; [`Event::Received`] announces
//!   each, [`Node::recv`] copies one out.
//! - **RDP.** A SYN to a socket with `rdp` set opens a connection in a free
//!   slot (bounded by the slots and the socket's `max_conns`); the app hears
//!   [`Event::Accepted`] when the handshake completes. An accepted
//!   connection mirrors the CRC/HMAC of the SYN (as libcsp does), keyed by the
//!   listener's options; the listener's checks decide what a SYN must carry.
//!   Segments are `data | RDP header` then HMAC, then CRC, with the RDP flag
//!   set; control segments go at priority High, data at the connection's
//!   (for an accepted one: the SYN's, as libcsp inherits it). Received data
//!   is read one segment at a time: a one-segment read-ahead per connection
//!   holds it ([`Event::Readable`], [`Node::recv_conn`]). While it is unread
//!   the connection's later events (acknowledgements, close) wait too.
//! - **Connection life.** A slot is freed by the first `poll_transmit`
//!   after the connection finished (closed or failed, including RDP's
//!   time-wait), its last event was polled and its last segment sent; the
//!   [`ConnId`] then goes stale. The application must drain `poll_event`
//!   for slots to be reclaimed. A SYN from the remote port of a finished,
//!   reported connection (a peer reusing its port during our time-wait, as
//!   libcsp's eight ephemeral ports make likely) frees it at once and opens
//!   a new one.
//! - **Randomness.** The node keeps a small PRNG (SplitMix64) seeded by the
//!   caller ([`NodeConfig::seed`], [`Node::reseed`]); RDP initial sequence
//!   numbers and XTEA nonces come from it. `handle_frame` can therefore open
//!   connections without asking the caller for randomness.
//! - **Services** ([`crate::service`]): uptime is `now - boot`, buffer free
//!   the free receive-pool plus transmit-queue slots, memfree what the caller
//!   set ([`Node::set_memfree`]), ident the strings given at construction
//!   (`&'static str`: firmware has literals, a host can leak a `String` once).
//!   Request trailers are checked as flagged (HMAC with the key set by
//!   [`Node::set_service_hmac_key`]); the reply copies the request's flags
//!   and gets fresh trailers. Reboot and shutdown requests become
//!   [`Event::Reboot`] / [`Event::Shutdown`]; the node never acts on them.
//! - **Not here:** SFP fragmentation of connectionless packets or connections
//!   (the FRAG flag is passed through untouched; [`crate::sfp`] can be used by
//!   the application on the data), duplicate detection, CMP route set /
//!   interface stats / clock / peek / poke (declined: no reply).
//!
//! [`PortTable`]: crate::bind::PortTable
//! [`SecurityOptions`]: crate::security::SecurityOptions

use heapless::Deque;

use csp_rdp::{Connection, Payload};

use crate::bind::{BindAddr, BindConfig, BindPort, PortTable};
use crate::header::{Addr, Flags, Header, Port, Prio, Version};
use crate::packet::{Packet, PacketError};
use crate::route::{Hop, IfaceId, RouteTable};
use crate::security::{HmacKey, SecurityOptions, CRC_LEN, HMAC_LEN, XTEA_NONCE_LEN};
use crate::service::{
    Ident, ServiceConfig, ServiceCounters, ServiceEvent, ServiceOutcome, ServiceValues, Services,
};
use crate::time::Instant;

mod types;

pub use csp_rdp::{CloseReason, FailReason, State as ConnState};
pub use types::{
    ConnId, ConnectOptions, Datagram, Event, IfaceConfig, NodeCounters, NodeError, Received,
    RxDrop, SocketId, SocketOptions, Transmit,
};

/// Loopback packets delivered per `poll_transmit` call at most.
pub const LOOPBACK_BUDGET: usize = 16;

/// The header version of the internal loopback (the widest addresses).
const LOOPBACK_VERSION: Version = Version::V2;

/// Largest outer-trailer overhead: HMAC, CRC and an XTEA nonce.
const MAX_SECURITY_OVERHEAD: usize = HMAC_LEN + CRC_LEN + XTEA_NONCE_LEN;

/// Highest service port (uptime).
const LAST_SERVICE_PORT: u8 = 6;

/// How a node starts.
#[derive(Debug, Clone, Copy)]
pub struct NodeConfig {
    /// The node's own address.
    pub addr: Addr,
    /// When the node booted: uptime is measured from here.
    pub boot: Instant,
    /// Seed of the node's PRNG (RDP initial sequence numbers, XTEA nonces):
    /// give it a random value (hardware RNG, `getrandom`).
    pub seed: u64,
    /// Identification strings for CMP ident.
    pub ident: Ident<'static>,
    /// Which ports may be bound and which are ephemeral.
    pub ports: BindConfig,
    /// Address width of the routing table (`V2` unless every link is 1.x).
    pub route_version: Version,
    /// Route packets for other addresses (off: drop and count them).
    pub forward: bool,
    /// Answer the standard services on ports 0..=6.
    pub services: bool,
}

impl NodeConfig {
    /// Defaults for `addr`: libcsp's bindable ports, v2 routes, services on,
    /// forwarding off, boot at time zero, empty ident strings, seed 0
    /// (set a random one).
    pub const fn new(addr: Addr) -> Self {
        NodeConfig {
            addr,
            boot: Instant::ZERO,
            seed: 0,
            ident: Ident {
                hostname: "",
                model: "",
                revision: "",
                date: "",
                time: "",
            },
            ports: BindConfig::DEFAULT,
            route_version: Version::V2,
            forward: false,
            services: true,
        }
    }
}

/// Who owns a bound port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Socket(u8),
    Conn(u8),
}

#[derive(Debug, Clone, Copy)]
struct SocketSlot {
    port: BindPort,
    opts: SocketOptions,
    /// Packets of this socket in the receive pool.
    queued: u16,
    /// Accepted connections alive.
    conns: u16,
}

/// Connection events drained from the RDP state machine, waiting for `poll_event`.
#[derive(Debug, Clone, Copy, Default)]
struct Stash {
    connected: bool,
    acked: Option<u16>,
    end: Option<End>,
}

#[derive(Debug, Clone, Copy)]
enum End {
    Closed(CloseReason),
    Failed(FailReason),
}

struct ConnSlot<const W: usize, const SEG: usize> {
    conn: Connection<W, SEG>,
    remote: Addr,
    rport: Port,
    lport: Port,
    prio: Prio,
    security: SecurityOptions,
    /// The listening socket for an accepted connection; `None` for an outgoing one.
    listener: Option<u8>,
    /// The next segment of data, read out of the connection.
    readahead: Option<Payload<SEG>>,
    announced: bool,
    stash: Stash,
    end_reported: bool,
}

struct RxEntry<const PKT: usize> {
    socket: u8,
    seq: u32,
    announced: bool,
    packet: Packet<PKT>,
}

#[derive(Debug, Clone, Copy)]
enum Out {
    Iface(Hop),
    Loopback,
}

struct TxEntry<const PKT: usize> {
    out: Out,
    packet: Packet<PKT>,
}

/// A CSP node; see the [module documentation](self) for how to drive it and
/// what the capacity parameters mean.
pub struct Node<
    const PKT: usize,
    const RXQ: usize,
    const TXQ: usize,
    const BINDS: usize,
    const CONNS: usize,
    const W: usize,
    const SEG: usize,
    const IFACES: usize = 2,
    const ROUTES: usize = 8,
> {
    addr: Addr,
    boot: Instant,
    rng: u64,
    ident: Ident<'static>,
    memfree: u32,
    forward: bool,
    services_on: bool,
    service_key: Option<HmacKey>,
    services: Services,
    ifaces: heapless::Vec<IfaceConfig, IFACES>,
    routes: RouteTable<ROUTES>,
    ports: PortTable<Owner, BINDS>,
    sockets: [Option<SocketSlot>; BINDS],
    socket_gen: [u16; BINDS],
    conns: [Option<ConnSlot<W, SEG>>; CONNS],
    conn_gen: [u16; CONNS],
    rx: [Option<RxEntry<PKT>>; RXQ],
    rx_seq: u32,
    tx: Deque<TxEntry<PKT>, TXQ>,
    next_tx_conn: usize,
    next_event_conn: usize,
    pending_reboot: bool,
    pending_shutdown: bool,
    pending_error: Option<NodeError>,
    counters: NodeCounters,
}

/// A wrapping `+= 1` on a counter.
fn bump(c: &mut u32) {
    *c = c.wrapping_add(1);
}

impl<
        const PKT: usize,
        const RXQ: usize,
        const TXQ: usize,
        const BINDS: usize,
        const CONNS: usize,
        const W: usize,
        const SEG: usize,
        const IFACES: usize,
        const ROUTES: usize,
    > Node<PKT, RXQ, TXQ, BINDS, CONNS, W, SEG, IFACES, ROUTES>
{
    const FITS: () = {
        assert!(
            Connection::<W, SEG>::MAX_SEGMENT_LEN + MAX_SECURITY_OVERHEAD <= PKT - 6,
            "an RDP segment with its trailers must fit a packet buffer (SEG + 5 + 12 <= PKT - 6)"
        );
        assert!(
            BINDS <= 255 && CONNS <= 255,
            "at most 255 sockets and connections"
        );
    };

    /// The largest frame `poll_transmit` writes: pass a buffer this big.
    pub const MAX_FRAME_LEN: usize = PKT;

    /// Largest data of one RDP `send`.
    pub const MAX_SEGMENT_DATA: usize = SEG;

    /// A node with no interfaces, routes or bindings yet.
    pub const fn new(config: NodeConfig) -> Self {
        #[allow(clippy::let_unit_value)]
        let _ = Self::FITS;
        Node {
            addr: config.addr,
            boot: config.boot,
            rng: config.seed,
            ident: config.ident,
            memfree: 0,
            forward: config.forward,
            services_on: config.services,
            service_key: None,
            services: Services::new(ServiceConfig::new(config.route_version, config.addr)),
            ifaces: heapless::Vec::new(),
            routes: RouteTable::new(config.route_version),
            ports: PortTable::new(config.ports),
            sockets: [const { None }; BINDS],
            socket_gen: [0; BINDS],
            conns: [const { None }; CONNS],
            conn_gen: [0; CONNS],
            rx: [const { None }; RXQ],
            rx_seq: 0,
            tx: Deque::new(),
            next_tx_conn: 0,
            next_event_conn: 0,
            pending_reboot: false,
            pending_shutdown: false,
            pending_error: None,
            counters: NodeCounters {
                rx_frames: 0,
                rx_delivered: 0,
                rx_segments: 0,
                rx_service: 0,
                rx_unknown_iface: 0,
                rx_malformed: 0,
                rx_too_long: 0,
                rx_not_for_us: 0,
                rx_no_socket: 0,
                rx_no_connection: 0,
                rx_queue_full: 0,
                rx_security: 0,
                rx_refused: 0,
                rx_syn_refused: 0,
                forwarded: 0,
                no_route: 0,
                tx_frames: 0,
                loopback: 0,
                tx_queue_full: 0,
                tx_dropped: 0,
                tx_buf_too_small: 0,
            },
        }
    }

    // ---- configuration -------------------------------------------------

    /// The node's address.
    pub fn addr(&self) -> Addr {
        self.addr
    }

    /// Change the node's address (e.g. assigned by a daemon).
    pub fn set_addr(&mut self, addr: Addr) {
        self.addr = addr;
        self.services.config.own_addr = addr;
    }

    /// Add an interface; its id is its index in the order added.
    pub fn add_iface(&mut self, config: IfaceConfig) -> Result<IfaceId, NodeError> {
        let id = IfaceId(self.ifaces.len() as u8);
        self.ifaces
            .push(config)
            .map_err(|_| NodeError::IfaceTableFull)?;
        Ok(id)
    }

    /// An interface's configuration.
    pub fn iface(&self, id: IfaceId) -> Option<&IfaceConfig> {
        self.ifaces.get(usize::from(id.0))
    }

    /// The routing table.
    pub fn routes(&self) -> &RouteTable<ROUTES> {
        &self.routes
    }

    /// The routing table, to add or remove routes.
    pub fn routes_mut(&mut self) -> &mut RouteTable<ROUTES> {
        &mut self.routes
    }

    /// Turn forwarding of packets for other addresses on or off.
    pub fn set_forwarding(&mut self, on: bool) {
        self.forward = on;
    }

    /// Turn the standard services on or off.
    pub fn set_services(&mut self, on: bool) {
        self.services_on = on;
    }

    /// The key for HMAC-flagged service requests (without one they are dropped).
    pub fn set_service_hmac_key(&mut self, key: Option<HmacKey>) {
        self.service_key = key;
    }

    /// The free memory the memfree service reports.
    pub fn set_memfree(&mut self, bytes: u32) {
        self.memfree = bytes;
    }

    /// Mix more entropy into the PRNG.
    pub fn reseed(&mut self, seed: u64) {
        self.rng ^= seed;
        let _ = self.random();
    }

    /// What the node counted so far.
    pub fn counters(&self) -> &NodeCounters {
        &self.counters
    }

    /// What the service handler counted so far.
    pub fn service_counters(&self) -> &ServiceCounters {
        self.services.counters()
    }

    /// Free buffers: free receive-pool slots plus free transmit-queue slots.
    pub fn free_buffers(&self) -> usize {
        self.rx.iter().filter(|e| e.is_none()).count() + (TXQ - self.tx.len())
    }

    /// SplitMix64.
    fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    // ---- sockets -------------------------------------------------------

    /// Bind `port` (or [`BindPort::Any`]: every port nothing else took).
    pub fn bind(&mut self, port: BindPort, opts: SocketOptions) -> Result<SocketId, NodeError> {
        let index = self.free_socket()?;
        self.ports
            .bind(BindAddr::Any, port, Owner::Socket(index as u8))?;
        Ok(self.install_socket(index, port, opts))
    }

    /// Bind a free ephemeral port (a source port for connectionless requests).
    pub fn bind_ephemeral(&mut self, opts: SocketOptions) -> Result<(SocketId, Port), NodeError> {
        let index = self.free_socket()?;
        let port = self
            .ports
            .bind_ephemeral(BindAddr::Any, Owner::Socket(index as u8))?;
        Ok((self.install_socket(index, BindPort::Port(port), opts), port))
    }

    /// Bind `port` for RDP connections only: [`bind`](Self::bind) with
    /// [`SocketOptions::listener`] and `security`.
    pub fn listen(
        &mut self,
        port: BindPort,
        security: SecurityOptions,
    ) -> Result<SocketId, NodeError> {
        self.bind(port, SocketOptions::listener().with_security(security))
    }

    fn free_socket(&self) -> Result<usize, NodeError> {
        self.sockets
            .iter()
            .position(Option::is_none)
            .ok_or(NodeError::Bind(crate::bind::BindError::TableFull))
    }

    fn install_socket(&mut self, index: usize, port: BindPort, opts: SocketOptions) -> SocketId {
        self.sockets[index] = Some(SocketSlot {
            port,
            opts,
            queued: 0,
            conns: 0,
        });
        SocketId {
            index: index as u8,
            gen: self.socket_gen[index],
        }
    }

    fn socket_index(&self, id: SocketId) -> Result<usize, NodeError> {
        let i = id.index();
        match self.sockets.get(i) {
            Some(Some(_)) if self.socket_gen[i] == id.gen => Ok(i),
            _ => Err(NodeError::BadHandle),
        }
    }

    fn socket_id(&self, index: usize) -> SocketId {
        SocketId {
            index: index as u8,
            gen: self.socket_gen[index],
        }
    }

    /// The port a socket is bound to.
    pub fn socket_port(&self, socket: SocketId) -> Result<BindPort, NodeError> {
        let i = self.socket_index(socket)?;
        self.sockets[i]
            .as_ref()
            .map(|s| s.port)
            .ok_or(NodeError::BadHandle)
    }

    /// Unbind a socket: its queued packets are dropped; connections it
    /// accepted live on.
    pub fn unbind(&mut self, socket: SocketId) -> Result<(), NodeError> {
        let i = self.socket_index(socket)?;
        let Some(slot) = self.sockets[i].take() else {
            return Err(NodeError::BadHandle);
        };
        let _ = self.ports.unbind(BindAddr::Any, slot.port);
        for e in self.rx.iter_mut() {
            if e.as_ref().is_some_and(|e| usize::from(e.socket) == i) {
                *e = None;
            }
        }
        for c in self.conns.iter_mut().flatten() {
            if c.listener == Some(i as u8) {
                c.listener = None;
            }
        }
        self.socket_gen[i] = self.socket_gen[i].wrapping_add(1);
        Ok(())
    }

    /// Copy the oldest connectionless packet queued on `socket` into `buf`
    /// (data only, trailers stripped). `WouldBlock` if there is none; a
    /// too small `buf` leaves the packet queued.
    pub fn recv(&mut self, socket: SocketId, buf: &mut [u8]) -> Result<Received, NodeError> {
        let i = self.socket_index(socket)?;
        let at = self
            .rx
            .iter()
            .enumerate()
            .filter_map(|(k, e)| e.as_ref().map(|e| (k, e)))
            .filter(|(_, e)| usize::from(e.socket) == i)
            .min_by_key(|(_, e)| e.seq)
            .map(|(k, _)| k)
            .ok_or(NodeError::WouldBlock)?;
        let entry = self.rx[at].as_ref().ok_or(NodeError::WouldBlock)?;
        let data = entry.packet.data();
        let got = buf.len();
        let out = buf.get_mut(..data.len()).ok_or(NodeError::BufferTooSmall {
            needed: data.len(),
            got,
        })?;
        out.copy_from_slice(data);
        let received = Received {
            header: entry.packet.header,
            len: data.len(),
        };
        self.rx[at] = None;
        if let Some(s) = self.sockets[i].as_mut() {
            s.queued = s.queued.saturating_sub(1);
        }
        Ok(received)
    }

    // ---- connectionless send ------------------------------------------

    /// Send one connectionless packet from this node, with `security`'s
    /// trailers. It is queued for `poll_transmit` (or the loopback).
    pub fn send_to(
        &mut self,
        datagram: &Datagram,
        security: &SecurityOptions,
        data: &[u8],
    ) -> Result<(), NodeError> {
        let header = Header {
            prio: datagram.prio,
            src: self.addr,
            dst: datagram.dst,
            dport: datagram.dport,
            sport: datagram.sport,
            flags: Flags::NONE,
        };
        let packet = Packet::with_data(header, data)?;
        self.queue_packet(packet, security)
    }

    /// Answer a packet received on `socket`: addresses and ports swapped,
    /// same priority, and the CRC32/HMAC trailers the request carried (HMAC
    /// keyed by the socket's options), as libcsp's `CSP_O_SAME`.
    pub fn reply(
        &mut self,
        socket: SocketId,
        request: &Header,
        data: &[u8],
    ) -> Result<(), NodeError> {
        let i = self.socket_index(socket)?;
        let opts = self.sockets[i].as_ref().ok_or(NodeError::BadHandle)?.opts;
        let mut header = request.reply();
        header.src = self.addr;
        header.flags = Flags::NONE;
        let security = mirror(&opts.security, request.flags);
        let packet = Packet::with_data(header, data)?;
        self.queue_packet(packet, &security)
    }

    /// Route `packet`, add its trailers for the outgoing version, queue it.
    fn queue_packet(
        &mut self,
        mut packet: Packet<PKT>,
        security: &SecurityOptions,
    ) -> Result<(), NodeError> {
        let (out, version) = self.route_out(packet.header.dst)?;
        packet.header.check(version)?;
        let nonce = self.random() as u32;
        security.append(&mut packet, version, nonce)?;
        if let Out::Iface(hop) = out {
            self.check_mtu(hop.iface, version.header_len() + packet.len())?;
        }
        if self.tx.is_full() {
            return Err(NodeError::TxQueueFull);
        }
        let _ = self.tx.push_back(TxEntry { out, packet });
        Ok(())
    }

    /// Where a packet this node originates goes, and in which header version.
    fn route_out(&self, dst: Addr) -> Result<(Out, Version), NodeError> {
        if dst == self.addr || dst == Addr::LOCAL {
            return Ok((Out::Loopback, LOOPBACK_VERSION));
        }
        let hop = self.routes.lookup(dst).ok_or(NodeError::NoRoute(dst))?;
        let iface = self
            .iface(hop.iface)
            .ok_or(NodeError::UnknownIface(hop.iface))?;
        Ok((Out::Iface(hop), iface.version))
    }

    fn check_mtu(&self, iface: IfaceId, len: usize) -> Result<(), NodeError> {
        let mtu = self.iface(iface).map_or(0, |i| i.mtu);
        if len > mtu {
            return Err(NodeError::ExceedsMtu { len, mtu });
        }
        Ok(())
    }

    // ---- connections ---------------------------------------------------

    /// Open an RDP connection to (`dst`, `dport`) from an ephemeral port.
    /// [`Event::Connected`] (or `Failed`) follows; the SYN leaves with the
    /// next `poll_transmit`.
    pub fn connect(
        &mut self,
        now: Instant,
        dst: Addr,
        dport: Port,
        opts: &ConnectOptions,
    ) -> Result<ConnId, NodeError> {
        self.open_conn(now, None, dst, dport, opts)
    }

    /// [`connect`](Self::connect) from a given local port (e.g. one a
    /// daemon assigned). The port is bound like a socket's, so it must be
    /// bindable under the node's [`BindConfig`] and free.
    pub fn connect_from(
        &mut self,
        now: Instant,
        sport: Port,
        dst: Addr,
        dport: Port,
        opts: &ConnectOptions,
    ) -> Result<ConnId, NodeError> {
        self.open_conn(now, Some(sport), dst, dport, opts)
    }

    fn open_conn(
        &mut self,
        now: Instant,
        sport: Option<Port>,
        dst: Addr,
        dport: Port,
        opts: &ConnectOptions,
    ) -> Result<ConnId, NodeError> {
        self.route_out(dst)?;
        opts.rdp.validate(W).map_err(NodeError::Options)?;
        let index = self
            .conns
            .iter()
            .position(Option::is_none)
            .ok_or(NodeError::NoFreeConnection)?;
        let owner = Owner::Conn(index as u8);
        let lport = match sport {
            Some(p) => {
                self.ports.bind(BindAddr::Any, BindPort::Port(p), owner)?;
                p
            }
            None => self.ports.bind_ephemeral(BindAddr::Any, owner)?,
        };
        let isn = self.random() as u16;
        let conn = match Connection::connect(now, opts.rdp, isn) {
            Ok(c) => c,
            Err(e) => {
                // Validated above; undo the binding all the same.
                let _ = self.ports.unbind(BindAddr::Any, BindPort::Port(lport));
                return Err(NodeError::Options(e));
            }
        };
        self.conns[index] = Some(ConnSlot {
            conn,
            remote: dst,
            rport: dport,
            lport,
            prio: opts.prio,
            security: opts.security,
            listener: None,
            readahead: None,
            announced: false,
            stash: Stash::default(),
            end_reported: false,
        });
        csp_debug!("node: connect to {}:{} from {}", dst, dport, lport);
        Ok(self.conn_id(index))
    }

    fn conn_id(&self, index: usize) -> ConnId {
        ConnId {
            index: index as u8,
            gen: self.conn_gen[index],
        }
    }

    fn slot(&mut self, id: ConnId) -> Result<&mut ConnSlot<W, SEG>, NodeError> {
        let i = id.index();
        if self.conn_gen.get(i) != Some(&id.gen) {
            return Err(NodeError::BadHandle);
        }
        self.conns
            .get_mut(i)
            .and_then(Option::as_mut)
            .ok_or(NodeError::BadHandle)
    }

    /// Queue one segment (at most `SEG` bytes); returns its RDP sequence
    /// number, which [`Event::Acknowledged`] reports once the peer has it.
    /// A full window is [`NodeError::WouldBlock`]; a segment whose frame
    /// would exceed the route's MTU is refused.
    pub fn send(&mut self, now: Instant, conn: ConnId, data: &[u8]) -> Result<u16, NodeError> {
        let slot = self.slot(conn)?;
        let (dst, overhead) = (slot.remote, slot.security.overhead());
        if let Ok((Out::Iface(hop), version)) = self.route_out(dst) {
            let len = version.header_len() + data.len() + csp_rdp::header::HEADER_LEN + overhead;
            self.check_mtu(hop.iface, len)?;
        }
        let slot = self.slot(conn)?;
        slot.conn.send(now, data).map_err(|e| match e {
            csp_rdp::SendError::WouldBlock => NodeError::WouldBlock,
            e => NodeError::Send(e),
        })
    }

    /// Segments `send` takes right now.
    pub fn send_capacity(&mut self, conn: ConnId) -> Result<usize, NodeError> {
        Ok(self.slot(conn)?.conn.send_capacity())
    }

    /// Copy the next received segment into `buf` and return its length.
    /// `WouldBlock` if none is there yet, `Closed` once the connection is
    /// finished and everything was read.
    pub fn recv_conn(&mut self, conn: ConnId, buf: &mut [u8]) -> Result<usize, NodeError> {
        let slot = self.slot(conn)?;
        pump(slot);
        let Some(data) = slot.readahead.as_ref() else {
            return Err(if slot.stash.end.is_some() || slot.end_reported {
                NodeError::Closed
            } else {
                NodeError::WouldBlock
            });
        };
        let (len, got) = (data.len(), buf.len());
        buf.get_mut(..len)
            .ok_or(NodeError::BufferTooSmall { needed: len, got })?
            .copy_from_slice(data);
        slot.readahead = None;
        slot.announced = false;
        pump(slot);
        Ok(len)
    }

    /// Close a connection: once everything sent is acknowledged the close
    /// handshake runs; [`Event::Closed`] (or `Failed`) follows.
    pub fn close(&mut self, now: Instant, conn: ConnId) -> Result<(), NodeError> {
        let slot = self.slot(conn)?;
        slot.conn.close(now);
        Ok(())
    }

    /// The connection's state.
    pub fn conn_state(&mut self, conn: ConnId) -> Result<ConnState, NodeError> {
        Ok(self.slot(conn)?.conn.state())
    }

    /// The remote address and port and the local port of a connection.
    pub fn conn_endpoints(&mut self, conn: ConnId) -> Result<(Addr, Port, Port), NodeError> {
        let s = self.slot(conn)?;
        Ok((s.remote, s.rport, s.lport))
    }

    /// The RDP counters of a connection.
    pub fn conn_counters(&mut self, conn: ConnId) -> Result<csp_rdp::Counters, NodeError> {
        Ok(*self.slot(conn)?.conn.counters())
    }

    /// Connection slots in use.
    pub fn connections(&self) -> usize {
        self.conns.iter().filter(|c| c.is_some()).count()
    }

    fn free_conn(&mut self, index: usize) {
        let Some(slot) = self.conns[index].take() else {
            return;
        };
        match slot.listener {
            None => {
                let _ = self.ports.unbind(BindAddr::Any, BindPort::Port(slot.lport));
            }
            Some(l) => {
                if let Some(s) = self.sockets[usize::from(l)].as_mut() {
                    s.conns = s.conns.saturating_sub(1);
                }
            }
        }
        self.conn_gen[index] = self.conn_gen[index].wrapping_add(1);
        csp_debug!("node: connection slot {} freed", index);
    }

    // ---- receive path ----------------------------------------------------

    /// A frame (CSP header, data, trailers) arrived on `iface`. Anything it
    /// can not use is counted and reported as the `Err`, for logging; the
    /// node is fine either way.
    pub fn handle_frame(
        &mut self,
        now: Instant,
        iface: IfaceId,
        frame: &[u8],
    ) -> Result<(), RxDrop> {
        bump(&mut self.counters.rx_frames);
        let r = self.rx_frame(now, iface, frame);
        if let Err(d) = r {
            self.count_drop(d);
            csp_trace!("node: dropped frame from {}: {}", iface.0, d);
        }
        r
    }

    fn count_drop(&mut self, d: RxDrop) {
        let c = &mut self.counters;
        bump(match d {
            RxDrop::UnknownIface(_) => &mut c.rx_unknown_iface,
            RxDrop::Malformed(_) => &mut c.rx_malformed,
            RxDrop::TooLong { .. } => &mut c.rx_too_long,
            RxDrop::NotForUs => &mut c.rx_not_for_us,
            RxDrop::NoRoute(_) => &mut c.no_route,
            RxDrop::NoSocket(_) => &mut c.rx_no_socket,
            RxDrop::NoConnection => &mut c.rx_no_connection,
            RxDrop::RxQueueFull => &mut c.rx_queue_full,
            RxDrop::Security(_) => &mut c.rx_security,
            RxDrop::ConnectionlessRefused | RxDrop::RdpRefused => &mut c.rx_refused,
            RxDrop::BacklogFull | RxDrop::BadSyn => &mut c.rx_syn_refused,
            RxDrop::TxQueueFull => &mut c.tx_queue_full,
            RxDrop::ReplyFailed(NodeError::NoRoute(_)) => &mut c.no_route,
            RxDrop::ReplyFailed(_) => &mut c.tx_dropped,
        });
    }

    fn rx_frame(&mut self, now: Instant, iface: IfaceId, frame: &[u8]) -> Result<(), RxDrop> {
        let version = self
            .iface(iface)
            .ok_or(RxDrop::UnknownIface(iface))?
            .version;
        let packet = Packet::<PKT>::from_frame(frame, version).map_err(|e| match e {
            PacketError::Header(h) => RxDrop::Malformed(h),
            _ => RxDrop::TooLong { len: frame.len() },
        })?;
        let dst = packet.header.dst;
        if dst == self.addr || dst == Addr::LOCAL || dst.is_broadcast(version) {
            return self.deliver(now, packet, version);
        }
        if !self.forward {
            return Err(RxDrop::NotForUs);
        }
        self.forward_packet(packet, iface)
    }

    fn forward_packet(&mut self, packet: Packet<PKT>, from: IfaceId) -> Result<(), RxDrop> {
        let dst = packet.header.dst;
        let hop = self.routes.lookup(dst).ok_or(RxDrop::NoRoute(dst))?;
        if hop.iface == from && hop.via.is_none() {
            // Back where it came from: a loop or a neighbour's broadcast domain.
            return Err(RxDrop::NoRoute(dst));
        }
        if self.tx.is_full() {
            return Err(RxDrop::TxQueueFull);
        }
        let _ = self.tx.push_back(TxEntry {
            out: Out::Iface(hop),
            packet,
        });
        bump(&mut self.counters.forwarded);
        Ok(())
    }

    /// A packet for this node (from a link or the loopback).
    fn deliver(
        &mut self,
        now: Instant,
        packet: Packet<PKT>,
        version: Version,
    ) -> Result<(), RxDrop> {
        if packet.header.flags.contains(Flags::RDP) {
            return self.deliver_rdp(now, packet, version);
        }
        let h = packet.header;
        let binding = self.ports.lookup_binding(h.dst, h.dport).copied();
        let service_port = self.services_on && h.dport.get() <= LAST_SERVICE_PORT;
        match binding {
            Some(b) if b.key.port == BindPort::Any && service_port => {
                self.serve(now, packet, version)
            }
            Some(b) => match b.owner {
                Owner::Socket(i) => self.queue_rx(usize::from(i), packet, version),
                Owner::Conn(_) => Err(RxDrop::NoSocket(h.dport)),
            },
            None if service_port => self.serve(now, packet, version),
            None => Err(RxDrop::NoSocket(h.dport)),
        }
    }

    fn queue_rx(
        &mut self,
        i: usize,
        mut packet: Packet<PKT>,
        version: Version,
    ) -> Result<(), RxDrop> {
        let sock = self.sockets[i]
            .as_ref()
            .ok_or(RxDrop::NoSocket(packet.header.dport))?;
        if !sock.opts.connectionless {
            return Err(RxDrop::ConnectionlessRefused);
        }
        if sock.opts.rx_limit != 0 && sock.queued >= sock.opts.rx_limit {
            return Err(RxDrop::RxQueueFull);
        }
        let security = sock.opts.security;
        let free = self
            .rx
            .iter()
            .position(Option::is_none)
            .ok_or(RxDrop::RxQueueFull)?;
        security
            .verify(&mut packet, version)
            .map_err(RxDrop::Security)?;
        self.rx_seq = self.rx_seq.wrapping_add(1);
        self.rx[free] = Some(RxEntry {
            socket: i as u8,
            seq: self.rx_seq,
            announced: false,
            packet,
        });
        if let Some(s) = self.sockets[i].as_mut() {
            s.queued = s.queued.saturating_add(1);
        }
        bump(&mut self.counters.rx_delivered);
        Ok(())
    }

    fn deliver_rdp(
        &mut self,
        now: Instant,
        mut packet: Packet<PKT>,
        version: Version,
    ) -> Result<(), RxDrop> {
        let h = packet.header;
        let existing = self.conns.iter().position(|c| {
            c.as_ref()
                .is_some_and(|c| c.remote == h.src && c.rport == h.sport && c.lport == h.dport)
        });
        if let Some(i) = existing {
            let Some(slot) = self.conns[i].as_mut() else {
                return Err(RxDrop::NoConnection);
            };
            let finished = matches!(slot.conn.state(), ConnState::Closed | ConnState::TimeWait);
            if !(finished && slot.end_reported && is_syn_under(&slot.security, &packet, version)) {
                slot.security
                    .verify(&mut packet, version)
                    .map_err(RxDrop::Security)?;
                slot.conn.handle_segment(now, packet.data());
                bump(&mut self.counters.rx_segments);
                return Ok(());
            }
            // A peer reusing its port for a new connection while ours waits
            // out its close (libcsp rotates through only eight ports): the
            // old one is over and reported, so the SYN opens a new one.
            self.free_conn(i);
        }
        // Not a known connection: only a SYN to a listener opens one.
        let owner = self.ports.lookup(h.dst, h.dport).copied();
        let Some(Owner::Socket(l)) = owner else {
            return Err(RxDrop::NoConnection);
        };
        let l = usize::from(l);
        let sock = *self.sockets[l].as_ref().ok_or(RxDrop::NoConnection)?;
        if !sock.opts.rdp {
            return Err(RxDrop::RdpRefused);
        }
        sock.opts
            .security
            .verify(&mut packet, version)
            .map_err(RxDrop::Security)?;
        if !is_syn(packet.data()) {
            return Err(RxDrop::NoConnection);
        }
        if sock.opts.max_conns != 0 && sock.conns >= sock.opts.max_conns {
            return Err(RxDrop::BacklogFull);
        }
        let index = self
            .conns
            .iter()
            .position(Option::is_none)
            .ok_or(RxDrop::BacklogFull)?;
        let isn = self.random() as u16;
        let conn = Connection::accept(now, packet.data(), sock.opts.rdp_options, isn)
            .map_err(|_| RxDrop::BadSyn)?;
        self.conns[index] = Some(ConnSlot {
            conn,
            remote: h.src,
            rport: h.sport,
            lport: h.dport,
            prio: h.prio,
            security: mirror(&sock.opts.security, h.flags),
            listener: Some(l as u8),
            readahead: None,
            announced: false,
            stash: Stash::default(),
            end_reported: false,
        });
        if let Some(s) = self.sockets[l].as_mut() {
            s.conns = s.conns.saturating_add(1);
        }
        bump(&mut self.counters.rx_segments);
        csp_debug!("node: SYN from {}:{} to port {}", h.src, h.sport, h.dport);
        Ok(())
    }

    /// Answer a service request (ports 0..=6, nothing bound).
    fn serve(
        &mut self,
        now: Instant,
        mut packet: Packet<PKT>,
        version: Version,
    ) -> Result<(), RxDrop> {
        bump(&mut self.counters.rx_service);
        let check = SecurityOptions {
            hmac: self.service_key,
            accept_missing: true,
            ..SecurityOptions::NONE
        };
        check
            .verify(&mut packet, version)
            .map_err(RxDrop::Security)?;
        let mut ctx = ServiceValues {
            uptime_s: u32::try_from(now.saturating_duration_since(self.boot).as_millis() / 1000)
                .unwrap_or(u32::MAX),
            memfree: self.memfree,
            buf_free: u32::try_from(self.free_buffers()).unwrap_or(u32::MAX),
            ident: self.ident,
            clock: None,
        };
        self.services.config.version = version;
        self.services.config.own_addr = self.addr;
        let mut out = [0u8; PKT];
        let room = Packet::<PKT>::CAPACITY.saturating_sub(MAX_SECURITY_OVERHEAD);
        let outcome =
            self.services
                .handle(&packet.header, packet.data(), &mut ctx, &mut out[..room]);
        match outcome {
            ServiceOutcome::Reply(r) => {
                let mut header = r.header;
                let flags = header.flags;
                // Trailers are re-added by `queue_packet` to match the flags.
                header.flags = flags.without(Flags::CRC32 | Flags::HMAC | Flags::XTEA);
                if header.src == Addr::LOCAL || header.src.is_broadcast(version) {
                    header.src = self.addr;
                }
                let reply = Packet::with_data(header, &out[..r.len])
                    .map_err(|e| RxDrop::ReplyFailed(e.into()))?;
                let security = SecurityOptions {
                    crc: flags.contains(Flags::CRC32),
                    hmac: if flags.contains(Flags::HMAC) {
                        self.service_key
                    } else {
                        None
                    },
                    ..SecurityOptions::NONE
                };
                self.queue_packet(reply, &security).map_err(|e| match e {
                    NodeError::TxQueueFull => RxDrop::TxQueueFull,
                    e => RxDrop::ReplyFailed(e),
                })
            }
            ServiceOutcome::Event(ServiceEvent::Reboot) => {
                self.pending_reboot = true;
                Ok(())
            }
            ServiceOutcome::Event(ServiceEvent::Shutdown) => {
                self.pending_shutdown = true;
                Ok(())
            }
            // Counted by the service handler.
            ServiceOutcome::NoReply(_) | ServiceOutcome::Refused(_) => Ok(()),
        }
    }

    // ---- transmit path ---------------------------------------------------

    /// Write the next frame to send into `buf` (at least
    /// [`MAX_FRAME_LEN`](Self::MAX_FRAME_LEN) bytes: RDP segments are pulled
    /// only into a buffer that big). Loopback packets are delivered on the
    /// way. A buffer too small for the next frame is counted, reported as
    /// [`Event::Error`], and the frame stays queued.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        // Only loopback deliveries can make new work without end (two local
        // services answering each other); every other step consumes a queued
        // packet or a segment, so the loop ends.
        let mut looped = 0;
        while looped < LOOPBACK_BUDGET {
            if let Some(entry) = self.tx.pop_front() {
                match entry.out {
                    Out::Loopback => {
                        looped += 1;
                        self.loopback(now, entry.packet);
                    }
                    Out::Iface(hop) => match self.emit_queued(hop, entry, buf) {
                        Pulled::Frame(t) => return Some(t),
                        Pulled::Progress | Pulled::Looped => {}
                        Pulled::Idle => return None,
                    },
                }
                continue;
            }
            match self.pull_segment(now, buf) {
                Pulled::Frame(t) => return Some(t),
                Pulled::Progress => {}
                Pulled::Looped => looped += 1,
                Pulled::Idle => return None,
            }
        }
        None
    }

    fn loopback(&mut self, now: Instant, packet: Packet<PKT>) {
        bump(&mut self.counters.loopback);
        if let Err(d) = self.deliver(now, packet, LOOPBACK_VERSION) {
            self.count_drop(d);
        }
    }

    /// Frame a queued packet into `buf`: `Frame`, or `Progress` if it was
    /// dropped, or `Idle` if `buf` is too small (it goes back to the queue).
    fn emit_queued(&mut self, hop: Hop, mut entry: TxEntry<PKT>, buf: &mut [u8]) -> Pulled {
        let Some(&IfaceConfig { version, mtu }) = self.iface(hop.iface) else {
            bump(&mut self.counters.tx_dropped);
            return Pulled::Progress;
        };
        let Ok(frame) = entry.packet.frame(version) else {
            bump(&mut self.counters.tx_dropped);
            return Pulled::Progress;
        };
        if frame.len() > mtu {
            bump(&mut self.counters.tx_dropped);
            return Pulled::Progress;
        }
        let len = frame.len();
        let Some(out) = buf.get_mut(..len) else {
            self.too_small(len, buf.len());
            let _ = self.tx.push_front(entry);
            return Pulled::Idle;
        };
        out.copy_from_slice(frame);
        bump(&mut self.counters.tx_frames);
        Pulled::Frame(Transmit {
            iface: hop.iface,
            via: hop.via,
            len,
        })
    }

    fn too_small(&mut self, needed: usize, got: usize) {
        bump(&mut self.counters.tx_buf_too_small);
        self.pending_error = Some(NodeError::BufferTooSmall { needed, got });
    }

    /// The next segment of some connection (round robin), framed into `buf`.
    fn pull_segment(&mut self, now: Instant, buf: &mut [u8]) -> Pulled {
        if buf.len() < Self::MAX_FRAME_LEN {
            if self.conns.iter().any(Option::is_some) {
                self.too_small(Self::MAX_FRAME_LEN, buf.len());
            }
            return Pulled::Idle;
        }
        for k in 0..CONNS {
            let i = (self.next_tx_conn + k) % CONNS;
            let addr = self.addr;
            let Some(slot) = self.conns[i].as_mut() else {
                continue;
            };
            let Some(t) = slot.conn.poll_transmit(now, buf) else {
                if slot.conn.is_closed() && slot.end_reported && slot.readahead.is_none() {
                    self.free_conn(i);
                }
                continue;
            };
            self.next_tx_conn = (i + 1) % CONNS;
            let header = Header {
                prio: if t.prio_high { Prio::High } else { slot.prio },
                src: addr,
                dst: slot.remote,
                dport: slot.rport,
                sport: slot.lport,
                flags: Flags::RDP,
            };
            let security = slot.security;
            let Ok(packet) = Packet::<PKT>::with_data(header, &buf[..t.len]) else {
                bump(&mut self.counters.tx_dropped);
                return Pulled::Progress;
            };
            return self.send_segment(now, packet, &security, buf);
        }
        Pulled::Idle
    }

    fn send_segment(
        &mut self,
        now: Instant,
        mut packet: Packet<PKT>,
        security: &SecurityOptions,
        buf: &mut [u8],
    ) -> Pulled {
        let (out, version) = match self.route_out(packet.header.dst) {
            Ok(r) => r,
            Err(_) => {
                // The segment is lost; RDP retransmits and eventually fails.
                bump(&mut self.counters.no_route);
                return Pulled::Progress;
            }
        };
        let nonce = self.random() as u32;
        if security.append(&mut packet, version, nonce).is_err() {
            bump(&mut self.counters.tx_dropped);
            return Pulled::Progress;
        }
        match out {
            Out::Loopback => {
                self.loopback(now, packet);
                Pulled::Looped
            }
            // `buf` holds any frame (checked by the caller), so never `Idle`.
            Out::Iface(hop) => self.emit_queued(hop, TxEntry { out, packet }, buf),
        }
    }

    // ---- events ------------------------------------------------------------

    /// The next event for the application, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        if let Some(e) = self.pending_error.take() {
            return Some(Event::Error(e));
        }
        if core::mem::take(&mut self.pending_reboot) {
            return Some(Event::Reboot);
        }
        if core::mem::take(&mut self.pending_shutdown) {
            return Some(Event::Shutdown);
        }
        let next_rx = self
            .rx
            .iter_mut()
            .flatten()
            .filter(|e| !e.announced)
            .min_by_key(|e| e.seq);
        if let Some(e) = next_rx {
            e.announced = true;
            let socket = usize::from(e.socket);
            return Some(Event::Received {
                socket: self.socket_id(socket),
            });
        }
        for k in 0..CONNS {
            let i = (self.next_event_conn + k) % CONNS;
            if let Some(ev) = self.conn_event(i) {
                self.next_event_conn = (i + 1) % CONNS;
                return Some(ev);
            }
        }
        None
    }

    fn conn_event(&mut self, i: usize) -> Option<Event> {
        let conn = self.conn_id(i);
        let listener = {
            let slot = self.conns[i].as_mut()?;
            pump(slot);
            slot.listener
        };
        let socket = listener.map(|l| self.socket_id(usize::from(l)));
        let slot = self.conns[i].as_mut()?;
        if core::mem::take(&mut slot.stash.connected) {
            return Some(match (slot.conn.role(), socket) {
                (csp_rdp::Role::Server, Some(socket)) => Event::Accepted { socket, conn },
                _ => Event::Connected { conn },
            });
        }
        if let Some(through) = slot.stash.acked.take() {
            return Some(Event::Acknowledged { conn, through });
        }
        if slot.readahead.is_some() {
            if slot.announced {
                return None;
            }
            slot.announced = true;
            return Some(Event::Readable { conn });
        }
        let end = slot.stash.end.take()?;
        slot.end_reported = true;
        Some(match end {
            End::Closed(reason) => Event::Closed { conn, reason },
            End::Failed(reason) => Event::Failed { conn, reason },
        })
    }

    // ---- timers --------------------------------------------------------------

    /// When `handle_timeout` should be called next (`None`: no timer runs).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conns
            .iter()
            .flatten()
            .filter_map(|c| c.conn.poll_timeout())
            .min()
    }

    /// Let time pass: retransmissions, delayed acknowledgements, timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        for slot in self.conns.iter_mut().flatten() {
            if slot.conn.poll_timeout().is_some_and(|t| t <= now) {
                slot.conn.handle_timeout(now);
            }
        }
    }
}

/// What one transmit step did.
enum Pulled {
    /// A frame is in the caller's buffer.
    Frame(Transmit),
    /// Something was consumed (dropped and counted); look again.
    Progress,
    /// A packet went round the loopback; look again, within the budget.
    Looped,
    /// Nothing to send (or the buffer is too small).
    Idle,
}

/// Drain a connection's events into its stash until a data segment fills the
/// read-ahead (or nothing is left).
fn pump<const W: usize, const SEG: usize>(slot: &mut ConnSlot<W, SEG>) {
    while slot.readahead.is_none() {
        let Some(ev) = slot.conn.poll_event() else {
            return;
        };
        match ev {
            csp_rdp::Event::Connected => slot.stash.connected = true,
            csp_rdp::Event::Acknowledged { through } => slot.stash.acked = Some(through),
            csp_rdp::Event::Data(p) => {
                slot.readahead = Some(p);
                slot.announced = false;
            }
            csp_rdp::Event::Closed { reason } => slot.stash.end = Some(End::Closed(reason)),
            csp_rdp::Event::Failed { reason } => slot.stash.end = Some(End::Failed(reason)),
        }
    }
}

/// True if `data` (trailers stripped) is an RDP SYN.
fn is_syn(data: &[u8]) -> bool {
    csp_rdp::RdpHeader::split(data).is_ok_and(|(_, r)| r.flags() == csp_rdp::Flags::SYN)
}

/// True if `packet` verifies under `security` and is then a SYN (checked on
/// a copy: the packet is left as it is).
fn is_syn_under<const PKT: usize>(
    security: &SecurityOptions,
    packet: &Packet<PKT>,
    version: Version,
) -> bool {
    let mut copy = packet.clone();
    security.verify(&mut copy, version).is_ok() && is_syn(copy.data())
}

/// The trailers to use towards a peer that sent `flags`: CRC32 and HMAC as
/// it did (HMAC keyed from `base`), the rest of `base` kept.
fn mirror(base: &SecurityOptions, flags: Flags) -> SecurityOptions {
    SecurityOptions {
        crc: flags.contains(Flags::CRC32),
        hmac: if flags.contains(Flags::HMAC) {
            base.hmac
        } else {
            None
        },
        accept_missing: false,
        ..*base
    }
}

#[cfg(test)]
mod tests;
