//! CAN Fragmentation Protocol (CFP): CSP packets over 29-bit CAN frames, as
//! libcsp's CAN interface puts them on the bus.
//!
//! Two layouts, chosen by the CSP header [`Version`] in force:
//! - **CFP1** (libcsp 1.x): the id carries `src | dst | type | remain | ident`;
//!   the first (BEGIN) frame carries the 4-byte v1 header and a 2-byte length,
//!   later (MORE) frames count `remain` down to 0.
//! - **CFP2** (libcsp 2.x): the id carries `prio | dst | sender | counter |
//!   fragment | begin | end`; the first frame carries src, ports and flags in
//!   4 bytes, and there is no length: the frame with `end` set completes it.
//!
//! [`fragment`] turns a packet into frames; [`Reassembler`] turns frames from
//! any number of interleaved senders back into packets, in a bounded number of
//! slots with timeouts driven by the caller's clock. [`CanLink`] puts both
//! behind one CAN interface of a [`crate::Node`].

mod id;
mod link;
mod reassembly;

pub use id::{CfpId, V1_MAX_IDENT, V2_MAX_COUNTER};
pub use link::CanLink;
pub use reassembly::{CfpStats, Reassembled, Reassembler, DEFAULT_TIMEOUT};

use core::fmt;

use crate::header::{Addr, Header, HeaderError, Version};

/// Bytes of data in one classic CAN frame.
pub const CAN_DATA_LEN: usize = 8;
/// Largest 29-bit extended CAN identifier.
pub const CAN_EXT_ID_MAX: u32 = 0x1FFF_FFFF;
/// Bytes of CFP1's BEGIN frame taken by the header and length field.
const V1_BEGIN_OVERHEAD: usize = 6;
/// Bytes of CFP2's first frame taken by src, ports and flags.
const V2_BEGIN_OVERHEAD: usize = 4;
/// CFP1 counts the frames after BEGIN in 8 bits, so a packet spans at most
/// 256 frames: 2 bytes in BEGIN and 8 in each of 255 MORE frames.
pub const V1_MAX_DATA: usize = (CAN_DATA_LEN - V1_BEGIN_OVERHEAD) + 255 * CAN_DATA_LEN;

/// One CAN 2.0B extended frame: a 29-bit id and 0..8 data bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CanFrame {
    /// The 29-bit identifier.
    pub id: u32,
    len: u8,
    bytes: [u8; CAN_DATA_LEN],
}

impl CanFrame {
    /// A frame, if `id` fits 29 bits and `data` fits 8 bytes.
    pub fn new(id: u32, data: &[u8]) -> Result<CanFrame, CfpError> {
        if id > CAN_EXT_ID_MAX {
            return Err(CfpError::BadId(id));
        }
        let mut bytes = [0u8; CAN_DATA_LEN];
        bytes
            .get_mut(..data.len())
            .ok_or(CfpError::BadDlc(data.len()))?
            .copy_from_slice(data);
        Ok(CanFrame {
            id,
            len: data.len() as u8,
            bytes,
        })
    }

    /// The data bytes (the frame's DLC is their length).
    pub fn data(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len).min(CAN_DATA_LEN)]
    }

    /// The data length code (0..8).
    pub fn dlc(&self) -> u8 {
        self.len
    }
}

/// What the sending interface adds to a packet: the link-level fields that
/// are not in the CSP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TxLink {
    /// Next hop from the route (`None`: the packet's destination). CFP1 puts
    /// it in the id's dst; CFP2 keeps the packet's destination in the id (as
    /// libcsp 2.x does) and ignores it.
    pub via: Option<Addr>,
    /// The sending interface's own address; CFP2 sends its low 6 bits as the
    /// sender field, CFP1 does not use it.
    pub iface_addr: Addr,
    /// The interface's CFP counter, incremented once per packet by the owner;
    /// masked to 10 bits (CFP1 ident) or 2 bits (CFP2 sender counter).
    pub counter: u16,
}

/// Why a packet could not be fragmented or a frame not reassembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CfpError {
    /// The CSP header does not fit the CFP version's fields.
    Header(HeaderError),
    /// An id that does not fit 29 bits.
    BadId(u32),
    /// More than 8 data bytes for a CAN frame.
    BadDlc(usize),
    /// A packet longer than the protocol or the buffer can carry.
    TooLong {
        /// Bytes of data offered or announced.
        len: usize,
        /// The most that fits.
        max: usize,
    },
    /// A first frame too short to hold its CFP fields.
    Malformed,
    /// A continuation frame with no packet in progress for its id.
    Orphan,
    /// A continuation frame that is not the next one: the packet is lost.
    OutOfOrder,
    /// Frames carried more data than the packet announced or the buffer holds:
    /// the packet is lost.
    Overlong,
    /// Every reassembly slot is busy: the new packet is dropped.
    NoSlot,
}

impl From<HeaderError> for CfpError {
    fn from(e: HeaderError) -> Self {
        CfpError::Header(e)
    }
}

impl fmt::Display for CfpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CfpError::Header(e) => write!(f, "header: {e}"),
            CfpError::BadId(id) => write!(f, "CAN id {id:#x} exceeds 29 bits"),
            CfpError::BadDlc(n) => write!(f, "{n} data bytes exceed a CAN frame"),
            CfpError::TooLong { len, max } => write!(f, "{len} bytes, at most {max} fit"),
            CfpError::Malformed => f.write_str("first frame too short for its CFP fields"),
            CfpError::Orphan => f.write_str("continuation frame with no packet in progress"),
            CfpError::OutOfOrder => f.write_str("frame out of order, packet lost"),
            CfpError::Overlong => f.write_str("frames exceed the announced length, packet lost"),
            CfpError::NoSlot => f.write_str("all reassembly slots busy, packet dropped"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for CfpError {}

/// Splits `data` (the packet's data after the header, trailers included) of a
/// packet with `header` into CAN frames, in sending order.
pub fn fragment<'a>(
    version: Version,
    header: &Header,
    data: &'a [u8],
    link: TxLink,
) -> Result<Fragments<'a>, CfpError> {
    header.check(version)?;
    if let Some(via) = link.via {
        if via.get() > version.max_addr() {
            return Err(CfpError::Header(HeaderError::AddrOutOfRange {
                addr: via.get(),
                max: version.max_addr(),
            }));
        }
    }
    let first = match version {
        Version::V1 => {
            if data.len() > V1_MAX_DATA {
                return Err(CfpError::TooLong {
                    len: data.len(),
                    max: V1_MAX_DATA,
                });
            }
            let mut first = [0u8; CAN_DATA_LEN];
            header.emit(&mut first, version)?;
            first[4..6].copy_from_slice(&(data.len() as u16).to_be_bytes());
            first
        }
        Version::V2 => {
            let mut first = [0u8; CAN_DATA_LEN];
            first[..4].copy_from_slice(&id::v2_begin_fields(header).to_be_bytes());
            first
        }
    };
    let overhead = begin_overhead(version);
    let in_first = data.len().min(CAN_DATA_LEN - overhead);
    let frames = 1 + (data.len() - in_first).div_ceil(CAN_DATA_LEN);
    let dst = match version {
        Version::V1 => link.via.unwrap_or(header.dst),
        Version::V2 => header.dst,
    };
    Ok(Fragments {
        version,
        base: CfpId::base(version, header, dst, link),
        first,
        data,
        frames,
        index: 0,
        offset: 0,
    })
}

fn begin_overhead(version: Version) -> usize {
    match version {
        Version::V1 => V1_BEGIN_OVERHEAD,
        Version::V2 => V2_BEGIN_OVERHEAD,
    }
}

/// The frames of one packet, produced by [`fragment`]; an iterator that
/// borrows the packet's data and copies 8 bytes at a time.
#[derive(Debug, Clone)]
pub struct Fragments<'a> {
    version: Version,
    base: CfpId,
    first: [u8; CAN_DATA_LEN],
    data: &'a [u8],
    frames: usize,
    index: usize,
    offset: usize,
}

impl Fragments<'_> {
    /// Frames the packet takes in total.
    pub fn frame_count(&self) -> usize {
        self.frames
    }
}

impl Iterator for Fragments<'_> {
    type Item = CanFrame;

    fn next(&mut self) -> Option<CanFrame> {
        if self.index >= self.frames {
            return None;
        }
        let id = self.base.frame(self.index, self.frames).raw();
        let mut bytes = [0u8; CAN_DATA_LEN];
        let (head, room) = if self.index == 0 {
            let overhead = begin_overhead(self.version);
            bytes[..overhead].copy_from_slice(&self.first[..overhead]);
            (overhead, CAN_DATA_LEN - overhead)
        } else {
            (0, CAN_DATA_LEN)
        };
        let rest = self.data.get(self.offset..).unwrap_or_default();
        let take = rest.len().min(room);
        bytes[head..head + take].copy_from_slice(&rest[..take]);
        self.offset += take;
        self.index += 1;
        Some(CanFrame {
            id,
            len: (head + take) as u8,
            bytes,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.frames - self.index;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Fragments<'_> {}
