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
//! After any input, drain `poll_transmit` and `poll_event`, let the
//! application act, drain `poll_transmit` again, then wait for I/O or
//! `poll_timeout`. No call blocks, sleeps, allocates or reads a clock; time
//! is an argument ([`Instant`], milliseconds).
//!
//! ```
//! use csp_core::bind::BindPort;
//! use csp_core::node::{Event, IfaceConfig, NodeConfig, SocketOptions};
//! use csp_core::time::Instant;
//! use csp_core::{Addr, Flags, Header, Node, Port, Prio, Version};
//!
//! // Firmware-sized: 256-byte buffers, 4 queued packets each way, 6 ports,
//! // 2 RDP connections of window 4 and 200-byte segments, 1 link, 4 routes.
//! type Fw = Node<256, 4, 4, 6, 2, 4, 200, 1, 4>;
//! let mut node = Fw::new(NodeConfig {
//!     seed: 0x5eed, // from a hardware RNG
//!     ..NodeConfig::new(Addr::new(10).unwrap())
//! });
//! let uart = node.add_iface(IfaceConfig::new("KISS", Version::V2, 256)).unwrap();
//! node.routes_mut().set_default(uart, None).unwrap();
//! let echo = node.bind(BindPort::Port(Port::new(10).unwrap()), SocketOptions::both()).unwrap();
//!
//! // A frame for the echo port arrives (link framing, e.g. KISS, removed).
//! let request = Header {
//!     prio: Prio::Normal,
//!     src: Addr::new(2).unwrap(),
//!     dst: Addr::new(10).unwrap(),
//!     dport: Port::new(10).unwrap(),
//!     sport: Port::new(20).unwrap(),
//!     flags: Flags::NONE,
//! };
//! let (h, n) = request.to_bytes(Version::V2).unwrap();
//! let frame = [&h[..n], b"hi"].concat();
//! let now = Instant::from_millis(1_000);
//! node.handle_frame(now, uart, &frame).unwrap();
//!
//! // The application answers what arrived...
//! let mut data = [0u8; 250];
//! while let Some(event) = node.poll_event() {
//!     if let Event::Received { socket } = event {
//!         let got = node.recv(socket, &mut data).unwrap();
//!         node.reply(socket, &got.header, &data[..got.len]).unwrap();
//!     }
//! }
//! // ...and the reply goes out on the UART.
//! let mut buf = [0u8; Fw::MAX_FRAME_LEN];
//! let t = node.poll_transmit(now, &mut buf).unwrap();
//! assert_eq!((t.iface, t.via), (uart, None));
//! assert_eq!(Header::parse(&buf[..t.len], Version::V2).unwrap(), request.reply());
//! assert_eq!(&buf[6..t.len], b"hi");
//! # let _ = echo;
//! ```
//!
//! # The two users
//!
//! - **Firmware** (one KISS UART, address 10): one interface, a default
//!   route to it, the standard services on, a socket on port 10 with
//!   [`SocketOptions::both`] (echo of datagrams via [`Node::reply`] and of
//!   RDP data via [`Node::recv_conn`] + [`Node::send`]) whose security has
//!   an HMAC key and `accept_missing` (HMAC when the peer asks for it), a
//!   sink on port 11. The node can live in a `static` (`new` is `const`).
//! - **host-lib** (one "interface": the connection to csp-muxd, v2 frames):
//!   a default route to it, services off (the daemon answers them), a
//!   [`BindConfig`] mirroring the daemon's port ranges so that the ports it
//!   assigns can be bound, [`Node::connect_from`] for a daemon-assigned
//!   source port, large `W` (32+) and `SEG` for throughput. Everything is
//!   inline, so a host node with big windows is large: box it.
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
//! - **SFP** is the application's: a datagram may carry the FRAG flag
//!   ([`Datagram::flags`]) with data cut by [`crate::sfp::split`], and a
//!   received packet keeps its flags and SFP trailer for a
//!   [`crate::sfp::Reassembler`]. RDP connections carry no SFP: a segment
//!   is at most `SEG` bytes and must fit the MTU.
//! - **Interfaces** have a name and counters ([`Node::iface_stats`]); CMP
//!   interface stats answers by name.
//! - **Not here:** duplicate detection; CMP route set, clock, peek and poke
//!   (declined: no reply, counted by the service handler).
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
    Ident, IfStats, ServiceConfig, ServiceCounters, ServiceEvent, ServiceOutcome, ServiceValues,
    Services,
};
use crate::time::Instant;

mod conn;
mod conn_table;
mod event;
mod rx;
mod services;
mod socket;
mod syn;
mod tx;
mod types;

pub use csp_rdp::{CloseReason, FailReason, State as ConnState};
pub use syn::{OptionRange, SynLimits};
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

/// Interface counters at boot.
const ZERO_STATS: IfStats = IfStats {
    tx: 0,
    rx: 0,
    tx_error: 0,
    rx_error: 0,
    drop: 0,
    autherr: 0,
    frame: 0,
    txbytes: 0,
    rxbytes: 0,
    irq: 0,
};

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
    /// What listeners adopt from a SYN, and how many half-open connections
    /// they hold (see [`SynLimits`]).
    pub syn: SynLimits,
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
            syn: SynLimits::DEFAULT,
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
    /// `Accepted` or `Connected` was reported.
    opened: bool,
    /// `Closed` or `Failed` was reported (or, for an accepted connection
    /// that never opened, swallowed).
    end_reported: bool,
    /// An accepted connection still in SYN-RECEIVED is dropped at this time
    /// ([`SynLimits::syn_received_timeout`]); `None` for an outgoing one.
    half_open_until: Option<Instant>,
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
    syn: SynLimits,
    service_key: Option<HmacKey>,
    services: Services,
    ifaces: heapless::Vec<IfaceConfig, IFACES>,
    iface_stats: [IfStats; IFACES],
    routes: RouteTable<ROUTES>,
    ports: PortTable<Owner, BINDS>,
    sockets: [Option<SocketSlot>; BINDS],
    socket_gen: [u16; BINDS],
    conns: conn_table::ConnTable<W, SEG, CONNS>,
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
    > core::fmt::Debug for Node<PKT, RXQ, TXQ, BINDS, CONNS, W, SEG, IFACES, ROUTES>
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Node")
            .field("addr", &self.addr)
            .field("ifaces", &self.ifaces)
            .field("bindings", &self.ports.len())
            .field("connections", &self.conns.iter().flatten().count())
            .field("rx_queued", &self.rx.iter().flatten().count())
            .field("tx_queued", &self.tx.len())
            .field("counters", &self.counters)
            .finish()
    }
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
            syn: config.syn,
            service_key: None,
            services: Services::new(ServiceConfig::new(config.route_version, config.addr)),
            ifaces: heapless::Vec::new(),
            iface_stats: [ZERO_STATS; IFACES],
            routes: RouteTable::new(config.route_version),
            ports: PortTable::new(config.ports),
            sockets: [const { None }; BINDS],
            socket_gen: [0; BINDS],
            conns: conn_table::ConnTable::new(),
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
                half_open_dropped: 0,
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

    /// The counters of an interface, as CMP interface stats reports them:
    /// frames and bytes each way, receive errors (malformed, too long),
    /// transmit errors (over the MTU, header not representable), drops and
    /// authentication (HMAC) failures of frames from it.
    pub fn iface_stats(&self, id: IfaceId) -> Option<&IfStats> {
        let i = usize::from(id.0);
        self.iface_stats.get(i).filter(|_| i < self.ifaces.len())
    }

    /// The counters of an interface, writable: the link layer adds its own
    /// (`frame` errors of the KISS decoder, `irq`).
    pub fn iface_stats_mut(&mut self, id: IfaceId) -> Option<&mut IfStats> {
        let i = usize::from(id.0);
        self.iface_stats
            .get_mut(i)
            .filter(|_| i < self.ifaces.len())
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
