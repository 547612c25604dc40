use crate::support::{security_options, Outcome, Vector};
use csp_core::security::{
    append_crc, crc32c, crc32c_parts, verify_crc, Cover, CrcAccept, SecurityError, SecurityOptions,
};
use csp_core::{Flags, Header, Packet};

type P = Packet<300>;

pub fn check(v: &Vector) -> Outcome {
    let name = v.name();
    if name.starts_with("check_") {
        check_value(v)
    } else if name.starts_with("append_") {
        append(v)
    } else if name.starts_with("header_inclusive_") {
        header_inclusive(v)
    } else if name.starts_with("wire_") {
        wire(v)
    } else {
        Outcome::NotUnderstood("unknown crc32 vector kind")
    }
}

fn check_value(v: &Vector) -> Outcome {
    let data = v.in_hex("data");
    let want = v.out_hex("crc_be");
    assert_eq!(crc32c(&data).to_be_bytes()[..], want[..], "{}", v.id());
    // The same over the data in two pieces.
    let (a, b) = data.split_at(data.len() / 2);
    assert_eq!(crc32c_parts(&[a, b]).to_be_bytes()[..], want[..]);
    Outcome::Checked
}

fn append(v: &Vector) -> Outcome {
    let version = v.version();
    let payload = v.in_hex("payload");
    let header = v.header_from("inputs", "");
    assert_eq!(v.out_i64("result"), 0);

    // Encode: the single-trailer operation and the options value agree.
    let mut p = P::with_data(header, &payload).unwrap();
    append_crc(&mut p, Cover::Data).unwrap();
    assert_eq!(
        p.data(),
        &v.out_hex("data_after")[..],
        "{}: data_after",
        v.id()
    );
    assert_eq!(&p.data()[payload.len()..], &v.out_hex("crc_trailer")[..]);
    let opts = SecurityOptions {
        crc: true,
        ..SecurityOptions::NONE
    };
    let mut q = P::with_data(header, &payload).unwrap();
    opts.append(&mut q, version, 0).unwrap();
    assert_eq!(q.data(), p.data());
    assert_eq!(q.header.flags, Flags::CRC32);

    // Decode: libcsp's verify result and the length after it.
    assert_eq!(v.out_i64("verify_result"), 0);
    let mut r = P::with_data(header, &v.out_hex("data_after")).unwrap();
    assert_eq!(
        verify_crc(&mut r, version, CrcAccept::Either),
        Ok(Cover::Data)
    );
    assert_eq!(r.len() as u64, v.out_u64("length_after_verify"));
    assert_eq!(r.data(), &payload[..]);
    let frame = q.frame(version).unwrap().to_vec();
    let mut s = P::from_frame(&frame, version).unwrap();
    assert!(opts.verify(&mut s, version).is_ok());
    assert_eq!(s.data(), &payload[..]);
    Outcome::Checked
}

fn header_inclusive(v: &Vector) -> Outcome {
    let version = v.version();
    let header_bytes = v.in_hex("header");
    let payload = v.in_hex("payload");
    let trailer = v.out_hex("crc_trailer");
    let header = Header::parse(&header_bytes, version).unwrap();
    assert_eq!(
        header.to_bytes(version).unwrap().0[..header_bytes.len()],
        header_bytes[..]
    );

    // libcsp's receiver accepts this form: so must ours, and say which it was.
    assert_eq!(v.out_i64("verify_result"), 0);
    let mut received = payload.clone();
    received.extend_from_slice(&trailer);
    let mut p = P::with_data(header, &received).unwrap();
    assert_eq!(
        verify_crc(&mut p, version, CrcAccept::Either),
        Ok(Cover::HeaderAndData(version)),
        "{}",
        v.id()
    );
    assert_eq!(p.data(), &payload[..]);
    let mut frame = header_bytes.clone();
    frame.extend_from_slice(&received);
    let mut q = P::from_frame(&frame, version).unwrap();
    let plain = SecurityOptions {
        crc: true,
        ..SecurityOptions::NONE
    };
    let got = plain.verify(&mut q, version).unwrap();
    assert_eq!(got.crc, Some(Cover::HeaderAndData(version)));

    // Our header-covering mode produces exactly this CRC (the header's only
    // flag is CRC32, which is what the mode sets), and it requires it.
    let cover = SecurityOptions {
        cover_header: true,
        ..plain
    };
    let mut r = P::with_data(header, &payload).unwrap();
    cover.append(&mut r, version, 0).unwrap();
    assert_eq!(&r.data()[payload.len()..], &trailer[..], "{}", v.id());
    assert_eq!(r.frame(version).unwrap(), &frame[..]);
    let mut s = P::from_frame(&frame, version).unwrap();
    assert!(cover.verify(&mut s, version).is_ok());
    // The data-only form is what the header-covering mode refuses.
    let mut t = P::with_data(header, &payload).unwrap();
    plain.append(&mut t, version, 0).unwrap();
    assert_eq!(
        cover.verify(&mut t, version),
        Err(SecurityError::CrcMismatch)
    );
    Outcome::Checked
}

fn wire(v: &Vector) -> Outcome {
    let version = v.version();
    let Some(opts) = security_options(v) else {
        return Outcome::NotUnderstood("send option other than CRC32/HMAC");
    };
    let payload = v.in_hex("payload");
    let want = v.out_hex("frame");

    // Encode: the whole frame from the send's inputs, byte-exact.
    let mut p = P::with_data(v.header_from("inputs", ""), &payload).unwrap();
    opts.append(&mut p, version, 0).unwrap();
    assert_eq!(p.frame(version).unwrap(), &want[..], "{}: frame", v.id());

    // Decode: the frame verifies and gives back the payload and header.
    let mut q = P::from_frame(&want, version).unwrap();
    assert_eq!(q.header, p.header);
    assert_eq!(opts.verify(&mut q, version).unwrap().crc, Some(Cover::Data));
    assert_eq!(q.data(), &payload[..]);
    Outcome::Checked
}
