//! Security trailers: CRC-32C, HMAC-SHA1 (truncated), XTEA (libcsp 1.x).
//!
//! Trailers sit at the end of the data in a fixed order:
//! `payload | SFP (8) | RDP (5) | HMAC (4) | CRC32 (4)`, and in libcsp 1.x an
//! XTEA nonce (4) after all of it (the payload and every trailer before the
//! nonce being encrypted). SFP and RDP belong to their own modules; this one
//! adds and strips the outer three.
//!
//! Two layers:
//! - primitives and single-trailer operations on a [`Packet`]
//!   ([`crc32c`], [`append_crc`]/[`verify_crc`], [`HmacKey`],
//!   [`hmac_trailer`], [`append_hmac`]/[`verify_hmac`], [`XteaKey`],
//!   [`xtea_crypt`], [`xtea_encrypt_packet`]/[`xtea_decrypt_packet`]);
//! - [`SecurityOptions`], which applies all of them in wire order and keeps
//!   the header flags consistent with the trailers.
//!
//! Interoperability choices (libcsp behaviour, see WIRE.md):
//! - CRC and HMAC cover the data only when sent; on receive a CRC over the
//!   header and the data is accepted too (libcsp 2.x does the same).
//! - [`SecurityOptions::cover_header`] is an opt-in mode, not understood by
//!   libcsp on the wire, where both trailers cover the header as emitted for
//!   the link's version (with the final flags set) and the data; the receiver
//!   then insists on that form, so a header rewritten in transit is caught.
//!
//! No operation panics on any input, and a failed one leaves the packet as it
//! was.

use core::fmt;

use crate::header::{Flags, HeaderError, Version, MAX_HEADER_LEN};
use crate::packet::Packet;

mod crc;
mod hmac;
mod xtea;

pub use self::crc::{append_crc, crc32c, crc32c_parts, crc_trailer, verify_crc, CrcAccept};
pub use self::hmac::{
    append_hmac, hmac_digest, hmac_sha1, hmac_trailer, verify_hmac, HmacKey, HMAC_KEY_LEN,
};
pub use self::xtea::{xtea_crypt, xtea_decrypt_packet, xtea_encrypt_packet, XteaKey};

/// Bytes of the CRC32 trailer.
pub const CRC_LEN: usize = 4;
/// Bytes of the HMAC trailer (the digest truncated as libcsp does).
pub const HMAC_LEN: usize = 4;
/// Bytes of the XTEA nonce appended after the ciphertext (libcsp 1.x).
pub const XTEA_NONCE_LEN: usize = 4;

/// Which trailer an error or a result is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Trailer {
    /// The CRC32 trailer (flag `CRC32`).
    Crc32,
    /// The HMAC trailer (flag `HMAC`).
    Hmac,
    /// XTEA encryption and its nonce (flag `XTEA`, libcsp 1.x).
    Xtea,
}

impl Trailer {
    /// The header flag that announces this trailer.
    pub const fn flag(self) -> Flags {
        match self {
            Trailer::Crc32 => Flags::CRC32,
            Trailer::Hmac => Flags::HMAC,
            Trailer::Xtea => Flags::XTEA,
        }
    }
}

impl fmt::Display for Trailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Trailer::Crc32 => "CRC32",
            Trailer::Hmac => "HMAC",
            Trailer::Xtea => "XTEA",
        })
    }
}

/// Why a trailer could not be added or did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SecurityError {
    /// The data is shorter than the trailer it should end with.
    TooShort {
        /// Which trailer was being read.
        trailer: Trailer,
        /// Bytes the trailer needs.
        needed: usize,
        /// Bytes of data present.
        got: usize,
    },
    /// The CRC32 trailer does not match (in any accepted form).
    CrcMismatch,
    /// The HMAC trailer does not match: wrong key or altered data.
    HmacMismatch,
    /// The options require this trailer but the packet's header lacks its flag.
    MissingFlag(Trailer),
    /// The packet's header announces this trailer but no key is configured.
    NoKey(Trailer),
    /// XTEA exists only with the version 1 header (libcsp 2.x dropped it).
    XteaNeedsV1,
    /// The trailers do not fit the packet: `len` bytes needed, `capacity` there.
    BufferFull {
        /// Bytes of data the packet would hold with the trailers.
        len: usize,
        /// Bytes of data the packet can hold.
        capacity: usize,
    },
    /// The header could not be emitted for the version (header-covering mode).
    Header(HeaderError),
}

impl fmt::Display for SecurityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SecurityError::TooShort {
                trailer,
                needed,
                got,
            } => write!(
                f,
                "{trailer} trailer needs {needed} bytes, packet has {got}"
            ),
            SecurityError::CrcMismatch => f.write_str("CRC32 mismatch"),
            SecurityError::HmacMismatch => f.write_str("HMAC mismatch"),
            SecurityError::MissingFlag(t) => write!(f, "{t} required but not flagged"),
            SecurityError::NoKey(t) => write!(f, "{t} flagged but no key configured"),
            SecurityError::XteaNeedsV1 => f.write_str("XTEA exists only with version 1 headers"),
            SecurityError::BufferFull { len, capacity } => {
                write!(f, "trailers need {len} bytes, packet holds {capacity}")
            }
            SecurityError::Header(e) => write!(f, "{e}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for SecurityError {}

impl From<HeaderError> for SecurityError {
    fn from(e: HeaderError) -> Self {
        SecurityError::Header(e)
    }
}

/// What a CRC or HMAC trailer is computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Cover {
    /// The data after the header only: what libcsp sends.
    #[default]
    Data,
    /// The header as emitted for this version (current flags included),
    /// then the data.
    HeaderAndData(Version),
}

/// The header bytes a trailer with `cover` includes, if any.
fn covered_header<const N: usize>(
    packet: &Packet<N>,
    cover: Cover,
) -> Result<Option<([u8; MAX_HEADER_LEN], usize)>, SecurityError> {
    match cover {
        Cover::Data => Ok(None),
        Cover::HeaderAndData(version) => Ok(Some(packet.header.to_bytes(version)?)),
    }
}

/// The emitted bytes of a header from [`Header::to_bytes`](crate::header::Header::to_bytes).
/// `get`, not indexing: the length is at most the array's, and firmware
/// images then carry no panic path for it.
fn emitted((bytes, len): &([u8; MAX_HEADER_LEN], usize)) -> &[u8] {
    bytes.get(..*len).unwrap_or_default()
}

/// `BufferFull` if `extra` more bytes do not fit `packet`.
fn ensure_room<const N: usize>(packet: &Packet<N>, extra: usize) -> Result<(), SecurityError> {
    if packet.remaining() < extra {
        return Err(SecurityError::BufferFull {
            len: packet.len() + extra,
            capacity: Packet::<N>::CAPACITY,
        });
    }
    Ok(())
}

/// Append a trailer, or `BufferFull` with nothing written.
fn push_trailer<const N: usize>(packet: &mut Packet<N>, bytes: &[u8]) -> Result<(), SecurityError> {
    let len = packet.len() + bytes.len();
    packet.extend(bytes).map_err(|_| SecurityError::BufferFull {
        len,
        capacity: Packet::<N>::CAPACITY,
    })
}

/// The security trailers a connection or socket uses: what [`append`] adds on
/// send and what [`verify`] requires on receive.
///
/// [`append`]: SecurityOptions::append
/// [`verify`]: SecurityOptions::verify
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SecurityOptions {
    /// Append a CRC32 trailer (and require one on receive).
    pub crc: bool,
    /// Append an HMAC trailer with this key (and require one on receive).
    pub hmac: Option<HmacKey>,
    /// Encrypt with XTEA (libcsp 1.x only; and require it on receive).
    pub xtea: Option<XteaKey>,
    /// CRC and HMAC also cover the header (not understood by libcsp); on
    /// receive only the header-covering forms are accepted.
    pub cover_header: bool,
    /// On receive, accept a packet that lacks a trailer these options would
    /// add (libcsp's default, without its `*REQ` socket options). Trailers a
    /// packet does carry are always checked. Off by default: a packet that
    /// should carry an HMAC but does not is refused.
    pub accept_missing: bool,
}

/// What [`SecurityOptions::verify`] checked and stripped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Verified {
    /// The form the CRC32 trailer matched in, if the packet carried one.
    pub crc: Option<Cover>,
    /// True if an HMAC trailer was checked.
    pub hmac: bool,
    /// The XTEA nonce, if the packet was decrypted.
    pub xtea_nonce: Option<u32>,
}

impl SecurityOptions {
    /// Options for nothing at all: no trailers added, none required.
    pub const NONE: SecurityOptions = SecurityOptions {
        crc: false,
        hmac: None,
        xtea: None,
        cover_header: false,
        accept_missing: false,
    };

    /// The header flags these options put on a packet (XTEA only where it is
    /// allowed: [`append`](Self::append) refuses it for version 2).
    pub fn flags(&self) -> Flags {
        let mut f = Flags::NONE;
        if self.crc {
            f = f.with(Flags::CRC32);
        }
        if self.hmac.is_some() {
            f = f.with(Flags::HMAC);
        }
        if self.xtea.is_some() {
            f = f.with(Flags::XTEA);
        }
        f
    }

    /// Bytes [`append`](Self::append) adds after the data.
    pub fn overhead(&self) -> usize {
        let mut n = 0;
        if self.crc {
            n += CRC_LEN;
        }
        if self.hmac.is_some() {
            n += HMAC_LEN;
        }
        if self.xtea.is_some() {
            n += XTEA_NONCE_LEN;
        }
        n
    }

    fn cover(&self, version: Version) -> Cover {
        if self.cover_header {
            Cover::HeaderAndData(version)
        } else {
            Cover::Data
        }
    }

    /// Add the outer trailers for sending on a link of `version`, in wire
    /// order: HMAC, then CRC32, then (1.x) XTEA over all of it and the nonce.
    ///
    /// The header's CRC32, HMAC and XTEA flags are set to match the options
    /// (cleared where an option is off) before anything is computed, so a
    /// header-covering trailer covers the header exactly as it will be sent.
    /// `nonce` is used only with XTEA; it must not repeat under one key (the
    /// core has no random source: the caller supplies it).
    ///
    /// On error the packet is unchanged.
    pub fn append<const N: usize>(
        &self,
        packet: &mut Packet<N>,
        version: Version,
        nonce: u32,
    ) -> Result<(), SecurityError> {
        if self.xtea.is_some() && version != Version::V1 {
            return Err(SecurityError::XteaNeedsV1);
        }
        ensure_room(packet, self.overhead())?;
        let old = packet.header.flags;
        packet.header.flags = old
            .without(Flags::CRC32 | Flags::HMAC | Flags::XTEA)
            .with(self.flags());
        let cover = self.cover(version);
        if let Err(e) = covered_header(packet, cover) {
            packet.header.flags = old;
            return Err(e);
        }
        // With room and header checked up front, none of these can fail.
        if let Some(key) = &self.hmac {
            append_hmac(packet, key, cover)?;
        }
        if self.crc {
            append_crc(packet, cover)?;
        }
        if let Some(key) = &self.xtea {
            xtea_encrypt_packet(packet, key, nonce)?;
        }
        csp_trace!("security: appended trailers, {} bytes", packet.len());
        Ok(())
    }

    /// Check and strip the trailers of a packet received on a link of
    /// `version`, in reverse wire order: (1.x) XTEA decrypt, CRC32, HMAC.
    ///
    /// What is checked follows the header flags of the packet; the options
    /// supply the keys and say what must be present. A CRC32 is accepted over
    /// the data or over header and data (libcsp 2.x), unless
    /// [`cover_header`](Self::cover_header) is set, which requires the latter.
    /// The flags stay as received.
    ///
    /// On error the packet is unchanged (and should be dropped).
    pub fn verify<const N: usize>(
        &self,
        packet: &mut Packet<N>,
        version: Version,
    ) -> Result<Verified, SecurityError> {
        let flags = packet.header.flags;
        // In 2.x the 0x04 bit is not XTEA: it is left alone there.
        let xtea_flagged = version == Version::V1 && flags.contains(Flags::XTEA);
        if self.xtea.is_some() && version != Version::V1 {
            return Err(SecurityError::XteaNeedsV1);
        }
        if !self.accept_missing {
            let wanted = [
                (self.xtea.is_some() && !xtea_flagged, Trailer::Xtea),
                (self.crc && !flags.contains(Flags::CRC32), Trailer::Crc32),
                (
                    self.hmac.is_some() && !flags.contains(Flags::HMAC),
                    Trailer::Hmac,
                ),
            ];
            if let Some(&(_, t)) = wanted.iter().find(|(missing, _)| *missing) {
                return Err(SecurityError::MissingFlag(t));
            }
        }
        let xtea_key = match (xtea_flagged, &self.xtea) {
            (false, _) => None,
            (true, Some(k)) => Some(k),
            (true, None) => return Err(SecurityError::NoKey(Trailer::Xtea)),
        };
        let hmac_key = match (flags.contains(Flags::HMAC), &self.hmac) {
            (false, _) => None,
            (true, Some(k)) => Some(k),
            (true, None) => return Err(SecurityError::NoKey(Trailer::Hmac)),
        };

        let mut verified = Verified::default();
        if let Some(key) = xtea_key {
            verified.xtea_nonce = Some(xtea_decrypt_packet(packet, key)?);
        }
        // From here on a failure undoes the decryption, so that the caller
        // gets back what it was given (for counting, logging or forwarding).
        let inner = self.verify_inner(packet, version, flags, hmac_key, &mut verified);
        match inner {
            Ok(()) => Ok(verified),
            Err(e) => {
                if let (Some(key), Some(nonce)) = (xtea_key, verified.xtea_nonce) {
                    // Room is there: the nonce was just taken off.
                    let _ = xtea_encrypt_packet(packet, key, nonce);
                }
                csp_debug!("security: verify failed: {}", e);
                Err(e)
            }
        }
    }

    /// CRC then HMAC, on the (decrypted) data; checks on slices and strips
    /// both only once both pass, so a failure changes nothing.
    fn verify_inner<const N: usize>(
        &self,
        packet: &mut Packet<N>,
        version: Version,
        flags: Flags,
        hmac_key: Option<&HmacKey>,
        verified: &mut Verified,
    ) -> Result<(), SecurityError> {
        // A header that cannot be emitted for this version can still carry a
        // data-only CRC; only the header-covering checks need it.
        let header = packet.header.to_bytes(version);
        let header_bytes = header.as_ref().ok().map(emitted);
        let required_header = || match &header {
            Ok(h) => Ok(emitted(h)),
            Err(e) => Err(SecurityError::Header(*e)),
        };
        let data = packet.data();
        let mut end = data.len();
        if flags.contains(Flags::CRC32) {
            let (body, trailer) = split_trailer(&data[..end], Trailer::Crc32)?;
            verified.crc = Some(if self.cover_header {
                crc::check(
                    version,
                    Some(required_header()?),
                    body,
                    trailer,
                    CrcAccept::HeaderOnly,
                )?
            } else {
                crc::check(version, header_bytes, body, trailer, CrcAccept::Either)?
            });
            end = body.len();
        }
        if let Some(key) = hmac_key {
            let (body, trailer) =
                split_trailer(data.get(..end).unwrap_or_default(), Trailer::Hmac)?;
            let covered = if self.cover_header {
                Some(required_header()?)
            } else {
                None
            };
            hmac::check(key, covered, body, trailer)?;
            verified.hmac = true;
            end = body.len();
        }
        packet.truncate(end);
        Ok(())
    }
}

/// `data` split into the bytes before a 4-byte trailer and the trailer.
fn split_trailer(data: &[u8], trailer: Trailer) -> Result<(&[u8], [u8; 4]), SecurityError> {
    let got = data.len();
    let Some(body_len) = got.checked_sub(4) else {
        return Err(SecurityError::TooShort {
            trailer,
            needed: 4,
            got,
        });
    };
    let (body, t) = data.split_at(body_len);
    let mut out = [0u8; 4];
    out.copy_from_slice(t);
    Ok((body, out))
}

#[cfg(test)]
mod tests;
