//! KISS: the frame from the inputs must encode to libcsp's bytes exactly (by
//! the slice encoder and by the streaming one), and libcsp's bytes must
//! decode to the header and payload libcsp's receiver reported.
use crate::support::{Outcome, Vector};
use csp_core::kiss::{encode, max_encoded_len, Encoder, KissDecoder};
use csp_core::security::crc32c;
use csp_core::{Flags, Header};

pub fn check(v: &Vector) -> Outcome {
    let version = v.version();
    let header = v.header_from("inputs", "");
    let payload = v.in_hex("payload");
    let wire = v.out_hex("kiss_frame");

    // The CSP frame handed to the KISS layer: header | payload, plus the
    // CSP-layer CRC when the packet went through the normal output path with
    // the CRC32 option (then KISS adds its own CRC over payload + that CRC).
    let (hbytes, hlen) = header.to_bytes(version).unwrap();
    let mut frame = hbytes[..hlen].to_vec();
    frame.extend_from_slice(&payload);
    let double_crc = v.name().contains("double_crc");
    if double_crc {
        assert!(header.flags.contains(Flags::CRC32), "{}: CRC flag", v.id());
        frame.extend_from_slice(&crc32c(&payload).to_be_bytes());
    }

    // Encode, both ways.
    let mut out = vec![0u8; max_encoded_len(frame.len())];
    let n = encode(&frame, version, &mut out).unwrap();
    assert_eq!(hex(&out[..n]), hex(&wire), "{}: encode", v.id());
    let streamed: Vec<u8> = Encoder::new(&frame, version).unwrap().collect();
    assert_eq!(hex(&streamed), hex(&wire), "{}: streaming encode", v.id());

    // Decode libcsp's bytes, byte by byte.
    let mut dec = KissDecoder::<256>::new(version);
    let mut frames = Vec::new();
    for &b in &wire {
        match dec.push(b) {
            Some(Ok(f)) => frames.push(f.to_vec()),
            Some(Err(e)) => panic!("{}: decode error {e}", v.id()),
            None => {}
        }
    }
    let expect_ok = !v.has_output("decoded_ok") || v.output("decoded_ok").as_bool() == Some(true);
    if !expect_ok {
        assert!(frames.is_empty(), "{}: libcsp refused this frame", v.id());
        return Outcome::Checked;
    }
    assert_eq!(frames.len(), 1, "{}: one frame", v.id());
    let got = &frames[0];
    // The KISS CRC is stripped: what comes out is what went in.
    assert_eq!(hex(got), hex(&frame), "{}: decoded frame", v.id());
    let parsed = Header::parse(got, version).unwrap();
    if v.has_output("decoded_prio") {
        v.assert_header_eq(&parsed, "decoded_");
        assert_eq!(
            hex(&got[hlen..]),
            v.out_str("decoded_payload"),
            "{}: payload",
            v.id()
        );
    } else {
        // No decoded_* given (double CRC): the inner CSP CRC is still intact.
        assert_eq!(parsed, header);
        let (data, crc) = got[hlen..].split_at(got.len() - hlen - 4);
        assert_eq!(crc, crc32c(data).to_be_bytes(), "{}: inner CRC", v.id());
        assert_eq!(data, &payload[..]);
    }
    Outcome::Checked
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
