//! Our connection against a peer that behaves like libcsp (`sim::LibcspPeer`):
//! delayed and redundant bare ACKs, silent out-of-order holding, a small
//! buffer pool. Deterministic, in simulated time; no test here measures
//! the wall clock.

use csp_rdp::sim::{
    libcsp_against_libcsp, ours_against_libcsp, End, LibcspConfig, LinkConfig, Pair,
};
use csp_rdp::time::{Duration, Instant};
use csp_rdp::{CloseReason, Options};

const MB: usize = 1 << 20;

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn link(delay_ms: u64) -> LinkConfig {
    LinkConfig {
        delay: Duration::from_millis(delay_ms),
        ..LinkConfig::clean()
    }
}

/// The model itself: libcsp to libcsp moves the data, acknowledged, with
/// no retransmission on a clean link.
#[test]
fn libcsp_peer_talks_to_itself() {
    let mut d = libcsp_against_libcsp(LibcspConfig::default(), LibcspConfig::default(), link(5), 1);
    let data = pattern(20_000);
    d.a.outbox.extend(&data);
    d.a.close_when_done = true;
    assert!(d.run_until(1_000_000, |d| d.a.closed && d.b.closed));
    assert_eq!(d.b.received, data);
    assert_eq!(d.a.counters.tx_retransmissions, 0);
    assert_eq!(d.b.counters.rx_already_acked, 0);
    assert!(d.b.counters.tx_acks > 0);
}

/// Issue 13 (b): an interactive client (one segment every 613 ms) meets
/// libcsp's bare ACKs that acknowledge nothing new (sent when the peer was
/// quiet for its ack timeout, while our next segment is on its way: a
/// 60 ms link makes that common). They
/// must not make us resend what the peer already has.
#[test]
fn redundant_bare_acks_cause_no_retransmission() {
    let mut d =
        ours_against_libcsp::<4, 200>(Options::default(), LibcspConfig::default(), link(60), 7);
    let mut sent = 0usize;
    for round in 0..40u64 {
        let at = Instant::from_millis(100 + round * 613);
        assert!(d.run_until(100_000, |d| d.now >= at));
        d.a.queue(&[round as u8; 20]);
        sent += 20;
    }
    assert!(d.run_until(1_000_000, |d| d.a.acked == sent));
    assert_eq!(d.b.received.len(), sent);
    assert!(
        d.b.counters.tx_redundant_acks > 10,
        "the scenario has redundant ACKs: {:?}",
        d.b.counters
    );
    let ours = d.a.conn.as_ref().unwrap().counters();
    assert_eq!(ours.tx_retransmissions, 0, "{ours:?}");
    assert_eq!(d.b.counters.rx_out_of_window, 0, "{:?}", d.b.counters);
    assert_eq!(d.b.counters.rx_already_held, 0);
}

/// Issue 13 (a): connect, one segment, closed. Closing does not wait for
/// the peer's delayed ACK: the reset follows the data at once and the
/// peer's reset (in sequence, so after our data) confirms both. On a link
/// without delay nothing takes simulated time.
#[test]
fn tiny_exchange_does_not_wait_for_a_delayed_ack() {
    // Against libcsp, which delays its ACK by 250 ms (and up to 100 ms
    // more until its router task looks).
    let mut d =
        ours_against_libcsp::<4, 200>(Options::default(), LibcspConfig::default(), link(0), 3);
    d.a.queue(b"hi");
    d.a.close_when_done = true;
    assert!(d.run_until(10_000, |d| d.a.end.is_some()));
    assert_eq!(d.a.end, Some(End::Closed(CloseReason::Local)));
    assert_eq!(d.b.received, b"hi");
    assert!(d.b.closed);
    assert!(d.now < Instant::from_millis(2), "{:?}", d.now);

    // Against our own server.
    let mut p: Pair<4, 200> = Pair::new(
        3,
        LinkConfig {
            delay: Duration::ZERO,
            ..LinkConfig::clean()
        },
        Options::default(),
    );
    p.client.queue(b"hi");
    p.client.close_when_done = true;
    for _ in 0..10_000 {
        if p.client.end.is_some() {
            break;
        }
        p.step();
    }
    assert_eq!(p.client.end, Some(End::Closed(CloseReason::Local)));
    assert_eq!(p.server.received, b"hi");
    assert!(p.now < Instant::from_millis(2), "{:?}", p.now);
}

/// Waiting for the acknowledgement itself (no close): a client that asks
/// for immediate ACKs in its SYN gets them from libcsp, which adopts the
/// client's options; with libcsp's defaults it waits for the delayed ACK.
#[test]
fn immediate_acks_asked_for_in_the_syn_are_honoured() {
    let ask = Options {
        delayed_acks: false,
        ..Options::default()
    };
    for (opts, fast) in [(ask, true), (Options::default(), false)] {
        let mut d = ours_against_libcsp::<4, 200>(opts, LibcspConfig::default(), link(0), 5);
        d.a.queue(b"hi");
        assert!(d.run_until(10_000, |d| d.a.acked == 2));
        assert_eq!(d.b.options().delayed_acks, opts.delayed_acks);
        let at = d.a.all_acked_at.unwrap();
        if fast {
            assert!(at < Instant::from_millis(2), "{at:?}");
        } else {
            assert!(at >= Instant::from_millis(250), "{at:?}");
        }
    }
}

/// What one 1 MB transfer into a libcsp-like sink took.
#[derive(Debug)]
struct Transfer {
    /// Simulated milliseconds until the last byte was acknowledged.
    ms: u64,
    segments_per_s: f64,
    retransmissions: u64,
    peer_got_acked_again: u64,
}

fn into_libcsp_sink(ours: Option<Options>, link: LinkConfig, seed: u64) -> Transfer {
    let data = pattern(MB);
    let segments = MB.div_ceil(200) as f64;
    let (ms, retransmissions, again, received) = match ours {
        Some(opts) => {
            let mut d = ours_against_libcsp::<4, 200>(opts, LibcspConfig::default(), link, seed);
            d.a.queue(&data);
            assert!(d.run_until(50_000_000, |d| d.a.acked == MB));
            let c = d.a.conn.as_ref().unwrap().counters();
            (
                d.a.all_acked_at.unwrap().as_millis(),
                u64::from(c.tx_retransmissions),
                d.b.counters.rx_already_acked,
                d.b.received,
            )
        }
        None => {
            let mut d =
                libcsp_against_libcsp(LibcspConfig::default(), LibcspConfig::default(), link, seed);
            d.a.outbox.extend(&data);
            assert!(d.run_until(50_000_000, |d| d.a.all_acked_at.is_some()));
            (
                d.a.all_acked_at.unwrap().as_millis(),
                d.a.counters.tx_retransmissions,
                d.b.counters.rx_already_acked,
                d.b.received,
            )
        }
    };
    assert!(received == data, "the sink got the data");
    Transfer {
        ms,
        segments_per_s: segments / (ms as f64 / 1000.0),
        retransmissions,
        peer_got_acked_again: again,
    }
}

/// Issue 13: 1 MB into a libcsp-like sink (window 4, delayed ACKs, 15
/// buffers) in no more simulated time than a libcsp-like client takes,
/// and never a segment the sink already acknowledged. Also on a link
/// that reorders (jitter): libcsp holds out-of-order segments silently.
/// `cargo test -p csp-rdp --test libcsp_peer -- --nocapture` prints the numbers.
#[test]
fn one_megabyte_into_libcsp_no_slower_than_libcsp_itself() {
    let jittery = LinkConfig {
        jitter: Duration::from_millis(3),
        ..link(2)
    };
    let immediate = Options {
        delayed_acks: false,
        ..Options::default()
    };
    for (name, l) in [("2 ms link", link(2)), ("2 ms + 0..3 ms jitter", jittery)] {
        let reference = into_libcsp_sink(None, l, 11);
        let ours = into_libcsp_sink(Some(Options::default()), l, 11);
        let asking = into_libcsp_sink(Some(immediate), l, 11);
        for (who, t) in [
            ("libcsp -> libcsp", &reference),
            ("ours (libcsp defaults) -> libcsp", &ours),
            ("ours (asking immediate ACKs) -> libcsp", &asking),
        ] {
            println!(
                "{name:<22} {who:<40} {:>6} ms {:>7.0} segments/s {:>3} retransmitted",
                t.ms, t.segments_per_s, t.retransmissions
            );
        }
        for t in [&ours, &asking] {
            assert!(t.ms <= reference.ms, "{name}: {t:?} vs {reference:?}");
            assert_eq!(t.peer_got_acked_again, 0, "{name}: {t:?}");
        }
        assert_eq!(ours.retransmissions, 0, "{name}: {ours:?}");
    }
}

/// The other direction: a libcsp-like client streams into our server (built
/// for window 4, as libcsp asks). Everything arrives, nothing is dropped
/// for want of room, and our EACKs (which libcsp 2.x ignores) do not make
/// it slower than into a libcsp-like server.
#[test]
fn libcsp_client_into_our_server() {
    use csp_rdp::sim::libcsp_against_ours;
    let jittery = LinkConfig {
        jitter: Duration::from_millis(3),
        ..link(2)
    };
    for l in [link(2), jittery] {
        let data = pattern(200_000);
        let mut theirs =
            libcsp_against_libcsp(LibcspConfig::default(), LibcspConfig::default(), l, 4);
        theirs.a.outbox.extend(&data);
        assert!(theirs.run_until(10_000_000, |d| d.a.all_acked_at.is_some()));
        let mut d =
            libcsp_against_ours::<4, 200>(LibcspConfig::default(), Options::default(), l, 4);
        d.a.outbox.extend(&data);
        assert!(d.run_until(10_000_000, |d| d.a.all_acked_at.is_some()));
        assert_eq!(d.b.received, data);
        let c = d.b.conn.as_ref().unwrap().counters();
        assert_eq!(c.rx_no_room, 0, "{c:?}");
        let (ours, reference) = (d.a.all_acked_at.unwrap(), theirs.a.all_acked_at.unwrap());
        println!("libcsp client into our server: {ours:?}, into libcsp: {reference:?}");
        assert!(ours <= reference, "{ours:?} vs {reference:?}");
        assert_eq!(d.a.counters.tx_retransmissions, 0);
    }
}
