use crate::support::{security_options, Outcome, Vector};
use csp_core::security::{
    append_hmac, hmac_digest, hmac_sha1, verify_hmac, Cover, HmacKey, SecurityError,
    SecurityOptions,
};
use csp_core::{Flags, Header, Packet};
use sha1::{Digest, Sha1};

type P = Packet<300>;

pub fn check(v: &Vector) -> Outcome {
    let name = v.name();
    if name == "sha1_abc" {
        // The SHA1 this crate links (dependency `sha1`) is libcsp's SHA1.
        let d = Sha1::digest(v.in_hex("data"));
        assert_eq!(d[..], v.out_hex("sha1")[..]);
        Outcome::Checked
    } else if name.starts_with("raw_hmac_memory") {
        let key = v.in_str("key_string").as_bytes();
        let d = hmac_sha1(key, &v.in_hex("data"));
        assert_eq!(d[..], v.out_hex("hmac_sha1_full")[..], "{}", v.id());
        Outcome::Checked
    } else if name.starts_with("header_inclusive_") {
        header_inclusive(v)
    } else if name.starts_with("wire_") {
        wire(v)
    } else if v.has_input("key_string") && v.has_output("data_after") {
        keyed(v)
    } else {
        Outcome::NotUnderstood("unknown hmac vector kind")
    }
}

/// Key derivation, digest, trailer, append and verify for one key and payload.
fn keyed(v: &Vector) -> Outcome {
    let key_string = v.in_str("key_string").as_bytes();
    let payload = v.in_hex("payload");
    assert_eq!(Sha1::digest(key_string)[..], v.out_hex("sha1_of_key")[..]);
    let key = HmacKey::from_key_string(key_string);
    assert_eq!(
        key.as_bytes()[..],
        v.out_hex("hmac_key_16")[..],
        "{}",
        v.id()
    );
    let full = v.out_hex("hmac_sha1_full");
    assert_eq!(hmac_digest(&key, None, &payload)[..], full[..]);
    assert_eq!(hmac_sha1(key.as_bytes(), &payload)[..], full[..]);

    // Encode.
    assert_eq!(v.out_i64("result"), 0);
    let mut p = P::with_data(Header::default(), &payload).unwrap();
    append_hmac(&mut p, &key, Cover::Data).unwrap();
    assert_eq!(
        p.data(),
        &v.out_hex("data_after")[..],
        "{}: data_after",
        v.id()
    );
    assert_eq!(&p.data()[payload.len()..], &v.out_hex("hmac_trailer")[..]);

    // Decode: verifies and strips; another key does not.
    assert_eq!(v.out_i64("verify_result"), 0);
    let mut q = P::with_data(Header::default(), &v.out_hex("data_after")).unwrap();
    let wrong = HmacKey::from_key_string(b"not the key");
    assert_eq!(
        verify_hmac(&mut q, &wrong, Cover::Data),
        Err(SecurityError::HmacMismatch)
    );
    verify_hmac(&mut q, &key, Cover::Data).unwrap();
    assert_eq!(q.data(), &payload[..]);
    Outcome::Checked
}

/// libcsp's `include_header` HMAC is HMAC over the header bytes (as the
/// packet carries them, HMAC flag set) followed by the payload: the same
/// definition as our header-covering mode, so the frame must match exactly.
fn header_inclusive(v: &Vector) -> Outcome {
    let version = v.version();
    // The vector names its key only in the description.
    if !v.raw["description"]
        .as_str()
        .is_some_and(|d| d.contains("key secret"))
    {
        return Outcome::NotUnderstood("header-inclusive HMAC vector without key secret");
    }
    let key = HmacKey::from_key_string(b"secret");
    let payload = v.in_hex("payload");
    let header = v.header_from("inputs", "");
    assert_eq!(header.flags, Flags::HMAC, "the mode sets exactly this flag");
    let want = v.out_hex("frame");

    let opts = SecurityOptions {
        hmac: Some(key),
        cover_header: true,
        ..SecurityOptions::NONE
    };
    let mut p = P::with_data(header, &payload).unwrap();
    opts.append(&mut p, version, 0).unwrap();
    assert_eq!(p.frame(version).unwrap(), &want[..], "{}: frame", v.id());

    let mut q = P::from_frame(&want, version).unwrap();
    let got = opts.verify(&mut q, version).unwrap();
    assert!(got.hmac);
    assert_eq!(q.data(), &payload[..]);
    // A receiver in the data-only (libcsp default) mode rejects it, as
    // libcsp's own stack would.
    let plain = SecurityOptions {
        cover_header: false,
        ..opts
    };
    let mut r = P::from_frame(&want, version).unwrap();
    assert_eq!(
        plain.verify(&mut r, version),
        Err(SecurityError::HmacMismatch)
    );
    Outcome::Checked
}

/// A whole frame from `csp_sendto` with HMAC (and CRC32) options.
fn wire(v: &Vector) -> Outcome {
    let version = v.version();
    let Some(opts) = security_options(v) else {
        return Outcome::NotUnderstood("send option other than CRC32/HMAC");
    };
    let payload = v.in_hex("payload");
    let want = v.out_hex("frame");
    let hl = version.header_len();

    // Encode: header flags come from the options; byte-exact frame.
    let mut p = P::with_data(v.header_from("inputs", ""), &payload).unwrap();
    opts.append(&mut p, version, 0).unwrap();
    let frame = p.frame(version).unwrap();
    assert_eq!(frame, &want[..], "{}: frame", v.id());
    assert_eq!(&frame[..hl], &v.out_hex("header")[..]);
    let mut at = hl + payload.len();
    assert_eq!(&frame[at..at + 4], &v.out_hex("hmac_trailer")[..]);
    at += 4;
    if v.has_output("crc_trailer") {
        assert_eq!(&frame[at..at + 4], &v.out_hex("crc_trailer")[..]);
        at += 4;
    }
    assert_eq!(at, frame.len());

    // Decode: verified and stripped back to the payload.
    let mut q = P::from_frame(&want, version).unwrap();
    let got = opts.verify(&mut q, version).unwrap();
    assert!(got.hmac);
    assert_eq!(got.crc.is_some(), v.has_output("crc_trailer"));
    assert_eq!(q.data(), &payload[..]);
    // Any single flipped payload/trailer byte is refused.
    for i in hl..want.len() {
        let mut bad = want.clone();
        bad[i] ^= 0x01;
        let mut r = P::from_frame(&bad, version).unwrap();
        assert!(opts.verify(&mut r, version).is_err(), "flip at {i}");
    }
    Outcome::Checked
}
