//! A simulated network for tests (feature `sim`, needs `std`): a seeded
//! PRNG, a virtual clock, lossy links, and [`Pair`], two RDP connections
//! driven through them until idle, like quinn-proto's test `Pair`.
//!
//! Everything is deterministic for a given seed: no sleeping, no wall clock.
//! [`Link`] and [`Rng`] do not know RDP, so node-level tests can put whole
//! CSP frames through them too.

use crate::conn::{Connection, State};
use crate::event::{CloseReason, Event, FailReason};
use crate::options::Options;
use crate::time::{Duration, Instant};
use std::collections::VecDeque;
use std::vec::Vec;

mod libcsp;
pub use libcsp::{
    libcsp_against_libcsp, libcsp_against_ours, ours_against_libcsp, Duel, LibcspConfig,
    LibcspCounters, LibcspPeer, Station,
};

/// SplitMix64: tiny, fast, and good enough to pick losses and delays.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next_u64() >> 11) as f64) < p * (1u64 << 53) as f64
    }
}

/// How badly a [`Link`] treats its datagrams. Probabilities are per datagram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// Dropped.
    pub loss: f64,
    /// Delivered twice.
    pub duplicate: f64,
    /// Held back by up to `reorder_delay` extra, so later datagrams overtake it.
    pub reorder: f64,
    /// Extra delay of a reordered datagram, at most.
    pub reorder_delay: Duration,
    /// A bit flipped or the datagram cut short.
    pub corrupt: f64,
    /// Corrupted datagrams are detected and dropped, as the CRC32 option
    /// does; if `false` they are delivered damaged (robustness tests).
    pub integrity: bool,
    /// One-way delay.
    pub delay: Duration,
    /// Uniform random extra delay up to this.
    pub jitter: Duration,
    /// Datagrams in flight at most; more are dropped (a full radio queue).
    pub capacity: usize,
    /// Bytes per second the sender can put on the link (0: unlimited).
    /// Datagrams queue behind each other, lost ones included.
    pub rate: u64,
}

impl LinkConfig {
    /// A perfect link with 10 ms delay.
    pub const fn clean() -> Self {
        LinkConfig {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(50),
            corrupt: 0.0,
            integrity: true,
            delay: Duration::from_millis(10),
            jitter: Duration::ZERO,
            capacity: 256,
            rate: 0,
        }
    }

    /// A clean link with `loss` probability of losing each datagram.
    pub const fn lossy(loss: f64) -> Self {
        LinkConfig {
            loss,
            ..LinkConfig::clean()
        }
    }
}

/// What a [`Link`] did, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Datagrams offered.
    pub sent: u64,
    /// Dropped by loss.
    pub lost: u64,
    /// Dropped because the link was full.
    pub overflow: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Damaged (and dropped if the link checks integrity).
    pub corrupted: u64,
    /// Handed to the receiver.
    pub delivered: u64,
}

#[derive(Debug)]
struct InFlight {
    at: Instant,
    order: u64,
    bytes: Vec<u8>,
}

/// One direction of a simulated link.
#[derive(Debug)]
pub struct Link {
    /// Its behaviour.
    pub config: LinkConfig,
    queue: Vec<InFlight>,
    order: u64,
    /// When the sender finishes putting the previous datagram on the link,
    /// in microseconds (milliseconds would round a fast link's rate away).
    busy_until_us: u64,
    /// What it did.
    pub counters: LinkCounters,
}

impl Link {
    /// An empty link.
    pub fn new(config: LinkConfig) -> Self {
        Link {
            config,
            queue: Vec::new(),
            order: 0,
            busy_until_us: 0,
            counters: LinkCounters::default(),
        }
    }

    /// Offer a datagram at `now`.
    pub fn send(&mut self, now: Instant, bytes: &[u8], rng: &mut Rng) {
        let c = self.config;
        self.counters.sent += 1;
        let mut departs = now;
        if c.rate > 0 {
            let us = (bytes.len() as u64 * 1_000_000).div_ceil(c.rate);
            let start = (now.as_millis() * 1000).max(self.busy_until_us);
            self.busy_until_us = start + us;
            departs = Instant::from_millis(self.busy_until_us.div_ceil(1000));
        }
        if rng.chance(c.loss) {
            self.counters.lost += 1;
            return;
        }
        let copies = if rng.chance(c.duplicate) { 2 } else { 1 };
        self.counters.duplicated += copies - 1;
        for _ in 0..copies {
            let mut b = bytes.to_vec();
            if rng.chance(c.corrupt) {
                self.counters.corrupted += 1;
                if c.integrity {
                    continue;
                }
                damage(&mut b, rng);
            }
            if self.queue.len() >= c.capacity {
                self.counters.overflow += 1;
                continue;
            }
            let mut at =
                departs + c.delay + Duration::from_millis(rng.below(c.jitter.as_millis() + 1));
            if rng.chance(c.reorder) {
                at += Duration::from_millis(1 + rng.below(c.reorder_delay.as_millis()));
            }
            self.order += 1;
            self.queue.push(InFlight {
                at,
                order: self.order,
                bytes: b,
            });
        }
    }

    /// The next datagram due at `now`, earliest first.
    pub fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        let i = self
            .queue
            .iter()
            .enumerate()
            .filter(|(_, f)| f.at <= now)
            .min_by_key(|(_, f)| (f.at, f.order))?
            .0;
        self.counters.delivered += 1;
        Some(self.queue.swap_remove(i).bytes)
    }

    /// When the next datagram arrives.
    pub fn next_delivery(&self) -> Option<Instant> {
        self.queue.iter().map(|f| f.at).min()
    }

    /// Datagrams in flight.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }
}

fn trace_segment(now: Instant, dir: &str, seg: &[u8]) {
    if let Ok((body, h)) = crate::header::RdpHeader::split(seg) {
        std::println!(
            "{:>8} ms {dir} flags {:02x} seq {:04x} ack {:04x} len {}",
            now.as_millis(),
            h.wire_flags,
            h.seq,
            h.ack,
            body.len()
        );
    }
}

fn damage(b: &mut Vec<u8>, rng: &mut Rng) {
    if b.is_empty() {
        return;
    }
    if rng.chance(0.3) {
        let keep = rng.below(b.len() as u64) as usize;
        b.truncate(keep);
    } else {
        let i = rng.below(b.len() as u64) as usize;
        b[i] ^= 1 << rng.below(8);
    }
}

/// The end of a connection a test plays: what to send, what arrived, what happened.
#[derive(Debug)]
pub struct Endpoint<const W: usize, const S: usize> {
    /// The connection (the server's appears when the SYN arrives).
    pub conn: Option<Connection<W, S>>,
    /// Bytes still to send.
    pub outbox: VecDeque<u8>,
    /// Bytes per `send` at most (and at least 1).
    pub chunk: usize,
    /// Bytes delivered to us, in order.
    pub received: Vec<u8>,
    /// Sent bytes the peer acknowledged.
    pub acked: usize,
    /// Sequence number and length of sends not yet acknowledged.
    unacked: VecDeque<(u16, usize)>,
    /// Close once everything is handed to the connection and `expect` bytes
    /// arrived (the close itself waits for the acknowledgements).
    pub close_when_done: bool,
    /// Bytes to receive before closing.
    pub expect: usize,
    /// `Connected` events seen.
    pub connected: u32,
    /// The final event, if any.
    pub end: Option<End>,
    /// Events after the final one (must stay 0).
    pub events_after_end: u32,
    /// When everything queued so far had been sent and acknowledged (the
    /// time a user waits for a transfer, without the close handshake).
    pub all_acked_at: Option<Instant>,
    /// For a server outside [`Pair`]: the local options and ISN a SYN is
    /// accepted with.
    accept_with: Option<(Options, u16)>,
}

/// How a connection ended, from its owner's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// `Event::Closed`.
    Closed(CloseReason),
    /// `Event::Failed`.
    Failed(FailReason),
}

impl<const W: usize, const S: usize> Endpoint<W, S> {
    fn new(conn: Option<Connection<W, S>>) -> Self {
        Endpoint {
            conn,
            outbox: VecDeque::new(),
            chunk: S,
            received: Vec::new(),
            acked: 0,
            unacked: VecDeque::new(),
            close_when_done: false,
            expect: 0,
            connected: 0,
            end: None,
            events_after_end: 0,
            all_acked_at: None,
            accept_with: None,
        }
    }

    /// Queue bytes for sending.
    pub fn queue(&mut self, data: &[u8]) {
        self.outbox.extend(data);
    }

    /// The connection's state (`Closed` if there is none yet).
    pub fn state(&self) -> State {
        self.conn.as_ref().map_or(State::Closed, |c| c.state())
    }

    /// Play the application: read events, send what fits, close when done.
    /// Returns whether anything happened.
    fn pump(&mut self, now: Instant) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        let mut progress = false;
        while let Some(ev) = conn.poll_event() {
            progress = true;
            if self.end.is_some() {
                self.events_after_end += 1;
            }
            match ev {
                Event::Connected => self.connected += 1,
                Event::Data(p) => self.received.extend_from_slice(&p),
                Event::Acknowledged { through } => {
                    while let Some(&(seq, len)) = self.unacked.front() {
                        if crate::seq::distance(seq, through) >= 0x8000 {
                            break;
                        }
                        self.acked += len;
                        self.unacked.pop_front();
                    }
                }
                Event::Closed { reason } => self.end = Some(End::Closed(reason)),
                Event::Failed { reason } => self.end = Some(End::Failed(reason)),
            }
        }
        let mut chunk = Vec::with_capacity(self.chunk);
        while !self.outbox.is_empty() && conn.send_capacity() > 0 {
            let n = self.chunk.clamp(1, S).min(self.outbox.len());
            chunk.clear();
            chunk.extend(self.outbox.iter().take(n));
            match conn.send(now, &chunk) {
                Ok(seq) => {
                    self.outbox.drain(..n);
                    self.unacked.push_back((seq, n));
                    progress = true;
                }
                Err(_) => break,
            }
        }
        if self.all_acked_at.is_none()
            && self.acked > 0
            && self.outbox.is_empty()
            && self.unacked.is_empty()
        {
            self.all_acked_at = Some(now);
        }
        if self.close_when_done
            && conn.state() == State::Open
            && self.outbox.is_empty()
            && self.received.len() >= self.expect
        {
            conn.close(now);
            progress = true;
        }
        progress
    }
}

/// Two connections, a client and a server, joined by two [`Link`]s, on a virtual clock.
#[derive(Debug)]
pub struct Pair<const W: usize, const S: usize> {
    /// Virtual time.
    pub now: Instant,
    /// The connecting end.
    pub client: Endpoint<W, S>,
    /// The accepting end.
    pub server: Endpoint<W, S>,
    /// Client to server.
    pub c2s: Link,
    /// Server to client.
    pub s2c: Link,
    /// Drives every random choice.
    pub rng: Rng,
    /// Local policy the server accepts with.
    pub server_options: Options,
    /// Steps taken by `drive`.
    pub steps: u64,
    /// SYNs the server refused (`accept` failed).
    pub refused: u64,
    /// The server's initial sequence number (random if `None`).
    pub server_isn: Option<u16>,
    /// Segments written by both ends.
    pub segments: u64,
    /// Print every segment written (for debugging a seed).
    pub trace: bool,
    buf: Vec<u8>,
}

impl<const W: usize, const S: usize> Pair<W, S> {
    /// A pair whose client has just called connect at time zero; both links
    /// behave as `link`. Panics if `client_options` are invalid (a test bug).
    pub fn new(seed: u64, link: LinkConfig, client_options: Options) -> Self {
        let mut rng = Rng::new(seed);
        let isn = rng.next_u64() as u16;
        Self::with_isn(rng, link, client_options, isn)
    }

    /// Like [`Pair::new`], with the client's initial sequence number given
    /// (to test wrap-around); the server's comes from [`Pair::server_isn`]
    /// or the RNG.
    pub fn with_isn(rng: Rng, link: LinkConfig, client_options: Options, isn: u16) -> Self {
        let client = Connection::connect(Instant::ZERO, client_options, isn)
            .expect("client options must be valid");
        Pair {
            now: Instant::ZERO,
            client: Endpoint::new(Some(client)),
            server: Endpoint::new(None),
            c2s: Link::new(link),
            s2c: Link::new(link),
            rng,
            server_options: client_options,
            steps: 0,
            refused: 0,
            server_isn: None,
            segments: 0,
            trace: false,
            buf: std::vec![0; Connection::<W, S>::MAX_SEGMENT_LEN],
        }
    }

    /// Run until nothing is left to do (no datagram in flight, no timer
    /// armed) or `max_steps` steps. Returns `true` if it went idle.
    pub fn drive(&mut self, max_steps: u64) -> bool {
        for _ in 0..max_steps {
            if !self.step() {
                return true;
            }
        }
        false
    }

    /// Run until virtual time reaches `until` (or idle, or `max_steps`).
    /// Returns `true` unless the step bound was hit.
    pub fn drive_until(&mut self, until: Instant, max_steps: u64) -> bool {
        for _ in 0..max_steps {
            if !self.step_bounded(Some(until)) {
                self.now = self.now.max(until);
                return true;
            }
        }
        false
    }

    /// One step: let both ends act and deliver what is due at `now`; if
    /// nothing happened, jump to the next timer or arrival. `false` when idle.
    pub fn step(&mut self) -> bool {
        self.step_bounded(None)
    }

    fn step_bounded(&mut self, until: Option<Instant>) -> bool {
        self.steps += 1;
        let mut progress = self.client.pump(self.now) | self.server.pump(self.now);
        progress |= self.flush_client() | self.flush_server();
        while let Some(d) = self.c2s.pop_due(self.now) {
            progress = true;
            self.server_receive(&d);
        }
        while let Some(d) = self.s2c.pop_due(self.now) {
            progress = true;
            if let Some(c) = self.client.conn.as_mut() {
                c.handle_segment(self.now, &d);
            }
        }
        if progress {
            return true;
        }
        let Some(next) = self.next_wakeup() else {
            return false;
        };
        if until.is_some_and(|u| next > u) {
            return false;
        }
        self.now = self.now.max(next);
        for ep in [&mut self.client, &mut self.server] {
            if let Some(c) = ep.conn.as_mut() {
                if c.poll_timeout().is_some_and(|t| t <= self.now) {
                    c.handle_timeout(self.now);
                }
            }
        }
        true
    }

    fn next_wakeup(&self) -> Option<Instant> {
        [
            self.c2s.next_delivery(),
            self.s2c.next_delivery(),
            self.client.conn.as_ref().and_then(|c| c.poll_timeout()),
            self.server.conn.as_ref().and_then(|c| c.poll_timeout()),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn server_receive(&mut self, d: &[u8]) {
        match self.server.conn.as_mut() {
            Some(c) => c.handle_segment(self.now, d),
            None => {
                let random = self.rng.next_u64() as u16;
                let isn = self.server_isn.unwrap_or(random);
                match Connection::accept(self.now, d, self.server_options, isn) {
                    Ok(c) => self.server.conn = Some(c),
                    Err(_) => self.refused += 1,
                }
            }
        }
    }

    fn flush_client(&mut self) -> bool {
        let n = flush(
            &mut self.client.conn,
            &mut self.c2s,
            self.now,
            &mut self.buf,
            &mut self.rng,
            self.trace.then_some("c2s"),
        );
        self.segments += n;
        n > 0
    }

    fn flush_server(&mut self) -> bool {
        let n = flush(
            &mut self.server.conn,
            &mut self.s2c,
            self.now,
            &mut self.buf,
            &mut self.rng,
            self.trace.then_some("s2c"),
        );
        self.segments += n;
        n > 0
    }
}

/// Put everything `conn` wants to send on `link`; how many segments.
fn flush<const W: usize, const S: usize>(
    conn: &mut Option<Connection<W, S>>,
    link: &mut Link,
    now: Instant,
    buf: &mut [u8],
    rng: &mut Rng,
    trace: Option<&str>,
) -> u64 {
    let Some(c) = conn.as_mut() else {
        return 0;
    };
    let mut n = 0;
    while let Some(t) = c.poll_transmit(now, buf) {
        if let Some(dir) = trace {
            trace_segment(now, dir, &buf[..t.len]);
        }
        link.send(now, &buf[..t.len], rng);
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_and_spread() {
        let a: Vec<u64> = (0..4)
            .scan(Rng::new(7), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..4)
            .scan(Rng::new(7), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        let mut r = Rng::new(1);
        let hits = (0..10_000).filter(|_| r.chance(0.2)).count();
        assert!((1800..2200).contains(&hits), "{hits}");
        assert!(!Rng::new(3).chance(0.0));
        assert_eq!(Rng::new(3).below(0), 0);
    }

    #[test]
    fn link_delays_loses_and_orders() {
        let mut rng = Rng::new(5);
        let mut l = Link::new(LinkConfig::clean());
        l.send(Instant::ZERO, b"a", &mut rng);
        l.send(Instant::ZERO, b"b", &mut rng);
        assert_eq!(l.pop_due(Instant::from_millis(9)), None);
        assert_eq!(l.next_delivery(), Some(Instant::from_millis(10)));
        assert_eq!(l.pop_due(Instant::from_millis(10)).unwrap(), b"a");
        assert_eq!(l.pop_due(Instant::from_millis(10)).unwrap(), b"b");
        // 1000 bytes/s: 100-byte datagrams leave 100 ms apart.
        let mut slow = Link::new(LinkConfig {
            rate: 1000,
            ..LinkConfig::clean()
        });
        slow.send(Instant::ZERO, &[0; 100], &mut rng);
        slow.send(Instant::ZERO, &[0; 100], &mut rng);
        assert_eq!(slow.next_delivery(), Some(Instant::from_millis(110)));
        assert!(slow.pop_due(Instant::from_millis(209)).is_some());
        assert!(slow.pop_due(Instant::from_millis(209)).is_none());
        assert!(slow.pop_due(Instant::from_millis(210)).is_some());
        let mut lossy = Link::new(LinkConfig::lossy(1.0));
        lossy.send(Instant::ZERO, b"x", &mut rng);
        assert_eq!(lossy.in_flight(), 0);
        assert_eq!(lossy.counters.lost, 1);
    }

    #[test]
    fn pair_transfers_on_a_clean_link() {
        let mut p: Pair<4, 64> = Pair::new(1, LinkConfig::clean(), Options::default());
        let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        p.client.queue(&data);
        p.client.close_when_done = true;
        assert!(p.drive(100_000));
        assert_eq!(p.server.received, data);
        assert_eq!(p.client.acked, data.len());
        assert_eq!(p.client.end, Some(End::Closed(CloseReason::Local)));
        assert_eq!(p.server.end, Some(End::Closed(CloseReason::Peer)));
        assert_eq!(p.client.state(), State::Closed);
        assert_eq!(p.server.state(), State::Closed);
    }
}
