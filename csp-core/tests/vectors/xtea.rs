//! libcsp 1.6 XTEA: payload-level vectors (no header, no version).
use crate::support::{Outcome, Vector};
use csp_core::security::{
    xtea_crypt, xtea_decrypt_packet, xtea_encrypt_packet, SecurityOptions, XteaKey,
};
use csp_core::{Flags, Header, Packet, Version};

type P = Packet<300>;

pub fn check(v: &Vector) -> Outcome {
    let key = XteaKey::from_key_string(v.in_str("key_string").as_bytes());
    if v.has_output("xtea_key_16") {
        assert_eq!(key.to_bytes()[..], v.out_hex("xtea_key_16")[..]);
    }
    if v.has_input("iv0") {
        raw(v, &key)
    } else if v.has_input("nonce") {
        packet(v, &key)
    } else {
        Outcome::NotUnderstood("unknown xtea vector kind")
    }
}

fn raw(v: &Vector, key: &XteaKey) -> Outcome {
    let iv = [v.in_u64("iv0") as u32, v.in_u64("iv1") as u32];
    let plain = v.in_hex("plaintext");
    let mut buf = plain.clone();
    xtea_crypt(key, iv, &mut buf);
    assert_eq!(buf, v.out_hex("ciphertext"), "{}: ciphertext", v.id());
    let keystream: Vec<u8> = buf.iter().zip(&plain).map(|(c, p)| c ^ p).collect();
    assert_eq!(keystream, v.out_hex("keystream"));
    // Counter mode: the same operation decrypts.
    xtea_crypt(key, iv, &mut buf);
    assert_eq!(buf, plain);
    Outcome::Checked
}

fn packet(v: &Vector, key: &XteaKey) -> Outcome {
    let nonce = v.in_u64("nonce") as u32;
    let plain = v.in_hex("plaintext");
    let want = v.out_hex("data_after");

    // Encrypt: ciphertext then the big-endian nonce.
    assert_eq!(v.out_i64("result"), 0);
    let mut p = P::with_data(Header::default(), &plain).unwrap();
    xtea_encrypt_packet(&mut p, key, nonce).unwrap();
    assert_eq!(p.data(), &want[..], "{}: data_after", v.id());
    // The options value does the same (XTEA alone) and flags it.
    let opts = SecurityOptions {
        xtea: Some(*key),
        ..SecurityOptions::NONE
    };
    let mut q = P::with_data(Header::default(), &plain).unwrap();
    opts.append(&mut q, Version::V1, nonce).unwrap();
    assert_eq!(q.data(), &want[..]);
    assert_eq!(q.header.flags, Flags::XTEA);

    // Decrypt: strips and returns the nonce.
    assert_eq!(v.out_i64("decrypt_result"), 0);
    let mut r = P::with_data(Header::default(), &want).unwrap();
    assert_eq!(xtea_decrypt_packet(&mut r, key), Ok(nonce));
    assert_eq!(r.data(), &v.out_hex("decrypted")[..]);
    let got = opts.verify(&mut q, Version::V1).unwrap();
    assert_eq!(got.xtea_nonce, Some(nonce));
    assert_eq!(q.data(), &plain[..]);
    Outcome::Checked
}
