//! A fixed-capacity packet buffer: header, then data, then trailers.
//!
//! The storage keeps [`MAX_HEADER_LEN`] bytes of room in front of the data, so
//! a frame arriving with either header version is copied in exactly once, the
//! header can be re-emitted in place for any version when the packet leaves
//! (a router that joins a v1 and a v2 link shifts nothing), and trailers
//! (SFP, RDP, HMAC, CRC) are appended and stripped at the end without moving
//! the payload.

use core::fmt;

use crate::header::{Header, HeaderBytes, HeaderError, HeaderView, Version, MAX_HEADER_LEN};

/// Offset of the first data byte in the storage.
const DATA: usize = MAX_HEADER_LEN;

/// Why a packet operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PacketError {
    /// The header could not be parsed or emitted.
    Header(HeaderError),
    /// The data would not fit: `len` bytes asked for, `capacity` available.
    TooLong {
        /// Bytes the operation needed after the header.
        len: usize,
        /// Bytes the buffer holds after the header.
        capacity: usize,
    },
    /// A trailer of `needed` bytes was asked for but only `got` are present.
    TooShort {
        /// Bytes the trailer needs.
        needed: usize,
        /// Bytes of data present.
        got: usize,
    },
}

impl From<HeaderError> for PacketError {
    fn from(e: HeaderError) -> Self {
        PacketError::Header(e)
    }
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacketError::Header(e) => write!(f, "{e}"),
            PacketError::TooLong { len, capacity } => {
                write!(f, "{len} bytes do not fit a packet of {capacity}")
            }
            PacketError::TooShort { needed, got } => {
                write!(f, "trailer of {needed} bytes, packet has {got}")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for PacketError {}

/// A packet of at most `N - 6` bytes of data and trailers after the header.
/// `N` is the whole storage, header room included.
#[derive(Clone)]
pub struct Packet<const N: usize> {
    /// The header the packet carries (emitted when the frame is built).
    pub header: Header,
    buf: [u8; N],
    end: usize,
}

impl<const N: usize> Packet<N> {
    const ROOM_CHECK: () = assert!(N > DATA, "a packet needs room for a header and data");

    /// Bytes of data and trailers the packet can hold after its header.
    pub const CAPACITY: usize = N - DATA;

    /// An empty packet with `header`.
    pub const fn new(header: Header) -> Self {
        #[allow(clippy::let_unit_value)]
        let _ = Self::ROOM_CHECK;
        Packet {
            header,
            buf: [0; N],
            end: DATA,
        }
    }

    /// A packet with `header` and a copy of `data`.
    pub fn with_data(header: Header, data: &[u8]) -> Result<Self, PacketError> {
        let mut p = Self::new(header);
        p.extend(data)?;
        Ok(p)
    }

    /// Parse a received frame (header, then data) of the given version: the
    /// data is copied once, behind the header room.
    pub fn from_frame(frame: &[u8], version: Version) -> Result<Self, PacketError> {
        let view = HeaderView::new_checked(frame, version)?;
        Self::with_data(view.header(), view.payload())
    }

    /// Data and trailers after the header.
    pub fn data(&self) -> &[u8] {
        // `get`, not indexing: `DATA <= end <= N` always holds, and a
        // firmware image then carries no panic path for it.
        self.buf.get(DATA..self.end).unwrap_or_default()
    }

    /// Data and trailers after the header, writable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        self.buf.get_mut(DATA..self.end).unwrap_or_default()
    }

    /// Bytes of data and trailers.
    pub fn len(&self) -> usize {
        self.end - DATA
    }

    /// True if there are no bytes after the header.
    pub fn is_empty(&self) -> bool {
        self.end == DATA
    }

    /// Room left for more data or trailers.
    pub fn remaining(&self) -> usize {
        N - self.end
    }

    /// Drop all data, keep the header.
    pub fn clear(&mut self) {
        self.end = DATA;
    }

    /// Keep only the first `len` bytes of data (no effect if already shorter).
    pub fn truncate(&mut self, len: usize) {
        self.end = DATA + len.min(self.len());
    }

    /// Append bytes: payload or a trailer. Nothing is written if they do not fit.
    pub fn extend(&mut self, bytes: &[u8]) -> Result<(), PacketError> {
        let new_end = self.end + bytes.len();
        let Some(room) = self.buf.get_mut(self.end..new_end) else {
            return Err(PacketError::TooLong {
                len: self.len() + bytes.len(),
                capacity: Self::CAPACITY,
            });
        };
        room.copy_from_slice(bytes);
        self.end = new_end;
        Ok(())
    }

    /// The last `K` bytes, removed from the data (a trailer being stripped).
    /// Nothing changes if the packet is shorter than `K`.
    pub fn pop_trailer<const K: usize>(&mut self) -> Result<[u8; K], PacketError> {
        let t: [u8; K] = self.peek_trailer()?;
        self.end -= K;
        Ok(t)
    }

    /// The last `K` bytes, left in place.
    pub fn peek_trailer<const K: usize>(&self) -> Result<[u8; K], PacketError> {
        let got = self.len();
        if got < K {
            return Err(PacketError::TooShort { needed: K, got });
        }
        let mut t = [0u8; K];
        t.copy_from_slice(&self.buf[self.end - K..self.end]);
        Ok(t)
    }

    /// Emit the header for `version` in front of the data and return the whole
    /// frame (header | data | trailers), ready for a link. No data moves.
    pub fn frame(&mut self, version: Version) -> Result<&[u8], PacketError> {
        let start = DATA - version.header_len();
        let room = self.buf.get_mut(start..DATA).unwrap_or_default();
        self.header.emit(room, version)?;
        Ok(self.buf.get(start..self.end).unwrap_or_default())
    }

    /// The header bytes for `version` and the data, without touching the
    /// buffer: what a CRC or HMAC that covers the header needs.
    pub fn header_and_data(&self, version: Version) -> Result<(HeaderBytes, &[u8]), PacketError> {
        Ok((self.header.to_bytes(version)?, self.data()))
    }
}

impl<const N: usize> fmt::Debug for Packet<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Packet")
            .field("header", &self.header)
            .field("data", &self.data())
            .finish()
    }
}

impl<const N: usize> PartialEq for Packet<N> {
    fn eq(&self, other: &Self) -> bool {
        self.header == other.header && self.data() == other.data()
    }
}

impl<const N: usize> Eq for Packet<N> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::{Addr, Flags, Port, Prio};

    type P = Packet<32>;

    fn hdr() -> Header {
        Header {
            prio: Prio::Normal,
            src: Addr::new(1).unwrap(),
            dst: Addr::new(2).unwrap(),
            dport: Port::new(10).unwrap(),
            sport: Port::new(20).unwrap(),
            flags: Flags::NONE,
        }
    }

    #[test]
    fn frame_round_trip_both_versions() {
        for version in [Version::V1, Version::V2] {
            let mut p = P::with_data(hdr(), b"hello").unwrap();
            let frame: heapless::Vec<u8, 32> =
                heapless::Vec::from_slice(p.frame(version).unwrap()).unwrap();
            assert_eq!(frame.len(), version.header_len() + 5);
            let q = P::from_frame(&frame, version).unwrap();
            assert_eq!(p, q);
        }
    }

    #[test]
    fn re_emit_other_version_in_place() {
        let mut p = P::with_data(hdr(), b"abc").unwrap();
        assert_eq!(
            p.frame(Version::V1).unwrap(),
            &[0x82, 0x22, 0x94, 0, b'a', b'b', b'c']
        );
        assert_eq!(p.frame(Version::V2).unwrap().len(), 9);
        assert_eq!(p.data(), b"abc");
    }

    #[test]
    fn trailers_push_pop_and_bounds() {
        let mut p = P::with_data(hdr(), &[7; 20]).unwrap();
        p.extend(&[1, 2, 3, 4]).unwrap();
        assert_eq!(p.remaining(), 2);
        assert_eq!(
            p.extend(&[0; 3]),
            Err(PacketError::TooLong {
                len: 27,
                capacity: 26
            })
        );
        assert_eq!(p.len(), 24, "a failed extend writes nothing");
        assert_eq!(p.pop_trailer::<4>().unwrap(), [1, 2, 3, 4]);
        assert_eq!(p.data(), &[7; 20]);
        p.truncate(2);
        assert_eq!(
            p.pop_trailer::<4>(),
            Err(PacketError::TooShort { needed: 4, got: 2 })
        );
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn from_frame_errors() {
        assert!(matches!(
            P::from_frame(&[1, 2], Version::V2),
            Err(PacketError::Header(HeaderError::Truncated { .. }))
        ));
        assert!(matches!(
            P::from_frame(&[0u8; 40], Version::V2),
            Err(PacketError::TooLong {
                len: 34,
                capacity: 26
            })
        ));
    }
}
