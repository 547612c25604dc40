//! The CSP layer of captured RDP traffic: headers, where the RDP trailer
//! sits, and the HMAC+CRC trailers around it. (The RDP header and the
//! connection state machine are checked against the same file in csp-rdp.)

use crate::support::{Outcome, Vector};
use csp_core::security::{HmacKey, SecurityOptions};
use csp_core::{Flags, Header, Packet};

pub fn check(v: &Vector) -> Outcome {
    let version = v.version();
    let frame = v.out_hex("frame");
    let d = v.output("decoded_header");
    let num = |k: &str| {
        d[k].as_u64()
            .unwrap_or_else(|| panic!("{}: decoded_header.{k}", v.id()))
    };
    let h = Header::parse(&frame, version).unwrap();
    let fields = (h.prio as u64, h.src.get() as u64, h.dst.get() as u64);
    assert_eq!(fields, (num("prio"), num("src"), num("dst")), "{}", v.id());
    assert_eq!(
        (
            h.dport.get() as u64,
            h.sport.get() as u64,
            h.flags.bits() as u64
        ),
        (num("dport"), num("sport"), num("flags")),
        "{}",
        v.id()
    );
    assert_eq!((frame.len() - version.header_len()) as u64, num("length"));

    let mut packet = Packet::<300>::from_frame(&frame, version).unwrap();
    let secured = v.has_output("hmac_trailer");
    let options = SecurityOptions {
        crc: secured,
        hmac: secured.then(|| HmacKey::from_key_string(b"secret")),
        ..SecurityOptions::NONE
    };
    if secured {
        let hmac = v.out_hex("hmac_trailer");
        let crc = v.out_hex("crc_trailer");
        assert!(h.flags.contains(Flags::HMAC | Flags::CRC32));
        assert_eq!(
            &frame[frame.len() - 8..],
            [hmac, crc].concat(),
            "{}: trailer order",
            v.id()
        );
        options
            .verify(&mut packet, version)
            .expect("libcsp's HMAC+CRC verify");
    }
    let mut expect = if v.has_output("data") {
        v.out_hex("data")
    } else {
        Vec::new()
    };
    if v.has_output("rdp_trailer") {
        assert!(h.flags.contains(Flags::RDP), "{}: RDP flag", v.id());
        expect.extend(v.out_hex("rdp_trailer"));
    } else {
        assert!(
            !h.flags.contains(Flags::RDP),
            "{}: plain connection",
            v.id()
        );
        expect = frame[version.header_len()..].to_vec();
    }
    assert_eq!(packet.data(), &expect[..], "{}: data | RDP trailer", v.id());

    // Our send path rebuilds the frame byte for byte.
    let mut ours = Packet::<300>::with_data(h, &expect).unwrap();
    options.append(&mut ours, version, 0).unwrap();
    assert_eq!(
        ours.frame(version).unwrap(),
        &frame[..],
        "{}: re-emitted frame",
        v.id()
    );
    Outcome::Checked
}
