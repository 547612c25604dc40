use crate::support::{Outcome, Vector};
use csp_core::header::HeaderError;
use csp_core::{Header, Version};

pub fn check(v: &Vector) -> Outcome {
    let version = v.version();
    if v.has_input("frame") {
        let frame = v.in_hex("frame");
        let parsed = Header::parse(&frame, version);
        if v.has_output("strip_result") {
            // libcsp refuses a frame shorter than the header; so do we, with a typed error.
            assert!(v.out_i64("strip_result") < 0);
            assert_eq!(
                parsed,
                Err(HeaderError::Truncated {
                    needed: version.header_len(),
                    got: frame.len()
                })
            );
        } else {
            v.assert_header_eq(&parsed.unwrap(), "decoded_");
            let payload = &frame[version.header_len()..];
            assert_eq!(payload.len() as u64, v.out_u64("decoded_length"));
            assert_eq!(payload, v.out_hex("decoded_payload"));
        }
        return Outcome::Checked;
    }
    if v.has_input("header") {
        let h = Header::parse(&v.in_hex("header"), version).unwrap();
        v.assert_header_eq(&h, "decoded_");
        return Outcome::Checked;
    }
    // Encode vector. libcsp does not range-check; where its inputs do not fit
    // the version we must refuse them instead of producing its spilled bytes.
    let wire = v.out_hex("header");
    let fits = ["src", "dst"]
        .iter()
        .all(|k| v.in_u64(k) <= version.max_addr() as u64)
        && v.in_u64("flags") as u8 & !version.flag_mask() == 0
        && v.in_u64("flags") <= 0xFF;
    let h = v.header_from("inputs", "");
    if !fits {
        assert!(
            h.check(version).is_err(),
            "out-of-range header must be refused"
        );
        // The spilled bytes libcsp produced still decode the way it says.
        v.assert_header_eq(&Header::parse(&wire, version).unwrap(), "decoded_");
        return Outcome::Checked;
    }
    let (bytes, n) = h.to_bytes(version).unwrap();
    assert_eq!(&bytes[..n], &wire[..], "encode");
    v.assert_header_eq(&Header::parse(&wire, version).unwrap(), "decoded_");
    assert_eq!(n, if version == Version::V1 { 4 } else { 6 });
    Outcome::Checked
}
