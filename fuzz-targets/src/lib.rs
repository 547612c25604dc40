//! Fuzzing entry points, one per input surface an outsider can reach.
//!
//! Each function takes arbitrary bytes and must return without panicking or
//! hanging, whatever they are: that is the whole property (plus the
//! round-trip checks some of them assert). `fuzz/fuzz_targets/*.rs` (cargo
//! fuzz, nightly) call them with generated input; the stable test
//! `tests/tests/fuzz_corpus.rs` replays every file of `fuzz/corpus/<name>/`
//! through [`run`]. [`TARGETS`] lists the names both use.

#![forbid(unsafe_code)]

use csp_core::bind::BindPort;
use csp_core::cfp::CanLink;
use csp_core::kiss::KissDecoder;
use csp_core::node::{IfaceConfig, NodeConfig, SocketOptions};
use csp_core::route::{parse_routes, IfaceId};
use csp_core::security::{HmacKey, SecurityOptions};
use csp_core::sfp::Reassembler;
use csp_core::time::{Duration, Instant};
use csp_core::{Addr, Header, Node, Packet, Port, Version};
use csp_rdp::Connection;

/// A fuzz entry function.
pub type Target = fn(&[u8]);

/// Every target, by the name of its `fuzz/fuzz_targets/<name>.rs` and
/// `fuzz/corpus/<name>/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("header_v1", header_v1),
    ("header_v2", header_v2),
    ("trailer_verify", trailer_verify),
    ("kiss_decoder", kiss_decoder),
    ("sfp_reassembly", sfp_reassembly),
    ("cfp_reassembly", cfp_reassembly),
    ("rdp_connection", rdp_connection),
    ("route_string", route_string),
    ("toml_config", toml_config),
    ("ipc_decode", ipc_decode),
    ("node_frame", node_frame),
];

/// Run target `name` on `data`; false if there is no such target.
pub fn run(name: &str, data: &[u8]) -> bool {
    match TARGETS.iter().find(|(n, _)| *n == name) {
        Some((_, f)) => {
            f(data);
            true
        }
        None => false,
    }
}

fn header(data: &[u8], version: Version) {
    if let Ok(h) = Header::parse(data, version) {
        // What parses emits to the same bytes' meaning.
        let mut buf = [0u8; 8];
        if let Ok(n) = h.emit(&mut buf, version) {
            assert_eq!(Header::parse(&buf[..n], version), Ok(h));
        }
    }
}

/// CSP 1.x header parse (and re-emit of what parsed).
pub fn header_v1(data: &[u8]) {
    header(data, Version::V1)
}

/// CSP 2.x header parse (and re-emit of what parsed).
pub fn header_v2(data: &[u8]) {
    header(data, Version::V2)
}

/// Trailer verification: the first byte picks the options (CRC, HMAC,
/// XTEA-less; header cover; accept missing), the rest is a v2 frame.
pub fn trailer_verify(data: &[u8]) {
    let Some((&sel, frame)) = data.split_first() else {
        return;
    };
    let opts = SecurityOptions {
        crc: sel & 1 != 0,
        hmac: (sel & 2 != 0).then(|| HmacKey::from_key_string(b"fuzz")),
        xtea: None,
        cover_header: sel & 4 != 0,
        accept_missing: sel & 8 != 0,
    };
    let version = if sel & 16 != 0 {
        Version::V1
    } else {
        Version::V2
    };
    if let Ok(mut p) = Packet::<512>::from_frame(frame, version) {
        let _ = opts.verify(&mut p, version);
    }
}

/// The KISS byte decoder, both header versions, every byte of `data`.
pub fn kiss_decoder(data: &[u8]) {
    for version in [Version::V1, Version::V2] {
        let mut d = KissDecoder::<256>::new(version);
        for &b in data {
            if let Some(Ok(frame)) = d.push(b) {
                assert!(frame.len() <= 256);
            }
        }
    }
}

/// SFP reassembly: `data` is a sequence of `len:u8, time step:u8, bytes`
/// fragments pushed into one reassembler.
pub fn sfp_reassembly(data: &[u8]) {
    let mut r = Reassembler::<1024>::new(Duration::from_millis(1_000));
    let mut now = Instant::ZERO;
    let mut rest = data;
    while let [len, step, tail @ ..] = rest {
        now += Duration::from_millis(u64::from(*step) * 10);
        let n = usize::from(*len).min(tail.len());
        let _ = r.push(now, &tail[..n]);
        let _ = r.handle_timeout(now);
        rest = &tail[n..];
    }
}

/// CFP (CAN fragmentation) reassembly: the first byte picks the CFP and
/// header version, then CAN frames as `step:u8, id:u32 (big-endian),
/// len:u8, data[len]`: time passes by `step` * 10 ms, the frame (any id,
/// even over 29 bits; any length, even over 8) goes to a CAN interface with
/// two reassembly slots. Whatever completes must be a whole CSP frame that
/// parses and fits the interface's MTU; then the frames of the completed
/// frame, sent again from a second interface, must give back the same
/// bytes (the fragmenter and the reassembler agree on everything that
/// gets through).
pub fn cfp_reassembly(data: &[u8]) {
    const MTU: usize = 256 + 6;
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let version = if first & 1 == 0 {
        Version::V2
    } else {
        Version::V1
    };
    let Ok(me) = Addr::new(u16::from(first >> 1) & 0x1f) else {
        return;
    };
    let mut rx = CanLink::<2, MTU>::new(version, me);
    let mut now = Instant::ZERO;
    while let [step, a, b, c, d, len, tail @ ..] = rest {
        now += Duration::from_millis(u64::from(*step) * 10);
        let id = u32::from_be_bytes([*a, *b, *c, *d]);
        let n = usize::from(*len).min(tail.len());
        let _ = rx.handle_timeout(now);
        if let Ok(Some(frame)) = rx.receive(now, id, &tail[..n]) {
            assert!(frame.len() <= MTU, "{} bytes over the MTU", frame.len());
            assert!(
                Header::parse(frame, version).is_ok(),
                "completed but no header"
            );
            refragment(version, frame);
        }
        rest = &tail[n..];
    }
}

/// Fragment `frame` as a fresh interface would and reassemble it at once:
/// the same bytes must come out.
fn refragment(version: Version, frame: &[u8]) {
    const MTU: usize = 256 + 6;
    let Ok(addr) = Addr::new(1) else { return };
    let mut tx = CanLink::<1, MTU>::new(version, addr);
    let mut rx = CanLink::<1, MTU>::new(version, addr);
    let Ok(frames) = tx.transmit(frame, None) else {
        return;
    };
    let mut got = None;
    for f in frames {
        if let Ok(Some(done)) = rx.receive(Instant::ZERO, f.id, f.data()) {
            got = Some(done.to_vec());
        }
    }
    assert_eq!(got.as_deref(), Some(frame), "refragmented frame differs");
}

/// One RDP connection (accepted from a SYN or connecting, by the first
/// byte) driven by `op:u8, arg:u8, ...` steps: a segment of `arg` bytes,
/// time passing by `arg` * 10 ms, or a send of `arg` bytes.
pub fn rdp_connection(data: &[u8]) {
    let Some((&first, mut rest)) = data.split_first() else {
        return;
    };
    let mut now = Instant::ZERO;
    let opts = csp_rdp::Options::default();
    let mut c = if first & 1 == 0 {
        match Connection::<4, 64>::connect(now, opts, 100) {
            Ok(c) => c,
            Err(_) => return,
        }
    } else {
        let n = usize::from(first >> 1).min(rest.len());
        let syn = &rest[..n];
        rest = &rest[n..];
        match Connection::<4, 64>::accept(now, syn, opts, 100) {
            Ok(c) => c,
            Err(_) => return,
        }
    };
    let mut buf = [0u8; 128];
    while let [op, arg, tail @ ..] = rest {
        let n = usize::from(*arg).min(tail.len());
        match op % 3 {
            0 => {
                c.handle_segment(now, &tail[..n]);
                rest = &tail[n..];
            }
            1 => {
                now += Duration::from_millis(u64::from(*arg) * 10);
                rest = tail;
            }
            _ => {
                let _ = c.send(now, &tail[..n.min(64)]);
                rest = &tail[n..];
            }
        }
        if c.poll_timeout().is_some_and(|t| t <= now) {
            c.handle_timeout(now);
        }
        // Bounded drains: each is finite by construction, the bound makes
        // a bug a failed assertion instead of a hang.
        let mut k = 0;
        while c.poll_transmit(now, &mut buf).is_some() {
            k += 1;
            assert!(k < 1000, "poll_transmit never ends");
        }
        let mut k = 0;
        while c.poll_event().is_some() {
            k += 1;
            assert!(k < 1000, "poll_event never ends");
        }
    }
}

/// The libcsp route-string parser (text of any bytes, lossily decoded).
pub fn route_string(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for version in [Version::V1, Version::V2] {
        let names = |n: &str| match n {
            "UDP" | "udp" => Some(IfaceId(0)),
            "KISS" => Some(IfaceId(1)),
            _ => None,
        };
        for entry in parse_routes(&text, version, names).take(1000) {
            let _ = entry;
        }
    }
}

/// csp-muxd's TOML configuration (text of any bytes, lossily decoded).
pub fn toml_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = host_muxd::config::Config::parse(&text, None);
}

/// The csp-ipc frame decoder over a byte stream: every frame it finds.
pub fn ipc_decode(data: &[u8]) {
    let mut at = 0;
    while let Ok(Some((_, used))) = csp_ipc::decode(&data[at..]) {
        assert!(used > 0 && at + used <= data.len());
        at += used;
    }
}

type FuzzNode = Node<256, 4, 4, 6, 4, 4, 200, 1, 4>;

/// A whole node (services on, an RDP listener on port 10 and a
/// connectionless socket on 11, forwarding on) fed `data` as frames of
/// `len:u8` bytes each, with a millisecond step per frame; everything it
/// produces is drained.
pub fn node_frame(data: &[u8]) {
    let Ok(me) = Addr::new(10) else { return };
    let mut n = FuzzNode::new(NodeConfig {
        seed: 1,
        forward: true,
        ..NodeConfig::new(me)
    });
    let Ok(i) = n.add_iface(IfaceConfig::new("IF", Version::V2, 256)) else {
        return;
    };
    let _ = n.routes_mut().set_default(i, None);
    if let Ok(p) = Port::new(10) {
        let _ = n.bind(BindPort::Port(p), SocketOptions::both());
    }
    if let Ok(p) = Port::new(11) {
        let _ = n.bind(BindPort::Port(p), SocketOptions::default());
    }
    let mut now = Instant::ZERO;
    let mut buf = [0u8; 256];
    let mut rest = data;
    while let [len, tail @ ..] = rest {
        let k = usize::from(*len).min(tail.len());
        let _ = n.handle_frame(now, i, &tail[..k]);
        rest = &tail[k..];
        now += Duration::from_millis(1);
        n.handle_timeout(now);
        let mut m = 0;
        while n.poll_transmit(now, &mut buf).is_some() {
            m += 1;
            assert!(m < 10_000, "poll_transmit never ends");
        }
        let mut m = 0;
        while n.poll_event().is_some() {
            m += 1;
            assert!(m < 10_000, "poll_event never ends");
        }
    }
}
