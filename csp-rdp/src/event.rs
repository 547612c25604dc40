//! What a connection reports to its owner: events, send errors, transmits.

use core::fmt;

/// User data of one segment, copied out of the connection (fixed capacity, no heap).
#[derive(Clone, PartialEq, Eq)]
pub struct Payload<const SEG: usize> {
    len: usize,
    buf: [u8; SEG],
}

impl<const SEG: usize> Payload<SEG> {
    /// A payload holding a copy of `data`, or `None` if it exceeds `SEG` bytes.
    pub fn from_slice(data: &[u8]) -> Option<Self> {
        if data.len() > SEG {
            return None;
        }
        let mut buf = [0u8; SEG];
        buf[..data.len()].copy_from_slice(data);
        Some(Payload {
            len: data.len(),
            buf,
        })
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // `len <= SEG` always; `get` keeps a panic path out of firmware.
        self.buf.get(..self.len).unwrap_or_default()
    }
}

impl<const SEG: usize> core::ops::Deref for Payload<SEG> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl<const SEG: usize> fmt::Debug for Payload<SEG> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload({} bytes)", self.len)
    }
}

#[cfg(feature = "defmt")]
impl<const SEG: usize> defmt::Format for Payload<SEG> {
    fn format(&self, f: defmt::Formatter) {
        defmt::write!(f, "Payload({=usize} bytes)", self.len)
    }
}

/// Something the owner of a connection must know about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Event<const SEG: usize> {
    /// The handshake completed; `send` is possible.
    Connected,
    /// The next segment of user data, in order, exactly once.
    Data(Payload<SEG>),
    /// Every segment sent up to and including sequence number `through`
    /// (as returned by `send`) has been acknowledged by the peer.
    Acknowledged {
        /// Sequence number of the last acknowledged segment.
        through: u16,
    },
    /// The connection closed with all sent data acknowledged.
    Closed {
        /// Who closed it, and how.
        reason: CloseReason,
    },
    /// The connection failed; data sent and not reported acknowledged may not have arrived.
    Failed {
        /// Why.
        reason: FailReason,
    },
}

/// How a connection closed without losing data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CloseReason {
    /// We closed and the peer confirmed with its reset.
    Local,
    /// The peer closed (its reset came in sequence, after all its data).
    Peer,
    /// We closed, everything we sent was acknowledged, but the peer never
    /// confirmed the close within the close wait.
    CloseTimeout,
    /// We closed before the handshake completed.
    Aborted,
}

/// Why a connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FailReason {
    /// Nothing heard from the peer for the connection timeout while waiting for it.
    Timeout,
    /// A segment (or the SYN) went unacknowledged through every retransmission.
    RetransmitLimit,
    /// The peer reset the connection while our data was unacknowledged, or refused it.
    Reset,
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailReason::Timeout => f.write_str("RDP connection timed out"),
            FailReason::RetransmitLimit => f.write_str("RDP retransmission limit reached"),
            FailReason::Reset => f.write_str("RDP connection reset by peer"),
        }
    }
}

/// Why `send` refused data. Nothing was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SendError {
    /// The window is full: wait for an `Acknowledged` event and retry.
    WouldBlock,
    /// The connection is not open (handshaking, closing or closed).
    NotConnected,
    /// More bytes than one segment holds.
    TooLong,
    /// An empty segment: RDP can not tell it from a bare acknowledgement.
    Empty,
    /// The connection failed.
    Failed(FailReason),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::WouldBlock => f.write_str("RDP window full"),
            SendError::NotConnected => f.write_str("RDP connection not open"),
            SendError::TooLong => f.write_str("data longer than one RDP segment"),
            SendError::Empty => f.write_str("empty RDP segment"),
            SendError::Failed(r) => write!(f, "{r}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for SendError {}

#[cfg(feature = "std")]
impl std::error::Error for FailReason {}

/// One segment written by `poll_transmit`: `buf[..len]` is the CSP data
/// (user data followed by the 5-byte RDP header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Transmit {
    /// Bytes written.
    pub len: usize,
    /// A control segment (SYN, SYN-ACK, ACK, RST): libcsp sends these at
    /// priority 1 (High). Data segments go at the connection's priority;
    /// note that a libcsp server's connection takes its priority from the
    /// SYN, so its data goes at High too.
    pub prio_high: bool,
}
