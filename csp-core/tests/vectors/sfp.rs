//! SFP: our split must cut libcsp's frames byte for byte, and our reassembler
//! must give back what libcsp's receiver gave back from the same frames.

use crate::support::{self, Outcome, Vector};
use csp_core::security::crc32c;
use csp_core::sfp::{split, Fragment, Progress, Reassembler};
use csp_core::time::Instant;
use csp_core::{Flags, Packet, Version};

/// CSP_BUFFER_SIZE of the libcsp build, plus our header room.
type Pkt = Packet<{ 256 + 6 }>;
type Rx = Reassembler<1024, 4>;

pub fn check(v: &Vector) -> Outcome {
    let name = v.name();
    if name.starts_with("fragment_") {
        fragment(v)
    } else if name == "reassembly" {
        reassembly(v)
    } else if name.starts_with("transfer_") && v.has_output("frames") {
        transfer(v)
    } else {
        Outcome::NotUnderstood("unknown sfp vector")
    }
}

/// The payload libcsp sent in the `fragment_N` vectors.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 7 + 3) % 256) as u8).collect()
}

fn fragment(v: &Vector) -> Outcome {
    let version = v.version();
    let total = v.in_u64("totalsize") as usize;
    let mtu = v.in_u64("mtu") as usize;
    let index = v.in_u64("index") as usize;
    assert_eq!(v.in_u64("send_result"), 0);
    let payload = pattern(total);

    let frags = split(&payload, mtu).unwrap();
    let f = frags
        .clone()
        .nth(index)
        .expect("fragment index within the split");
    assert_eq!(
        f.trailer().to_be_bytes().to_vec(),
        v.out_hex("sfp_trailer"),
        "{}: trailer",
        v.id()
    );

    // to_packet sets FRAG itself: hand it the header without it.
    let mut h = v.header_from("outputs", "decoded_");
    assert!(h.flags.contains(Flags::FRAG), "vector header has FRAG");
    h.flags = h.flags.without(Flags::FRAG);
    let mut pkt: Pkt = f.to_packet(h).unwrap();
    let frame = pkt.frame(version).unwrap().to_vec();
    assert_eq!(frame, v.out_hex("frame"), "{}: frame", v.id());
    assert_eq!(frame.len() as u64, v.out_u64("frame_length"));
    assert_eq!(
        &frame[..version.header_len()],
        &v.out_hex("header")[..],
        "{}: header",
        v.id()
    );

    // And back: libcsp's frame parses to the same fragment.
    let wire = v.out_hex("frame");
    let rx = Pkt::from_frame(&wire, version).unwrap();
    v.assert_header_eq(&rx.header, "decoded_");
    assert_eq!(Fragment::parse(rx.data()).unwrap(), f);
    Outcome::Checked
}

/// The `fragment_N` frames of the same version, in index order, read from
/// the vector file itself (a vector sees only its own fields).
fn sibling_frames(version: u64) -> Vec<Vec<u8>> {
    let path = support::vectors_dir().join("sfp.json");
    let (_, all) = support::load(&path);
    let mut frames: Vec<(u64, Vec<u8>)> = all
        .iter()
        .filter(|f| f.name().starts_with("fragment_") && f.raw["version"].as_u64() == Some(version))
        .map(|f| (f.in_u64("index"), f.out_hex("frame")))
        .collect();
    frames.sort_by_key(|(i, _)| *i);
    frames.into_iter().map(|(_, f)| f).collect()
}

fn reassemble(frames: &[Vec<u8>], version: Version) -> Option<Vec<u8>> {
    let mut rx = Rx::default();
    let mut out = None;
    for (i, frame) in frames.iter().enumerate() {
        let pkt = Pkt::from_frame(frame, version).unwrap();
        match rx
            .push_packet(Instant::from_millis(i as u64), &pkt)
            .unwrap()
        {
            Progress::Complete(d) => {
                assert!(out.is_none(), "completed twice");
                out = Some(d.to_vec());
            }
            Progress::Incomplete { .. } => {}
            Progress::Duplicate => panic!("no duplicates were sent"),
        }
    }
    out
}

fn reassembly(v: &Vector) -> Outcome {
    let version = v.version();
    let original = v.in_hex("original");
    assert_eq!(v.out_i64("recv_result"), 0);
    assert!(v.output("equal").as_bool().unwrap_or(false));
    let mut frames = sibling_frames(v.raw["version"].as_u64().unwrap());
    assert_eq!(
        frames.len() as u64,
        v.in_u64("fragments"),
        "{}: fragments",
        v.id()
    );

    let got = reassemble(&frames, version).expect("in-order transfer completes");
    assert_eq!(got.len() as u64, v.out_u64("length"));
    assert_eq!(got, original, "{}: reassembled payload", v.id());

    // Beyond libcsp: the same frames in reverse order give the same payload.
    frames.reverse();
    let got = reassemble(&frames, version).expect("reversed transfer completes");
    assert_eq!(got, original, "{}: reassembled out of order", v.id());
    Outcome::Checked
}

fn transfer(v: &Vector) -> Outcome {
    let version = v.version();
    let data = v.in_hex("data");
    assert_eq!(data.len() as u64, v.in_u64("totalsize"));
    let mtu = v.in_u64("mtu") as usize;
    assert_eq!(v.out_i64("send_result"), 0);
    let frames: Vec<Vec<u8>> = v
        .output("frames")
        .as_array()
        .expect("frames list")
        .iter()
        .map(|f| support::hex(f.as_str().expect("hex frame")))
        .collect();
    assert_eq!(frames.len() as u64, v.out_u64("fragments"));

    let ours: Vec<_> = split(&data, mtu).unwrap().collect();
    assert_eq!(ours.len(), frames.len(), "{}: fragment count", v.id());

    let mut rx = Rx::default();
    let mut done = None;
    for (i, (wire, f)) in frames.iter().zip(&ours).enumerate() {
        let mut pkt = Pkt::from_frame(wire, version).unwrap();
        assert!(pkt.header.flags.contains(Flags::FRAG | Flags::CRC32));

        // Send side: our fragment, the header libcsp used, then the data-only CRC.
        let mut mine: Pkt = f.to_packet(pkt.header).unwrap();
        let crc = crc32c(mine.data());
        mine.extend(&crc.to_be_bytes()).unwrap();
        assert_eq!(
            mine.frame(version).unwrap(),
            &wire[..],
            "{}: frame {i}",
            v.id()
        );

        // Receive side: check and strip the CRC (it covers data and SFP
        // trailer), then reassemble.
        let crc_trailer = pkt.pop_trailer::<4>().unwrap();
        assert_eq!(u32::from_be_bytes(crc_trailer), crc32c(pkt.data()));
        match rx.push_packet(Instant::ZERO, &pkt).unwrap() {
            Progress::Complete(d) => done = Some(d.to_vec()),
            Progress::Incomplete { .. } => {}
            Progress::Duplicate => panic!("no duplicates were sent"),
        }
    }
    assert_eq!(done.as_deref(), Some(&data[..]), "{}: reassembled", v.id());
    Outcome::Checked
}
