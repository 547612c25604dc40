//! XTEA encryption as libcsp 1.x does it (removed in 2.x), kept for talking
//! to 1.x nodes.
//!
//! A keystream is made by encrypting 8-byte counter blocks
//! `iv0 (big-endian) | counter (big-endian)` with XTEA (32 rounds), and is
//! XORed over the data, so encryption and decryption are the same operation.
//! libcsp's quirks are reproduced because the other side has them:
//! - the XTEA core loads the block words and the key words little-endian
//!   (it casts the byte arrays to `uint32_t *` on a little-endian CPU);
//! - the counter is post-incremented when the block after the first is
//!   formed, so blocks 0 and 1 both use `iv1` and share their keystream,
//!   block 2 uses `iv1 + 1`, and so on.
//!
//! In packet mode the iv is `{nonce, 1}` and the nonce is appended
//! big-endian. XTEA here gives no integrity: a wrong key decrypts to noise,
//! which the CRC or HMAC inside then rejects.

use core::fmt;

use super::hmac::derive_key;
use super::{ensure_room, push_trailer, SecurityError, Trailer, XTEA_NONCE_LEN};
use crate::packet::Packet;

const ROUNDS: u32 = 32;
const DELTA: u32 = 0x9E37_79B9;
const BLOCK: usize = 8;

/// A 128-bit XTEA key, held as the four words the cipher uses. Its `Debug`
/// output does not show the key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct XteaKey([u32; 4]);

impl XteaKey {
    /// The key libcsp 1.x derives from a key string (`csp_xtea_set_key`):
    /// the first 16 bytes of its SHA1, as for HMAC.
    pub fn from_key_string(key: &[u8]) -> XteaKey {
        XteaKey::from_raw(derive_key(key))
    }

    /// A key given as its 16 bytes (already derived).
    pub const fn from_raw(key: [u8; 16]) -> XteaKey {
        XteaKey([
            le_word(&key, 0),
            le_word(&key, 4),
            le_word(&key, 8),
            le_word(&key, 12),
        ])
    }

    /// The key bytes (as given to [`from_raw`](Self::from_raw)).
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        for (chunk, w) in out.chunks_exact_mut(4).zip(self.0) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// One XTEA block encryption (32 rounds) of the words `v`.
    fn encrypt_block(&self, [mut v0, mut v1]: [u32; 2]) -> [u32; 2] {
        let k = &self.0;
        let mut sum = 0u32;
        for _ in 0..ROUNDS {
            v0 = v0.wrapping_add(
                ((v1 << 4 ^ v1 >> 5).wrapping_add(v1)) ^ sum.wrapping_add(k[(sum & 3) as usize]),
            );
            sum = sum.wrapping_add(DELTA);
            v1 = v1.wrapping_add(
                ((v0 << 4 ^ v0 >> 5).wrapping_add(v0))
                    ^ sum.wrapping_add(k[(sum >> 11 & 3) as usize]),
            );
        }
        [v0, v1]
    }

    /// The 8 keystream bytes for the counter block `iv0 | ctr`.
    fn keystream(&self, iv0: u32, ctr: u32) -> [u8; BLOCK] {
        // The block is written big-endian and read back little-endian, so
        // each word enters the cipher byte-swapped.
        let [v0, v1] = self.encrypt_block([iv0.swap_bytes(), ctr.swap_bytes()]);
        let mut out = [0u8; BLOCK];
        out[..4].copy_from_slice(&v0.to_le_bytes());
        out[4..].copy_from_slice(&v1.to_le_bytes());
        out
    }
}

/// The little-endian word at `key[i..i + 4]`, as libcsp's cast reads it.
const fn le_word(key: &[u8; 16], i: usize) -> u32 {
    u32::from_le_bytes([key[i], key[i + 1], key[i + 2], key[i + 3]])
}

impl fmt::Debug for XteaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("XteaKey(..)")
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for XteaKey {
    fn format(&self, f: defmt::Formatter) {
        defmt::write!(f, "XteaKey(..)")
    }
}

/// XOR `data` with libcsp 1.x's XTEA keystream for `iv` (`csp_xtea_encrypt`):
/// encrypts plaintext and decrypts ciphertext alike.
pub fn xtea_crypt(key: &XteaKey, iv: [u32; 2], data: &mut [u8]) {
    let [iv0, iv1] = iv;
    for (i, chunk) in data.chunks_mut(BLOCK).enumerate() {
        // Blocks 0 and 1 both use iv1 (libcsp's post-increment).
        let ctr = iv1.wrapping_add((i as u32).saturating_sub(1));
        let ks = key.keystream(iv0, ctr);
        for (b, k) in chunk.iter_mut().zip(ks) {
            *b ^= k;
        }
    }
}

/// Encrypt the data of a packet (payload and every trailer) with iv
/// `{nonce, 1}` and append the nonce big-endian (`csp_xtea_encrypt_packet`).
/// The nonce comes from the caller and must not repeat under one key. On
/// error the packet is unchanged.
pub fn xtea_encrypt_packet<const N: usize>(
    packet: &mut Packet<N>,
    key: &XteaKey,
    nonce: u32,
) -> Result<(), SecurityError> {
    ensure_room(packet, XTEA_NONCE_LEN)?;
    xtea_crypt(key, [nonce, 1], packet.data_mut());
    push_trailer(packet, &nonce.to_be_bytes())
}

/// Strip the nonce from the end of the data and decrypt the rest in place
/// (`csp_xtea_decrypt_packet`). Returns the nonce. On error the packet is
/// unchanged.
pub fn xtea_decrypt_packet<const N: usize>(
    packet: &mut Packet<N>,
    key: &XteaKey,
) -> Result<u32, SecurityError> {
    let got = packet.len();
    let Some(body) = got.checked_sub(XTEA_NONCE_LEN) else {
        return Err(SecurityError::TooShort {
            trailer: Trailer::Xtea,
            needed: XTEA_NONCE_LEN,
            got,
        });
    };
    if let Some((data, n)) = packet.data_mut().split_last_chunk_mut::<XTEA_NONCE_LEN>() {
        let nonce = u32::from_be_bytes(*n);
        xtea_crypt(key, [nonce, 1], data);
        packet.truncate(body);
        return Ok(nonce);
    }
    Err(SecurityError::TooShort {
        trailer: Trailer::Xtea,
        needed: XTEA_NONCE_LEN,
        got,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::Header;
    use proptest::prelude::*;

    #[test]
    fn first_two_blocks_share_keystream() {
        let key = XteaKey::from_key_string(b"secret");
        let mut z = [0u8; 24];
        xtea_crypt(&key, [0x1122_3344, 1], &mut z);
        assert_eq!(z[..8], z[8..16]);
        assert_ne!(z[8..16], z[16..]);
        assert_eq!(&z[..4], &[0x80, 0x94, 0x48, 0x4f]);
    }

    #[test]
    fn key_bytes_round_trip() {
        let raw = *b"0123456789abcdef";
        assert_eq!(XteaKey::from_raw(raw).to_bytes(), raw);
    }

    #[test]
    fn packet_round_trip_and_bounds() {
        type P = Packet<32>;
        let key = XteaKey::from_key_string(b"secret");
        let mut p = P::with_data(Header::default(), &[0, 1, 2, 3, 4, 5, 6, 7]).unwrap();
        xtea_encrypt_packet(&mut p, &key, 1_804_289_383).unwrap();
        assert_eq!(&p.data()[8..], &1_804_289_383u32.to_be_bytes());
        assert_eq!(xtea_decrypt_packet(&mut p, &key), Ok(1_804_289_383));
        assert_eq!(p.data(), &[0, 1, 2, 3, 4, 5, 6, 7]);

        let mut short = P::with_data(Header::default(), &[1, 2, 3]).unwrap();
        assert!(matches!(
            xtea_decrypt_packet(&mut short, &key),
            Err(SecurityError::TooShort { .. })
        ));
        assert_eq!(short.data(), &[1, 2, 3]);

        let mut full = P::with_data(Header::default(), &[9; P::CAPACITY - 2]).unwrap();
        assert!(matches!(
            xtea_encrypt_packet(&mut full, &key, 7),
            Err(SecurityError::BufferFull { .. })
        ));
        assert_eq!(full.data(), &[9; P::CAPACITY - 2], "nothing encrypted");
    }

    proptest! {
        #[test]
        fn crypt_is_an_involution(
            data in proptest::collection::vec(any::<u8>(), 0..70),
            iv in any::<[u32; 2]>(),
            key in any::<[u8; 16]>(),
        ) {
            let key = XteaKey::from_raw(key);
            let mut buf = data.clone();
            xtea_crypt(&key, iv, &mut buf);
            if data.len() >= 8 {
                prop_assert_ne!(&buf, &data);
            }
            xtea_crypt(&key, iv, &mut buf);
            prop_assert_eq!(buf, data);
        }
    }
}
