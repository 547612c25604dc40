//! RDP connections: what an application holds ([`Conn`], [`Listener`]),
//! how a connection is opened ([`ConnOptions`]) and the capacities of the
//! one `csp_core::Node` inside every client that runs them.
//!
//! The client keeps a single node for all its connections: the one home of
//! RDP composed with ports, CRC/HMAC trailers and priorities. Its only
//! interface is the connection to csp-muxd. The node's own address is 0
//! (`Addr::LOCAL`), so that every real destination, the daemon's own
//! address included, is routed out to the daemon (other applications live
//! there: a connection to them must go through it); segments for us arrive
//! with the daemon's address as destination and are handed to the node
//! with 0 instead, and what the node sends leaves with the daemon's address
//! as source (the daemon would fill it in for 0 too). A connection to
//! address 0 ("this node") is a connection to the daemon's address.
//!
//! Trailers cover the data only (what libcsp sends), so rewriting the
//! header's address on the way in and out changes nothing they cover. The
//! opt-in header-covering forms would not survive it; they are not offered.

use std::time::Duration;

use csp_core::security::{HmacKey, SecurityOptions};
use csp_core::Prio;

use crate::error::{Error, Result};
use crate::options::Options;

pub use csp_rdp::{CloseReason, Counters as ConnCounters, FailReason, Options as RdpOptions};

/// RDP connections (accepted and outgoing) one client holds at once.
pub const MAX_CONNS: usize = 16;
/// Listening ports one client holds at once.
pub const MAX_LISTENERS: usize = 16;
/// Segments in flight per connection at most (the node's capacity; the
/// window a connection uses is [`RdpOptions::window`], at most this).
pub const MAX_WINDOW: usize = 32;
/// Largest user data of one segment this client sends or takes. A peer
/// that sends larger segments can not reach us (they are dropped and its
/// connection fails): raise [`ConnOptions::segment`] only between peers
/// that both take it.
pub const MAX_SEGMENT: usize = 1024;
/// User data per segment by default: a segment, its RDP header and
/// HMAC + CRC trailers then fit the 256-byte packets of a typical radio or
/// libcsp build (`CSP_BUFFER_SIZE` 256), which is where ground connections go.
pub const DEFAULT_SEGMENT: usize = 200;
/// Received bytes buffered per connection before the client stops reading
/// from RDP (which then holds the rest, and the sender waits): the bound on
/// what an application that does not read costs.
pub const RX_BUFFER: usize = 64 * 1024;

/// The default RDP window: libcsp's (4), which every libcsp peer takes.
/// Raise it ([`ConnOptions::with_window`]) for peers known to keep up.
pub const DEFAULT_WINDOW: u16 = 4;

/// How long a closed connection keeps its slot by default: the closing end
/// waiting for the peer's reset, the end that was closed answering repeats
/// of it. csp-rdp's own default (the connection timeout, 10 s) would hold
/// an accepted connection's slot that long after every close, so a busy
/// listener would run out of its [`MAX_CONNS`] slots; cutting it short
/// loses nothing (the close wait starts once all data is acknowledged: the
/// worst case is a close reported as `CloseTimeout`).
pub const DEFAULT_CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Bytes of one packet buffer of the node: the largest segment with its
/// RDP header (5), HMAC, CRC and XTEA nonce (12), plus header room (6).
pub(crate) const PKT: usize = MAX_SEGMENT + 5 + 12 + 6;

// The default segment with its RDP header, HMAC and CRC fits a 256-byte
// libcsp buffer.
const _: () = assert!(DEFAULT_SEGMENT + 5 + 8 <= 256);

/// The node every client runs its connections in: `PKT`-byte buffers, one
/// connectionless slot (connectionless traffic does not go through it),
/// 4 queued frames, a port per listener and outgoing connection,
/// [`MAX_CONNS`] connections of window [`MAX_WINDOW`] and segments of
/// [`MAX_SEGMENT`], one interface (the daemon) and one route (default).
/// About 1.1 MB, allocated once per client on first RDP use.
pub(crate) type RdpNode = csp_core::Node<
    PKT,
    1,
    4,
    { MAX_CONNS + MAX_LISTENERS },
    MAX_CONNS,
    MAX_WINDOW,
    MAX_SEGMENT,
    1,
    1,
>;

/// An RDP connection: a handle into its [`Client`](crate::Client).
/// [`Client::close_conn`](crate::Client::close_conn) ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Conn {
    pub(crate) id: u64,
}

/// A port that accepts RDP connections.
/// [`Client::close_listener`](crate::Client::close_listener) releases it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Listener {
    pub(crate) id: u64,
}

/// Where a connection is in its life, as the application sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnState {
    /// The handshake is under way.
    Connecting,
    /// Data flows both ways.
    Open,
    /// We closed; waiting for our data to be acknowledged and the peer to confirm.
    Closing,
    /// Closed with every byte sent acknowledged (also: the peer closed).
    Closed(CloseReason),
    /// Failed: data sent and not acknowledged may be lost. The text says why.
    Failed(String),
}

/// How a connection is opened (or, for a listener, accepted).
///
/// CRC32 and HMAC go on every segment and are required on every segment
/// received. A listener requires them on the SYN and an accepted
/// connection then uses what the SYN carried (as libcsp does). XTEA and
/// SFP have no place on a connection: XTEA exists only with version 1
/// headers while the daemon's socket carries version 2, and RDP cuts data
/// into segments itself ([`Client::send`](crate::Client::send) takes any
/// length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnOptions {
    /// Append and require a CRC32 trailer.
    pub crc: bool,
    /// Append and require an HMAC trailer with this key.
    pub hmac: Option<HmacKey>,
    /// Priority of data segments (control segments always go at High).
    pub prio: Prio,
    /// User bytes per segment sent, 1..=[`MAX_SEGMENT`]
    /// (default [`DEFAULT_SEGMENT`]).
    pub segment: usize,
    /// RDP's options: window, timeouts, retransmissions. A client sends
    /// the negotiated ones in its SYN; a listener uses only the local
    /// policy (retransmissions, backoff, close wait) and takes the rest from
    /// each SYN.
    pub rdp: RdpOptions,
    /// A listener's backlog: connections accepted and alive at once
    /// (0: no limit but [`MAX_CONNS`]).
    pub backlog: u16,
}

impl Default for ConnOptions {
    fn default() -> Self {
        ConnOptions {
            crc: false,
            hmac: None,
            prio: Prio::Normal,
            segment: DEFAULT_SEGMENT,
            rdp: RdpOptions {
                window: DEFAULT_WINDOW,
                close_wait: ms(DEFAULT_CLOSE_WAIT),
                // Ask the server to acknowledge every segment at once: a
                // libcsp server adopts the SYN's options and would otherwise
                // hold its ACK for up to its 250 ms ack timeout (plus its
                // router's 100 ms wakeup), which every short exchange and
                // every `wait_acked` would wait out. Our own receivers
                // coalesce ACKs per burst, so bulk transfers barely pay.
                delayed_acks: false,
                ..RdpOptions::default()
            },
            backlog: 0,
        }
    }
}

impl ConnOptions {
    /// These options with a CRC32 trailer.
    pub fn with_crc(mut self) -> Self {
        self.crc = true;
        self
    }

    /// These options with an HMAC trailer keyed from `key` as libcsp does.
    pub fn with_hmac_key(mut self, key: &[u8]) -> Self {
        self.hmac = Some(HmacKey::from_key_string(key));
        self
    }

    /// These options with `bytes` of user data per segment.
    pub fn with_segment(mut self, bytes: usize) -> Self {
        self.segment = bytes;
        self
    }

    /// These options with an RDP window of `segments` (1..=[`MAX_WINDOW`]).
    pub fn with_window(mut self, segments: u16) -> Self {
        self.rdp.window = segments;
        self
    }

    /// These options with RDP's connection timeout: silence from the peer
    /// for this long fails the connection, even an idle one (csp-rdp sends
    /// no keepalives), so a connection that may stay quiet needs it long.
    pub fn with_conn_timeout(mut self, timeout: Duration) -> Self {
        self.rdp.conn_timeout = ms(timeout);
        self
    }

    /// These options with `wait` as RDP's close wait (see
    /// [`DEFAULT_CLOSE_WAIT`]).
    pub fn with_close_wait(mut self, wait: Duration) -> Self {
        self.rdp.close_wait = ms(wait);
        self
    }

    /// The connection-relevant part of socket [`Options`]: CRC, HMAC and
    /// priority. XTEA and SFP are refused with the reason.
    pub fn from_options(options: &Options) -> Result<Self> {
        if options.xtea.is_some() {
            return Err(Error::NotAvailable(
                "XTEA is not available on RDP connections: it exists only with libcsp 1.x \
                 (version 1) headers, and the connection's segments go through the daemon's \
                 socket with version 2 headers; use --hmac-key for integrity",
            ));
        }
        if options.sfp {
            return Err(Error::NotAvailable(
                "SFP is not used on RDP connections: send takes any length and cuts it \
                 into segments itself (see --segment)",
            ));
        }
        Ok(ConnOptions {
            crc: options.crc,
            hmac: options.hmac,
            prio: options.prio,
            ..ConnOptions::default()
        })
    }

    /// The trailers, as csp-core applies them.
    pub(crate) fn security(&self) -> SecurityOptions {
        SecurityOptions {
            crc: self.crc,
            hmac: self.hmac,
            ..SecurityOptions::NONE
        }
    }

    /// Check what the node would refuse later (or, worse, drop silently):
    /// the segment size against the node and the daemon's MTU, the window.
    pub(crate) fn check(&self, mtu: usize) -> Result<()> {
        let overhead = csp_rdp::header::HEADER_LEN + self.security().overhead();
        if self.segment == 0 || self.segment > MAX_SEGMENT {
            return Err(Error::InvalidOptions(format!(
                "segment size {} is outside 1..={MAX_SEGMENT}",
                self.segment
            )));
        }
        if self.segment + overhead > mtu {
            return Err(Error::InvalidOptions(format!(
                "segments of {} bytes with {overhead} bytes of RDP header and trailers do \
                 not fit csp-muxd's MTU of {mtu}",
                self.segment
            )));
        }
        self.rdp
            .validate(MAX_WINDOW)
            .map_err(|e| Error::InvalidOptions(format!("{e} (window 1..={MAX_WINDOW})")))
    }
}

/// A std duration as RDP's millisecond duration.
pub(crate) fn ms(d: Duration) -> csp_rdp::time::Duration {
    csp_rdp::time::Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What a failure reason means for a person.
pub(crate) fn fail_text(reason: FailReason) -> String {
    match reason {
        FailReason::Timeout => "the peer went silent (RDP connection timeout)".into(),
        FailReason::RetransmitLimit => {
            "the peer did not acknowledge (RDP retransmission limit reached)".into()
        }
        FailReason::Reset => "the peer reset the connection (refused, or it closed while \
                              our data was unacknowledged)"
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_before_the_node_sees_them() {
        let o = ConnOptions::default();
        assert!(o.check(4096).is_ok());
        assert!(o.with_segment(0).check(4096).is_err());
        assert!(o.with_segment(MAX_SEGMENT + 1).check(8192).is_err());
        // 200 + 5 + 8 does not fit 210, fits 213.
        let secure = o.with_crc().with_hmac_key(b"k");
        assert!(secure.check(212).is_err());
        assert!(secure.check(213).is_ok());
        assert!(o.with_window(MAX_WINDOW as u16 + 1).check(4096).is_err());
        assert!(o.with_window(0).check(4096).is_err());
        let msg = o.with_segment(4000).check(1000).unwrap_err().to_string();
        assert!(msg.contains("segment size 4000"), "{msg}");
    }

    #[test]
    fn xtea_and_sfp_are_refused_with_a_reason() {
        let x = ConnOptions::from_options(&Options::NONE.with_xtea_key(b"k")).unwrap_err();
        assert!(x.to_string().contains("XTEA"));
        let s = ConnOptions::from_options(&Options::NONE.with_sfp()).unwrap_err();
        assert!(s.to_string().contains("SFP"));
        let c = ConnOptions::from_options(&Options::NONE.with_crc().with_hmac_key(b"s")).unwrap();
        assert!(c.crc && c.hmac.is_some());
    }
}
