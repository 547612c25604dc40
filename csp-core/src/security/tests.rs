//! Tests of the trailers applied together: wire order, flags, header cover,
//! strictness, tamper detection.

use super::*;
use crate::header::{Addr, Header, Port, Prio};
use proptest::prelude::*;

type P = Packet<128>;

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

fn secret() -> HmacKey {
    HmacKey::from_key_string(b"secret")
}

fn opts(crc: bool, hmac: bool, xtea: bool, cover_header: bool) -> SecurityOptions {
    SecurityOptions {
        crc,
        hmac: hmac.then(secret),
        xtea: xtea.then(|| XteaKey::from_key_string(b"secret")),
        cover_header,
        accept_missing: false,
    }
}

/// Every combination of options valid for `version`.
fn all_opts(version: Version) -> impl Iterator<Item = SecurityOptions> {
    (0u8..16).filter_map(move |bits| {
        let o = opts(bits & 1 != 0, bits & 2 != 0, bits & 4 != 0, bits & 8 != 0);
        (o.xtea.is_none() || version == Version::V1).then_some(o)
    })
}

/// The frame as a link would carry it, parsed back as a receiver would.
fn over_the_wire(p: &mut P, version: Version) -> P {
    let frame: heapless::Vec<u8, 128> =
        heapless::Vec::from_slice(p.frame(version).unwrap()).unwrap();
    P::from_frame(&frame, version).unwrap()
}

#[test]
fn wire_md_check_value_hmac_then_crc() {
    let o = opts(true, true, false, false);
    for version in [Version::V1, Version::V2] {
        let mut p = P::with_data(hdr(), &[0, 1, 2, 3, 4, 5, 6, 7]).unwrap();
        o.append(&mut p, version, 0).unwrap();
        assert_eq!(
            &p.data()[8..],
            &[0xbe, 0xe0, 0x47, 0x69, 0x74, 0xe7, 0x6b, 0xf6]
        );
        assert_eq!(p.header.flags, Flags::CRC32 | Flags::HMAC);
        let mut q = over_the_wire(&mut p, version);
        let v = o.verify(&mut q, version).unwrap();
        assert_eq!(
            v,
            Verified {
                crc: Some(Cover::Data),
                hmac: true,
                xtea_nonce: None
            }
        );
        assert_eq!(q.data(), &[0, 1, 2, 3, 4, 5, 6, 7]);
    }
}

#[test]
fn round_trip_every_combination() {
    for version in [Version::V1, Version::V2] {
        for o in all_opts(version) {
            let mut p = P::with_data(hdr(), b"payload and an inner trailer").unwrap();
            o.append(&mut p, version, 0xDEAD_BEEF).unwrap();
            assert_eq!(p.len(), 28 + o.overhead());
            assert_eq!(p.header.flags, o.flags());
            let mut q = over_the_wire(&mut p, version);
            let v = o
                .verify(&mut q, version)
                .unwrap_or_else(|e| panic!("{o:?}: {e}"));
            assert_eq!(q.data(), b"payload and an inner trailer");
            assert_eq!(v.hmac, o.hmac.is_some());
            assert_eq!(v.xtea_nonce, o.xtea.map(|_| 0xDEAD_BEEF));
            let want_cover = if o.cover_header {
                Cover::HeaderAndData(version)
            } else {
                Cover::Data
            };
            assert_eq!(v.crc, o.crc.then_some(want_cover));
        }
    }
}

#[test]
fn append_sets_flags_to_match_options() {
    let mut h = hdr();
    h.flags = Flags::CRC32 | Flags::HMAC | Flags::RDP;
    let mut p = P::with_data(h, b"x").unwrap();
    SecurityOptions::NONE
        .append(&mut p, Version::V2, 0)
        .unwrap();
    assert_eq!(p.header.flags, Flags::RDP, "stale trailer flags cleared");
    assert_eq!(p.data(), b"x");
}

#[test]
fn header_cover_covers_final_flags_and_rejects_data_only_form() {
    for version in [Version::V1, Version::V2] {
        let o = opts(true, true, false, true);
        let mut p = P::with_data(hdr(), b"abc").unwrap();
        o.append(&mut p, version, 0).unwrap();
        // The trailers were computed over the header as sent.
        let (h, n) = p.header.to_bytes(version).unwrap();
        let hmac = hmac_trailer(&secret(), Some(&h[..n]), b"abc");
        assert_eq!(&p.data()[3..7], &hmac);
        assert_eq!(&p.data()[7..], &crc_trailer(Some(&h[..n]), &p.data()[..7]));

        // What libcsp sends (data-only) is refused in this mode...
        let plain = opts(true, true, false, false);
        let mut q = P::with_data(hdr(), b"abc").unwrap();
        plain.append(&mut q, version, 0).unwrap();
        let mut r = over_the_wire(&mut q, version);
        assert_eq!(o.verify(&mut r, version), Err(SecurityError::CrcMismatch));
        // ...and the header-covering form, CRC aside, needs the header HMAC.
        let crc_only_cover = opts(true, false, false, true);
        let mut s = P::with_data(hdr(), b"abc").unwrap();
        crc_only_cover.append(&mut s, version, 0).unwrap();
        let mut t = over_the_wire(&mut s, version);
        assert!(crc_only_cover.verify(&mut t.clone(), version).is_ok());
        // A data-only receiver (libcsp 2.x behaviour) accepts it too.
        let crc_only = opts(true, false, false, false);
        assert_eq!(
            crc_only.verify(&mut t, version).unwrap().crc,
            Some(Cover::HeaderAndData(version))
        );
    }
}

#[test]
fn header_cover_catches_rewritten_header() {
    let o = opts(true, true, false, true);
    let mut p = P::with_data(hdr(), b"abc").unwrap();
    o.append(&mut p, Version::V2, 0).unwrap();
    let mut q = over_the_wire(&mut p, Version::V2);
    q.header.dst = Addr::new(3).unwrap();
    assert_eq!(
        o.verify(&mut q, Version::V2),
        Err(SecurityError::CrcMismatch)
    );
}

#[test]
fn strictness() {
    let o = opts(true, true, false, false);
    let mut bare = P::with_data(hdr(), b"abcdefgh").unwrap();
    assert_eq!(
        o.verify(&mut bare.clone(), Version::V2),
        Err(SecurityError::MissingFlag(Trailer::Crc32))
    );
    let lenient = SecurityOptions {
        accept_missing: true,
        ..o
    };
    assert_eq!(
        lenient.verify(&mut bare, Version::V2),
        Ok(Verified::default())
    );
    assert_eq!(bare.data(), b"abcdefgh");

    // CRC present but the HMAC the options require is not.
    let mut crc_only = P::with_data(hdr(), b"abcd").unwrap();
    opts(true, false, false, false)
        .append(&mut crc_only, Version::V2, 0)
        .unwrap();
    assert_eq!(
        o.verify(&mut crc_only, Version::V2),
        Err(SecurityError::MissingFlag(Trailer::Hmac))
    );

    // HMAC flagged but no key here.
    let mut signed = P::with_data(hdr(), b"abcd").unwrap();
    opts(false, true, false, false)
        .append(&mut signed, Version::V2, 0)
        .unwrap();
    assert_eq!(
        SecurityOptions::NONE.verify(&mut signed, Version::V2),
        Err(SecurityError::NoKey(Trailer::Hmac))
    );
}

#[test]
fn xtea_is_v1_only() {
    let o = opts(true, false, true, false);
    let mut p = P::with_data(hdr(), b"abc").unwrap();
    assert_eq!(
        o.append(&mut p, Version::V2, 1),
        Err(SecurityError::XteaNeedsV1)
    );
    assert_eq!(p.header.flags, Flags::NONE);
    assert_eq!(p.data(), b"abc");
    // In 2.x the 0x04 bit is just a reserved bit.
    let mut q = P::with_data(hdr(), b"abc").unwrap();
    q.header.flags = Flags::XTEA;
    assert!(SecurityOptions::NONE.verify(&mut q, Version::V2).is_ok());
    assert_eq!(
        SecurityOptions::NONE.verify(&mut q, Version::V1),
        Err(SecurityError::NoKey(Trailer::Xtea))
    );
}

#[test]
fn xtea_wire_order_matches_libcsp_1_6() {
    // header | E(payload | HMAC | CRC) | nonce
    let o = opts(true, true, true, false);
    let key = XteaKey::from_key_string(b"secret");
    let mut p = P::with_data(hdr(), &[0, 1, 2, 3, 4, 5, 6, 7]).unwrap();
    o.append(&mut p, Version::V1, 0x0102_0304).unwrap();
    assert_eq!(&p.data()[16..], &[1, 2, 3, 4]);
    let mut inner = [0u8; 16];
    inner.copy_from_slice(&p.data()[..16]);
    xtea_crypt(&key, [0x0102_0304, 1], &mut inner);
    assert_eq!(
        inner,
        [0, 1, 2, 3, 4, 5, 6, 7, 0xbe, 0xe0, 0x47, 0x69, 0x74, 0xe7, 0x6b, 0xf6]
    );
}

#[test]
fn failed_verify_leaves_packet_unchanged() {
    let o = opts(true, true, true, false);
    let mut p = P::with_data(hdr(), b"some data here").unwrap();
    o.append(&mut p, Version::V1, 99).unwrap();
    let sent = p.clone();
    // The right CRC key material but a different HMAC key: the HMAC check
    // fails after decryption and CRC, and everything must be undone.
    let wrong = SecurityOptions {
        hmac: Some(HmacKey::from_key_string(b"other")),
        ..o
    };
    assert_eq!(
        wrong.verify(&mut p, Version::V1),
        Err(SecurityError::HmacMismatch)
    );
    assert_eq!(p, sent);
}

#[test]
fn truncated_packets_are_errors() {
    for version in [Version::V1, Version::V2] {
        // XTEA alone has no integrity (libcsp's neither): a truncated
        // ciphertext decrypts to shorter noise. Only CRC and HMAC can tell.
        for o in all_opts(version).filter(|o| o.crc || o.hmac.is_some()) {
            let mut p = P::with_data(hdr(), b"0123456789").unwrap();
            o.append(&mut p, version, 5).unwrap();
            for keep in 0..p.len() {
                let mut q = p.clone();
                q.truncate(keep);
                let before = q.clone();
                assert!(o.verify(&mut q, version).is_err(), "{o:?} kept {keep}");
                assert_eq!(q, before);
            }
        }
    }
}

#[test]
fn full_packet_is_refused_without_change() {
    let o = opts(true, true, false, false);
    let mut p = P::with_data(hdr(), &[0; P::CAPACITY - 7]).unwrap();
    assert_eq!(
        o.append(&mut p, Version::V2, 0),
        Err(SecurityError::BufferFull {
            len: P::CAPACITY + 1,
            capacity: P::CAPACITY
        })
    );
    assert_eq!(p.len(), P::CAPACITY - 7);
    assert_eq!(p.header.flags, Flags::NONE);
}

fn arb_opts() -> impl Strategy<Value = (SecurityOptions, Version)> {
    (any::<u8>(), any::<bool>()).prop_map(|(bits, v1)| {
        let version = if v1 { Version::V1 } else { Version::V2 };
        let xtea = v1 && bits & 4 != 0;
        let mut o = opts(bits & 1 != 0, bits & 2 != 0, xtea, bits & 8 != 0);
        // Something must carry integrity: XTEA alone does not.
        if !o.crc && o.hmac.is_none() {
            o.crc = true;
        }
        (o, version)
    })
}

proptest! {
    /// Flip any bit pattern of any byte after the header: the packet is
    /// refused. Header bytes too when the trailers cover the header.
    #[test]
    fn any_flip_is_caught(
        (o, version) in arb_opts(),
        data in proptest::collection::vec(any::<u8>(), 0..60),
        pos in any::<proptest::sample::Index>(),
        mask in 1u8..,
        nonce in any::<u32>(),
    ) {
        let mut p = P::with_data(hdr(), &data).unwrap();
        o.append(&mut p, version, nonce).unwrap();
        let mut frame: heapless::Vec<u8, 128> =
            heapless::Vec::from_slice(p.frame(version).unwrap()).unwrap();
        let hl = version.header_len();
        let i = if o.cover_header {
            pos.index(frame.len())
        } else {
            hl + pos.index(frame.len() - hl)
        };
        frame[i] ^= mask;
        let mut q = P::from_frame(&frame, version).unwrap();
        let before = q.clone();
        prop_assert!(o.verify(&mut q, version).is_err(), "flip at {} undetected", i);
        prop_assert_eq!(q, before);
    }

    /// Verify is total: arbitrary frames give a value or an error, never a
    /// panic, and an error changes nothing.
    #[test]
    fn verify_is_total(
        (o, version) in arb_opts(),
        frame in proptest::collection::vec(any::<u8>(), 0..40),
        lenient in any::<bool>(),
    ) {
        let o = SecurityOptions { accept_missing: lenient, ..o };
        if let Ok(mut q) = P::from_frame(&frame, version) {
            let before = q.clone();
            if o.verify(&mut q, version).is_err() {
                prop_assert_eq!(q, before);
            }
        }
    }
}
