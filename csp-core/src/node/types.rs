//! The vocabulary of the node: handles, options, events, errors, counters.

use core::fmt;

use csp_rdp::{CloseReason, FailReason, OptionsError, SendError};

use crate::bind::BindError;
use crate::header::{Addr, Flags, Header, HeaderError, Port, Prio, Version};
use crate::packet::PacketError;
use crate::route::IfaceId;
use crate::security::SecurityError;

/// A bound socket: a port (or the wildcard) of this node. The generation
/// makes a handle of an unbound socket stale instead of naming its successor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SocketId {
    pub(super) index: u8,
    pub(super) gen: u16,
}

impl SocketId {
    /// The slot index (stable while the socket is bound; for tables of the owner).
    pub const fn index(self) -> usize {
        self.index as usize
    }
}

/// An RDP connection. Like [`SocketId`], stale once its slot is freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ConnId {
    pub(super) index: u8,
    pub(super) gen: u16,
}

impl ConnId {
    /// The slot index (stable while the connection lives; for tables of the owner).
    pub const fn index(self) -> usize {
        self.index as usize
    }
}

/// One interface of the node: which header version its link speaks and
/// the largest frame (header, data and trailers) it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct IfaceConfig {
    /// Name, as route strings and CMP interface-stats requests use it
    /// (libcsp's `"KISS"`, `"ZMQHUB"`, ...; at most 10 bytes go in CMP).
    pub name: &'static str,
    /// Header version on this link.
    pub version: Version,
    /// Largest frame (header included) the link takes; bigger ones are dropped.
    pub mtu: usize,
}

impl IfaceConfig {
    /// An interface called `name`.
    pub const fn new(name: &'static str, version: Version, mtu: usize) -> Self {
        IfaceConfig { name, version, mtu }
    }
}

/// What a bound socket accepts and how it checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SocketOptions {
    /// Trailers required on (and, for accepted connections, mirrored from)
    /// what arrives. With `accept_missing` the socket takes packets with or
    /// without them, and replies/connections mirror what the peer used.
    pub security: crate::security::SecurityOptions,
    /// Queue connectionless packets to this socket.
    pub connectionless: bool,
    /// Accept RDP connections on this socket (a listener).
    pub rdp: bool,
    /// Connectionless packets queued at most for this socket (0: no limit
    /// but the node's shared receive pool).
    pub rx_limit: u16,
    /// Connections accepted on this socket alive at once, at most (0: no
    /// limit but the node's connection slots): the accept backlog.
    pub max_conns: u16,
    /// Local RDP policy for accepted connections (retransmission bound,
    /// backoff cap, close wait); the six negotiated values come from the SYN.
    pub rdp_options: csp_rdp::Options,
}

impl SocketOptions {
    /// Connectionless packets only, no trailers required.
    pub fn connectionless() -> Self {
        SocketOptions {
            security: crate::security::SecurityOptions::NONE,
            connectionless: true,
            rdp: false,
            rx_limit: 0,
            max_conns: 0,
            rdp_options: csp_rdp::Options::default(),
        }
    }

    /// RDP connections only (connectionless packets to the port are refused).
    pub fn listener() -> Self {
        SocketOptions {
            connectionless: false,
            rdp: true,
            ..Self::connectionless()
        }
    }

    /// Both connectionless packets and RDP connections (e.g. an echo port).
    pub fn both() -> Self {
        SocketOptions {
            rdp: true,
            ..Self::connectionless()
        }
    }

    /// The same options with these security settings.
    pub fn with_security(self, security: crate::security::SecurityOptions) -> Self {
        SocketOptions { security, ..self }
    }
}

impl Default for SocketOptions {
    fn default() -> Self {
        Self::connectionless()
    }
}

/// How an outgoing RDP connection is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ConnectOptions {
    /// Priority of data segments (control segments always go at `High`).
    pub prio: Prio,
    /// Trailers added to every segment and required on every segment received.
    pub security: crate::security::SecurityOptions,
    /// RDP options: the six the SYN carries, plus local policy.
    pub rdp: csp_rdp::Options,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            prio: Prio::Normal,
            security: crate::security::SecurityOptions::NONE,
            rdp: csp_rdp::Options::default(),
        }
    }
}

/// Addressing of one connectionless packet sent with [`super::Node::send_to`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Datagram {
    /// Destination node (own address or 0: delivered locally).
    pub dst: Addr,
    /// Destination port.
    pub dport: Port,
    /// Source port the reply will come to.
    pub sport: Port,
    /// Priority.
    pub prio: Prio,
    /// Header flags to set besides the security ones: `FRAG` for an SFP
    /// fragment (see [`crate::sfp`]). CRC32, HMAC and XTEA follow the
    /// security options and RDP is never set on a datagram, whatever is given.
    pub flags: Flags,
}

impl Datagram {
    /// A datagram at normal priority without extra flags.
    pub const fn new(dst: Addr, dport: Port, sport: Port) -> Self {
        Datagram {
            dst,
            dport,
            sport,
            prio: Prio::Normal,
            flags: Flags::NONE,
        }
    }
}

/// A connectionless packet read with [`super::Node::recv`]: its header (flags
/// as received) and how many data bytes (trailers stripped) were copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Received {
    /// Header as received.
    pub header: Header,
    /// Bytes written to the caller's buffer.
    pub len: usize,
}

/// A frame written by [`super::Node::poll_transmit`]: `buf[..len]` is the
/// whole CSP frame (header, data, trailers) for the link layer of `iface`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Transmit {
    /// Interface to send on.
    pub iface: IfaceId,
    /// Link-layer next hop from the route, if the route names one (e.g. a
    /// radio relaying to the spacecraft); `None`: the destination itself.
    pub via: Option<Addr>,
    /// Bytes of the frame.
    pub len: usize,
}

/// Something the application must know. Events are small and `Copy`: data
/// is read with [`super::Node::recv`] / [`super::Node::recv_conn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Event {
    /// A connectionless packet is queued on `socket` (one event per packet).
    Received {
        /// The socket it is queued on.
        socket: SocketId,
    },
    /// An incoming connection to a listening socket completed its handshake.
    Accepted {
        /// The listening socket.
        socket: SocketId,
        /// The new connection.
        conn: ConnId,
    },
    /// An outgoing connection completed its handshake: `send` is possible.
    Connected {
        /// The connection.
        conn: ConnId,
    },
    /// The next segment of data can be read with `recv_conn`.
    Readable {
        /// The connection.
        conn: ConnId,
    },
    /// Everything sent up to and including sequence number `through` (as
    /// `send` returned) is acknowledged by the peer.
    Acknowledged {
        /// The connection.
        conn: ConnId,
        /// Last acknowledged sequence number.
        through: u16,
    },
    /// The connection closed with all data delivered; its handle goes stale
    /// once the node frees the slot.
    Closed {
        /// The connection.
        conn: ConnId,
        /// How it closed.
        reason: CloseReason,
    },
    /// The connection failed; data sent and not acknowledged may be lost.
    Failed {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: FailReason,
    },
    /// A reboot request arrived on the reboot port (the node does nothing).
    Reboot,
    /// A shutdown request arrived on the reboot port (the node does nothing).
    Shutdown,
    /// An error of the node's own making the caller should hear about
    /// (e.g. a `poll_transmit` buffer too small for the next frame).
    Error(NodeError),
}

/// Why an application call failed. Nothing changed when one is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum NodeError {
    /// The handle names no socket or connection (never did, or stale).
    BadHandle,
    /// Nothing to read yet (or no room to send: RDP window full).
    WouldBlock,
    /// The connection is finished; nothing more will arrive.
    Closed,
    /// No route to the destination.
    NoRoute(Addr),
    /// The interface id is not configured.
    UnknownIface(IfaceId),
    /// The interface table is full.
    IfaceTableFull,
    /// Every connection slot is in use.
    NoFreeConnection,
    /// The outgoing frame queue is full: poll `poll_transmit` and retry.
    TxQueueFull,
    /// The frame would exceed the interface MTU.
    ExceedsMtu {
        /// Frame length.
        len: usize,
        /// The interface's MTU.
        mtu: usize,
    },
    /// The caller's buffer is too small.
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes the buffer has.
        got: usize,
    },
    /// Binding failed (port in use, out of range, table full, ...).
    Bind(BindError),
    /// The packet could not be built (too long for the node's buffers).
    Packet(PacketError),
    /// The header does not fit the interface's version.
    Header(HeaderError),
    /// Trailers could not be added.
    Security(SecurityError),
    /// The RDP connection refused the data.
    Send(SendError),
    /// RDP options out of range for this node's connections.
    Options(OptionsError),
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            NodeError::BadHandle => f.write_str("no such socket or connection"),
            NodeError::WouldBlock => f.write_str("operation would block"),
            NodeError::Closed => f.write_str("connection closed"),
            NodeError::NoRoute(a) => write!(f, "no route to {a}"),
            NodeError::UnknownIface(i) => write!(f, "unknown interface {i}"),
            NodeError::IfaceTableFull => f.write_str("interface table full"),
            NodeError::NoFreeConnection => f.write_str("no free connection slot"),
            NodeError::TxQueueFull => f.write_str("transmit queue full"),
            NodeError::ExceedsMtu { len, mtu } => {
                write!(f, "frame of {len} bytes exceeds MTU {mtu}")
            }
            NodeError::BufferTooSmall { needed, got } => {
                write!(f, "buffer of {got} bytes, {needed} needed")
            }
            NodeError::Bind(e) => write!(f, "{e}"),
            NodeError::Packet(e) => write!(f, "{e}"),
            NodeError::Header(e) => write!(f, "{e}"),
            NodeError::Security(e) => write!(f, "{e}"),
            NodeError::Send(e) => write!(f, "{e}"),
            NodeError::Options(e) => write!(f, "{e}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for NodeError {}

impl From<BindError> for NodeError {
    fn from(e: BindError) -> Self {
        NodeError::Bind(e)
    }
}

impl From<PacketError> for NodeError {
    fn from(e: PacketError) -> Self {
        NodeError::Packet(e)
    }
}

impl From<SecurityError> for NodeError {
    fn from(e: SecurityError) -> Self {
        NodeError::Security(e)
    }
}

impl From<HeaderError> for NodeError {
    fn from(e: HeaderError) -> Self {
        NodeError::Header(e)
    }
}

/// Why a received frame was dropped (each reason has a counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum RxDrop {
    /// Arrived on an interface id that is not configured.
    UnknownIface(IfaceId),
    /// Shorter than a header.
    Malformed(HeaderError),
    /// Longer than the node's packet buffers.
    TooLong {
        /// Frame length.
        len: usize,
    },
    /// Not for this node, and forwarding is off.
    NotForUs,
    /// Forwarding found no route (or only the interface it came from).
    NoRoute(Addr),
    /// Nothing bound to the destination port.
    NoSocket(Port),
    /// An RDP segment for no connection, and not a SYN to a listener.
    NoConnection,
    /// The socket's receive limit or the shared pool is full.
    RxQueueFull,
    /// Trailers missing or wrong (CRC, HMAC, XTEA).
    Security(SecurityError),
    /// A connectionless packet to a socket that takes only RDP.
    ConnectionlessRefused,
    /// A SYN to a socket that takes no RDP.
    RdpRefused,
    /// A SYN with no free connection slot or a full accept backlog.
    BacklogFull,
    /// A SYN that did not decode or carried out-of-range options.
    BadSyn,
    /// The outgoing queue was full (forwarding, service reply).
    TxQueueFull,
    /// A service reply could not be sent (no route, header does not fit).
    ReplyFailed(NodeError),
}

impl fmt::Display for RxDrop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RxDrop::UnknownIface(i) => write!(f, "frame on unknown interface {i}"),
            RxDrop::Malformed(e) => write!(f, "malformed frame: {e}"),
            RxDrop::TooLong { len } => write!(f, "frame of {len} bytes too long"),
            RxDrop::NotForUs => f.write_str("not for this node"),
            RxDrop::NoRoute(a) => write!(f, "no route to {a}"),
            RxDrop::NoSocket(p) => write!(f, "nothing bound to port {p}"),
            RxDrop::NoConnection => f.write_str("RDP segment for no connection"),
            RxDrop::RxQueueFull => f.write_str("receive queue full"),
            RxDrop::Security(e) => write!(f, "{e}"),
            RxDrop::ConnectionlessRefused => f.write_str("socket takes RDP only"),
            RxDrop::RdpRefused => f.write_str("socket takes no RDP"),
            RxDrop::BacklogFull => f.write_str("no room for another connection"),
            RxDrop::BadSyn => f.write_str("bad RDP SYN"),
            RxDrop::TxQueueFull => f.write_str("transmit queue full"),
            RxDrop::ReplyFailed(e) => write!(f, "reply not sent: {e}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for RxDrop {}

/// What the node saw and did. Plain counters, wrapping; the owner reads them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NodeCounters {
    /// Frames handed to `handle_frame`.
    pub rx_frames: u32,
    /// Connectionless packets queued to sockets.
    pub rx_delivered: u32,
    /// RDP segments handed to connections (SYNs that opened one included).
    pub rx_segments: u32,
    /// Service requests handled.
    pub rx_service: u32,
    /// Frames on an unknown interface.
    pub rx_unknown_iface: u32,
    /// Frames shorter than a header.
    pub rx_malformed: u32,
    /// Frames longer than the packet buffers.
    pub rx_too_long: u32,
    /// Frames for another node with forwarding off.
    pub rx_not_for_us: u32,
    /// Packets with nothing bound to their port.
    pub rx_no_socket: u32,
    /// RDP segments for no connection.
    pub rx_no_connection: u32,
    /// Packets dropped for a full receive queue.
    pub rx_queue_full: u32,
    /// Packets whose trailers failed (CRC, HMAC, XTEA, or missing).
    pub rx_security: u32,
    /// Packets of a kind the socket does not take (connectionless / RDP).
    pub rx_refused: u32,
    /// SYNs refused: no slot, backlog full, or bad SYN.
    pub rx_syn_refused: u32,
    /// Half-open connections (SYN received, handshake not completed)
    /// dropped: their SYN-RECEIVED timeout ran out, or a newer SYN to the
    /// same listener took their place (see `SynLimits`).
    pub half_open_dropped: u32,
    /// Packets forwarded to another interface.
    pub forwarded: u32,
    /// Packets not forwarded or replies not sent for lack of a route.
    pub no_route: u32,
    /// Frames handed out by `poll_transmit`.
    pub tx_frames: u32,
    /// Packets delivered through the internal loopback.
    pub loopback: u32,
    /// Outgoing packets dropped for a full queue (forwarding, service replies).
    pub tx_queue_full: u32,
    /// Outgoing frames dropped: larger than the MTU, or a header the
    /// interface's version can not carry.
    pub tx_dropped: u32,
    /// `poll_transmit` calls whose buffer was too small for the next frame.
    pub tx_buf_too_small: u32,
}
