//! A peer that behaves like libcsp's RDP (2.x, `src/csp_rdp.c`), for tests
//! and measurements against the reference's behaviour without a C build.
//!
//! Modelled from reading libcsp (facts, not code): the server adopts the
//! six SYN options; acknowledgements are delayed until more than
//! `ack_delay_count` segments are unacknowledged or `ack_timeout` passed
//! since anything was last sent, checked on every received segment and on
//! every wakeup of the router task (at least every 100 ms), which also
//! sends a bare ACK that acknowledges nothing new when the connection was
//! quiet that long; out-of-order segments are held silently (2.x sends no
//! EACK), duplicates and out-of-window segments are dropped without an
//! answer; retransmission is a fixed packet timeout; every held segment
//! (sent copies and out-of-order ones) takes one of a small pool of
//! buffers (15 by default), and a segment that finds the pool empty is
//! dropped; close sends RST|ACK at once, and a reset is honoured only in
//! sequence.

use super::{Link, LinkConfig, Rng};
use crate::header::{Flags, RdpHeader, SynOptions};
use crate::options::Options;
use crate::seq;
use crate::time::{Duration, Instant};
use std::collections::VecDeque;
use std::vec::Vec;

/// How the libcsp-like peer is built (libcsp's compile-time settings).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LibcspConfig {
    /// Packet buffers in the whole node (`CSP_BUFFER_COUNT`, 15).
    pub buffers: usize,
    /// The connection's receive queue (`CSP_CONN_RXQUEUE_LEN`, 16); the
    /// application reads at once, so it only gates acknowledgements.
    pub conn_rx_queue: usize,
    /// Longest the router task sleeps without input (`FIFO_TIMEOUT`, 100 ms).
    pub router_period: Duration,
    /// What it sends in its SYN as a client (`csp_rdp_set_opt`).
    pub options: Options,
}

impl Default for LibcspConfig {
    fn default() -> Self {
        LibcspConfig {
            buffers: 15,
            conn_rx_queue: 16,
            router_period: Duration::from_millis(100),
            options: Options::default(),
        }
    }
}

/// What the libcsp-like peer saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LibcspCounters {
    /// Segments that arrived.
    pub rx_segments: u64,
    /// Dropped because every buffer was in use.
    pub rx_no_buffer: u64,
    /// Data segments outside `[rcv_cur + 1, rcv_cur + 2 * window]`, dropped.
    pub rx_out_of_window: u64,
    /// Data segments it had already acknowledged (a sender that resent
    /// what the peer told it it has).
    pub rx_already_acked: u64,
    /// Out-of-order data segments it already held.
    pub rx_already_held: u64,
    /// Bare ACKs sent.
    pub tx_acks: u64,
    /// Bare ACKs sent that acknowledged nothing new.
    pub tx_redundant_acks: u64,
    /// Data retransmissions.
    pub tx_retransmissions: u64,
    /// Segments sent.
    pub tx_segments: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerState {
    Closed,
    SynSent,
    SynRcvd,
    Open,
    CloseWait,
}

/// A sent segment kept for retransmission (holds a buffer).
#[derive(Debug)]
struct Sent {
    seq: u16,
    bytes: Vec<u8>,
    at: Instant,
}

/// One end of an RDP connection that behaves like libcsp.
#[derive(Debug)]
pub struct LibcspPeer {
    config: LibcspConfig,
    state: PeerState,
    opts: Options,
    snd_iss: u16,
    snd_nxt: u16,
    snd_una: u16,
    rcv_cur: u16,
    rcv_irs: u16,
    rcv_lsa: u16,
    /// The highest sequence number any of our segments acknowledged.
    acked_out: Option<u16>,
    ack_timestamp: Instant,
    /// Last wakeup of the router task.
    last_work: Instant,
    tx: VecDeque<Sent>,
    rx_held: Vec<(u16, Vec<u8>)>,
    counter: u8,
    out: VecDeque<Vec<u8>>,
    /// The server's initial sequence number (derived from the SYN if `None`).
    pub server_isn: Option<u16>,
    /// Bytes still to send (the application's).
    pub outbox: VecDeque<u8>,
    /// Bytes per segment sent.
    pub chunk: usize,
    /// Close once everything is sent and acknowledged (a libcsp client
    /// that waits for its data before `csp_close`; libcsp itself does not).
    pub close_when_done: bool,
    /// Bytes delivered, in order.
    pub received: Vec<u8>,
    /// When everything queued had been acknowledged.
    pub all_acked_at: Option<Instant>,
    /// The connection was closed (by a reset either way).
    pub closed: bool,
    /// What happened.
    pub counters: LibcspCounters,
}

impl LibcspPeer {
    /// A peer waiting for a SYN (a libcsp server socket).
    pub fn listen(config: LibcspConfig) -> Self {
        LibcspPeer {
            config,
            state: PeerState::Closed,
            opts: config.options,
            snd_iss: 0,
            snd_nxt: 0,
            snd_una: 0,
            rcv_cur: 0,
            rcv_irs: 0,
            rcv_lsa: 0,
            acked_out: None,
            ack_timestamp: Instant::ZERO,
            last_work: Instant::ZERO,
            tx: VecDeque::new(),
            rx_held: Vec::new(),
            counter: 0,
            out: VecDeque::new(),
            server_isn: None,
            outbox: VecDeque::new(),
            chunk: 200,
            close_when_done: false,
            received: Vec::new(),
            all_acked_at: None,
            closed: false,
            counters: LibcspCounters::default(),
        }
    }

    /// A peer that connects at `now` (`csp_connect` with RDP).
    pub fn connect(config: LibcspConfig, now: Instant, isn: u16) -> Self {
        let mut p = Self::listen(config);
        p.state = PeerState::SynSent;
        p.snd_iss = isn;
        p.snd_nxt = isn.wrapping_add(1);
        p.snd_una = isn;
        p.ack_timestamp = now;
        p.last_work = now;
        let syn = config.options.to_syn().to_be_bytes();
        p.send_ctrl(now, &syn, Flags::SYN, isn, 0);
        p
    }

    /// The options in force (a server's are the client's).
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// The connection is open (or was, and is closing).
    pub fn is_open(&self) -> bool {
        matches!(self.state, PeerState::Open | PeerState::CloseWait)
    }

    fn buffers_in_use(&self) -> usize {
        self.tx.len() + self.rx_held.len()
    }

    fn send_ctrl(&mut self, now: Instant, body: &[u8], flags: Flags, seq_nr: u16, ack: u16) {
        if flags.contains(Flags::ACK) {
            self.rcv_lsa = ack;
            self.note_acked(ack);
        }
        self.ack_timestamp = now;
        let hdr = RdpHeader::new(flags, self.counter, seq_nr, ack);
        self.counter = self.counter.wrapping_add(1) & 0x0f;
        let mut bytes = body.to_vec();
        bytes.extend_from_slice(&hdr.to_be_bytes());
        if flags.contains(Flags::SYN) {
            self.tx.push_back(Sent {
                seq: seq_nr,
                bytes: bytes.clone(),
                at: now,
            });
        }
        self.counters.tx_segments += 1;
        self.out.push_back(bytes);
    }

    fn note_acked(&mut self, ack: u16) {
        let later = self
            .acked_out
            .is_none_or(|a| seq::distance(a, ack) < 0x8000);
        if later && self.state != PeerState::SynSent {
            self.acked_out = Some(ack);
        }
    }

    fn send_ack(&mut self, now: Instant) {
        self.counters.tx_acks += 1;
        if self.rcv_lsa == self.rcv_cur {
            self.counters.tx_redundant_acks += 1;
        }
        self.send_ctrl(now, &[], Flags::ACK, self.snd_nxt, self.rcv_cur);
    }

    /// `csp_rdp_check_ack`.
    fn check_ack(&mut self, now: Instant) {
        // The application reads at once: the queue is empty.
        if self.config.conn_rx_queue <= 2 * usize::from(self.opts.window) {
            return;
        }
        let by_time = now > self.ack_timestamp + self.opts.ack_timeout;
        let unacked = seq::distance(self.rcv_lsa, self.rcv_cur);
        let by_count = unacked > self.opts.ack_delay_count && unacked < 0x8000;
        if !self.opts.delayed_acks || by_time || by_count {
            self.send_ack(now);
        }
    }

    /// The router task's periodic work (`csp_rdp_check_timeouts`).
    fn work(&mut self, now: Instant) {
        self.last_work = now;
        if self.state == PeerState::Closed {
            return;
        }
        if self.state == PeerState::CloseWait && now > self.ack_timestamp + self.opts.conn_timeout {
            self.state = PeerState::Closed;
            self.closed = true;
            return;
        }
        let una = self.snd_una;
        self.tx.retain(|s| seq::distance(una, s.seq) < 0x8000);
        let timeout = self.opts.packet_timeout;
        let rcv_cur = self.rcv_cur;
        let mut resent = Vec::new();
        for s in self.tx.iter_mut() {
            if now > s.at + timeout {
                let n = s.bytes.len();
                if s.bytes[n - 5] & 0x0f == Flags::ACK.bits() {
                    s.bytes[n - 2..].copy_from_slice(&rcv_cur.to_be_bytes());
                }
                s.at = now;
                resent.push(s.bytes.clone());
            }
        }
        for b in resent {
            self.ack_timestamp = now;
            self.counters.tx_retransmissions += 1;
            self.counters.tx_segments += 1;
            self.out.push_back(b);
        }
        if self.state == PeerState::Open && self.opts.delayed_acks {
            self.check_ack(now);
        }
    }

    /// A segment arrived (`csp_route_work`: timeouts first, then the packet).
    pub fn handle_segment(&mut self, now: Instant, seg: &[u8]) {
        self.work(now);
        self.counters.rx_segments += 1;
        if self.buffers_in_use() >= self.config.buffers {
            self.counters.rx_no_buffer += 1;
            return;
        }
        let Ok((body, h)) = RdpHeader::split(seg) else {
            return;
        };
        let f = h.flags();
        if f.contains(Flags::RST) {
            if f.contains(Flags::ACK) {
                self.snd_una = h.ack.wrapping_add(1);
            }
            match self.state {
                PeerState::Closed => {}
                PeerState::CloseWait => {
                    self.state = PeerState::Closed;
                    self.closed = true;
                }
                _ if h.seq == self.rcv_cur.wrapping_add(1) => {
                    self.send_ctrl(
                        now,
                        &[],
                        Flags::RST | Flags::ACK,
                        self.snd_nxt,
                        self.rcv_cur,
                    );
                    self.state = PeerState::Closed;
                    self.closed = true;
                }
                _ => {}
            }
            return;
        }
        match self.state {
            PeerState::Closed => {
                if !f.contains(Flags::SYN) || self.closed {
                    return;
                }
                let Ok(o) = SynOptions::parse(body) else {
                    return;
                };
                let Ok(adopted) = self.config.options.adopt(&o) else {
                    return;
                };
                self.opts = adopted;
                self.snd_iss = self.server_isn.unwrap_or(h.seq ^ 0x5a5a);
                self.snd_nxt = self.snd_iss.wrapping_add(1);
                self.snd_una = self.snd_iss;
                self.rcv_cur = h.seq;
                self.rcv_irs = h.seq;
                self.rcv_lsa = h.seq;
                self.state = PeerState::SynRcvd;
                self.send_ctrl(
                    now,
                    &[],
                    Flags::SYN | Flags::ACK,
                    self.snd_iss,
                    self.rcv_irs,
                );
            }
            PeerState::SynSent => {
                if f.contains(Flags::SYN | Flags::ACK) {
                    // The SYN-ACK's data, if any, is not looked at.
                    self.rcv_cur = h.seq;
                    self.rcv_irs = h.seq;
                    self.rcv_lsa = h.seq.wrapping_sub(1);
                    self.snd_una = h.ack.wrapping_add(1);
                    self.state = PeerState::Open;
                    self.send_ctrl(now, &[], Flags::ACK, self.snd_nxt, self.rcv_cur);
                }
            }
            PeerState::SynRcvd | PeerState::Open => self.on_open(now, h, body),
            PeerState::CloseWait => {
                if f.contains(Flags::ACK) && !f.contains(Flags::SYN) {
                    self.snd_una = h.ack.wrapping_add(1);
                    self.send_ctrl(
                        now,
                        &[],
                        Flags::RST | Flags::ACK,
                        self.snd_nxt,
                        self.rcv_cur,
                    );
                }
            }
        }
    }

    fn on_open(&mut self, now: Instant, h: RdpHeader, body: &[u8]) {
        let f = h.flags();
        if f.contains(Flags::SYN) || !f.contains(Flags::ACK) {
            return;
        }
        let w2 = self.opts.window.wrapping_mul(2);
        if !seq::between(
            h.seq,
            self.rcv_cur.wrapping_add(1),
            self.rcv_cur.wrapping_add(w2),
        ) {
            if !body.is_empty() {
                self.counters.rx_out_of_window += 1;
                if self
                    .acked_out
                    .is_some_and(|a| seq::distance(h.seq, a) < 0x8000)
                {
                    self.counters.rx_already_acked += 1;
                }
            }
            if self.state == PeerState::SynRcvd {
                self.send_ctrl(
                    now,
                    &[],
                    Flags::SYN | Flags::ACK,
                    self.snd_iss,
                    self.rcv_irs,
                );
            }
            return;
        }
        let oldest = self.snd_una.wrapping_sub(1).wrapping_sub(w2);
        if !seq::between(h.ack, oldest, self.snd_nxt.wrapping_sub(1)) {
            return;
        }
        if self.state == PeerState::SynRcvd {
            if h.ack != self.snd_iss {
                self.state = PeerState::Closed;
                return;
            }
            self.state = PeerState::Open;
        }
        self.snd_una = h.ack.wrapping_add(1);
        if f.contains(Flags::EAK) || body.is_empty() {
            return;
        }
        if h.seq != self.rcv_cur.wrapping_add(1) {
            if self.rx_held.iter().any(|(s, _)| *s == h.seq) {
                self.counters.rx_already_held += 1;
                self.check_ack(now);
            } else {
                self.rx_held.push((h.seq, body.to_vec()));
            }
            return;
        }
        self.received.extend_from_slice(body);
        self.rcv_cur = h.seq;
        self.check_ack(now);
        // Deliver what the gap held back.
        while let Some(i) = self
            .rx_held
            .iter()
            .position(|(s, _)| *s == self.rcv_cur.wrapping_add(1))
        {
            let (s, b) = self.rx_held.swap_remove(i);
            self.received.extend_from_slice(&b);
            self.rcv_cur = s;
        }
    }

    /// The application: send what the window and the buffers allow, and
    /// close when done.
    fn pump(&mut self, now: Instant) {
        if self.state != PeerState::Open {
            return;
        }
        let window = self.opts.window;
        while !self.outbox.is_empty()
            && seq::distance(self.snd_una, self.snd_nxt) < window
            // The application's packet and the copy kept for retransmission.
            && self.buffers_in_use() + 2 <= self.config.buffers
        {
            let n = self.chunk.clamp(1, self.outbox.len());
            let mut bytes: Vec<u8> = self.outbox.drain(..n).collect();
            let hdr = RdpHeader::new(Flags::ACK, 0, self.snd_nxt, self.rcv_cur);
            bytes.extend_from_slice(&hdr.to_be_bytes());
            self.tx.push_back(Sent {
                seq: self.snd_nxt,
                bytes: bytes.clone(),
                at: now,
            });
            self.note_acked(self.rcv_cur);
            self.snd_nxt = self.snd_nxt.wrapping_add(1);
            self.ack_timestamp = now;
            self.counters.tx_segments += 1;
            self.out.push_back(bytes);
        }
        let all_acked = self.outbox.is_empty() && self.snd_una == self.snd_nxt;
        if all_acked && self.all_acked_at.is_none() && self.snd_nxt != self.snd_iss.wrapping_add(1)
        {
            self.all_acked_at = Some(now);
        }
        if all_acked && self.close_when_done {
            self.state = PeerState::CloseWait;
            self.send_ctrl(
                now,
                &[],
                Flags::RST | Flags::ACK,
                self.snd_nxt,
                self.rcv_cur,
            );
        }
    }

    /// Everything to put on the link now.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.out.is_empty() {
            self.pump(now);
        }
        self.out.pop_front()
    }

    /// The next wakeup of the router task (none once closed).
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.state != PeerState::Closed).then(|| self.last_work + self.config.router_period)
    }

    /// The router task woke without input.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.work(now);
    }
}

/// Something the duel driver can run: one end of a connection.
pub trait Station {
    /// A segment arrived.
    fn receive(&mut self, now: Instant, seg: &[u8]);
    /// The next segment to send, after letting the application act.
    fn transmit(&mut self, now: Instant) -> Option<Vec<u8>>;
    /// When the station wants `timeout`.
    fn next_timeout(&self) -> Option<Instant>;
    /// Let time pass.
    fn timeout(&mut self, now: Instant);
}

impl Station for LibcspPeer {
    fn receive(&mut self, now: Instant, seg: &[u8]) {
        self.handle_segment(now, seg);
    }
    fn transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        self.poll_transmit(now)
    }
    fn next_timeout(&self) -> Option<Instant> {
        self.poll_timeout()
    }
    fn timeout(&mut self, now: Instant) {
        self.handle_timeout(now);
    }
}

impl<const W: usize, const S: usize> Station for super::Endpoint<W, S> {
    fn receive(&mut self, now: Instant, seg: &[u8]) {
        match (self.conn.as_mut(), self.accept_with) {
            (Some(c), _) => c.handle_segment(now, seg),
            (None, Some((local, isn))) => {
                self.conn = crate::Connection::accept(now, seg, local, isn).ok();
            }
            (None, None) => {}
        }
    }
    fn transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        self.pump(now);
        let c = self.conn.as_mut()?;
        let mut buf = std::vec![0u8; crate::Connection::<W, S>::MAX_SEGMENT_LEN];
        let t = c.poll_transmit(now, &mut buf)?;
        buf.truncate(t.len);
        Some(buf)
    }
    fn next_timeout(&self) -> Option<Instant> {
        self.conn.as_ref().and_then(|c| c.poll_timeout())
    }
    fn timeout(&mut self, now: Instant) {
        if let Some(c) = self.conn.as_mut() {
            if c.poll_timeout().is_some_and(|t| t <= now) {
                c.handle_timeout(now);
            }
        }
        self.pump(now);
    }
}

/// Two stations joined by two [`Link`]s on a virtual clock: `a` is the
/// client (it has sent or will send the SYN), `b` the server.
#[derive(Debug)]
pub struct Duel<A, B> {
    /// Virtual time.
    pub now: Instant,
    /// The client.
    pub a: A,
    /// The server.
    pub b: B,
    /// Client to server.
    pub a2b: Link,
    /// Server to client.
    pub b2a: Link,
    rng: Rng,
}

impl<A: Station, B: Station> Duel<A, B> {
    /// Join `a` and `b` with links behaving as `link`.
    pub fn new(a: A, b: B, link: LinkConfig, seed: u64) -> Self {
        Duel {
            now: Instant::ZERO,
            a,
            b,
            a2b: Link::new(link),
            b2a: Link::new(link),
            rng: Rng::new(seed),
        }
    }

    /// Run until `done` holds, nothing is left to do, or `max_steps`.
    /// Returns whether `done` held.
    pub fn run_until(&mut self, max_steps: u64, mut done: impl FnMut(&Self) -> bool) -> bool {
        for _ in 0..max_steps {
            if done(self) {
                return true;
            }
            let mut progress = false;
            while let Some(s) = self.a.transmit(self.now) {
                self.a2b.send(self.now, &s, &mut self.rng);
                progress = true;
            }
            while let Some(s) = self.b.transmit(self.now) {
                self.b2a.send(self.now, &s, &mut self.rng);
                progress = true;
            }
            while let Some(d) = self.a2b.pop_due(self.now) {
                self.b.receive(self.now, &d);
                progress = true;
            }
            while let Some(d) = self.b2a.pop_due(self.now) {
                self.a.receive(self.now, &d);
                progress = true;
            }
            if progress {
                continue;
            }
            let next = [
                self.a2b.next_delivery(),
                self.b2a.next_delivery(),
                self.a.next_timeout(),
                self.b.next_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next else {
                return done(self);
            };
            self.now = self.now.max(next);
            if self.a.next_timeout().is_some_and(|t| t <= self.now) {
                self.a.timeout(self.now);
            }
            if self.b.next_timeout().is_some_and(|t| t <= self.now) {
                self.b.timeout(self.now);
            }
        }
        false
    }
}

/// Our client (an [`Endpoint`](super::Endpoint) that has just connected at
/// time zero with `options`) against a libcsp-like server.
pub fn ours_against_libcsp<const W: usize, const S: usize>(
    options: Options,
    server: LibcspConfig,
    link: LinkConfig,
    seed: u64,
) -> Duel<super::Endpoint<W, S>, LibcspPeer> {
    let mut rng = Rng::new(seed);
    let isn = rng.next_u64() as u16;
    let conn = crate::Connection::connect(Instant::ZERO, options, isn)
        .expect("client options must be valid");
    let client = super::Endpoint::new(Some(conn));
    Duel::new(client, LibcspPeer::listen(server), link, seed)
}

/// A libcsp-like client (connecting at time zero) against our server,
/// which accepts with the local policy of `server`.
pub fn libcsp_against_ours<const W: usize, const S: usize>(
    client: LibcspConfig,
    server: Options,
    link: LinkConfig,
    seed: u64,
) -> Duel<LibcspPeer, super::Endpoint<W, S>> {
    let mut rng = Rng::new(seed);
    let isn = rng.next_u64() as u16;
    let mut ours = super::Endpoint::new(None);
    ours.accept_with = Some((server, rng.next_u64() as u16));
    Duel::new(
        LibcspPeer::connect(client, Instant::ZERO, isn),
        ours,
        link,
        seed,
    )
}

/// A libcsp-like client against a libcsp-like server: the reference.
pub fn libcsp_against_libcsp(
    client: LibcspConfig,
    server: LibcspConfig,
    link: LinkConfig,
    seed: u64,
) -> Duel<LibcspPeer, LibcspPeer> {
    let isn = Rng::new(seed).next_u64() as u16;
    Duel::new(
        LibcspPeer::connect(client, Instant::ZERO, isn),
        LibcspPeer::listen(server),
        link,
        seed,
    )
}
