//! ZMQ hub links end to end: a `csp-muxd --zmq-proxy` process and several
//! daemons on it, all on 127.0.0.1 with free ports. ZeroMQ's subscriptions
//! take a moment to travel from a subscriber through the proxy to the
//! publishers (the "slow joiner"), so the first exchange between two nodes
//! is retried, boundedly; after that nothing may be lost.
//!
//! RDP between pairs is not here: it needs the client library (host-lib),
//! which does not exist on this branch yet.

use std::time::{Duration, Instant};

use csp_core::{Flags, Header, Version};
use csp_ipc::{Control, PORT_EPHEMERAL};
use test_support::*;

/// Ping `to`'s built-in service from `from` until it answers (bounded):
/// after this both directions between the two nodes are joined. Uses a
/// client of its own, so late answers to earlier tries vanish with it.
fn join(from: &Muxd, from_addr: u16, to_addr: u16) {
    let mut c = from.client("join");
    let (_, _, eph) = c.register(0, PORT_EPHEMERAL);
    let deadline = Instant::now() + WAIT;
    for attempt in 0u32.. {
        assert!(
            Instant::now() < deadline,
            "{to_addr} never answered {from_addr}"
        );
        let payload = attempt.to_be_bytes();
        c.send_packet(from_addr, eph, to_addr, 1, Flags::NONE, &payload);
        while let Some((h, data)) = c.recv_packet_within(Duration::from_millis(100)) {
            if h.src.get() == to_addr && data == payload {
                return;
            }
        }
    }
}

/// An application on port 10 of a node.
struct App {
    ipc: Ipc,
    addr: u16,
}

fn app(node: &Muxd, addr: u16) -> App {
    let mut ipc = node.client("app");
    assert_eq!(ipc.register(0, 10).0, csp_ipc::Status::Ok);
    App { ipc, addr }
}

/// `n` packets from `a`'s port 10 to `b`'s, all arriving, in order; then
/// a ping of `b`'s service answered to `a`'s port 10.
fn exchange(a: &mut App, b: &mut App, n: u8) {
    for i in 0..n {
        let payload = [a.addr as u8, b.addr as u8, i, 0xC0];
        a.ipc
            .send_packet(a.addr, 10, b.addr, 10, Flags::CRC32, &payload);
        let (h, data) = b.ipc.recv_packet();
        assert!(h.flags.contains(Flags::CRC32), "flags cross the hub");
        assert_eq!(
            (h.src.get(), h.sport.get(), h.dst.get(), h.dport.get()),
            (a.addr, 10, b.addr, 10)
        );
        assert_eq!(data, payload, "{} -> {} packet {i}", a.addr, b.addr);
    }
    a.ipc
        .send_packet(a.addr, 10, b.addr, 1, Flags::NONE, b"ping over the hub");
    let (h, data) = a.ipc.recv_packet();
    assert_eq!((h.src.get(), h.sport.get()), (b.addr, 1));
    assert_eq!(data, b"ping over the hub");
}

fn stats(node: &Muxd) -> String {
    node.client("stats").control(Control::Stats)
}

#[test]
fn three_daemons_on_one_proxy_reach_each_other() {
    let mut hub = Hub::start();
    let addrs = [11u16, 12, 13];
    let nodes: Vec<Muxd> = addrs
        .iter()
        .map(|&a| hub.node(MuxdConfig::node(a), ""))
        .collect();
    for (i, &a) in addrs.iter().enumerate() {
        for &b in &addrs {
            if a != b {
                join(&nodes[i], a, b);
            }
        }
    }
    let mut apps: Vec<App> = nodes.iter().zip(addrs).map(|(n, a)| app(n, a)).collect();
    for i in 0..3 {
        for j in 0..3 {
            if i != j {
                let (a, b) = if i < j {
                    let (l, r) = apps.split_at_mut(j);
                    (&mut l[i], &mut r[0])
                } else {
                    let (l, r) = apps.split_at_mut(i);
                    (&mut r[0], &mut l[j])
                };
                exchange(a, b, 20);
            }
        }
    }
    let s = stats(&nodes[0]);
    assert!(link_stat(&s, "zmqhub", "rx_frames") >= 40, "{s}");
    assert_eq!(link_stat(&s, "zmqhub", "rx_errors"), 0, "{s}");
    assert_eq!(link_stat(&s, "zmqhub", "tx_errors"), 0, "{s}");
    let status = nodes[0].client("s").control(Control::Status);
    assert!(
        status.contains(&format!(
            "link zmqhub zmq pub=tcp://127.0.0.1:{} sub=tcp://127.0.0.1:{} version=V2 \
             framing=libcsp2 promiscuous=false subscriptions=8",
            hub.xsub, hub.xpub
        )),
        "{status}"
    );
    drop(nodes);
    assert!(hub.terminate().success(), "proxy exits 0 on SIGTERM");
}

#[test]
fn subscriptions_keep_other_nodes_traffic_away_unless_promiscuous() {
    let hub = Hub::start();
    let sender = hub.node(MuxdConfig::node(21), "");
    let plain = hub.node(MuxdConfig::node(22), "");
    let promisc = hub.node(MuxdConfig::node(23), "promiscuous = true");
    let gateway = hub.node(MuxdConfig::node(24), "subscribe = [30]");
    for to in [22, 23, 24] {
        join(&sender, 21, to);
    }
    let before = |n: &Muxd| link_stat(&stats(n), "zmqhub", "rx_frames");
    let (plain0, promisc0, gateway0) = (before(&plain), before(&promisc), before(&gateway));
    let forwarded0 = stat(&stats(&gateway), "forwarded");

    // Ten frames for node 30, which nobody is; then a ping of each node,
    // answered, so the ten had their time (the hub keeps one publisher's
    // frames in order).
    let mut app21 = app(&sender, 21);
    for i in 0..10u8 {
        app21.ipc.send_packet(21, 10, 30, 10, Flags::NONE, &[i; 8]);
    }
    for to in [22, 23, 24] {
        app21.ipc.send_packet(21, 10, to, 1, Flags::NONE, b"marker");
        let (h, data) = app21.ipc.recv_packet();
        assert_eq!((h.src.get(), data.as_slice()), (to, &b"marker"[..]));
    }

    let s = stats(&plain);
    assert_eq!(
        link_stat(&s, "zmqhub", "rx_frames") - plain0,
        1,
        "only the marker reached a plain node: {s}"
    );
    assert_eq!(stat(&s, "same_link"), 0, "{s}");
    let s = stats(&gateway);
    assert_eq!(
        link_stat(&s, "zmqhub", "rx_frames") - gateway0,
        11,
        "the subscribed address's ten and the marker: {s}"
    );
    // Node 30 is routed back into the hub: not sent again.
    assert_eq!(stat(&s, "same_link"), 10, "{s}");
    assert_eq!(
        stat(&s, "forwarded") - forwarded0,
        1,
        "only the marker's answer: {s}"
    );
    // The frames for 30 came before the marker to 23, which was answered;
    // what others said since may still be on its way.
    let s = stats(&promisc);
    assert!(
        link_stat(&s, "zmqhub", "rx_frames") - promisc0 >= 11,
        "a promiscuous node sees everything: {s}"
    );
    assert!(stat(&s, "same_link") >= 10, "{s}");
    let status = promisc.client("s").control(Control::Status);
    assert!(
        status.contains("promiscuous=true subscriptions=1"),
        "{status}"
    );
    let status = gateway.client("s").control(Control::Status);
    assert!(status.contains("subscriptions=12"), "{status}");
}

#[test]
fn a_restarted_daemon_rejoins_and_traffic_resumes() {
    let hub = Hub::start();
    let a = hub.node(MuxdConfig::node(11), "");
    let mut b = hub.node(MuxdConfig::node(12), "");
    join(&a, 11, 12);
    let mut app_a = app(&a, 11);
    exchange(&mut app_a, &mut app(&b, 12), 5);

    assert!(b.terminate().success());
    drop(b);
    // Frames for the missing node go nowhere, without errors.
    app_a
        .ipc
        .send_packet(11, 10, 12, 10, Flags::NONE, b"into the void");
    let b = hub.node(MuxdConfig::node(12), "");
    join(&a, 11, 12);
    join(&b, 12, 11);
    let mut app_b = app(&b, 12);
    exchange(&mut app_a, &mut app_b, 10);
    exchange(&mut app_b, &mut app_a, 10);
    assert_eq!(link_stat(&stats(&a), "zmqhub", "tx_errors"), 0);
}

#[test]
fn daemons_rejoin_a_restarted_proxy() {
    let mut hub = Hub::start();
    let a = hub.node(MuxdConfig::node(11), "");
    let b = hub.node(MuxdConfig::node(12), "");
    join(&a, 11, 12);
    exchange(&mut app(&a, 11), &mut app(&b, 12), 3);
    let (xsub, xpub) = (hub.xsub, hub.xpub);
    assert!(hub.terminate().success());
    drop(hub);
    let _hub = Hub::start_on(xsub, xpub);
    // ZeroMQ reconnects (and sends the subscriptions again) by itself.
    join(&a, 11, 12);
    join(&b, 12, 11);
    exchange(&mut app(&a, 11), &mut app(&b, 12), 5);
}

#[test]
fn daemons_started_before_the_proxy_join_it_when_it_comes() {
    let (xsub, xpub) = (free_tcp_port(), free_tcp_port());
    let table = hub::zmq_table(xsub, xpub, "");
    let a = Muxd::start(MuxdConfig::node(11).route("0/0 zmqhub").extra(&table));
    let b = Muxd::start(MuxdConfig::node(12).route("0/0 zmqhub").extra(&table));
    std::thread::sleep(Duration::from_millis(300));
    let _hub = Hub::start_on(xsub, xpub);
    join(&a, 11, 12);
    join(&b, 12, 11);
    exchange(&mut app(&a, 11), &mut app(&b, 12), 5);
}

#[test]
fn version_1_hub_filters_on_the_receiving_side() {
    let hub = Hub::start();
    let nodes: Vec<Muxd> = [5u16, 6, 7]
        .iter()
        .map(|&a| hub.node(MuxdConfig::node(a), "version = 1"))
        .collect();
    join(&nodes[0], 5, 6);
    join(&nodes[1], 6, 5);
    exchange(&mut app(&nodes[0], 5), &mut app(&nodes[1], 6), 5);
    // Node 7 subscribed to everything (a v1 header has no destination
    // prefix) and dropped what was not for it.
    // At least the five packets, the ping and its answer, and the two
    // joins' last ping and answer; the last may still be on their way.
    let deadline = Instant::now() + WAIT;
    let s = loop {
        let s = stats(&nodes[2]);
        if link_stat(&s, "zmqhub", "rx_filtered") >= 11 {
            break s;
        }
        assert!(Instant::now() < deadline, "{s}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(link_stat(&s, "zmqhub", "rx_frames"), 0, "{s}");
    assert_eq!(stat(&s, "same_link"), 0, "{s}");
    let status = nodes[2].client("s").control(Control::Status);
    assert!(status.contains("version=V1"), "{status}");
}

/// A peer that is not csp-muxd: raw ZeroMQ sockets in the test, framing and
/// subscribing as libcsp 2.x does (`header | data`, no prefix; two-byte
/// `prio:2 | dst:14` subscriptions for its address at each priority).
#[test]
fn a_libcsp_style_peer_pings_a_daemon() {
    let hub = Hub::start();
    let node = hub.node(MuxdConfig::node(11), "");
    let me = 40u16;
    let peer = hub::Peer::v2(&hub, me);
    let ping = header(me, 33, 11, 1, Flags::NONE);
    let (bytes, n) = ping.to_bytes(Version::V2).unwrap();
    let mut frame = bytes[..n].to_vec();
    frame.extend_from_slice(b"from a libcsp node");
    let reply = peer.request(&frame, |_| true);
    let h = Header::parse(&reply, Version::V2).unwrap();
    assert_eq!(
        (h.src.get(), h.sport.get(), h.dst.get(), h.dport.get()),
        (11, 1, me, 33)
    );
    assert_eq!(
        &reply[6..],
        b"from a libcsp node",
        "header | data, no prefix"
    );
    let s = stats(&node);
    assert!(link_stat(&s, "zmqhub", "rx_frames") >= 1, "{s}");
    assert_eq!(link_stat(&s, "zmqhub", "rx_errors"), 0, "{s}");
}

/// libcsp 1.x framing: a raw peer in the test speaks it (next-hop byte,
/// little-endian v1 header word, data; one-byte subscriptions) with a
/// daemon, which also sends to a via address by that first byte.
#[test]
fn libcsp1_framing_with_a_1x_style_peer() {
    let hub = Hub::start();
    let node = Muxd::start(
        MuxdConfig::node(11)
            .route("0/0 zmqhub")
            .route("20 zmqhub 12")
            .extra(&hub.table("version = 1\nframing = \"libcsp1\"")),
    );
    // The peer is node 12 and, as libcsp 1.x, subscribes to its address byte.
    let peer = hub::Peer::connect(&hub, &[vec![12]]);
    let message_1x = |hop: u8, h: &Header, data: &[u8]| {
        let (bytes, n) = h.to_bytes(Version::V1).unwrap();
        assert_eq!(n, 4);
        let mut m = vec![hop];
        m.extend(bytes[..4].iter().rev());
        m.extend_from_slice(data);
        m
    };
    let ping = message_1x(11, &header(12, 33, 11, 1, Flags::NONE), b"from libcsp 1.x");
    let reply = peer.request(&ping, |_| true);
    assert_eq!(reply[0], 12, "next hop first");
    let mut word = reply[1..5].to_vec();
    word.reverse();
    let h = Header::parse(&word, Version::V1).unwrap();
    assert_eq!(
        (h.src.get(), h.sport.get(), h.dst.get(), h.dport.get()),
        (11, 1, 12, 33)
    );
    assert_eq!(&reply[5..], b"from libcsp 1.x");

    // Node 20 is reached via 12: the message goes to 12's byte.
    let mut app11 = app(&node, 11);
    app11
        .ipc
        .send_packet(11, 10, 20, 7, Flags::NONE, b"for 20 via 12");
    peer.subscriber
        .set_rcvtimeo(WAIT.as_millis() as i32)
        .unwrap();
    let msg = peer.recv().expect("the message via 12");
    let mut word = msg[1..5].to_vec();
    word.reverse();
    let h = Header::parse(&word, Version::V1).unwrap();
    assert_eq!((msg[0], h.dst.get(), h.dport.get()), (12, 20, 7));
    assert_eq!(&msg[5..], b"for 20 via 12");

    // Messages for another hop byte are not the daemon's.
    let other = message_1x(13, &header(12, 33, 11, 1, Flags::NONE), b"not for 11");
    peer.send(&other);
    peer.send(&ping);
    let again = peer.recv().expect("the answer to the second ping");
    assert_eq!(&again[5..], b"from libcsp 1.x");
    let s = stats(&node);
    assert_eq!(link_stat(&s, "zmqhub", "rx_errors"), 0, "{s}");
    let status = node.client("s").control(Control::Status);
    assert!(status.contains("framing=libcsp1"), "{status}");
}
