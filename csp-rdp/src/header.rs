//! The 5-byte RDP header and the SYN option block, as libcsp lays them out.
//!
//! CSP carries the RDP header as a trailer: `user data | flags | seq | ack`
//! at the end of the packet data (before any HMAC/CRC, which belong to
//! another layer). A SYN's "user data" is the option block of six
//! big-endian u32 words.

use core::fmt;

/// Length of the RDP header (trailer) on the wire.
pub const HEADER_LEN: usize = 5;

/// Length of the SYN option block (six big-endian u32 words).
pub const SYN_OPTIONS_LEN: usize = 24;

/// The low-nibble RDP flag bits. The high nibble of the wire byte is a
/// rolling counter on control segments and carries no meaning, so a
/// `Flags` value never holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Flags(u8);

impl Flags {
    /// Synchronise: opens a connection.
    pub const SYN: Flags = Flags(0x08);
    /// The `ack` field is valid (set on every segment after the first SYN).
    pub const ACK: Flags = Flags(0x04);
    /// Extended acknowledgement: the data is a list of out-of-order u16 sequence numbers.
    pub const EAK: Flags = Flags(0x02);
    /// Reset: closes the connection.
    pub const RST: Flags = Flags(0x01);
    /// No flag set.
    pub const NONE: Flags = Flags(0);

    /// The flags of a wire byte: the upper nibble (libcsp 2.x's rolling
    /// counter) is masked off, as every receiver must.
    pub const fn from_wire(byte: u8) -> Flags {
        Flags(byte & 0x0f)
    }

    /// The four flag bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// All of `other`'s bits are set in `self`.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union of both flag sets.
    pub const fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
}

impl core::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        self.union(rhs)
    }
}

/// A decoded RDP header. `wire_flags` keeps the byte exactly as received
/// (counter nibble included) so that a re-encode is byte-exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RdpHeader {
    /// The flags byte as on the wire, counter nibble included.
    pub wire_flags: u8,
    /// Sequence number of this segment (for control segments: the sender's next unused one).
    pub seq: u16,
    /// Last sequence number received in order by the sender of this segment.
    pub ack: u16,
}

impl RdpHeader {
    /// A header with the given flags and a counter value for the upper nibble
    /// (only its low 4 bits are used).
    pub const fn new(flags: Flags, counter: u8, seq: u16, ack: u16) -> Self {
        RdpHeader {
            wire_flags: flags.bits() | ((counter & 0x0f) << 4),
            seq,
            ack,
        }
    }

    /// The meaningful flag bits (counter nibble masked off).
    pub const fn flags(&self) -> Flags {
        Flags::from_wire(self.wire_flags)
    }

    /// The rolling counter in the upper nibble.
    pub const fn counter(&self) -> u8 {
        self.wire_flags >> 4
    }

    /// Decode the 5 header bytes.
    pub const fn from_be_bytes(b: [u8; HEADER_LEN]) -> Self {
        RdpHeader {
            wire_flags: b[0],
            seq: u16::from_be_bytes([b[1], b[2]]),
            ack: u16::from_be_bytes([b[3], b[4]]),
        }
    }

    /// Encode to the 5 header bytes.
    pub const fn to_be_bytes(&self) -> [u8; HEADER_LEN] {
        let s = self.seq.to_be_bytes();
        let a = self.ack.to_be_bytes();
        [self.wire_flags, s[0], s[1], a[0], a[1]]
    }

    /// Split CSP data into the user data and the trailing RDP header.
    pub fn split(segment: &[u8]) -> Result<(&[u8], RdpHeader), HeaderError> {
        let Some(body_len) = segment.len().checked_sub(HEADER_LEN) else {
            return Err(HeaderError::Truncated);
        };
        let (body, trailer) = segment.split_at(body_len);
        let mut b = [0u8; HEADER_LEN];
        b.copy_from_slice(trailer);
        Ok((body, RdpHeader::from_be_bytes(b)))
    }
}

/// The six option words a client puts in its SYN. Field order is the wire order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SynOptions {
    /// Window size in segments.
    pub window: u32,
    /// Connection timeout in milliseconds.
    pub conn_timeout_ms: u32,
    /// Packet (retransmission) timeout in milliseconds.
    pub packet_timeout_ms: u32,
    /// Delayed acknowledgements on (non-zero) or off.
    pub delayed_acks: u32,
    /// Delayed acknowledgement timeout in milliseconds.
    pub ack_timeout_ms: u32,
    /// Acknowledge at the latest after more than this many unacknowledged segments.
    pub ack_delay_count: u32,
}

impl SynOptions {
    /// Decode the option block. Bytes after the sixth word are ignored (room
    /// for a future option); fewer than 24 bytes is an error, never an
    /// out-of-bounds read (libcsp #966).
    pub fn parse(data: &[u8]) -> Result<Self, HeaderError> {
        if data.len() < SYN_OPTIONS_LEN {
            return Err(HeaderError::ShortSyn);
        }
        let w = |i: usize| u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
        Ok(SynOptions {
            window: w(0),
            conn_timeout_ms: w(4),
            packet_timeout_ms: w(8),
            delayed_acks: w(12),
            ack_timeout_ms: w(16),
            ack_delay_count: w(20),
        })
    }

    /// Encode the option block.
    pub fn to_be_bytes(&self) -> [u8; SYN_OPTIONS_LEN] {
        let mut out = [0u8; SYN_OPTIONS_LEN];
        let words = [
            self.window,
            self.conn_timeout_ms,
            self.packet_timeout_ms,
            self.delayed_acks,
            self.ack_timeout_ms,
            self.ack_delay_count,
        ];
        for (chunk, word) in out.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }
}

/// Why a segment could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum HeaderError {
    /// Fewer than 5 bytes: no room for the RDP header.
    Truncated,
    /// A SYN without the full 24-byte option block.
    ShortSyn,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::Truncated => f.write_str("RDP segment shorter than its 5-byte header"),
            HeaderError::ShortSyn => f.write_str("RDP SYN shorter than its 24-byte option block"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for HeaderError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_keeps_counter() {
        let h = RdpHeader::from_be_bytes([0x25, 0xae, 0x00, 0xad, 0xff]);
        assert_eq!(h.flags(), Flags::RST | Flags::ACK);
        assert_eq!(h.counter(), 2);
        assert_eq!(h.seq, 0xae00);
        assert_eq!(h.ack, 0xadff);
        assert_eq!(h.to_be_bytes(), [0x25, 0xae, 0x00, 0xad, 0xff]);
        assert_eq!(
            RdpHeader::new(Flags::RST | Flags::ACK, 2, 0xae00, 0xadff),
            h
        );
        // Only the low nibble of the counter is used.
        assert_eq!(RdpHeader::new(Flags::ACK, 0x12, 1, 2).wire_flags, 0x24);
    }

    #[test]
    fn split_takes_the_trailer() {
        let seg = [1, 2, 3, 0x04, 0x00, 0x10, 0x00, 0x20];
        let (body, h) = RdpHeader::split(&seg).unwrap();
        assert_eq!(body, &[1, 2, 3]);
        assert_eq!(h, RdpHeader::new(Flags::ACK, 0, 0x10, 0x20));
        for n in 0..HEADER_LEN {
            assert_eq!(RdpHeader::split(&seg[..n]), Err(HeaderError::Truncated));
        }
        assert!(RdpHeader::split(&seg[3..]).unwrap().0.is_empty());
    }

    #[test]
    fn syn_options_round_trip_and_short() {
        let o = SynOptions {
            window: 4,
            conn_timeout_ms: 10000,
            packet_timeout_ms: 1000,
            delayed_acks: 1,
            ack_timeout_ms: 250,
            ack_delay_count: 2,
        };
        let b = o.to_be_bytes();
        assert_eq!(b[..8], [0, 0, 0, 4, 0, 0, 0x27, 0x10]);
        assert_eq!(SynOptions::parse(&b), Ok(o));
        for n in 0..SYN_OPTIONS_LEN {
            assert_eq!(SynOptions::parse(&b[..n]), Err(HeaderError::ShortSyn));
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_without_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            if let Ok((body, h)) = RdpHeader::split(&bytes) {
                proptest::prop_assert_eq!(body.len() + HEADER_LEN, bytes.len());
                proptest::prop_assert_eq!(&h.to_be_bytes()[..], &bytes[body.len()..]);
                proptest::prop_assert_eq!(h.flags().bits() & 0xf0, 0);
            }
            let _ = SynOptions::parse(&bytes);
        }
    }
}
