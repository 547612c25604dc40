//! The CSP header, version 1 (4 bytes) and version 2 (6 bytes).
//!
//! Two layers, as in smoltcp: [`HeaderView`] is a checked view over the bytes
//! at the front of a frame, [`Header`] the plain value with
//! [`parse`](Header::parse) and [`emit`](Header::emit). Both directions are
//! total: any byte string parses to a value or a [`HeaderError`], and a value
//! that does not fit the chosen version is refused instead of spilling into
//! the neighbouring field as libcsp does.
//!
//! Bit layout, big-endian, most significant bit first:
//! - v1 (u32): `prio:2 | src:5 | dst:5 | dport:6 | sport:6 | flags:8`
//! - v2 (u48): `prio:2 | dst:14 | src:14 | dport:6 | sport:6 | flags:6`

use core::fmt;

/// Which header format is on the wire: a per-link setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Version {
    /// libcsp 1.x: 4 bytes, 5-bit addresses, 8 flag bits.
    V1,
    /// libcsp 2.x (its default): 6 bytes, 14-bit addresses, 6 flag bits.
    #[default]
    V2,
}

/// The largest header of any version: room a buffer keeps in front of the data.
pub const MAX_HEADER_LEN: usize = 6;

/// An emitted header: the bytes, of which the first `.1` are valid.
pub type HeaderBytes = ([u8; MAX_HEADER_LEN], usize);

impl Version {
    /// Bytes the header takes on the wire.
    pub const fn header_len(self) -> usize {
        match self {
            Version::V1 => 4,
            Version::V2 => 6,
        }
    }

    /// Highest address this version can carry (it is also the broadcast address).
    pub const fn max_addr(self) -> u16 {
        match self {
            Version::V1 => 31,
            Version::V2 => 16383,
        }
    }

    /// The broadcast address: all address bits set.
    pub const fn broadcast(self) -> Addr {
        Addr(self.max_addr())
    }

    /// Flag bits this version can carry.
    pub const fn flag_mask(self) -> u8 {
        match self {
            Version::V1 => 0xFF,
            Version::V2 => 0x3F,
        }
    }

    /// Number of address bits (5 or 14), used for route prefixes.
    pub const fn addr_bits(self) -> u8 {
        match self {
            Version::V1 => 5,
            Version::V2 => 14,
        }
    }
}

/// Packet priority. Lower value is more urgent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum Prio {
    /// 0: critical.
    Critical = 0,
    /// 1: high (RDP control segments go at this priority).
    High = 1,
    /// 2: normal, the default.
    #[default]
    Normal = 2,
    /// 3: low.
    Low = 3,
}

impl Prio {
    /// The 2-bit value; any `u8` is reduced to its low two bits, so this is total.
    pub const fn from_bits(bits: u8) -> Prio {
        match bits & 0x3 {
            0 => Prio::Critical,
            1 => Prio::High,
            2 => Prio::Normal,
            _ => Prio::Low,
        }
    }

    /// A priority from 0..=3, or an error naming the bad value.
    pub const fn new(value: u8) -> Result<Prio, HeaderError> {
        if value > 3 {
            Err(HeaderError::PrioOutOfRange(value))
        } else {
            Ok(Prio::from_bits(value))
        }
    }
}

/// A CSP node address. At most 14 bits (v2); whether it fits a v1 header
/// (5 bits) is checked when the header is emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Addr(u16);

impl Addr {
    /// Address 0: by convention the local node ("localhost"); always delivered locally.
    pub const LOCAL: Addr = Addr(0);

    /// An address in 0..=16383.
    pub const fn new(value: u16) -> Result<Addr, HeaderError> {
        if value > Version::V2.max_addr() {
            Err(HeaderError::AddrOutOfRange {
                addr: value,
                max: Version::V2.max_addr(),
            })
        } else {
            Ok(Addr(value))
        }
    }

    /// An address that must fit the given header version.
    pub const fn for_version(value: u16, version: Version) -> Result<Addr, HeaderError> {
        if value > version.max_addr() {
            Err(HeaderError::AddrOutOfRange {
                addr: value,
                max: version.max_addr(),
            })
        } else {
            Ok(Addr(value))
        }
    }

    /// The numeric address.
    pub const fn get(self) -> u16 {
        self.0
    }

    /// True if this is the broadcast address of `version`.
    pub const fn is_broadcast(self, version: Version) -> bool {
        self.0 == version.max_addr()
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A CSP port, 0..=63 on the wire. (The bind wildcard `CSP_ANY` is not a
/// port; see [`crate::bind`].)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Port(u8);

impl Port {
    /// Highest port number on the wire.
    pub const MAX: u8 = 63;
    /// CMP (management) service port.
    pub const CMP: Port = Port(0);
    /// Ping service port.
    pub const PING: Port = Port(1);
    /// Process list service port.
    pub const PS: Port = Port(2);
    /// Free memory service port.
    pub const MEMFREE: Port = Port(3);
    /// Reboot / shutdown request port.
    pub const REBOOT: Port = Port(4);
    /// Free buffers service port.
    pub const BUF_FREE: Port = Port(5);
    /// Uptime service port.
    pub const UPTIME: Port = Port(6);

    /// A port in 0..=63.
    pub const fn new(value: u8) -> Result<Port, HeaderError> {
        if value > Self::MAX {
            Err(HeaderError::PortOutOfRange(value))
        } else {
            Ok(Port(value))
        }
    }

    /// The numeric port.
    pub const fn get(self) -> u8 {
        self.0
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Header flag bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Flags(u8);

impl Flags {
    /// No flags.
    pub const NONE: Flags = Flags(0);
    /// CRC32 trailer present.
    pub const CRC32: Flags = Flags(0x01);
    /// RDP trailer present (reliable connection).
    pub const RDP: Flags = Flags(0x02);
    /// XTEA encrypted (libcsp 1.x only).
    pub const XTEA: Flags = Flags(0x04);
    /// HMAC trailer present.
    pub const HMAC: Flags = Flags(0x08);
    /// SFP fragment.
    pub const FRAG: Flags = Flags(0x10);

    /// Flags from raw bits; reserved bits are kept (accepted, never set by us).
    pub const fn from_bits(bits: u8) -> Flags {
        Flags(bits)
    }

    /// The raw bits.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// True if every bit of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// `self` with the bits of `other` set.
    #[must_use]
    pub const fn with(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// `self` with the bits of `other` cleared.
    #[must_use]
    pub const fn without(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }
}

impl core::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        self.with(rhs)
    }
}

/// Why a header could not be parsed or emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum HeaderError {
    /// Fewer bytes than the header needs.
    Truncated {
        /// Bytes the header of this version needs.
        needed: usize,
        /// Bytes available.
        got: usize,
    },
    /// Address too large for the header version.
    AddrOutOfRange {
        /// The address given.
        addr: u16,
        /// The largest the version allows.
        max: u16,
    },
    /// Port above 63.
    PortOutOfRange(u8),
    /// Priority above 3.
    PrioOutOfRange(u8),
    /// Flag bits the header version cannot carry (v2 has only six).
    FlagsNotRepresentable(u8),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            HeaderError::Truncated { needed, got } => {
                write!(f, "header needs {needed} bytes, frame has {got}")
            }
            HeaderError::AddrOutOfRange { addr, max } => {
                write!(f, "address {addr} out of range (max {max})")
            }
            HeaderError::PortOutOfRange(p) => write!(f, "port {p} out of range (max 63)"),
            HeaderError::PrioOutOfRange(p) => write!(f, "priority {p} out of range (max 3)"),
            HeaderError::FlagsNotRepresentable(b) => {
                write!(f, "flags {b:#04x} do not fit this header version")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for HeaderError {}

/// A CSP header as a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Header {
    /// Priority.
    pub prio: Prio,
    /// Source address.
    pub src: Addr,
    /// Destination address.
    pub dst: Addr,
    /// Destination port.
    pub dport: Port,
    /// Source port.
    pub sport: Port,
    /// Flags (CRC32, RDP, XTEA, HMAC, FRAG and reserved bits).
    pub flags: Flags,
}

impl Header {
    /// Parse the header at the front of `frame`. Every field is masked to its
    /// width, so any `header_len` bytes give a header: only length can fail.
    pub fn parse(frame: &[u8], version: Version) -> Result<Header, HeaderError> {
        HeaderView::new_checked(frame, version).map(|v| v.header())
    }

    /// Write the header into the first `version.header_len()` bytes of `buf`
    /// and return that length. Out-of-range fields are refused, never masked.
    pub fn emit(&self, buf: &mut [u8], version: Version) -> Result<usize, HeaderError> {
        let len = version.header_len();
        let got = buf.len();
        let out = buf
            .get_mut(..len)
            .ok_or(HeaderError::Truncated { needed: len, got })?;
        let raw = self.pack(version)?;
        out.copy_from_slice(&raw.to_be_bytes()[8 - len..]);
        Ok(len)
    }

    /// The header's bytes, checked for `version`, as a small array plus length.
    pub fn to_bytes(&self, version: Version) -> Result<HeaderBytes, HeaderError> {
        let mut buf = [0u8; MAX_HEADER_LEN];
        let len = self.emit(&mut buf, version)?;
        Ok((buf, len))
    }

    /// Checks that every field fits `version`.
    pub fn check(&self, version: Version) -> Result<(), HeaderError> {
        self.pack(version).map(|_| ())
    }

    fn pack(self, version: Version) -> Result<u64, HeaderError> {
        let max = version.max_addr();
        for addr in [self.src, self.dst] {
            if addr.0 > max {
                return Err(HeaderError::AddrOutOfRange { addr: addr.0, max });
            }
        }
        // Ports and priority are range-checked by their constructors.
        let flags = self.flags.bits();
        if flags & !version.flag_mask() != 0 {
            return Err(HeaderError::FlagsNotRepresentable(flags));
        }
        let (prio, src, dst) = (self.prio as u64, self.src.0 as u64, self.dst.0 as u64);
        let (dport, sport, flags) = (self.dport.0 as u64, self.sport.0 as u64, flags as u64);
        Ok(match version {
            Version::V1 => prio << 30 | src << 25 | dst << 20 | dport << 14 | sport << 8 | flags,
            Version::V2 => prio << 46 | dst << 32 | src << 18 | dport << 12 | sport << 6 | flags,
        })
    }

    /// The header a reply to this packet carries: addresses and ports swapped,
    /// same priority and flags.
    pub fn reply(&self) -> Header {
        Header {
            prio: self.prio,
            src: self.dst,
            dst: self.src,
            dport: self.sport,
            sport: self.dport,
            flags: self.flags,
        }
    }
}

/// A checked view of the header at the front of a frame, with the bytes after
/// it. Getters read straight from the bytes.
#[derive(Debug, Clone, Copy)]
pub struct HeaderView<'a> {
    frame: &'a [u8],
    version: Version,
}

impl<'a> HeaderView<'a> {
    /// A view if `frame` holds at least a header of `version`.
    pub fn new_checked(frame: &'a [u8], version: Version) -> Result<Self, HeaderError> {
        let needed = version.header_len();
        if frame.len() < needed {
            return Err(HeaderError::Truncated {
                needed,
                got: frame.len(),
            });
        }
        Ok(HeaderView { frame, version })
    }

    fn raw(&self) -> u64 {
        let mut be = [0u8; 8];
        let len = self.version.header_len();
        // `new_checked` made sure the frame holds the header; `get` keeps a
        // panic path out of firmware images all the same.
        if let (Some(to), Some(from)) = (be.get_mut(8 - len..), self.frame.get(..len)) {
            to.copy_from_slice(from);
        }
        u64::from_be_bytes(be)
    }

    fn get(&self, field: Field) -> u64 {
        extract(self.raw(), self.version, field)
    }

    /// Priority.
    pub fn prio(&self) -> Prio {
        Prio::from_bits(self.get(PRIO) as u8)
    }
    /// Source address.
    pub fn src(&self) -> Addr {
        Addr(self.get(SRC) as u16)
    }
    /// Destination address.
    pub fn dst(&self) -> Addr {
        Addr(self.get(DST) as u16)
    }
    /// Destination port.
    pub fn dport(&self) -> Port {
        Port(self.get(DPORT) as u8)
    }
    /// Source port.
    pub fn sport(&self) -> Port {
        Port(self.get(SPORT) as u8)
    }
    /// Flag bits.
    pub fn flags(&self) -> Flags {
        Flags(self.get(FLAGS) as u8)
    }
    /// The bytes of the header itself.
    pub fn header_bytes(&self) -> &'a [u8] {
        &self.frame[..self.version.header_len()]
    }
    /// Everything after the header: payload and trailers.
    pub fn payload(&self) -> &'a [u8] {
        self.frame
            .get(self.version.header_len()..)
            .unwrap_or_default()
    }
    /// The whole header as a value.
    pub fn header(&self) -> Header {
        // One load of the header word for all six fields (the per-field
        // getters each load it again).
        let (raw, v) = (self.raw(), self.version);
        Header {
            prio: Prio::from_bits(extract(raw, v, PRIO) as u8),
            src: Addr(extract(raw, v, SRC) as u16),
            dst: Addr(extract(raw, v, DST) as u16),
            dport: Port(extract(raw, v, DPORT) as u8),
            sport: Port(extract(raw, v, SPORT) as u8),
            flags: Flags(extract(raw, v, FLAGS) as u8),
        }
    }
}

/// Field positions as (v1 shift, v2 shift, v1 bits, v2 bits).
type Field = (u32, u32, u32, u32);
const PRIO: Field = (30, 46, 2, 2);
const SRC: Field = (25, 18, 5, 14);
const DST: Field = (20, 32, 5, 14);
const DPORT: Field = (14, 12, 6, 6);
const SPORT: Field = (8, 6, 6, 6);
const FLAGS: Field = (0, 0, 8, 6);

fn extract(raw: u64, version: Version, (v1_shift, v2_shift, v1_bits, v2_bits): Field) -> u64 {
    let (shift, bits) = match version {
        Version::V1 => (v1_shift, v1_bits),
        Version::V2 => (v2_shift, v2_bits),
    };
    (raw >> shift) & ((1u64 << bits) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(prio: u8, src: u16, dst: u16, dport: u8, sport: u8, flags: u8) -> Header {
        Header {
            prio: Prio::new(prio).unwrap(),
            src: Addr::new(src).unwrap(),
            dst: Addr::new(dst).unwrap(),
            dport: Port::new(dport).unwrap(),
            sport: Port::new(sport).unwrap(),
            flags: Flags::from_bits(flags),
        }
    }

    #[test]
    fn v1_known_bytes() {
        let h = header(2, 1, 2, 10, 20, 0);
        let (b, n) = h.to_bytes(Version::V1).unwrap();
        assert_eq!(&b[..n], &[0x82, 0x22, 0x94, 0x00]);
        assert_eq!(Header::parse(&b[..n], Version::V1), Ok(h));
    }

    #[test]
    fn out_of_range_is_refused_not_masked() {
        let h = header(2, 32, 2, 10, 20, 0);
        assert_eq!(
            h.check(Version::V1),
            Err(HeaderError::AddrOutOfRange { addr: 32, max: 31 })
        );
        assert!(h.check(Version::V2).is_ok());
        assert!(header(0, 1, 1, 1, 1, 0x20).check(Version::V2).is_ok());
        assert_eq!(
            header(0, 1, 1, 1, 1, 0x40).check(Version::V2),
            Err(HeaderError::FlagsNotRepresentable(0x40))
        );
        assert_eq!(Port::new(64), Err(HeaderError::PortOutOfRange(64)));
        assert_eq!(Prio::new(4), Err(HeaderError::PrioOutOfRange(4)));
        assert!(Addr::new(16384).is_err());
    }

    #[test]
    fn short_frames_and_buffers() {
        assert_eq!(
            Header::parse(&[1, 2, 3], Version::V1),
            Err(HeaderError::Truncated { needed: 4, got: 3 })
        );
        assert_eq!(
            Header::parse(&[1, 2, 3, 4, 5], Version::V2),
            Err(HeaderError::Truncated { needed: 6, got: 5 })
        );
        let mut small = [0u8; 5];
        assert!(Header::default().emit(&mut small, Version::V2).is_err());
    }

    fn arb_header(version: Version) -> impl Strategy<Value = Header> {
        let max = version.max_addr();
        let fmask = version.flag_mask();
        (0u8..4, 0..=max, 0..=max, 0u8..64, 0u8..64, any::<u8>())
            .prop_map(move |(p, s, d, dp, sp, f)| header(p, s, d, dp, sp, f & fmask))
    }

    proptest! {
        #[test]
        fn v1_round_trip(h in arb_header(Version::V1)) {
            let (b, n) = h.to_bytes(Version::V1).unwrap();
            prop_assert_eq!(n, 4);
            prop_assert_eq!(Header::parse(&b[..n], Version::V1), Ok(h));
        }

        #[test]
        fn v2_round_trip(h in arb_header(Version::V2)) {
            let (b, n) = h.to_bytes(Version::V2).unwrap();
            prop_assert_eq!(n, 6);
            prop_assert_eq!(Header::parse(&b[..n], Version::V2), Ok(h));
        }

        #[test]
        fn parse_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            for version in [Version::V1, Version::V2] {
                match Header::parse(&bytes, version) {
                    Ok(h) => {
                        // Whatever parses re-emits to the very same bytes.
                        let (b, n) = h.to_bytes(version).unwrap();
                        prop_assert_eq!(&b[..n], &bytes[..n]);
                    }
                    Err(e) => prop_assert!(bytes.len() < version.header_len(), "{e}"),
                }
            }
        }
    }
}
