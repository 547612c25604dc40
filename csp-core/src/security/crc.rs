//! CRC32 trailer: CRC-32C (Castagnoli), appended big-endian.

#[cfg(not(any(feature = "std", feature = "crc-table")))]
use ::crc::NoTable;
#[cfg(any(feature = "std", feature = "crc-table"))]
use ::crc::Table;
use ::crc::{Crc, CRC_32_ISCSI};

use super::{covered_header, emitted, push_trailer, split_trailer, Cover, SecurityError, Trailer};
use crate::header::Version;
use crate::packet::Packet;

/// CRC-32C as libcsp computes it: reflected polynomial 0x82F63B78, init and
/// xorout 0xFFFFFFFF. Three sizes, chosen by features:
/// - firmware by default (no `std`): the bitwise variant, no table at all:
///   the 1 KiB one-table variant was 3% of a 32 KiB flash budget, and 8
///   shifts per byte cost a 256-byte packet well under a millisecond on a
///   Cortex-M4;
/// - firmware with flash to spare (`crc-table`): the one-table variant
///   (1 KiB), several times faster per byte;
/// - hosts (`std`): the 16-table variant (16 KiB), faster again.
#[cfg(not(any(feature = "std", feature = "crc-table")))]
static CASTAGNOLI: Crc<u32, NoTable> = Crc::<u32, NoTable>::new(&CRC_32_ISCSI);
#[cfg(all(feature = "crc-table", not(feature = "std")))]
static CASTAGNOLI: Crc<u32, Table<1>> = Crc::<u32, Table<1>>::new(&CRC_32_ISCSI);
#[cfg(feature = "std")]
static CASTAGNOLI: Crc<u32, Table<16>> = Crc::<u32, Table<16>>::new(&CRC_32_ISCSI);

/// CRC-32C of `data` (libcsp's `csp_crc32_memory`).
pub fn crc32c(data: &[u8]) -> u32 {
    CASTAGNOLI.checksum(data)
}

/// CRC-32C of the concatenation of `parts`, without copying them together
/// (a header and the data after it, for instance).
pub fn crc32c_parts(parts: &[&[u8]]) -> u32 {
    let mut digest = CASTAGNOLI.digest();
    for part in parts {
        digest.update(part);
    }
    digest.finalize()
}

/// The 4 trailer bytes for `data`, preceded by `header` if the CRC covers it.
pub fn crc_trailer(header: Option<&[u8]>, data: &[u8]) -> [u8; 4] {
    match header {
        Some(h) => crc32c_parts(&[h, data]),
        None => crc32c(data),
    }
    .to_be_bytes()
}

/// Which forms of CRC32 trailer a receiver accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CrcAccept {
    /// Over the data, or over header and data: what libcsp 2.x accepts.
    #[default]
    Either,
    /// Over the data only: what libcsp sends.
    DataOnly,
    /// Over header and data only: the opt-in header-covering mode.
    HeaderOnly,
}

/// Append the CRC32 trailer over the data (and the header, per `cover`).
/// It covers every trailer already there (SFP, RDP, HMAC), as on the wire.
/// On error the packet is unchanged.
pub fn append_crc<const N: usize>(
    packet: &mut Packet<N>,
    cover: Cover,
) -> Result<(), SecurityError> {
    let header = covered_header(packet, cover)?;
    let trailer = crc_trailer(header.as_ref().map(emitted), packet.data());
    push_trailer(packet, &trailer)
}

/// Check the CRC32 trailer at the end of the data and strip it. `version`
/// is the header version the packet came in with (the header-covering form
/// covers the header as emitted for it). Returns the form that matched; on
/// error the packet is unchanged.
pub fn verify_crc<const N: usize>(
    packet: &mut Packet<N>,
    version: Version,
    accept: CrcAccept,
) -> Result<Cover, SecurityError> {
    let header = match (accept, packet.header.to_bytes(version)) {
        (CrcAccept::DataOnly, _) => None,
        (_, Ok(h)) => Some(h),
        (CrcAccept::HeaderOnly, Err(e)) => return Err(SecurityError::Header(e)),
        // The data-only form needs no header.
        (CrcAccept::Either, Err(_)) => None,
    };
    let (body, trailer) = split_trailer(packet.data(), Trailer::Crc32)?;
    let body_len = body.len();
    let cover = check(version, header.as_ref().map(emitted), body, trailer, accept)?;
    packet.truncate(body_len);
    Ok(cover)
}

/// Which accepted form `trailer` is the CRC of, if any. `header` is the
/// emitted header of `version` (absent if it cannot be emitted).
pub(super) fn check(
    version: Version,
    header: Option<&[u8]>,
    body: &[u8],
    trailer: [u8; 4],
    accept: CrcAccept,
) -> Result<Cover, SecurityError> {
    // libcsp tries the header form first; the data form comes first here
    // because it is what everyone sends, which saves a pass over the data.
    // Both matching at once is a 2^-32 coincidence either way.
    if accept != CrcAccept::HeaderOnly && crc_trailer(None, body) == trailer {
        return Ok(Cover::Data);
    }
    if accept != CrcAccept::DataOnly {
        if let Some(h) = header {
            if crc_trailer(Some(h), body) == trailer {
                return Ok(Cover::HeaderAndData(version));
            }
        }
    }
    Err(SecurityError::CrcMismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::{Addr, Flags, Header, Port, Prio};
    use proptest::prelude::*;

    type P = Packet<64>;

    fn hdr() -> Header {
        Header {
            prio: Prio::Normal,
            src: Addr::new(1).unwrap(),
            dst: Addr::new(2).unwrap(),
            dport: Port::new(10).unwrap(),
            sport: Port::new(20).unwrap(),
            flags: Flags::CRC32,
        }
    }

    #[test]
    fn check_values() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        assert_eq!(crc32c_parts(&[b"1234", b"", b"56789"]), 0xE306_9283);
    }

    #[test]
    fn append_then_verify_strips() {
        let mut p = P::with_data(hdr(), &[0, 1, 2, 3, 4, 5, 6, 7]).unwrap();
        append_crc(&mut p, Cover::Data).unwrap();
        assert_eq!(&p.data()[8..], &[0x8a, 0x2c, 0xbc, 0x3b]);
        assert_eq!(
            verify_crc(&mut p, Version::V2, CrcAccept::Either),
            Ok(Cover::Data)
        );
        assert_eq!(p.data(), &[0, 1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn both_forms_accepted_unless_restricted() {
        for version in [Version::V1, Version::V2] {
            let mut p = P::with_data(hdr(), b"abc").unwrap();
            append_crc(&mut p, Cover::HeaderAndData(version)).unwrap();
            let sent = p.clone();
            assert_eq!(
                verify_crc(&mut p, version, CrcAccept::Either),
                Ok(Cover::HeaderAndData(version))
            );
            assert_eq!(p.data(), b"abc");

            let mut p = sent.clone();
            assert_eq!(
                verify_crc(&mut p, version, CrcAccept::DataOnly),
                Err(SecurityError::CrcMismatch)
            );
            assert_eq!(p, sent, "a failed verify changes nothing");

            // The data-only form is refused where the header form is required.
            let mut q = P::with_data(hdr(), b"abc").unwrap();
            append_crc(&mut q, Cover::Data).unwrap();
            assert_eq!(
                verify_crc(&mut q, version, CrcAccept::HeaderOnly),
                Err(SecurityError::CrcMismatch)
            );
        }
    }

    #[test]
    fn header_form_needs_an_emittable_header() {
        let mut h = hdr();
        h.src = Addr::new(100).unwrap(); // too large for v1
        let mut p = P::with_data(h, b"abc").unwrap();
        assert!(matches!(
            append_crc(&mut p, Cover::HeaderAndData(Version::V1)),
            Err(SecurityError::Header(_))
        ));
        assert_eq!(p.data(), b"abc");
        append_crc(&mut p, Cover::Data).unwrap();
        // Either still accepts the data-only form.
        assert_eq!(
            verify_crc(&mut p.clone(), Version::V1, CrcAccept::Either),
            Ok(Cover::Data)
        );
        assert!(matches!(
            verify_crc(&mut p, Version::V1, CrcAccept::HeaderOnly),
            Err(SecurityError::Header(_))
        ));
    }

    #[test]
    fn short_and_full_packets() {
        let mut p = P::with_data(hdr(), &[1, 2, 3]).unwrap();
        assert_eq!(
            verify_crc(&mut p, Version::V2, CrcAccept::Either),
            Err(SecurityError::TooShort {
                trailer: Trailer::Crc32,
                needed: 4,
                got: 3
            })
        );
        let mut full = P::with_data(hdr(), &[0; P::CAPACITY - 3]).unwrap();
        assert_eq!(
            append_crc(&mut full, Cover::Data),
            Err(SecurityError::BufferFull {
                len: P::CAPACITY + 1,
                capacity: P::CAPACITY
            })
        );
        assert_eq!(full.len(), P::CAPACITY - 3);
    }

    proptest! {
        #[test]
        fn any_flip_is_caught(
            data in proptest::collection::vec(any::<u8>(), 0..50),
            pos in any::<proptest::sample::Index>(),
            mask in 1u8..,
        ) {
            let mut p = P::with_data(hdr(), &data).unwrap();
            append_crc(&mut p, Cover::Data).unwrap();
            let i = pos.index(p.len());
            p.data_mut()[i] ^= mask;
            prop_assert_eq!(
                verify_crc(&mut p, Version::V2, CrcAccept::Either),
                Err(SecurityError::CrcMismatch)
            );
        }

        #[test]
        fn verify_is_total(data in proptest::collection::vec(any::<u8>(), 0..20)) {
            let mut p = P::with_data(hdr(), &data).unwrap();
            for accept in [CrcAccept::Either, CrcAccept::DataOnly, CrcAccept::HeaderOnly] {
                let mut q = p.clone();
                if verify_crc(&mut q, Version::V1, accept).is_err() {
                    prop_assert_eq!(&q, &p);
                }
            }
            let _ = verify_crc(&mut p, Version::V2, CrcAccept::Either);
        }
    }
}
