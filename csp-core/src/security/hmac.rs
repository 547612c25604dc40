//! HMAC trailer: HMAC-SHA1 truncated to 4 bytes, keyed with the first 16
//! bytes of SHA1(key string), as libcsp does.

use core::fmt;

use ::hmac::{Hmac, Mac};
use sha1::{Digest, Sha1};

use super::HMAC_LEN;
use super::{covered_header, emitted, push_trailer, split_trailer, Cover, SecurityError, Trailer};
use crate::header::MAX_HEADER_LEN;
use crate::packet::Packet;

/// Bytes of an HMAC key after derivation.
pub const HMAC_KEY_LEN: usize = 16;

/// SHA1 input block: HMAC pads (or hashes) its key to this length.
const SHA1_BLOCK: usize = 64;

/// A 16-byte HMAC key. Its `Debug` output does not show the key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HmacKey([u8; HMAC_KEY_LEN]);

impl HmacKey {
    /// The key libcsp derives from a key string (`csp_hmac_set_key`): the
    /// first 16 bytes of its SHA1, whatever its length.
    pub fn from_key_string(key: &[u8]) -> HmacKey {
        HmacKey(derive_key(key))
    }

    /// A key given as its 16 bytes (already derived).
    pub const fn from_raw(key: [u8; HMAC_KEY_LEN]) -> HmacKey {
        HmacKey(key)
    }

    /// The key bytes.
    pub const fn as_bytes(&self) -> &[u8; HMAC_KEY_LEN] {
        &self.0
    }

    fn mac(&self) -> Hmac<Sha1> {
        keyed(&self.0)
    }
}

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacKey(..)")
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for HmacKey {
    fn format(&self, f: defmt::Formatter) {
        defmt::write!(f, "HmacKey(..)")
    }
}

/// First 16 bytes of SHA1(`key`): the key derivation of libcsp for both HMAC
/// and XTEA.
pub(super) fn derive_key(key: &[u8]) -> [u8; 16] {
    let digest = Sha1::digest(key);
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// An HMAC-SHA1 instance for a key of any length. The key is brought to the
/// block size here (hashed if longer, zero-padded), exactly as HMAC defines,
/// so that the fixed-size constructor, which cannot fail, does the rest.
fn keyed(key: &[u8]) -> Hmac<Sha1> {
    let mut block = [0u8; SHA1_BLOCK];
    if key.len() > SHA1_BLOCK {
        block[..20].copy_from_slice(&Sha1::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    <Hmac<Sha1> as Mac>::new(&block.into())
}

/// Plain HMAC-SHA1 of `data` with a raw key of any length (libcsp's
/// `csp_hmac_memory`, no key derivation).
pub fn hmac_sha1(key: &[u8], data: &[u8]) -> [u8; 20] {
    let mut mac = keyed(key);
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The full HMAC-SHA1 digest over `header` (if the HMAC covers it) then `data`.
pub fn hmac_digest(key: &HmacKey, header: Option<&[u8]>, data: &[u8]) -> [u8; 20] {
    let mut mac = key.mac();
    if let Some(h) = header {
        mac.update(h);
    }
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The 4 trailer bytes: the digest's first 4 bytes.
pub fn hmac_trailer(key: &HmacKey, header: Option<&[u8]>, data: &[u8]) -> [u8; HMAC_LEN] {
    let d = hmac_digest(key, header, data);
    [d[0], d[1], d[2], d[3]]
}

/// Append the HMAC trailer over the data (and the header, per `cover`).
/// It covers the inner trailers (SFP, RDP) already there. On error the
/// packet is unchanged.
pub fn append_hmac<const N: usize>(
    packet: &mut Packet<N>,
    key: &HmacKey,
    cover: Cover,
) -> Result<(), SecurityError> {
    let header = covered_header(packet, cover)?;
    let trailer = hmac_trailer(key, header_slice(&header), packet.data());
    push_trailer(packet, &trailer)
}

/// Check the HMAC trailer at the end of the data (computed with `cover`) and
/// strip it. The comparison takes the same time wherever the bytes differ.
/// On error the packet is unchanged.
pub fn verify_hmac<const N: usize>(
    packet: &mut Packet<N>,
    key: &HmacKey,
    cover: Cover,
) -> Result<(), SecurityError> {
    let header = covered_header(packet, cover)?;
    let (body, trailer) = split_trailer(packet.data(), Trailer::Hmac)?;
    let body_len = body.len();
    check(key, header_slice(&header), body, trailer)?;
    packet.truncate(body_len);
    Ok(())
}

fn header_slice(header: &Option<([u8; MAX_HEADER_LEN], usize)>) -> Option<&[u8]> {
    header.as_ref().map(emitted)
}

/// `Ok` if `trailer` is the HMAC of `header` (if covered) and `body`.
pub(super) fn check(
    key: &HmacKey,
    header: Option<&[u8]>,
    body: &[u8],
    trailer: [u8; HMAC_LEN],
) -> Result<(), SecurityError> {
    let mut mac = key.mac();
    if let Some(h) = header {
        mac.update(h);
    }
    mac.update(body);
    mac.verify_truncated_left(&trailer)
        .map_err(|_| SecurityError::HmacMismatch)
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::header::{Addr, Flags, Header, Port, Prio, Version};
    use proptest::prelude::*;

    type P = Packet<64>;

    fn hdr() -> Header {
        Header {
            prio: Prio::Normal,
            src: Addr::new(1).unwrap(),
            dst: Addr::new(2).unwrap(),
            dport: Port::new(10).unwrap(),
            sport: Port::new(20).unwrap(),
            flags: Flags::HMAC,
        }
    }

    #[test]
    fn wire_md_check_value() {
        let key = HmacKey::from_key_string(b"secret");
        assert_eq!(
            hmac_trailer(&key, None, &[0, 1, 2, 3, 4, 5, 6, 7]),
            [0xbe, 0xe0, 0x47, 0x69]
        );
    }

    #[test]
    fn rfc2202_raw_key() {
        // RFC 2202 test case 2 and 6 (key longer than a block).
        let d = hmac_sha1(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(&d[..4], &[0xef, 0xfc, 0xdf, 0x6a]);
        assert_eq!(&d[16..], &[0x25, 0x9a, 0x7c, 0x79]);
        let d = hmac_sha1(
            &[0xaa; 80],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(&d[..4], &[0xaa, 0x4a, 0xe5, 0xe1]);
    }

    #[test]
    fn debug_hides_the_key() {
        let key = HmacKey::from_raw([0x42; 16]);
        assert_eq!(std::format!("{key:?}"), "HmacKey(..)");
    }

    #[test]
    fn round_trip_and_wrong_key() {
        let key = HmacKey::from_key_string(b"secret");
        for cover in [
            Cover::Data,
            Cover::HeaderAndData(Version::V1),
            Cover::HeaderAndData(Version::V2),
        ] {
            let mut p = P::with_data(hdr(), b"hello").unwrap();
            append_hmac(&mut p, &key, cover).unwrap();
            assert_eq!(p.len(), 9);
            let sent = p.clone();
            let other = HmacKey::from_key_string(b"Secret");
            assert_eq!(
                verify_hmac(&mut p, &other, cover),
                Err(SecurityError::HmacMismatch)
            );
            assert_eq!(p, sent);
            verify_hmac(&mut p, &key, cover).unwrap();
            assert_eq!(p.data(), b"hello");
        }
    }

    #[test]
    fn header_cover_catches_header_change() {
        let key = HmacKey::from_key_string(b"k");
        let mut p = P::with_data(hdr(), b"x").unwrap();
        append_hmac(&mut p, &key, Cover::HeaderAndData(Version::V2)).unwrap();
        p.header.dport = Port::new(11).unwrap();
        assert_eq!(
            verify_hmac(&mut p, &key, Cover::HeaderAndData(Version::V2)),
            Err(SecurityError::HmacMismatch)
        );
        // The data-only form does not see the header at all.
        let mut q = P::with_data(hdr(), b"x").unwrap();
        append_hmac(&mut q, &key, Cover::Data).unwrap();
        q.header.dport = Port::new(11).unwrap();
        assert_eq!(verify_hmac(&mut q, &key, Cover::Data), Ok(()));
    }

    #[test]
    fn short_packet() {
        let key = HmacKey::from_key_string(b"k");
        let mut p = P::with_data(hdr(), &[1, 2]).unwrap();
        assert_eq!(
            verify_hmac(&mut p, &key, Cover::Data),
            Err(SecurityError::TooShort {
                trailer: Trailer::Hmac,
                needed: 4,
                got: 2
            })
        );
    }

    proptest! {
        #[test]
        fn any_flip_is_caught(
            data in proptest::collection::vec(any::<u8>(), 0..50),
            pos in any::<proptest::sample::Index>(),
            mask in 1u8..,
        ) {
            let key = HmacKey::from_key_string(b"secret");
            let mut p = P::with_data(hdr(), &data).unwrap();
            append_hmac(&mut p, &key, Cover::Data).unwrap();
            let i = pos.index(p.len());
            p.data_mut()[i] ^= mask;
            prop_assert_eq!(
                verify_hmac(&mut p, &key, Cover::Data),
                Err(SecurityError::HmacMismatch)
            );
        }
    }
}
