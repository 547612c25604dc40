//! can.json: CFP frames libcsp's CAN interface sent for a packet (encode must
//! give the same frames), and the packet libcsp reassembled from them
//! (our reassembler must give the same packet).

use csp_core::cfp::{fragment, CanFrame, Reassembler, TxLink};
use csp_core::time::Instant;
use csp_core::Addr;

use crate::support::{hex, Outcome, Vector};

pub fn check(v: &Vector) -> Outcome {
    let version = v.version();
    let header = v.header_from("inputs", "");
    let data = v.in_hex("data");
    let via = v.input("via").as_i64().expect("via");
    let link = TxLink {
        via: (via >= 0).then(|| Addr::new(via as u16).unwrap()),
        iface_addr: Addr::new(v.in_u64("iface_addr") as u16).unwrap(),
        counter: v.in_u64("cfp_counter") as u16,
    };
    assert_eq!(
        v.out_i64("tx_result"),
        0,
        "{}: only successful sends",
        v.id()
    );

    let want: Vec<CanFrame> = v
        .output("frames")
        .as_array()
        .expect("frames")
        .iter()
        .map(|f| {
            let bytes = hex(f["data"].as_str().expect("frame data"));
            assert_eq!(
                f["dlc"].as_u64(),
                Some(bytes.len() as u64),
                "{}: dlc",
                v.id()
            );
            CanFrame::new(f["id"].as_u64().expect("frame id") as u32, &bytes).unwrap()
        })
        .collect();
    let got: Vec<CanFrame> = fragment(version, &header, &data, link)
        .unwrap_or_else(|e| panic!("{}: fragment: {e}", v.id()))
        .collect();
    assert_eq!(got, want, "{}: frames", v.id());

    // Reassemble libcsp's frames; every frame but the last must wait for more.
    let mut rx: Reassembler<2, 256> = Reassembler::new(version);
    let now = Instant::from_millis(0);
    let (last, rest) = want.split_last().expect("at least one frame");
    for f in rest {
        let r = rx
            .push(now, f)
            .unwrap_or_else(|e| panic!("{}: push: {e}", v.id()));
        assert!(r.is_none(), "{}: completed before the last frame", v.id());
    }
    let packet = rx
        .push(now, last)
        .unwrap_or_else(|e| panic!("{}: push last: {e}", v.id()))
        .unwrap_or_else(|| panic!("{}: last frame did not complete the packet", v.id()));
    // libcsp's own reassembly where the vector has it (see its notes: version
    // 1 multi-frame packets have none), else the packet that was sent.
    if v.has_output("rx_data") {
        assert_eq!(v.out_i64("rx_result"), 0, "{}: rx_result", v.id());
        let mut want = v.header_from("outputs", "rx_");
        // libcsp 2.x hands a packet to the broadcast address up with its
        // receiving interface's own address as destination; we keep the
        // broadcast address (the node delivers it locally either way).
        if header.dst.is_broadcast(version) {
            want.dst = header.dst;
        }
        assert_eq!(packet.header, want, "{}: reassembled header", v.id());
        assert_eq!(
            packet.data,
            &v.out_hex("rx_data")[..],
            "{}: rx data",
            v.id()
        );
    } else {
        assert_eq!(packet.header, header, "{}: round-trip header", v.id());
        assert_eq!(packet.data, &data[..], "{}: round-trip data", v.id());
    }
    let s = rx.stats();
    assert_eq!(
        (s.completed, s.lost, rx.in_flight()),
        (1, 0, 0),
        "{}",
        v.id()
    );
    Outcome::Checked
}
