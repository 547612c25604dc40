//! The CFP1 and CFP2 layouts of the 29-bit CAN identifier.
//!
//! CFP1: `src:5 | dst:5 | type:1 | remain:8 | ident:10` (type 0 BEGIN, 1 MORE).
//! CFP2: `prio:2 | dst:14 | sender:6 | counter:2 | fragment:3 | begin:1 | end:1`.

use super::TxLink;
use crate::header::{Addr, Flags, Header, Port, Prio, Version};

/// Largest CFP1 ident (the per-packet counter, 10 bits).
pub const V1_MAX_IDENT: u16 = 0x3FF;
/// Largest CFP2 sender counter (2 bits).
pub const V2_MAX_COUNTER: u16 = 0x3;

const V1_SRC_SHIFT: u32 = 24;
const V1_DST_SHIFT: u32 = 19;
const V1_TYPE_BIT: u32 = 1 << 18;
const V1_REMAIN_SHIFT: u32 = 10;
const V1_REMAIN_MASK: u32 = 0xFF << V1_REMAIN_SHIFT;
const V1_ADDR_MASK: u32 = 0x1F;

const V2_PRIO_SHIFT: u32 = 27;
const V2_DST_SHIFT: u32 = 13;
const V2_DST_MASK: u32 = 0x3FFF;
const V2_SENDER_SHIFT: u32 = 7;
const V2_SENDER_MASK: u32 = 0x3F;
const V2_COUNTER_SHIFT: u32 = 5;
const V2_FRAGMENT_SHIFT: u32 = 2;
const V2_FRAGMENT_MASK: u32 = 0x7 << V2_FRAGMENT_SHIFT;
const V2_BEGIN_BIT: u32 = 1 << 1;
const V2_END_BIT: u32 = 1;

/// A CAN identifier read (or built) as CFP of one version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CfpId {
    raw: u32,
    version: Version,
}

impl CfpId {
    /// `raw` (masked to 29 bits) read as CFP of `version`.
    pub const fn new(raw: u32, version: Version) -> CfpId {
        CfpId {
            raw: raw & super::CAN_EXT_ID_MAX,
            version,
        }
    }

    /// The id bits.
    pub const fn raw(self) -> u32 {
        self.raw
    }

    /// The fields every frame of a packet shares; per-frame fields are zero.
    pub(super) fn base(version: Version, header: &Header, dst: Addr, link: TxLink) -> CfpId {
        let raw = match version {
            Version::V1 => {
                u32::from(header.src.get()) << V1_SRC_SHIFT
                    | u32::from(dst.get()) << V1_DST_SHIFT
                    | u32::from(link.counter & V1_MAX_IDENT)
            }
            Version::V2 => {
                (header.prio as u32) << V2_PRIO_SHIFT
                    | u32::from(dst.get()) << V2_DST_SHIFT
                    | (u32::from(link.iface_addr.get()) & V2_SENDER_MASK) << V2_SENDER_SHIFT
                    | u32::from(link.counter & V2_MAX_COUNTER) << V2_COUNTER_SHIFT
            }
        };
        CfpId::new(raw, version)
    }

    /// The id of frame `index` of `frames`.
    pub(super) fn frame(self, index: usize, frames: usize) -> CfpId {
        let raw = match self.version {
            Version::V1 => {
                let remain = (frames - 1 - index) as u32 & 0xFF;
                let kind = if index == 0 { 0 } else { V1_TYPE_BIT };
                self.raw | kind | remain << V1_REMAIN_SHIFT
            }
            Version::V2 => {
                let fragment = (index as u32 & 0x7) << V2_FRAGMENT_SHIFT;
                let begin = if index == 0 { V2_BEGIN_BIT } else { 0 };
                let end = if index + 1 == frames { V2_END_BIT } else { 0 };
                self.raw | fragment | begin | end
            }
        };
        CfpId::new(raw, self.version)
    }

    /// The first frame of a packet (CFP1 BEGIN, CFP2 begin bit).
    pub const fn is_begin(self) -> bool {
        match self.version {
            Version::V1 => self.raw & V1_TYPE_BIT == 0,
            Version::V2 => self.raw & V2_BEGIN_BIT != 0,
        }
    }

    /// CFP2's end bit; CFP1 has none (its length field completes a packet).
    pub const fn is_end(self) -> bool {
        matches!(self.version, Version::V2) && self.raw & V2_END_BIT != 0
    }

    /// CFP1: frames still to come after this one. CFP2: the fragment counter
    /// (0 on the first frame, counting up, 3 bits).
    pub const fn sequence(self) -> u8 {
        match self.version {
            Version::V1 => ((self.raw & V1_REMAIN_MASK) >> V1_REMAIN_SHIFT) as u8,
            Version::V2 => ((self.raw & V2_FRAGMENT_MASK) >> V2_FRAGMENT_SHIFT) as u8,
        }
    }

    /// The link-level destination (CFP1: the next hop; CFP2: the packet's).
    pub fn dst(self) -> Addr {
        let bits = match self.version {
            Version::V1 => (self.raw >> V1_DST_SHIFT) & V1_ADDR_MASK,
            Version::V2 => (self.raw >> V2_DST_SHIFT) & V2_DST_MASK,
        };
        // Masked to the version's width, so always in range.
        Addr::new(bits as u16).unwrap_or(Addr::LOCAL)
    }

    /// The bits that name one packet in flight: everything but the per-frame
    /// fields. Frames of one packet share it; interleaved packets differ in
    /// sender or counter.
    pub const fn key(self) -> u32 {
        match self.version {
            Version::V1 => self.raw & !(V1_TYPE_BIT | V1_REMAIN_MASK),
            Version::V2 => self.raw & !(V2_FRAGMENT_MASK | V2_BEGIN_BIT | V2_END_BIT),
        }
    }

    /// CFP2: the header of a packet from this id and the 4 bytes at the
    /// front of its first frame.
    pub(super) fn v2_header(self, fields: u32) -> Header {
        let port = |bits: u32| Port::new((bits & 0x3F) as u8).unwrap_or(Port::CMP);
        Header {
            prio: Prio::from_bits((self.raw >> V2_PRIO_SHIFT) as u8),
            dst: self.dst(),
            src: Addr::new(((fields >> 18) & 0x3FFF) as u16).unwrap_or(Addr::LOCAL),
            dport: port(fields >> 12),
            sport: port(fields >> 6),
            flags: Flags::from_bits((fields & 0x3F) as u8),
        }
    }
}

/// CFP2's first 4 data bytes: `src:14 | dport:6 | sport:6 | flags:6`.
pub(super) fn v2_begin_fields(header: &Header) -> u32 {
    u32::from(header.src.get()) << 18
        | u32::from(header.dport.get()) << 12
        | u32::from(header.sport.get()) << 6
        | u32::from(header.flags.bits() & 0x3F)
}
