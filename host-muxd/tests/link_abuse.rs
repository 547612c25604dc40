//! Peers on csp-muxd's links that misbehave (issue 14): a KISS-over-TCP
//! peer that closes mid-frame, sends garbage, connects and never sends, or
//! never reads; floods of random and malformed frames into a KISS link and
//! a ZMQ hub link. Through all of it the daemon keeps answering an
//! application's pings (its own service, and another daemon's over UDP),
//! counts what it dropped, and a well-behaved KISS peer that comes next is
//! served. Real processes on loopback; every wait is bounded; nothing
//! measures time.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use csp_core::kiss::{encode, encoded_len, KissDecoder, FEND};
use csp_core::{Flags, Header, Version};
use csp_ipc::PORT_EPHEMERAL;
use test_support::junk::{junk_frame, Junk};
use test_support::*;

/// The daemon under attack, its UDP neighbour, and the KISS peer's node.
const A: u16 = 1;
const B: u16 = 2;
const PEER: u16 = 9;
const LINK: &str = "tnc";

/// Daemons A (KISS tcp-server link `tnc` towards node 9, UDP to B) and B
/// (UDP to A); the KISS port.
fn pair() -> (Muxd, Muxd, u16) {
    retry_on_port_clash(|| {
        let (pa, pb, kiss) = (free_udp_port(), free_udp_port(), free_tcp_port());
        let a = Muxd::try_start(
            MuxdConfig::node(A)
                .udp(Udp::Port(pa))
                .route(format!("{PEER} {LINK}"))
                .route(format!("{B} udp 127.0.0.1:{pb}"))
                .extra(&format!(
                    "[[kiss]]\nname = \"{LINK}\"\nmode = \"tcp-server\"\n\
                     listen = \"127.0.0.1:{kiss}\""
                )),
        )?;
        let b = Muxd::try_start(
            MuxdConfig::node(B)
                .udp(Udp::Port(pb))
                .route(format!("{A} udp 127.0.0.1:{pa}")),
        )?;
        Ok((a, b, kiss))
    })
}

/// An application on a daemon with an ephemeral port, pinging.
struct App {
    ipc: Ipc,
    node: u16,
    port: u8,
    seq: u32,
}

impl App {
    fn on(d: &Muxd) -> App {
        let mut ipc = d.client("app");
        let (_, node, port) = ipc.register(0, PORT_EPHEMERAL);
        App {
            ipc,
            node,
            port,
            seq: 0,
        }
    }

    /// Ping `dst`'s service; the echo must come back (each read bounded
    /// by WAIT; replies to earlier pings are skipped).
    fn ping(&mut self, dst: u16) {
        self.seq += 1;
        let want = self.seq.to_be_bytes();
        self.ipc
            .send_packet(self.node, self.port, dst, 1, Flags::NONE, &want);
        loop {
            let (h, data) = self.ipc.recv_packet();
            if h.src.get() == dst && data == want {
                return;
            }
        }
    }

    /// Ping A itself and B across the UDP link.
    fn ping_both(&mut self) {
        self.ping(A);
        self.ping(B);
    }
}

/// A KISS frame (v2, CRC32C) of a CSP packet from the peer's node.
fn kiss_frame(dst: u16, dport: u8, sport: u8, data: &[u8]) -> Vec<u8> {
    let h = header(PEER, sport, dst, dport, Flags::NONE);
    let (bytes, n) = h.to_bytes(Version::V2).unwrap();
    let mut frame = bytes[..n].to_vec();
    frame.extend_from_slice(data);
    kiss_encode(&frame)
}

fn kiss_encode(frame: &[u8]) -> Vec<u8> {
    try_kiss_encode(frame).expect("a frame with a header")
}

/// None for a frame shorter than a header (the encoder refuses it).
fn try_kiss_encode(frame: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![0u8; encoded_len(frame, Version::V2).ok()?];
    let n = encode(frame, Version::V2, &mut out).ok()?;
    out.truncate(n);
    Some(out)
}

/// Connect to the daemon's KISS port (the daemon serves one peer at a
/// time: the newest).
fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// As a well-behaved KISS node: ping A through the link and read frames
/// until the answer (bounded; other frames queued for node 9 may come
/// first).
fn kiss_ping(s: &mut TcpStream, tag: &[u8]) {
    s.write_all(&kiss_frame(A, 1, 33, tag)).unwrap();
    let mut dec = KissDecoder::<8192>::new(Version::V2);
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "no KISS answer to {tag:?}");
        let n = match s.read(&mut buf) {
            Ok(0) => panic!("the daemon closed the KISS connection"),
            Ok(n) => n,
            Err(_) => continue, // read timeout: look at the deadline
        };
        for &b in &buf[..n] {
            if let Some(Ok(frame)) = dec.push(b) {
                let h = Header::parse(frame, Version::V2).unwrap();
                if h.src.get() == A && h.dport.get() == 33 && &frame[6..] == tag {
                    return;
                }
            }
        }
    }
}

/// Poll `d`'s STATS until `key` of link `link` reaches `at_least`.
fn wait_link_stat(d: &Muxd, link: &str, key: &str, at_least: u64) -> u64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = d.link_stat(link, key);
        if v >= at_least {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{key} of {link} stays at {v}: {}",
            d.stats()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The receive error counters of a KISS link, summed.
fn kiss_rx_errors(d: &Muxd) -> u64 {
    let stats = d.stats();
    [
        "garbage_bytes",
        "skipped_bytes",
        "bad_crc",
        "bad_escape",
        "too_short",
        "oversize",
        "rx_too_long",
        "non_data_command",
    ]
    .iter()
    .map(|k| link_stat(&stats, LINK, k))
    .sum()
}

/// Closing mid-frame, then garbage (and a good frame after it on the same
/// connection), then a peer that connects and never sends: after each,
/// pings through A and across UDP to B are answered, the counters show
/// what happened, and a new KISS connection is served.
#[test]
fn kiss_tcp_peer_closing_mid_frame_sending_garbage_or_silent() {
    let (a, _b, port) = pair();
    let mut app = App::on(&a);
    app.ping_both();
    let mut good = connect(port);
    kiss_ping(&mut good, b"first");
    drop(good);

    // 1. Half a frame, then the connection closes.
    let mut s = connect(port);
    let whole = kiss_frame(A, 1, 33, &[0x55; 100]);
    s.write_all(&whole[..whole.len() / 2]).unwrap();
    drop(s);
    wait_link_stat(&a, LINK, "disconnects", 2);
    app.ping_both();
    let mut good = connect(port);
    kiss_ping(&mut good, b"after a cut frame");
    drop(good);

    // 2. 64 KiB of garbage (FENDs and escapes among it), then a good
    // frame on the same connection: the decoder finds it.
    let before = kiss_rx_errors(&a);
    let mut s = connect(port);
    let mut j = Junk(0x0bad_cafe_f00d_1234);
    let mut garbage = j.bytes(64 * 1024);
    for i in (0..garbage.len()).step_by(97) {
        garbage[i] = FEND;
    }
    s.write_all(&garbage).unwrap();
    kiss_ping(&mut s, b"after garbage");
    let after = kiss_rx_errors(&a);
    assert!(after > before, "garbage counted: {}", a.stats());
    app.ping_both();
    drop(s);

    // 3. A peer that connects and never sends anything.
    let mut silent = connect(port);
    wait_link_stat(&a, LINK, "connects", 5);
    app.ping_both();
    // The next peer replaces it (one peer at a time) and is served.
    let mut good = connect(port);
    kiss_ping(&mut good, b"after a silent peer");
    let mut buf = [0u8; 16];
    silent
        .set_read_timeout(Some(WAIT))
        .expect("bounded read on the replaced connection");
    assert_eq!(
        silent.read(&mut buf).unwrap_or(0),
        0,
        "the replaced connection is closed by the daemon"
    );
    app.ping_both();
    println!(
        "kiss {LINK} after the abuse: {}",
        a.stats()
            .lines()
            .find(|l| l.starts_with("link tnc "))
            .unwrap()
    );
}

/// A peer that connects and never reads while an application sends it
/// thousands of frames: the link's queue fills and drops by policy
/// (`tx_queue_full`), the daemon never blocks on the socket, pings go on,
/// and the next peer gets the link.
#[test]
fn kiss_tcp_peer_that_never_reads() {
    // Batches until the queue overflows: the kernel's socket buffers take
    // the first megabytes (how many depends on the machine's TCP
    // settings); more than 50 MB they never take.
    const BATCH: u32 = 2_000;
    const MAX_FRAMES: u32 = 250_000;
    let (a, _b, port) = pair();
    let mut app = App::on(&a);
    let deaf = connect(port);
    wait_link_stat(&a, LINK, "connects", 1);
    let payload = [0x42u8; 200];
    let mut frames = 0;
    let full = loop {
        assert!(
            frames < MAX_FRAMES,
            "{frames} frames and no tx_queue_full: {}",
            a.stats()
        );
        for _ in 0..BATCH {
            app.ipc
                .send_packet(app.node, app.port, PEER, 10, Flags::NONE, &payload);
        }
        frames += BATCH;
        // Answered pings: the daemon has handled every frame before them.
        app.ping_both();
        let full = a.link_stat(LINK, "tx_queue_full");
        if full > 0 {
            break full;
        }
    };
    let first_seen = frames;
    // And it keeps dropping by policy, still answering.
    for _ in 0..BATCH {
        app.ipc
            .send_packet(app.node, app.port, PEER, 10, Flags::NONE, &payload);
    }
    frames += BATCH;
    app.ping_both();
    assert!(a.link_stat(LINK, "tx_queue_full") >= full + u64::from(BATCH) / 2);
    // The next peer is served (first the backlog queued for node 9, then
    // the answer to its ping).
    let mut good = connect(port);
    kiss_ping(&mut good, b"after a deaf peer");
    app.ping_both();
    println!(
        "{frames} frames towards a peer that never reads: tx_queue_full first seen after \
         {first_seen}, {} at the end",
        a.link_stat(LINK, "tx_queue_full")
    );
    drop(deaf);
}

/// One frame of a KISS flood: a junk CSP frame KISS-encoded (a good CRC
/// around bad content), or raw junk bytes with a FEND on each side (bad
/// CRC, bad escapes, runts, overlong frames).
fn kiss_junk(j: &mut Junk) -> Vec<u8> {
    let frame = junk_frame(j, A);
    match try_kiss_encode(&frame) {
        Some(encoded) if j.below(3) != 0 => encoded,
        _ => {
            let mut raw = vec![FEND];
            raw.extend_from_slice(&frame);
            raw.push(FEND);
            raw
        }
    }
}

/// 20,000 random and malformed frames into the KISS link while an
/// application pings A and B: every ping is answered, the link and the
/// daemon count the drops, and the link still carries a good frame.
#[test]
fn a_flood_into_a_kiss_link() {
    const FLOOD: usize = 20_000;
    let (a, _b, port) = pair();
    let mut app = App::on(&a);
    let mut s = connect(port);
    kiss_ping(&mut s, b"before the flood");
    let rss_before = rss_kib(a.pid());
    let mut j = Junk(0x1234_5678_9abc_def1);
    let mut bytes = 0;
    for i in 0..FLOOD {
        let f = kiss_junk(&mut j);
        bytes += f.len();
        s.write_all(&f).unwrap();
        if i % 1000 == 0 {
            app.ping_both();
        }
    }
    // Everything written has been read once a frame after it is answered.
    kiss_ping(&mut s, b"after the flood");
    app.ping_both();
    let stats = a.stats();
    let rx_frames = link_stat(&stats, LINK, "rx_frames");
    let errors = kiss_rx_errors(&a);
    let dropped =
        stat(&stats, "unroutable") + stat(&stats, "no_listener") + stat(&stats, "rejected_packets");
    assert!(rx_frames > 0 && errors > 0 && dropped > 0, "{stats}");
    let rss_after = rss_kib(a.pid());
    println!(
        "KISS flood: {FLOOD} frames ({bytes} bytes): link rx_frames={rx_frames}, \
         rx errors {errors}, unroutable+no_listener+rejected {dropped}; \
         RSS {rss_before} -> {rss_after} KiB"
    );
}

/// 20,000 random and malformed frames published into a ZMQ hub, all of
/// them addressed so that the daemon's subscription lets them through,
/// while an application pings the daemon: every ping is answered and the
/// link and daemon count the drops.
#[test]
fn a_flood_into_a_zmq_link() {
    const FLOOD: usize = 20_000;
    const NODE: u16 = 11;
    let hub = Hub::start();
    let d = hub.node(MuxdConfig::node(NODE), "");
    let mut app = App::on(&d);
    let me = 40u16;
    let peer = hub::Peer::v2(&hub, me);
    // The peer's ping is answered once subscriptions have travelled (the
    // slow joiner): retried, bounded.
    let zmq_ping = |tag: &[u8]| {
        let ping = header(me, 33, NODE, 1, Flags::NONE);
        let (bytes, n) = ping.to_bytes(Version::V2).unwrap();
        let mut frame = bytes[..n].to_vec();
        frame.extend_from_slice(tag);
        peer.request(&frame, |reply| reply.len() > 6 && &reply[6..] == tag);
    };
    zmq_ping(b"before the flood");
    let mut j = Junk(0x5eed_0f20_2400);
    for i in 0..FLOOD {
        let mut f = junk_frame(&mut j, NODE);
        // Through the daemon's subscription: prio | its address up front.
        if f.len() >= 2 {
            let prefix = ((i as u16 % 4) << 14) | NODE;
            f[..2].copy_from_slice(&prefix.to_be_bytes());
        }
        peer.send(&f);
        if i % 1000 == 0 {
            app.ping(NODE);
        }
    }
    zmq_ping(b"after the flood");
    app.ping(NODE);
    let stats = d.stats();
    let rx_frames = link_stat(&stats, hub::LINK, "rx_frames");
    let errors = link_stat(&stats, hub::LINK, "rx_errors");
    let dropped = stat(&stats, "no_listener") + stat(&stats, "rejected_packets");
    assert!(rx_frames > 0 && dropped > 0, "{stats}");
    println!(
        "ZMQ flood: {FLOOD} frames published: link rx_frames={rx_frames} rx_errors={errors}, \
         no_listener+rejected {dropped}"
    );
}
