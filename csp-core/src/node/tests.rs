//! Unit tests of the node: a node against a bare `csp_rdp::Connection`
//! peer whose segments the test wraps in CSP frames by hand, plus the small
//! helpers. The two-node tests over simulated links are in `tests/node.rs`.

extern crate std;
use std::vec::Vec;

use super::*;
use crate::security::HmacKey;
use crate::time::Duration;

type N = Node<256, 4, 4, 6, 2, 4, 200, 1, 4>;

const ME: u16 = 10;
const PEER: u16 = 3;

fn addr(a: u16) -> Addr {
    Addr::new(a).unwrap()
}

fn port(p: u8) -> Port {
    Port::new(p).unwrap()
}

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

fn node(seed: u64, mtu: usize) -> N {
    let mut n = N::new(NodeConfig {
        seed,
        ..NodeConfig::new(addr(ME))
    });
    let i = n
        .add_iface(IfaceConfig::new("IF", Version::V2, mtu))
        .unwrap();
    n.routes_mut().set_default(i, None).unwrap();
    n
}

/// The frames a node sends now.
fn drain<const C: usize>(
    n: &mut Node<256, 4, 4, 6, C, 4, 200, 1, 4>,
    now: Instant,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    while let Some(t) = n.poll_transmit(now, &mut buf) {
        out.push(buf[..t.len].to_vec());
    }
    out
}

fn events(n: &mut N) -> Vec<Event> {
    core::iter::from_fn(|| n.poll_event()).collect()
}

/// A bare RDP connection at address 3, port `sport`, talking to port 10 of
/// the node; the test moves its segments in and out of CSP frames.
struct Peer {
    conn: Connection<4, 200>,
    sport: Port,
}

impl Peer {
    fn connect(now: Instant, sport: u8, isn: u16) -> Peer {
        Peer {
            conn: Connection::connect(now, csp_rdp::Options::default(), isn).unwrap(),
            sport: port(sport),
        }
    }

    fn frames(&mut self, now: Instant) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut seg = [0u8; 256];
        while let Some(t) = self.conn.poll_transmit(now, &mut seg) {
            let h = Header {
                prio: Prio::High,
                src: addr(PEER),
                dst: addr(ME),
                dport: port(10),
                sport: self.sport,
                flags: Flags::RDP,
            };
            let mut p = Packet::<256>::with_data(h, &seg[..t.len]).unwrap();
            out.push(p.frame(Version::V2).unwrap().to_vec());
        }
        out
    }

    fn take(&mut self, now: Instant, frames: &[Vec<u8>]) {
        for f in frames {
            let p = Packet::<256>::from_frame(f, Version::V2).unwrap();
            assert!(p.header.flags.contains(Flags::RDP));
            assert_eq!(p.header.dport, self.sport);
            self.conn.handle_segment(now, p.data());
        }
    }

    fn exchange(&mut self, n: &mut N, now: Instant) {
        for _ in 0..10 {
            let to_node = self.frames(now);
            for f in &to_node {
                let _ = n.handle_frame(now, IfaceId(0), f);
            }
            let from_node = drain(n, now);
            self.take(now, &from_node);
            if to_node.is_empty() && from_node.is_empty() {
                return;
            }
        }
    }
}

/// `new` stays a `const fn`: firmware can keep its node in a `static`.
static _FIRMWARE_NODE: N = N::new(NodeConfig {
    seed: 1,
    ..NodeConfig::new(Addr::LOCAL)
});

#[test]
fn mirror_follows_the_peer_and_keeps_the_key() {
    let key = HmacKey::from_key_string(b"k");
    let base = SecurityOptions {
        crc: true,
        hmac: Some(key),
        accept_missing: true,
        ..SecurityOptions::NONE
    };
    let m = mirror(&base, Flags::HMAC | Flags::RDP);
    assert_eq!((m.crc, m.hmac, m.accept_missing), (false, Some(key), false));
    let m = mirror(&base, Flags::CRC32);
    assert_eq!((m.crc, m.hmac), (true, None));
}

#[test]
fn initial_sequence_numbers_come_from_the_seed() {
    let syn_seq = |seed: u64| {
        let mut n = node(seed, 256);
        n.connect(at(0), addr(PEER), port(10), &ConnectOptions::default())
            .unwrap();
        let f = drain(&mut n, at(0)).remove(0);
        let p = Packet::<256>::from_frame(&f, Version::V2).unwrap();
        csp_rdp::RdpHeader::split(p.data()).unwrap().1.seq
    };
    assert_eq!(syn_seq(7), syn_seq(7), "deterministic for a seed");
    let distinct: std::collections::BTreeSet<u16> = (0..20).map(syn_seq).collect();
    assert!(distinct.len() >= 18, "{distinct:?}");
}

#[test]
fn accepted_connection_against_a_bare_rdp_peer() {
    let mut n = node(1, 256);
    let sock = n
        .bind(BindPort::Port(port(10)), SocketOptions::both())
        .unwrap();
    let mut peer = Peer::connect(at(0), 20, 1000);
    peer.exchange(&mut n, at(0));
    assert_eq!(peer.conn.state(), csp_rdp::State::Open);
    peer.conn.send(at(0), b"hello").unwrap();
    peer.exchange(&mut n, at(0));
    let evs = events(&mut n);
    let Some(&Event::Accepted { socket, conn }) = evs.first() else {
        panic!("{evs:?}")
    };
    assert_eq!(socket, sock);
    assert_eq!(evs[1..], [Event::Readable { conn }]);
    let mut buf = [0u8; 200];
    assert_eq!(n.recv_conn(conn, &mut buf), Ok(5));
    assert_eq!(&buf[..5], b"hello");
    assert_eq!(n.recv_conn(conn, &mut buf), Err(NodeError::WouldBlock));
    assert_eq!(n.conn_endpoints(conn), Ok((addr(PEER), port(20), port(10))));
    // The accepted connection inherits the SYN's priority (High) for data.
    n.send(at(0), conn, b"back").unwrap();
    let out = drain(&mut n, at(0));
    let p = Packet::<256>::from_frame(&out[0], Version::V2).unwrap();
    assert_eq!(p.header.prio, Prio::High);
    peer.take(at(0), &out);
    let got: Vec<_> = core::iter::from_fn(|| peer.conn.poll_event()).collect();
    assert!(
        got.iter()
            .any(|e| matches!(e, csp_rdp::Event::Data(d) if &**d == b"back")),
        "{got:?}"
    );
}

#[test]
fn a_new_syn_on_the_ports_of_a_finished_connection_opens_a_new_one() {
    let mut n = node(2, 256);
    n.bind(BindPort::Port(port(10)), SocketOptions::both())
        .unwrap();
    let mut peer = Peer::connect(at(0), 20, 1000);
    peer.exchange(&mut n, at(0));
    peer.conn.close(at(0));
    peer.exchange(&mut n, at(0));
    let evs = events(&mut n);
    let Some(&Event::Accepted { conn: old, .. }) = evs.first() else {
        panic!("{evs:?}")
    };
    assert_eq!(
        evs.last(),
        Some(&Event::Closed {
            conn: old,
            reason: CloseReason::Peer
        })
    );
    assert_eq!(n.conn_state(old), Ok(ConnState::TimeWait));
    assert_eq!(n.recv_conn(old, &mut [0u8; 8]), Err(NodeError::Closed));
    // The peer comes back from the same port long before time-wait ends.
    let mut again = Peer::connect(at(100), 20, 5000);
    again.exchange(&mut n, at(100));
    assert_eq!(again.conn.state(), csp_rdp::State::Open);
    let evs = events(&mut n);
    let Some(&Event::Accepted { conn: new, .. }) = evs.first() else {
        panic!("{evs:?}")
    };
    assert_ne!(old, new);
    assert_eq!(n.conn_state(old), Err(NodeError::BadHandle));
    assert_eq!(n.connections(), 1);
}

#[test]
fn finished_connections_free_their_slot_and_port() {
    let mut n = node(3, 256);
    let c = n
        .connect(at(0), addr(PEER), port(10), &ConnectOptions::default())
        .unwrap();
    let (_, _, lport) = n.conn_endpoints(c).unwrap();
    n.close(at(0), c).unwrap();
    assert_eq!(
        events(&mut n),
        [Event::Closed {
            conn: c,
            reason: CloseReason::Aborted
        }]
    );
    // The abort's reset still leaves, then the slot goes.
    assert_eq!(drain(&mut n, at(0)).len(), 1);
    assert_eq!(n.connections(), 0);
    assert!(n.ports.get(BindAddr::Any, BindPort::Port(lport)).is_none());
    assert_eq!(n.close(at(0), c), Err(NodeError::BadHandle));
}

#[test]
fn connect_from_binds_the_given_port() {
    let mut n = node(4, 256);
    let opts = ConnectOptions::default();
    let c = n
        .connect_from(at(0), port(12), addr(PEER), port(10), &opts)
        .unwrap();
    assert_eq!(n.conn_endpoints(c).unwrap().2, port(12));
    assert!(matches!(
        n.connect_from(at(0), port(12), addr(PEER), port(11), &opts),
        Err(NodeError::Bind(crate::bind::BindError::PortInUse(_)))
    ));
    assert!(matches!(
        n.connect_from(at(0), port(40), addr(PEER), port(11), &opts),
        Err(NodeError::Bind(
            crate::bind::BindError::PortOutOfRange { .. }
        ))
    ));
    let wide = ConnectOptions {
        rdp: csp_rdp::Options {
            window: 5,
            ..csp_rdp::Options::default()
        },
        ..opts
    };
    assert_eq!(
        n.connect(at(0), addr(PEER), port(10), &wide),
        Err(NodeError::Options(csp_rdp::OptionsError::Window))
    );
    assert_eq!(n.connections(), 1);
}

#[test]
fn send_refuses_segments_over_the_mtu() {
    let mut n = node(5, 100);
    let c = n
        .connect(at(0), addr(PEER), port(10), &ConnectOptions::default())
        .unwrap();
    // 6 header + 90 data + 5 RDP = 101 > 100.
    assert_eq!(
        n.send(at(0), c, &[0; 90]),
        Err(NodeError::ExceedsMtu { len: 101, mtu: 100 })
    );
    // Within the MTU the connection itself answers (still handshaking).
    assert!(matches!(
        n.send(at(0), c, &[0; 89]),
        Err(NodeError::Send(csp_rdp::SendError::NotConnected))
    ));
}

#[test]
fn timeouts_drive_retransmission_and_failure() {
    let mut n = node(6, 256);
    let c = n
        .connect(at(0), addr(PEER), port(10), &ConnectOptions::default())
        .unwrap();
    assert_eq!(drain(&mut n, at(0)).len(), 1);
    let mut now = at(0);
    let mut syns = 1;
    let mut end = None;
    for _ in 0..100 {
        let Some(t) = n.poll_timeout() else { break };
        assert!(t >= now, "timers never go back");
        now = t;
        n.handle_timeout(now);
        syns += drain(&mut n, now).len();
        for e in events(&mut n) {
            end = Some(e);
        }
    }
    assert!(syns > 2, "the SYN was retransmitted");
    assert!(
        matches!(end, Some(Event::Failed { conn, .. }) if conn == c),
        "{end:?}"
    );
    assert!(now <= at(0) + Duration::from_millis(60_000));
    // The slot goes with the next transmit poll after the last event.
    assert_eq!(n.connections(), 1);
    drain(&mut n, now);
    assert_eq!(n.connections(), 0);
    assert_eq!(n.poll_timeout(), None);
}

#[test]
fn a_half_open_accepted_connection_goes_away_silently() {
    let mut n = node(7, 256);
    n.bind(BindPort::Port(port(10)), SocketOptions::listener())
        .unwrap();
    let mut peer = Peer::connect(at(0), 20, 1000);
    // Only the SYN reaches the node; the peer then vanishes.
    for f in peer.frames(at(0)) {
        n.handle_frame(at(0), IfaceId(0), &f).unwrap();
    }
    assert_eq!(n.connections(), 1);
    assert!(!drain(&mut n, at(0)).is_empty(), "the SYN-ACK");
    let mut now = at(0);
    while let Some(t) = n.poll_timeout() {
        now = t;
        n.handle_timeout(now);
        drain(&mut n, now);
        assert_eq!(
            events(&mut n),
            [],
            "nothing about a connection never accepted"
        );
        drain(&mut n, now);
    }
    assert_eq!(n.connections(), 0);
    assert!(now <= at(30_000));
}

#[test]
fn an_accepted_connection_leaves_a_rebound_listener_port_alone() {
    let mut n = node(8, 256);
    let l = n
        .bind(BindPort::Port(port(10)), SocketOptions::listener())
        .unwrap();
    let mut peer = Peer::connect(at(0), 20, 1000);
    peer.exchange(&mut n, at(0));
    let Some(Event::Accepted { conn, .. }) = n.poll_event() else {
        panic!()
    };
    n.unbind(l).unwrap();
    let again = n
        .bind(BindPort::Port(port(10)), SocketOptions::listener())
        .unwrap();
    // The old connection ends and its slot goes...
    peer.conn.close(at(0));
    peer.exchange(&mut n, at(0));
    while n.poll_event().is_some() {}
    n.handle_timeout(at(60_000));
    drain(&mut n, at(60_000));
    assert_eq!(n.conn_state(conn), Err(NodeError::BadHandle));
    // ...and the new listener still has its port.
    assert_eq!(n.socket_port(again), Ok(BindPort::Port(port(10))));
    assert!(n
        .ports
        .get(BindAddr::Any, BindPort::Port(port(10)))
        .is_some());
}

/// A SYN flood from made-up sources asking for one-hour timeouts and a
/// huge window (issue 14): the listener holds at most its half-open bound,
/// a real client still connects, and the half-open connections go on our
/// SYN-RECEIVED timeout rather than the hour they asked for.
#[test]
fn syn_flood_from_made_up_sources_does_not_lock_the_listener() {
    type Big = Node<256, 4, 4, 6, 16, 4, 200, 1, 4>;
    let mut n = Big::new(NodeConfig {
        seed: 5,
        ..NodeConfig::new(addr(ME))
    });
    let i = n
        .add_iface(IfaceConfig::new("IF", Version::V2, 256))
        .unwrap();
    n.routes_mut().set_default(i, None).unwrap();
    n.bind(BindPort::Port(port(10)), SocketOptions::both())
        .unwrap();
    let hour = Duration::from_millis(3_600_000);
    let greedy = csp_rdp::Options {
        conn_timeout: hour,
        packet_timeout: hour,
        max_backoff: hour,
        ..csp_rdp::Options::default()
    };
    let limits = SynLimits::DEFAULT;
    for src in 100..164u16 {
        let mut c = Connection::<4, 200>::connect(at(0), greedy, src).unwrap();
        let mut seg = [0u8; 64];
        let t = c.poll_transmit(at(0), &mut seg).unwrap();
        // Ask for a window far beyond anything sensible too.
        seg[..4].copy_from_slice(&0x3fffu32.to_be_bytes());
        let h = Header {
            prio: Prio::Normal,
            src: addr(src),
            dst: addr(ME),
            dport: port(10),
            sport: port(20),
            flags: Flags::RDP,
        };
        let mut p = Packet::<256>::with_data(h, &seg[..t.len]).unwrap();
        let _ = n.handle_frame(at(0), IfaceId(0), p.frame(Version::V2).unwrap());
        let _ = drain(&mut n, at(0));
    }
    let bound = usize::from(limits.half_open_per_listener);
    assert_eq!(n.connections(), bound);
    assert_eq!(n.counters().half_open_dropped, 64 - bound as u32);
    assert_eq!(
        n.poll_timeout(),
        Some(at(0) + limits.syn_received_timeout),
        "the half-open connections expire on our timeout, not in an hour"
    );

    // A real client connects through the flood's leftovers.
    let now = at(100);
    let mut peer = Peer::connect(now, 21, 7);
    for _ in 0..10 {
        let to_node = peer.frames(now);
        for f in &to_node {
            let _ = n.handle_frame(now, IfaceId(0), f);
        }
        let from_node = drain(&mut n, now);
        peer.take(now, &from_node);
        if to_node.is_empty() && from_node.is_empty() {
            break;
        }
    }
    assert_eq!(peer.conn.state(), csp_rdp::State::Open);
    let evs: Vec<Event> = core::iter::from_fn(|| n.poll_event()).collect();
    assert!(
        evs.iter().any(|e| matches!(e, Event::Accepted { .. })),
        "{evs:?}"
    );

    // Our SYN-RECEIVED timeout ends the rest; the real connection stays.
    let later = at(0) + limits.syn_received_timeout;
    peer.conn.send(later, b"x").unwrap();
    for f in peer.frames(later) {
        let _ = n.handle_frame(later, IfaceId(0), &f);
    }
    n.handle_timeout(later);
    assert_eq!(n.connections(), 1);
    assert_eq!(n.counters().half_open_dropped, 64);
}

#[test]
fn one_source_holds_at_most_its_half_open_bound() {
    type Big = Node<256, 4, 4, 6, 16, 4, 200, 1, 4>;
    let mut n = Big::new(NodeConfig::new(addr(ME)));
    let i = n
        .add_iface(IfaceConfig::new("IF", Version::V2, 256))
        .unwrap();
    n.routes_mut().set_default(i, None).unwrap();
    n.bind(BindPort::Port(port(10)), SocketOptions::both())
        .unwrap();
    let mut refused = 0;
    for sport in 20..30u8 {
        let mut peer = Peer::connect(at(0), sport, u16::from(sport));
        for f in peer.frames(at(0)) {
            if n.handle_frame(at(0), IfaceId(0), &f) == Err(RxDrop::BacklogFull) {
                refused += 1;
            }
        }
    }
    let per_source = usize::from(SynLimits::DEFAULT.half_open_per_source);
    assert_eq!(n.connections(), per_source);
    assert_eq!(refused, 10 - per_source);
    assert_eq!(n.counters().rx_syn_refused, 10 - per_source as u32);
}

#[test]
fn a_bad_syn_displaces_no_half_open_connection() {
    type Big = Node<256, 4, 4, 6, 16, 4, 200, 1, 4>;
    let mut n = Big::new(NodeConfig::new(addr(ME)));
    let i = n
        .add_iface(IfaceConfig::new("IF", Version::V2, 256))
        .unwrap();
    n.routes_mut().set_default(i, None).unwrap();
    n.bind(BindPort::Port(port(10)), SocketOptions::both())
        .unwrap();
    let syn_from = |src: u16, data: &[u8]| {
        let h = Header {
            prio: Prio::Normal,
            src: addr(src),
            dst: addr(ME),
            dport: port(10),
            sport: port(20),
            flags: Flags::RDP,
        };
        Packet::<256>::with_data(h, data)
            .unwrap()
            .frame(Version::V2)
            .unwrap()
            .to_vec()
    };
    let good = {
        let mut c = Connection::<4, 200>::connect(at(0), csp_rdp::Options::default(), 1).unwrap();
        let mut seg = [0u8; 64];
        let t = c.poll_transmit(at(0), &mut seg).unwrap();
        seg[..t.len].to_vec()
    };
    let bound = SynLimits::DEFAULT.half_open_per_listener;
    for src in 0..bound {
        n.handle_frame(at(0), IfaceId(0), &syn_from(100 + src, &good))
            .unwrap();
    }
    // The SYN flag with a short option block: refused, nobody displaced.
    let short = &good[good.len() - 9..];
    assert_eq!(
        n.handle_frame(at(0), IfaceId(0), &syn_from(200, short)),
        Err(RxDrop::BadSyn)
    );
    assert_eq!(n.connections(), usize::from(bound));
    assert_eq!(n.counters().half_open_dropped, 0);
}
