//! The RDP connection state machine (sans-IO).
//!
//! The owner feeds received segments (`handle_segment`) and time
//! (`handle_timeout`), and drains `poll_transmit`, `poll_event` and
//! `poll_timeout`. Nothing here reads a clock, allocates or blocks.

use crate::event::{CloseReason, Event, FailReason, Payload, SendError, Transmit};
use crate::header::{Flags, HeaderError, RdpHeader, SynOptions, HEADER_LEN, SYN_OPTIONS_LEN};
use crate::options::{Options, OptionsError};
use crate::ring::{RxQueue, Store, TxQueue};
use crate::seq;
use crate::time::Instant;
use crate::timer::{Timer, TimerTable};
use core::fmt;

/// Duplicate acknowledgements that mean a segment was lost (TCP's fast
/// retransmit threshold): fewer can be reordering, or libcsp's bare ACKs
/// that it sends whenever it was quiet for its ack timeout.
pub const DUP_ACK_THRESHOLD: u8 = 3;

/// Sequence numbers one EACK lists at most (24 bytes: fits every segment
/// buffer, which holds at least a SYN's options).
const MAX_EACK: usize = 12;

/// Which end opened the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Role {
    /// We sent the SYN.
    Client,
    /// We accepted a SYN.
    Server,
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum State {
    /// Finished (closed or failed); nothing more happens.
    Closed,
    /// SYN sent, waiting for the SYN-ACK.
    SynSent,
    /// SYN received and answered, waiting for the handshake ACK.
    SynRcvd,
    /// Data flows both ways.
    Open,
    /// `close` was called with data unacknowledged: our reset went out
    /// after it, and we wait for the data's acknowledgement (or the peer's
    /// answering reset, which acknowledges it).
    Closing,
    /// Our RST|ACK is out; waiting for the peer's.
    CloseWait,
    /// The peer closed and we answered; staying a while to answer repeats of its reset.
    TimeWait,
}

/// Counts of what the connection saw and did. Plain counters, wrapping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Counters {
    /// Segments handed to `handle_segment`.
    pub rx_segments: u32,
    /// Segments too short to decode, or with flags/acks that make no sense here: ignored.
    pub rx_malformed: u32,
    /// Data segments outside the accept window (mostly duplicates of delivered data).
    pub rx_out_of_window: u32,
    /// Data segments already held.
    pub rx_duplicates: u32,
    /// Data segments dropped for lack of room (owner not reading, or larger than a segment).
    pub rx_no_room: u32,
    /// Segments written by `poll_transmit`.
    pub tx_segments: u32,
    /// Retransmissions (data, SYN, RST).
    pub tx_retransmissions: u32,
    /// `poll_transmit` calls whose buffer was too small for the next segment.
    pub tx_buffer_too_small: u32,
}

/// A SYN checked by [`Connection::check_syn`]: the options in force and the
/// peer's initial sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptPlan {
    opts: Options,
    announce: bool,
    peer_isn: u16,
}

/// Why a SYN could not be accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum AcceptError {
    /// The segment did not decode (too short, or a SYN without its options).
    Header(HeaderError),
    /// Not a SYN (or a SYN carrying other flags).
    NotSyn,
    /// The client's options are out of range.
    Options(OptionsError),
}

impl fmt::Display for AcceptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcceptError::Header(e) => write!(f, "{e}"),
            AcceptError::NotSyn => f.write_str("not an RDP SYN"),
            AcceptError::Options(e) => write!(f, "{e}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for AcceptError {}

/// Control segments waiting for `poll_transmit`, as bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Ctrl(u8);

impl Ctrl {
    const SYN: u8 = 1;
    const SYN_ACK: u8 = 2;
    /// The handshake ACK: goes before any data.
    const HS_ACK: u8 = 4;
    const RST: u8 = 8;
    /// A standalone ACK: only if no data segment piggybacks it first.
    const ACK: u8 = 16;
    /// A bare RST (no ACK flag): we failed. Not a close, which a peer
    /// would take as "all data delivered".
    const ABORT: u8 = 32;

    fn has(self, b: u8) -> bool {
        self.0 & b != 0
    }
    fn set(&mut self, b: u8) {
        self.0 |= b;
    }
    fn clear(&mut self, b: u8) {
        self.0 &= !b;
    }
}

/// One RDP connection with room for `WINDOW` segments in flight (and as
/// many held on receive) of at most `SEG` user bytes each.
pub struct Connection<const WINDOW: usize, const SEG: usize> {
    role: Role,
    state: State,
    opts: Options,
    /// Our initial sequence number (the SYN's).
    snd_iss: u16,
    /// Oldest unacknowledged sequence number (front of `tx`).
    snd_una: u16,
    /// Next sequence number to assign.
    snd_nxt: u16,
    /// The peer's initial sequence number.
    rcv_irs: u16,
    /// Last sequence number received in order.
    rcv_cur: u16,
    /// Last sequence number we acknowledged.
    rcv_lsa: u16,
    /// Sequence number of the front of `rx` (next one the owner reads).
    rcv_read: u16,
    /// libcsp 2.x's rolling counter for the control segments' upper nibble.
    ctrl_counter: u8,
    ctrl: Ctrl,
    /// Transmissions of the current SYN or RST, for backoff and the bound.
    ctrl_tries: u8,
    /// When the SYN or RST is due for retransmission.
    ctrl_deadline: Instant,
    tx: TxQueue<WINDOW, SEG>,
    rx: RxQueue<WINDOW, SEG>,
    timers: TimerTable,
    /// Since when silence from the peer counts towards the connection
    /// timeout: the last segment heard, or when we started waiting.
    quiet_since: Instant,
    /// In fast recovery until `snd_una` reaches this (`snd_nxt` when it began).
    recover: Option<u16>,
    /// Duplicate acknowledgements in a row (bare, advancing nothing, while
    /// data is in flight).
    dup_acks: u8,
    /// EACKs owed for out-of-order segments: one each, not coalesced.
    eacks_owed: u8,
    /// A server whose window is smaller than the client asked for says so
    /// in its SYN-ACK (libcsp's SYN-ACK carries no options and a libcsp
    /// client ignores them, so only a clamped window is announced).
    announce_options: bool,
    ev_connected: bool,
    ev_acked: Option<u16>,
    ev_end: Option<Event<SEG>>,
    failure: Option<FailReason>,
    counters: Counters,
}

impl<const WINDOW: usize, const SEG: usize> fmt::Debug for Connection<WINDOW, SEG> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("snd_una", &self.snd_una)
            .field("snd_nxt", &self.snd_nxt)
            .field("rcv_cur", &self.rcv_cur)
            .finish()
    }
}

impl<const WINDOW: usize, const SEG: usize> Connection<WINDOW, SEG> {
    /// Buffer size `poll_transmit` needs for any segment of this connection.
    pub const MAX_SEGMENT_LEN: usize = HEADER_LEN
        + if SEG > SYN_OPTIONS_LEN {
            SEG
        } else {
            SYN_OPTIONS_LEN
        };

    #[inline(always)]
    fn new(role: Role, state: State, now: Instant, opts: Options, isn: u16) -> Self {
        let next = isn.wrapping_add(1);
        Connection {
            role,
            state,
            opts,
            snd_iss: isn,
            snd_una: next,
            snd_nxt: next,
            rcv_irs: 0,
            rcv_cur: 0,
            rcv_lsa: 0,
            rcv_read: 1,
            ctrl_counter: 0,
            ctrl: Ctrl::default(),
            ctrl_tries: 0,
            ctrl_deadline: now,
            tx: TxQueue::new(),
            rx: RxQueue::new(),
            timers: TimerTable::default(),
            quiet_since: now,
            recover: None,
            dup_acks: 0,
            eacks_owed: 0,
            announce_options: false,
            ev_connected: false,
            ev_acked: None,
            ev_end: None,
            failure: None,
            counters: Counters::default(),
        }
    }

    /// Open a connection: the first `poll_transmit` gives the SYN carrying
    /// `options`. `isn` is the initial sequence number: pass a random value.
    pub fn connect(now: Instant, options: Options, isn: u16) -> Result<Self, OptionsError> {
        options.validate(WINDOW)?;
        let mut c = Self::new(Role::Client, State::SynSent, now, options, isn);
        c.ctrl.set(Ctrl::SYN);
        c.update_timers();
        Ok(c)
    }

    /// Accept a connection from a received SYN (CSP data: option block and
    /// RDP header). The client's six options are adopted; `local` gives the
    /// local policy (retransmission bound, backoff cap, close wait). `isn`
    /// is our initial sequence number: pass a random value.
    pub fn accept(now: Instant, syn: &[u8], local: Options, isn: u16) -> Result<Self, AcceptError> {
        let plan = Self::check_syn(syn, local)?;
        Ok(Self::accepted(now, &plan, isn))
    }

    /// The fallible half of [`accept`](Self::accept): what the SYN asks
    /// for, checked against `local`. Small, so an owner with a slot ready
    /// can build the connection straight into it with
    /// [`accepted`](Self::accepted) (on a microcontroller a connection is
    /// kilobytes, and a `Result<Self, _>` moved into its slot costs that
    /// much stack again).
    pub fn check_syn(syn: &[u8], local: Options) -> Result<AcceptPlan, AcceptError> {
        let (body, hdr) = RdpHeader::split(syn).map_err(AcceptError::Header)?;
        if hdr.flags() != Flags::SYN {
            return Err(AcceptError::NotSyn);
        }
        let theirs = SynOptions::parse(body).map_err(AcceptError::Header)?;
        let mut opts = local.adopt(&theirs).map_err(AcceptError::Options)?;
        let announce = opts.fit_window(WINDOW);
        Ok(AcceptPlan {
            opts,
            announce,
            peer_isn: hdr.seq,
        })
    }

    /// The infallible half of [`accept`](Self::accept): the connection a
    /// checked SYN opens (SYN-RECEIVED, its SYN-ACK due).
    #[inline(always)]
    pub fn accepted(now: Instant, plan: &AcceptPlan, isn: u16) -> Self {
        let mut c = Self::new(Role::Server, State::SynRcvd, now, plan.opts, isn);
        c.announce_options = plan.announce;
        c.set_peer_isn(plan.peer_isn);
        c.ctrl.set(Ctrl::SYN_ACK);
        c.update_timers();
        c
    }

    fn set_peer_isn(&mut self, irs: u16) {
        self.rcv_irs = irs;
        self.rcv_cur = irs;
        self.rcv_lsa = irs;
        self.rcv_read = irs.wrapping_add(1);
    }

    /// Which end we are.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The options in force (for a server: the client's).
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// What the connection counted so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Finished: the owner may drop it once `poll_event` and `poll_transmit` are drained.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Segments sent or queued and not yet acknowledged.
    pub fn unacknowledged(&self) -> usize {
        self.tx.len()
    }

    /// How many more segments `send` takes right now.
    pub fn send_capacity(&self) -> usize {
        if self.state != State::Open {
            return 0;
        }
        self.send_window().saturating_sub(self.tx.len())
    }

    fn send_window(&self) -> usize {
        usize::from(self.opts.window).min(WINDOW)
    }

    /// Queue one segment of user data. Returns its sequence number, which a
    /// later [`Event::Acknowledged`] reports once the peer has it.
    pub fn send(&mut self, now: Instant, data: &[u8]) -> Result<u16, SendError> {
        if let Some(r) = self.failure {
            return Err(SendError::Failed(r));
        }
        if self.state != State::Open {
            return Err(SendError::NotConnected);
        }
        if data.is_empty() {
            return Err(SendError::Empty);
        }
        if data.len() > SEG {
            return Err(SendError::TooLong);
        }
        let was_idle = self.tx.is_empty();
        if self.tx.len() >= self.send_window() || !self.tx.push(data) {
            return Err(SendError::WouldBlock);
        }
        if was_idle {
            // A peer may have had nothing to say while we were idle: give it a
            // full timeout to acknowledge this.
            self.quiet_since = self.quiet_since.max(now);
        }
        let seq = self.snd_nxt;
        self.snd_nxt = self.snd_nxt.wrapping_add(1);
        self.update_timers();
        Ok(seq)
    }

    /// Close: send RST|ACK (right after any unacknowledged data, which is
    /// still retransmitted) and wait (bounded) for the peer's; `Closed`
    /// is reported only with all data acknowledged. Before the handshake
    /// completes, abort.
    pub fn close(&mut self, now: Instant) {
        match self.state {
            State::SynSent | State::SynRcvd => {
                self.ctrl = Ctrl::default();
                self.ctrl.set(Ctrl::RST);
                self.finish(Event::Closed {
                    reason: CloseReason::Aborted,
                });
            }
            State::Open => {
                self.state = State::Closing;
                // From here on the tries count resets (the SYN's are done).
                self.ctrl_tries = 0;
                if !self.tx.is_empty() {
                    // The reset follows the data at once: the peer honours it
                    // only in sequence, i.e. once it holds all our data, and
                    // its answering reset acknowledges that data. Waiting for
                    // the data's own (possibly delayed) ACK first would cost
                    // the peer's ack timeout on every short exchange.
                    self.ctrl.set(Ctrl::RST);
                }
                self.maybe_send_reset(now);
            }
            _ => {}
        }
        self.update_timers();
    }

    fn maybe_send_reset(&mut self, now: Instant) {
        if self.state == State::Closing && self.tx.is_empty() {
            self.state = State::CloseWait;
            // A reset already sent with the data is retransmitted on its
            // timer if the peer does not answer it.
            if self.ctrl_tries == 0 {
                self.ctrl.set(Ctrl::RST);
            }
            self.quiet_since = self.quiet_since.max(now);
            self.timers.set(Timer::Close, now + self.opts.close_wait);
        }
    }

    /// End of the connection's life: no timers, no data, one final event.
    fn finish(&mut self, ev: Event<SEG>) {
        if let Event::Failed { reason } = ev {
            self.failure = Some(reason);
        }
        self.state = State::Closed;
        self.tx.clear();
        self.timers.clear();
        self.ctrl
            .clear(Ctrl::SYN | Ctrl::SYN_ACK | Ctrl::HS_ACK | Ctrl::ACK);
        if self.ev_end.is_none() {
            self.ev_end = Some(ev);
        }
    }

    /// Fail, and tell the peer with one best-effort reset.
    fn fail(&mut self, reason: FailReason) {
        self.finish(Event::Failed { reason });
        self.ctrl.clear(Ctrl::RST);
        self.ctrl.set(Ctrl::ABORT);
    }

    /// A segment arrived (CSP data: user data then the 5-byte RDP header).
    /// Anything malformed or unexpected is counted and ignored.
    pub fn handle_segment(&mut self, now: Instant, segment: &[u8]) {
        self.counters.rx_segments = self.counters.rx_segments.wrapping_add(1);
        let Ok((body, hdr)) = RdpHeader::split(segment) else {
            self.count_malformed();
            return;
        };
        let f = hdr.flags();
        match self.state {
            State::Closed => {}
            State::SynSent => self.on_syn_sent(now, hdr, body),
            State::SynRcvd => self.on_syn_rcvd(now, hdr, body),
            State::Open | State::Closing | State::CloseWait => self.on_open(now, hdr, body),
            State::TimeWait => {
                if f.contains(Flags::RST) {
                    // Our RST|ACK was lost: the peer repeats its reset.
                    self.ctrl.set(Ctrl::RST);
                }
            }
        }
        self.update_timers();
    }

    fn count_malformed(&mut self) {
        self.counters.rx_malformed = self.counters.rx_malformed.wrapping_add(1);
    }

    fn on_syn_sent(&mut self, now: Instant, hdr: RdpHeader, body: &[u8]) {
        let f = hdr.flags();
        if f.contains(Flags::RST) {
            // Refused: no reset back.
            self.finish(Event::Failed {
                reason: FailReason::Reset,
            });
        } else if f.contains(Flags::SYN | Flags::ACK) && hdr.ack == self.snd_iss {
            self.set_peer_isn(hdr.seq);
            if let Ok(theirs) = SynOptions::parse(body) {
                // Our own server's answer when it holds less than we asked.
                self.opts.adopt_syn_ack(&theirs);
            }
            self.state = State::Open;
            self.quiet_since = now;
            self.ctrl.clear(Ctrl::SYN);
            self.ctrl.set(Ctrl::HS_ACK);
            self.ev_connected = true;
        } else {
            self.count_malformed();
        }
    }

    fn on_syn_rcvd(&mut self, now: Instant, hdr: RdpHeader, body: &[u8]) {
        let f = hdr.flags();
        if f.contains(Flags::RST) {
            // Refused: no reset back.
            self.finish(Event::Failed {
                reason: FailReason::Reset,
            });
        } else if f == Flags::SYN && hdr.seq == self.rcv_irs {
            // The client did not get our SYN-ACK and repeats its SYN.
            self.quiet_since = now;
            self.ctrl.set(Ctrl::SYN_ACK);
        } else if f.contains(Flags::ACK) && !f.contains(Flags::SYN) && hdr.ack == self.snd_iss {
            self.state = State::Open;
            self.ctrl.clear(Ctrl::SYN_ACK);
            self.ev_connected = true;
            // The handshake ACK may have been lost and this be the first
            // data segment, which carries the same acknowledgement.
            self.on_open(now, hdr, body);
        } else {
            self.count_malformed();
        }
    }

    fn on_open(&mut self, now: Instant, hdr: RdpHeader, body: &[u8]) {
        let f = hdr.flags();
        if f.contains(Flags::SYN) {
            if self.role == Role::Client && f.contains(Flags::ACK) && hdr.seq == self.rcv_irs {
                // Our handshake ACK was lost (or the SYN-ACK duplicated): repeat it.
                self.ctrl.set(Ctrl::HS_ACK);
            } else if !(self.role == Role::Server && hdr.seq == self.rcv_irs) {
                self.count_malformed();
            }
            return;
        }
        if f == Flags::RST {
            self.on_abort(hdr.seq);
            return;
        }
        if !f.contains(Flags::ACK) {
            self.count_malformed();
            return;
        }
        // The acknowledgement must be for something we sent (or a little
        // stale): anything else is not from this connection's peer.
        let window2 = self.opts.window.wrapping_mul(2);
        let oldest = self.snd_una.wrapping_sub(1).wrapping_sub(window2);
        if !seq::between(hdr.ack, oldest, self.snd_nxt.wrapping_sub(1)) {
            self.count_malformed();
            return;
        }
        self.quiet_since = now;
        let advanced = self.on_ack(hdr.ack);
        if advanced {
            self.dup_acks = 0;
        } else if f == Flags::ACK && body.is_empty() && hdr.ack == self.snd_una.wrapping_sub(1) {
            self.on_duplicate_ack();
        }
        if !f.contains(Flags::RST) {
            self.maybe_send_reset(now);
        }
        if f.contains(Flags::EAK) {
            self.on_eack(body);
            return;
        }
        if f.contains(Flags::RST) {
            self.on_reset(now, hdr.seq);
            return;
        }
        if body.is_empty() {
            return;
        }
        self.on_data(now, hdr.seq, body);
    }

    /// A cumulative acknowledgement; `true` if it acknowledged something new.
    fn on_ack(&mut self, ack: u16) -> bool {
        let n = seq::distance(self.snd_una, ack.wrapping_add(1));
        if n == 0 || usize::from(n) > self.tx.len() {
            return false;
        }
        self.tx.pop_front(usize::from(n));
        self.snd_una = ack.wrapping_add(1);
        self.ev_acked = Some(ack);
        if let Some(r) = self.recover {
            if self.tx.is_empty() || seq::distance(self.snd_una, r) == 0 {
                self.recover = None;
            } else {
                // A partial acknowledgement in recovery: the next segment
                // was lost too (it was sent before the retransmission).
                self.fast_retransmit_front();
            }
        }
        true
    }

    /// A bare acknowledgement of exactly what was acknowledged before,
    /// while data is in flight. A TCP-like receiver sends one for every
    /// segment that arrives out of order (ours sends EACKs instead, see
    /// `on_eack`), so several in a row mean a gap: resend its first segment
    /// now instead of waiting a whole packet timeout (fast retransmit, once
    /// per recovery). One or two are not enough: libcsp sends a bare ACK
    /// whenever it was quiet for its ack timeout, which can cross our next
    /// segment on the way.
    fn on_duplicate_ack(&mut self) {
        if !self.tx.get(0).is_some_and(|s| s.in_flight()) {
            return;
        }
        self.dup_acks = self.dup_acks.saturating_add(1);
        if self.dup_acks >= DUP_ACK_THRESHOLD && self.recover.is_none() {
            self.recover = Some(self.snd_nxt);
            self.fast_retransmit_front();
        }
    }

    fn fast_retransmit_front(&mut self) {
        if let Some(slot) = self.tx.get_mut(0) {
            if slot.in_flight() {
                slot.pending = true;
                self.count_retransmission();
            }
        }
    }

    /// The peer (ours, or libcsp 1.x) lists the out-of-order sequence
    /// numbers it holds: never retransmit those. A held segment after our
    /// oldest unacknowledged one means that one is missing: resend it now
    /// (once per recovery; reordering costs at most one spurious segment).
    /// libcsp 2.x never sends EACKs, so its idle ACKs can not get here.
    fn on_eack(&mut self, body: &[u8]) {
        let mut gap = false;
        for pair in body.chunks_exact(2) {
            let s = u16::from_be_bytes([pair[0], pair[1]]);
            let i = usize::from(seq::distance(self.snd_una, s));
            // Only what was sent can have been received.
            if let Some(slot) = self.tx.get_mut(i).filter(|s| s.tries > 0) {
                slot.sacked = true;
                slot.pending = false;
                gap |= i > 0;
            }
        }
        if gap && self.recover.is_none() && self.tx.get(0).is_some_and(|s| s.in_flight()) {
            self.recover = Some(self.snd_nxt);
            self.fast_retransmit_front();
        }
    }

    /// A reset without an acknowledgement: the peer gave up (it failed, or
    /// libcsp no longer has the connection). Whatever we sent and was not
    /// reported acknowledged may be lost. Only a plausible sequence number
    /// counts, so that a stray reset does not end a connection.
    fn on_abort(&mut self, seq_nr: u16) {
        let window2 = self.opts.window.wrapping_mul(2);
        if !seq::between(
            seq_nr,
            self.rcv_cur.wrapping_add(1),
            self.rcv_cur.wrapping_add(window2),
        ) {
            self.count_malformed();
            return;
        }
        let ev = if self.state == State::CloseWait {
            Event::Closed {
                reason: CloseReason::Local,
            }
        } else {
            Event::Failed {
                reason: FailReason::Reset,
            }
        };
        self.finish(ev);
    }

    fn on_reset(&mut self, now: Instant, seq_nr: u16) {
        match self.state {
            // The peer's answer to our reset (its acknowledgement, already
            // taken, covered all our data).
            State::CloseWait => self.finish(Event::Closed {
                reason: CloseReason::Local,
            }),
            State::Closing if self.tx.is_empty() => self.finish(Event::Closed {
                reason: CloseReason::Local,
            }),
            // Honoured only in sequence, i.e. after all of the peer's data.
            _ if seq_nr == self.rcv_cur.wrapping_add(1) => {
                let ev = if self.tx.is_empty() {
                    Event::Closed {
                        reason: CloseReason::Peer,
                    }
                } else {
                    Event::Failed {
                        reason: FailReason::Reset,
                    }
                };
                self.finish(ev);
                self.state = State::TimeWait;
                self.ctrl.set(Ctrl::RST);
                self.timers.set(Timer::Close, now + self.opts.close_wait);
            }
            // Data is missing before the reset: say where we are and wait for it.
            _ => self.ctrl.set(Ctrl::ACK),
        }
    }

    fn on_data(&mut self, now: Instant, seq_nr: u16, body: &[u8]) {
        let window2 = self.opts.window.wrapping_mul(2);
        let first = self.rcv_cur.wrapping_add(1);
        if !seq::between(seq_nr, first, self.rcv_cur.wrapping_add(window2)) {
            // Mostly a retransmission of delivered data: our ACK was lost.
            self.counters.rx_out_of_window = self.counters.rx_out_of_window.wrapping_add(1);
            self.ctrl.set(Ctrl::ACK);
            return;
        }
        let offset = usize::from(seq::distance(self.rcv_read, seq_nr));
        match self.rx.store(offset, body) {
            Store::NoRoom => {
                self.counters.rx_no_room = self.counters.rx_no_room.wrapping_add(1);
                return;
            }
            Store::Duplicate => {
                self.counters.rx_duplicates = self.counters.rx_duplicates.wrapping_add(1);
                self.ctrl.set(Ctrl::ACK);
                return;
            }
            Store::Stored => {}
        }
        if seq_nr != first {
            // Out of order: held; an EACK listing what we hold tells the
            // sender of the gap at once (libcsp 1.x does the same; 2.x
            // ignores EACKs).
            self.eacks_owed = self
                .eacks_owed
                .saturating_add(1)
                .min(u8::try_from(WINDOW).unwrap_or(u8::MAX));
            return;
        }
        let mut advanced = 0u16;
        while self.rx.is_full(usize::from(seq::distance(
            self.rcv_read,
            self.rcv_cur.wrapping_add(1),
        ))) {
            self.rcv_cur = self.rcv_cur.wrapping_add(1);
            advanced += 1;
        }
        let unacked = seq::distance(self.rcv_lsa, self.rcv_cur);
        if !self.opts.delayed_acks || unacked > self.opts.ack_delay_count || advanced > 1 {
            self.ctrl.set(Ctrl::ACK);
        } else if self.timers.get(Timer::Ack).is_none() {
            self.timers.set(Timer::Ack, now + self.opts.ack_timeout);
        }
    }

    /// Write the next segment to send into `buf`, if any. `buf` should hold
    /// [`Self::MAX_SEGMENT_LEN`] bytes; a smaller one is counted and skipped.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        let t = self.next_transmit(now, buf);
        if t.is_some() {
            self.counters.tx_segments = self.counters.tx_segments.wrapping_add(1);
            self.update_timers();
        }
        t
    }

    fn next_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        if self.ctrl.has(Ctrl::SYN) {
            let opts = self.opts.to_syn().to_be_bytes();
            let t = self.emit_ctrl(buf, &opts, Flags::SYN, self.snd_iss, 0)?;
            self.ctrl.clear(Ctrl::SYN);
            self.ctrl_tries = self.ctrl_tries.saturating_add(1);
            self.ctrl_deadline = now + self.opts.rto(self.ctrl_tries);
            return Some(t);
        }
        if self.ctrl.has(Ctrl::SYN_ACK) {
            let opts = self.opts.to_syn().to_be_bytes();
            let body: &[u8] = if self.announce_options { &opts } else { &[] };
            let t = self.emit_ctrl(
                buf,
                body,
                Flags::SYN | Flags::ACK,
                self.snd_iss,
                self.rcv_irs,
            )?;
            self.ctrl.clear(Ctrl::SYN_ACK);
            return Some(t);
        }
        if self.ctrl.has(Ctrl::HS_ACK) {
            let t = self.emit_ack(buf)?;
            self.ctrl.clear(Ctrl::HS_ACK);
            return Some(t);
        }
        if matches!(self.state, State::Open | State::Closing) {
            if let Some(t) = self.emit_data(now, buf) {
                return Some(t);
            }
        }
        if self.ctrl.has(Ctrl::RST) {
            let t = self.emit_ctrl(
                buf,
                &[],
                Flags::RST | Flags::ACK,
                self.snd_nxt,
                self.rcv_cur,
            )?;
            self.ctrl.clear(Ctrl::RST);
            if matches!(self.state, State::CloseWait | State::Closing) {
                self.ctrl_tries = self.ctrl_tries.saturating_add(1);
                self.ctrl_deadline = now + self.opts.rto(self.ctrl_tries);
            }
            return Some(t);
        }
        if self.ctrl.has(Ctrl::ABORT) {
            let t = self.emit_ctrl(buf, &[], Flags::RST, self.snd_nxt, self.rcv_cur)?;
            self.ctrl.clear(Ctrl::ABORT);
            return Some(t);
        }
        if self.ctrl.has(Ctrl::ACK) {
            return self.emit_ack(buf);
        }
        while self.eacks_owed > 0 && self.state != State::Closed {
            self.eacks_owed -= 1;
            if let Some(t) = self.emit_eack(buf) {
                return Some(t);
            }
        }
        None
    }

    /// ACK|EAK: the cumulative acknowledgement, then the sequence numbers
    /// held out of order as big-endian u16s. `None` if nothing is held
    /// (the gap filled meanwhile) or the buffer is too small.
    fn emit_eack(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        let mut list = [0u8; 2 * MAX_EACK];
        let mut n = 0;
        let first = usize::from(seq::distance(self.rcv_read, self.rcv_cur.wrapping_add(1)));
        for off in first..WINDOW {
            if n == MAX_EACK {
                break;
            }
            if self.rx.is_full(off) {
                let s = self.rcv_read.wrapping_add(off as u16);
                // `n < MAX_EACK`, so the pair always fits.
                if let Some(pair) = list.get_mut(2 * n..2 * n + 2) {
                    pair.copy_from_slice(&s.to_be_bytes());
                }
                n += 1;
            }
        }
        if n == 0 {
            return None;
        }
        let t = self.emit_ctrl(
            buf,
            list.get(..2 * n).unwrap_or_default(),
            Flags::ACK | Flags::EAK,
            self.snd_nxt,
            self.rcv_cur,
        )?;
        self.acked_now();
        Some(t)
    }

    fn emit_ack(&mut self, buf: &mut [u8]) -> Option<Transmit> {
        let t = self.emit_ctrl(buf, &[], Flags::ACK, self.snd_nxt, self.rcv_cur)?;
        self.acked_now();
        Some(t)
    }

    /// Everything received is acknowledged by the segment just written.
    fn acked_now(&mut self) {
        self.rcv_lsa = self.rcv_cur;
        self.ctrl.clear(Ctrl::ACK);
        self.timers.stop(Timer::Ack);
    }

    fn emit_ctrl(
        &mut self,
        buf: &mut [u8],
        body: &[u8],
        flags: Flags,
        seq_nr: u16,
        ack: u16,
    ) -> Option<Transmit> {
        let hdr = RdpHeader::new(flags, self.ctrl_counter, seq_nr, ack);
        let Some(len) = write(buf, body, hdr) else {
            self.count_small_buffer();
            return None;
        };
        self.ctrl_counter = self.ctrl_counter.wrapping_add(1) & 0x0f;
        Some(Transmit {
            len,
            prio_high: true,
        })
    }

    fn count_small_buffer(&mut self) {
        self.counters.tx_buffer_too_small = self.counters.tx_buffer_too_small.wrapping_add(1);
    }

    fn emit_data(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        let i = (0..self.tx.len()).find(|&i| self.tx.get(i).is_some_and(|s| s.pending))?;
        let seq_nr = self.snd_una.wrapping_add(i as u16);
        let hdr = RdpHeader::new(Flags::ACK, 0, seq_nr, self.rcv_cur);
        let Some(len) = write(buf, self.tx.get(i)?.data(), hdr) else {
            self.count_small_buffer();
            return None;
        };
        let opts = self.opts;
        let slot = self.tx.get_mut(i)?;
        slot.pending = false;
        slot.tries = slot.tries.saturating_add(1);
        slot.deadline = now + opts.rto(slot.tries);
        self.acked_now();
        Some(Transmit {
            len,
            prio_high: false,
        })
    }

    /// The next event for the owner: `Connected`, `Acknowledged`, then data
    /// in order, and last `Closed` or `Failed` once all data is read.
    pub fn poll_event(&mut self) -> Option<Event<SEG>> {
        if core::mem::take(&mut self.ev_connected) {
            return Some(Event::Connected);
        }
        if let Some(through) = self.ev_acked.take() {
            return Some(Event::Acknowledged { through });
        }
        if self.rcv_read != self.rcv_cur.wrapping_add(1) {
            if let Some(p) = self.rx.pop_front(Payload::from_slice) {
                self.rcv_read = self.rcv_read.wrapping_add(1);
                // A slot never holds more than SEG bytes, so `p` is Some.
                if let Some(p) = p {
                    return Some(Event::Data(p));
                }
            }
        }
        self.ev_end.take()
    }

    /// When `handle_timeout` should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Let time pass: retransmit, send delayed ACKs, time out.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timers.expire(Timer::Ack, now) && self.state != State::Closed {
            self.ctrl.set(Ctrl::ACK);
        }
        if self.timers.expire(Timer::Conn, now) {
            self.on_conn_timeout();
        }
        if self.timers.expire(Timer::Close, now) {
            match self.state {
                State::TimeWait => self.state = State::Closed,
                State::CloseWait => self.finish(Event::Closed {
                    reason: CloseReason::CloseTimeout,
                }),
                _ => {}
            }
        }
        if self.timers.expire(Timer::Retransmit, now) {
            self.on_retransmit_timeout(now);
        }
        self.update_timers();
    }

    fn on_conn_timeout(&mut self) {
        match self.state {
            State::CloseWait => self.finish(Event::Closed {
                reason: CloseReason::CloseTimeout,
            }),
            State::Closed | State::TimeWait => {}
            _ => self.fail(FailReason::Timeout),
        }
    }

    fn on_retransmit_timeout(&mut self, now: Instant) {
        let limit = self.opts.max_retransmissions;
        match self.state {
            State::SynSent => {
                if self.ctrl_tries > limit {
                    self.fail(FailReason::RetransmitLimit);
                } else {
                    self.ctrl.set(Ctrl::SYN);
                    self.count_retransmission();
                }
            }
            State::CloseWait => {
                if self.ctrl_tries > limit {
                    self.finish(Event::Closed {
                        reason: CloseReason::CloseTimeout,
                    });
                } else {
                    self.ctrl.set(Ctrl::RST);
                    self.count_retransmission();
                }
            }
            State::Open | State::Closing => {
                self.recover = None;
                for i in 0..self.tx.len() {
                    let Some(slot) = self.tx.get_mut(i) else {
                        break;
                    };
                    if !slot.in_flight() || slot.deadline > now {
                        continue;
                    }
                    if slot.tries > limit {
                        self.fail(FailReason::RetransmitLimit);
                        return;
                    }
                    slot.pending = true;
                    self.count_retransmission();
                    if self.state == State::Closing {
                        // Our reset follows the resent data again.
                        self.ctrl.set(Ctrl::RST);
                    }
                }
            }
            _ => {}
        }
    }

    fn count_retransmission(&mut self) {
        self.counters.tx_retransmissions = self.counters.tx_retransmissions.wrapping_add(1);
    }

    /// Derive the retransmission and connection timers from the state.
    fn update_timers(&mut self) {
        let retransmit = match self.state {
            State::SynSent | State::CloseWait => (self.ctrl_tries > 0
                && !self.ctrl.has(Ctrl::SYN | Ctrl::RST))
            .then_some(self.ctrl_deadline),
            State::Open | State::Closing => (0..self.tx.len())
                .filter_map(|i| self.tx.get(i))
                .filter(|s| s.in_flight())
                .map(|s| s.deadline)
                .min(),
            _ => None,
        };
        self.timers.set_opt(Timer::Retransmit, retransmit);
        // Silence from the peer fails the connection, idle or not: a dead
        // peer must be noticed even by an end with nothing to send.
        let waiting = !matches!(self.state, State::Closed | State::TimeWait);
        self.timers.set_opt(
            Timer::Conn,
            waiting.then(|| self.quiet_since + self.opts.conn_timeout),
        );
        if self.state == State::Closed {
            self.timers.clear();
        }
    }
}

/// Lay out `body | header` at the start of `buf`; `None` if it does not fit.
fn write(buf: &mut [u8], body: &[u8], hdr: RdpHeader) -> Option<usize> {
    let len = body.len() + HEADER_LEN;
    let out = buf.get_mut(..len)?;
    out[..body.len()].copy_from_slice(body);
    out[body.len()..].copy_from_slice(&hdr.to_be_bytes());
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Duration;
    use std::vec::Vec;

    type C = Connection<4, 16>;

    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    /// Everything `c` wants to send now.
    fn out(c: &mut C, now: u64) -> Vec<Vec<u8>> {
        let mut buf = [0u8; C::MAX_SEGMENT_LEN];
        core::iter::from_fn(|| {
            c.poll_transmit(t(now), &mut buf)
                .map(|x| buf[..x.len].to_vec())
        })
        .collect()
    }

    fn hdr(seg: &[u8]) -> RdpHeader {
        RdpHeader::split(seg).unwrap().1
    }

    fn events(c: &mut C) -> Vec<Event<16>> {
        core::iter::from_fn(|| c.poll_event()).collect()
    }

    fn deliver(from: &mut C, to: &mut C, now: u64) -> usize {
        let segs = out(from, now);
        for s in &segs {
            to.handle_segment(t(now), s);
        }
        segs.len()
    }

    /// A connected pair at time 0, events drained.
    fn open_pair(opts: Options, isn_c: u16, isn_s: u16) -> (C, C) {
        let mut c = C::connect(t(0), opts, isn_c).unwrap();
        let syn = out(&mut c, 0);
        assert_eq!(syn.len(), 1);
        let mut s = C::accept(t(0), &syn[0], Options::default(), isn_s).unwrap();
        deliver(&mut s, &mut c, 0);
        deliver(&mut c, &mut s, 0);
        assert_eq!(events(&mut c), [Event::Connected]);
        assert_eq!(events(&mut s), [Event::Connected]);
        (c, s)
    }

    fn data(e: &[Event<16>]) -> Vec<u8> {
        e.iter()
            .filter_map(|e| match e {
                Event::Data(p) => Some(p.to_vec()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    #[test]
    fn handshake_segments_and_states() {
        let mut c = C::connect(t(0), Options::default(), 0xadfd).unwrap();
        assert_eq!(c.state(), State::SynSent);
        assert_eq!(c.send(t(0), b"x"), Err(SendError::NotConnected));
        let syn = out(&mut c, 0);
        assert_eq!(syn[0][24..], [0x08, 0xad, 0xfd, 0, 0]);
        let mut s = C::accept(t(1), &syn[0], Options::default(), 0x1234).unwrap();
        assert_eq!((s.state(), s.role()), (State::SynRcvd, Role::Server));
        let sa = out(&mut s, 1);
        assert_eq!(sa, [[0x0c, 0x12, 0x34, 0xad, 0xfd]]);
        c.handle_segment(t(2), &sa[0]);
        assert_eq!(c.state(), State::Open);
        let ack = out(&mut c, 2);
        assert_eq!(ack, [[0x14, 0xad, 0xfe, 0x12, 0x34]]);
        s.handle_segment(t(3), &ack[0]);
        assert_eq!(s.state(), State::Open);
        assert_eq!(events(&mut s), [Event::Connected]);
    }

    #[test]
    fn accept_refuses_bad_syns() {
        let syn = C::connect(t(0), Options::default(), 7)
            .map(|mut c| out(&mut c, 0))
            .unwrap();
        let mut not_syn = syn[0].clone();
        *not_syn.get_mut(24).unwrap() = 0x0c;
        assert_eq!(
            C::accept(t(0), &not_syn, Options::default(), 1).err(),
            Some(AcceptError::NotSyn)
        );
        assert_eq!(
            C::accept(t(0), &syn[0][20..], Options::default(), 1).err(),
            Some(AcceptError::Header(HeaderError::ShortSyn))
        );
        assert_eq!(
            C::accept(t(0), &[8, 0], Options::default(), 1).err(),
            Some(AcceptError::Header(HeaderError::Truncated))
        );
        let mut zero_window = syn[0].clone();
        zero_window[3] = 0;
        assert_eq!(
            C::accept(t(0), &zero_window, Options::default(), 1).err(),
            Some(AcceptError::Options(OptionsError::Window))
        );
        // Upper nibble of a SYN is a counter: masked.
        let mut counted = syn[0].clone();
        counted[24] = 0x38;
        assert!(C::accept(t(0), &counted, Options::default(), 1).is_ok());
        let too_wide = Options {
            window: 5,
            ..Options::default()
        };
        assert_eq!(
            C::connect(t(0), too_wide, 1).err(),
            Some(OptionsError::Window)
        );
    }

    #[test]
    fn send_limits() {
        let (mut c, _s) = open_pair(Options::default(), 1, 2);
        assert_eq!(c.send(t(0), b""), Err(SendError::Empty));
        assert_eq!(c.send(t(0), &[0; 17]), Err(SendError::TooLong));
        for i in 0..4u16 {
            assert_eq!(c.send(t(0), b"abc"), Ok(2 + i));
        }
        assert_eq!(c.send_capacity(), 0);
        assert_eq!(c.send(t(0), b"abc"), Err(SendError::WouldBlock));
        assert_eq!(c.unacknowledged(), 4);
    }

    #[test]
    fn data_delivered_in_order_once_with_cumulative_ack() {
        let (mut c, mut s) = open_pair(Options::default(), 0xfffd, 9);
        // Sequence numbers wrap during this exchange.
        for chunk in [b"aa", b"bb", b"cc", b"dd"] {
            c.send(t(0), chunk).unwrap();
        }
        let segs = out(&mut c, 0);
        assert_eq!(segs.len(), 4);
        assert!(segs.iter().all(|s| s[2] == 0x04));
        // Reordered and duplicated: 3, 1, 3, 0, 2, 1.
        for i in [3, 1, 3, 0, 2, 1] {
            s.handle_segment(t(5), &segs[i]);
        }
        assert_eq!(data(&events(&mut s)), b"aabbccdd");
        assert!(s.counters().rx_duplicates + s.counters().rx_out_of_window >= 2);
        let acks = out(&mut s, 5);
        let last = hdr(acks.last().unwrap());
        assert_eq!(last.ack, 0xfffd_u16.wrapping_add(4));
        for a in &acks {
            c.handle_segment(t(6), a);
        }
        assert_eq!(c.unacknowledged(), 0);
        assert_eq!(events(&mut c), [Event::Acknowledged { through: 1 }]);
    }

    #[test]
    fn delayed_ack_by_count_and_by_timer() {
        let (mut c, mut s) = open_pair(Options::default(), 100, 200);
        c.send(t(0), b"1").unwrap();
        deliver(&mut c, &mut s, 0);
        assert!(out(&mut s, 0).is_empty(), "one segment: ACK delayed");
        assert_eq!(s.poll_timeout(), Some(t(250)));
        s.handle_timeout(t(250));
        let a = out(&mut s, 250);
        assert_eq!(a.len(), 1);
        assert_eq!(hdr(&a[0]).ack, 101);
        for _ in 0..3 {
            c.send(t(300), b"x").unwrap();
        }
        deliver(&mut c, &mut s, 300);
        // More than ack_delay_count (2) unacknowledged: ACK at once.
        let a = out(&mut s, 300);
        assert_eq!(a.len(), 1);
        assert_eq!(hdr(&a[0]).ack, 104);
        // Without delayed ACKs every segment is acknowledged at once.
        let (mut c, mut s) = open_pair(
            Options {
                delayed_acks: false,
                ..Options::default()
            },
            1,
            2,
        );
        c.send(t(0), b"1").unwrap();
        deliver(&mut c, &mut s, 0);
        assert_eq!(out(&mut s, 0).len(), 1);
    }

    #[test]
    fn retransmission_backs_off_then_fails() {
        let (mut c, _s) = open_pair(
            Options {
                conn_timeout: Duration::from_millis(3_600_000),
                max_backoff: Duration::from_millis(5_000),
                max_retransmissions: 4,
                ..Options::default()
            },
            1,
            2,
        );
        c.send(t(0), b"lost").unwrap();
        assert_eq!(out(&mut c, 0).len(), 1);
        let mut sent_at = Vec::new();
        let mut now = 0;
        while let Some(next) = c.poll_timeout() {
            now = next.as_millis();
            c.handle_timeout(next);
            if out(&mut c, now).iter().any(|s| s[s.len() - 5] == 0x04) {
                sent_at.push(now);
            }
        }
        // 1 s, then doubling, capped at 5 s; 4 retransmissions.
        assert_eq!(sent_at, [1000, 3000, 7000, 12000]);
        assert_eq!(now, 17000);
        let ev = events(&mut c);
        assert_eq!(
            ev.last(),
            Some(&Event::Failed {
                reason: FailReason::RetransmitLimit
            })
        );
        assert_eq!(c.state(), State::Closed);
        assert_eq!(
            c.send(t(now), b"x"),
            Err(SendError::Failed(FailReason::RetransmitLimit))
        );
        assert_eq!(c.counters().tx_retransmissions, 4);
    }

    #[test]
    fn silence_fails_even_when_idle() {
        let (mut c, mut s) = open_pair(Options::default(), 1, 2);
        assert_eq!(c.poll_timeout(), Some(t(10_000)));
        c.handle_timeout(t(10_000));
        assert_eq!(
            events(&mut c),
            [Event::Failed {
                reason: FailReason::Timeout
            }]
        );
        // One best-effort reset tells the peer: a bare RST, an abort, which
        // the peer must not take for a close (that would say "all
        // delivered").
        let rst = out(&mut c, 10_000);
        assert_eq!(rst.len(), 1);
        assert_eq!(hdr(&rst[0]).flags(), Flags::RST);
        assert_eq!(c.poll_timeout(), None);
        s.send(t(10_000), b"unacknowledged").unwrap();
        let _ = out(&mut s, 10_000);
        // A stray abort (implausible sequence number) is ignored.
        s.handle_segment(
            t(10_001),
            &RdpHeader::new(Flags::RST, 0, 900, 0).to_be_bytes(),
        );
        assert_eq!(s.state(), State::Open);
        s.handle_segment(t(10_001), &rst[0]);
        assert!(s.is_closed());
        assert!(out(&mut s, 10_001).is_empty(), "no reset answers an abort");
        assert_eq!(
            events(&mut s),
            [Event::Failed {
                reason: FailReason::Reset
            }]
        );
    }

    #[test]
    fn close_sends_its_reset_after_the_data_without_waiting_for_the_ack() {
        let (mut c, mut s) = open_pair(Options::default(), 10, 20);
        c.send(t(0), b"last words").unwrap();
        let d = out(&mut c, 0);
        c.close(t(0));
        assert_eq!(c.state(), State::Closing);
        // The reset follows at once: the peer honours it only in sequence.
        let rst = out(&mut c, 0);
        assert_eq!(rst.len(), 1);
        let h = hdr(&rst[0]);
        assert_eq!((h.flags(), h.seq, h.ack), (Flags::RST | Flags::ACK, 12, 20));
        // Arriving before the data it is not honoured: the peer says where it is.
        s.handle_segment(t(1), &rst[0]);
        assert_eq!(s.state(), State::Open);
        assert_eq!(hdr(&out(&mut s, 1)[0]).ack, 10);
        s.handle_segment(t(2), &d[0]);
        s.handle_segment(t(2), &rst[0]);
        assert_eq!(s.state(), State::TimeWait);
        assert_eq!(
            events(&mut s).last(),
            Some(&Event::Closed {
                reason: CloseReason::Peer
            })
        );
        let reply = out(&mut s, 2);
        assert_eq!(
            reply.len(),
            1,
            "no delayed ACK of its own: the reset covers the data"
        );
        let rh = hdr(&reply[0]);
        assert_eq!((rh.flags(), rh.ack), (Flags::RST | Flags::ACK, 11));
        // A repeated reset (our reply lost) is answered again.
        s.handle_segment(t(3), &rst[0]);
        assert_eq!(out(&mut s, 3).len(), 1);
        c.handle_segment(t(4), &reply[0]);
        assert!(c.is_closed());
        assert!(out(&mut c, 4).is_empty(), "nothing after the close");
        assert_eq!(
            events(&mut c),
            [
                Event::Acknowledged { through: 11 },
                Event::Closed {
                    reason: CloseReason::Local
                }
            ]
        );
        // The passive end lingers for the close wait, then is closed.
        s.handle_timeout(s.poll_timeout().unwrap());
        assert!(s.is_closed());
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn lost_early_reset_is_resent_with_the_data() {
        let (mut c, mut s) = open_pair(Options::default(), 10, 20);
        c.send(t(0), b"x").unwrap();
        c.close(t(0));
        let lost = out(&mut c, 0);
        assert_eq!(lost.len(), 2);
        c.handle_timeout(t(1000));
        let again = out(&mut c, 1000);
        assert_eq!(again.len(), 2, "data, then the reset again");
        assert_eq!(hdr(&again[1]).flags(), Flags::RST | Flags::ACK);
        for seg in &again {
            s.handle_segment(t(1001), seg);
        }
        deliver(&mut s, &mut c, 1001);
        assert!(c.is_closed());
        assert_eq!(
            events(&mut c).last(),
            Some(&Event::Closed {
                reason: CloseReason::Local
            })
        );
    }

    #[test]
    fn close_with_everything_acknowledged_resets_once() {
        let (mut c, mut s) = open_pair(Options::default(), 10, 20);
        c.send(t(0), b"x").unwrap();
        deliver(&mut c, &mut s, 0);
        s.handle_timeout(t(250));
        deliver(&mut s, &mut c, 250);
        c.close(t(251));
        assert_eq!(c.state(), State::CloseWait);
        assert_eq!(out(&mut c, 251).len(), 1);
        assert!(out(&mut c, 251).is_empty());
    }

    #[test]
    fn unanswered_close_is_bounded() {
        let (mut c, _s) = open_pair(Options::default(), 1, 2);
        c.close(t(0));
        let mut resets = out(&mut c, 0).len();
        let mut now = 0;
        while let Some(next) = c.poll_timeout() {
            now = next.as_millis();
            c.handle_timeout(next);
            resets += out(&mut c, now).len();
        }
        assert!(now <= 10_000, "{now}");
        assert!((2..=9).contains(&resets), "{resets}");
        assert_eq!(
            events(&mut c),
            [Event::Closed {
                reason: CloseReason::CloseTimeout
            }]
        );
    }

    #[test]
    fn reset_out_of_sequence_waits_for_data() {
        let (mut c, mut s) = open_pair(Options::default(), 1, 2);
        c.send(t(0), b"a").unwrap();
        c.send(t(0), b"b").unwrap();
        let d = out(&mut c, 0);
        // A reset claiming a later sequence number while seq 2 is missing.
        let early = RdpHeader::new(Flags::RST | Flags::ACK, 3, 4, 2).to_be_bytes();
        s.handle_segment(t(1), &d[1]);
        s.handle_segment(t(1), &early);
        assert_eq!(s.state(), State::Open);
        s.handle_segment(t(2), &d[0]);
        s.handle_segment(t(3), &early);
        assert_eq!(s.state(), State::TimeWait);
        assert_eq!(data(&events(&mut s)), b"ab");
    }

    #[test]
    fn abort_before_open() {
        let mut c = C::connect(t(0), Options::default(), 1).unwrap();
        let _ = out(&mut c, 0);
        c.close(t(5));
        assert!(c.is_closed());
        assert_eq!(hdr(&out(&mut c, 5)[0]).flags(), Flags::RST | Flags::ACK);
        assert_eq!(
            events(&mut c),
            [Event::Closed {
                reason: CloseReason::Aborted
            }]
        );
    }

    #[test]
    fn reset_during_handshake_is_a_refusal() {
        let mut c = C::connect(t(0), Options::default(), 1).unwrap();
        let syn = out(&mut c, 0);
        c.handle_segment(t(1), &[0x05, 0, 9, 0, 1]);
        assert!(c.is_closed());
        assert!(out(&mut c, 1).is_empty(), "no reset answers a reset");
        assert_eq!(
            events(&mut c),
            [Event::Failed {
                reason: FailReason::Reset
            }]
        );
        let mut s = C::accept(t(0), &syn[0], Options::default(), 2).unwrap();
        let _ = out(&mut s, 0);
        s.handle_segment(t(1), &[0x15, 0, 2, 0, 2]);
        assert!(s.is_closed());
        assert!(out(&mut s, 1).is_empty());
    }

    #[test]
    fn lost_syn_ack_and_lost_handshake_ack_recover() {
        let mut c = C::connect(t(0), Options::default(), 50).unwrap();
        let syn = out(&mut c, 0);
        let mut s = C::accept(t(0), &syn[0], Options::default(), 60).unwrap();
        let _lost = out(&mut s, 0);
        c.handle_timeout(t(1000));
        let syn2 = out(&mut c, 1000);
        // Same SYN, same ISN; only the counter nibble moved on.
        assert_eq!(syn2[0][..24], syn[0][..24]);
        assert_eq!(hdr(&syn2[0]), RdpHeader::new(Flags::SYN, 1, 50, 0));
        s.handle_segment(t(1001), &syn2[0]);
        deliver(&mut s, &mut c, 1001);
        assert_eq!(c.state(), State::Open);
        let _lost_ack = out(&mut c, 1001);
        // The first data segment completes the server's handshake.
        c.send(t(1002), b"hi").unwrap();
        deliver(&mut c, &mut s, 1002);
        assert_eq!(s.state(), State::Open);
        let ev = events(&mut s);
        assert_eq!(ev[0], Event::Connected);
        assert_eq!(data(&ev), b"hi");
        // A duplicated SYN-ACK makes the client repeat its ACK, nothing more.
        c.handle_segment(t(1003), &[0x0c, 0, 60, 0, 50]);
        assert_eq!(c.state(), State::Open);
        assert_eq!(hdr(&out(&mut c, 1003)[0]).flags(), Flags::ACK);
    }

    #[test]
    fn junk_is_counted_and_ignored() {
        let (mut c, _s) = open_pair(Options::default(), 1, 2);
        let junk: [&[u8]; 6] = [
            &[],
            &[4, 0],
            &[0x08, 0, 3, 0, 0],             // SYN in open
            &[0x00, 0, 3, 0, 1],             // no ACK flag
            &[0x04, 0, 3, 0x80, 0],          // acknowledges what we never sent
            &[0x07, 0x12, 0x34, 0x56, 0x78], // everything at once, bad ack
        ];
        for j in junk {
            c.handle_segment(t(1), j);
        }
        assert_eq!(c.counters().rx_malformed, 6);
        assert_eq!(c.state(), State::Open);
        assert!(events(&mut c).is_empty());
        // Upper nibble masked: 0xf4 is a plain ACK.
        c.send(t(2), b"x").unwrap();
        let _ = out(&mut c, 2);
        c.handle_segment(t(3), &[0xf4, 0, 3, 0, 2]);
        assert_eq!(c.unacknowledged(), 0);
    }

    #[test]
    fn eack_resends_the_gap_once_and_never_the_listed_segments() {
        let (mut c, _s) = open_pair(Options::default(), 1, 2);
        for _ in 0..3 {
            c.send(t(0), b"seg").unwrap();
        }
        let _ = out(&mut c, 0);
        // libcsp 1.x: ACK|EAK acking seq 1 (nothing), listing seqs 3 and 4.
        let eack = [0, 3, 0, 4, 0x06, 0, 3, 0, 1];
        c.handle_segment(t(10), &eack);
        let re = out(&mut c, 10);
        assert_eq!(re.len(), 1, "the missing one at once");
        assert_eq!(hdr(&re[0]).seq, 2);
        c.handle_segment(t(11), &eack);
        assert!(out(&mut c, 11).is_empty(), "once per recovery");
        let mut now = 11;
        for _ in 0..3 {
            now = c.poll_timeout().unwrap().as_millis();
            c.handle_timeout(t(now));
            for seg in out(&mut c, now) {
                assert_eq!(hdr(&seg).seq, 2, "listed segments are never resent");
            }
        }
        assert!(now > 1000);
    }

    #[test]
    fn three_duplicate_acks_trigger_one_fast_retransmit() {
        let (mut c, _s) = open_pair(Options::default(), 1, 2);
        for i in 0..4u8 {
            c.send(t(0), &[i]).unwrap();
        }
        let _ = out(&mut c, 0);
        // A TCP-like peer: one bare duplicate ACK per segment after a gap.
        let dup = RdpHeader::new(Flags::ACK, 0, 3, 1).to_be_bytes();
        c.handle_segment(t(20), &dup);
        c.handle_segment(t(20), &dup);
        assert!(out(&mut c, 20).is_empty(), "two are not enough");
        c.handle_segment(t(20), &dup);
        let re = out(&mut c, 20);
        assert_eq!(
            re.len(),
            1,
            "one fast retransmission, long before the packet timeout"
        );
        assert_eq!(hdr(&re[0]).seq, 2);
        // More duplicates in the same recovery resend nothing.
        c.handle_segment(t(21), &dup);
        assert!(out(&mut c, 21).is_empty());
        assert_eq!(c.counters().tx_retransmissions, 1);
    }

    #[test]
    fn our_receiver_reports_a_gap_with_eacks_and_the_sender_fills_it() {
        let (mut c, mut s) = open_pair(Options::default(), 1, 2);
        for i in 0..4u8 {
            c.send(t(0), &[i]).unwrap();
        }
        let segs = out(&mut c, 0);
        // The first is lost; each of the others draws an EACK.
        for sg in &segs[1..] {
            s.handle_segment(t(10), sg);
        }
        let eacks = out(&mut s, 10);
        assert_eq!(eacks.len(), 3, "one per segment out of order");
        let (body, h) = RdpHeader::split(&eacks[2]).unwrap();
        assert_eq!((h.flags(), h.ack), (Flags::ACK | Flags::EAK, 1));
        assert_eq!(body, [0, 3, 0, 4, 0, 5]);
        c.handle_segment(t(20), &eacks[0]);
        let re = out(&mut c, 20);
        assert_eq!(re.len(), 1);
        assert_eq!(hdr(&re[0]).seq, 2);
        for e in &eacks[1..] {
            c.handle_segment(t(20), e);
        }
        assert!(out(&mut c, 20).is_empty());
        s.handle_segment(t(30), &re[0]);
        assert_eq!(data(&events(&mut s)), [0, 1, 2, 3]);
        deliver(&mut s, &mut c, 30);
        assert_eq!(c.unacknowledged(), 0);
        assert_eq!(c.counters().tx_retransmissions, 1);
    }

    #[test]
    fn redundant_bare_acks_resend_nothing() {
        let (mut c, _s) = open_pair(Options::default(), 1, 2);
        for i in 0..4u8 {
            c.send(t(0), &[i]).unwrap();
        }
        let _ = out(&mut c, 0);
        // libcsp's ACK of nothing new, sent while our data was on its way;
        // stale ones (acknowledging less) and ones carrying data too.
        let bare = RdpHeader::new(Flags::ACK, 0, 3, 1).to_be_bytes();
        let stale = RdpHeader::new(Flags::ACK, 0, 3, 0).to_be_bytes();
        let mut with_data = b"echo".to_vec();
        with_data.extend(RdpHeader::new(Flags::ACK, 0, 3, 1).to_be_bytes());
        c.handle_segment(t(5), &bare);
        c.handle_segment(t(6), &bare);
        for _ in 0..5 {
            c.handle_segment(t(7), &stale);
        }
        c.handle_segment(t(8), &with_data);
        assert!(out(&mut c, 8).iter().all(|s| s.len() == 5), "only ACKs");
        assert_eq!(c.counters().tx_retransmissions, 0);
        // A segment the peer listed as held (EACK) is never resent.
        c.handle_segment(t(9), &[0, 3, 0, 4, 0x06, 0, 4, 0, 1]);
        c.handle_segment(t(9), &bare);
        c.handle_segment(t(9), &bare);
        c.handle_segment(t(9), &bare);
        let re = out(&mut c, 9);
        assert_eq!(re.iter().filter(|s| s.len() > 5).count(), 1);
        c.handle_timeout(t(1000));
        let seqs: Vec<u16> = out(&mut c, 1000)
            .iter()
            .filter(|s| s.len() > 5)
            .map(|s| hdr(s).seq)
            .collect();
        assert!(!seqs.contains(&3) && !seqs.contains(&4), "{seqs:?}");
    }

    #[test]
    fn a_smaller_server_announces_its_window_and_the_client_adopts_it() {
        type Big = Connection<8, 16>;
        let asked = Options {
            window: 8,
            ..Options::default()
        };
        let mut c = Big::connect(t(0), asked, 100).unwrap();
        let mut buf = [0u8; Big::MAX_SEGMENT_LEN];
        let n = c.poll_transmit(t(0), &mut buf).unwrap().len;
        let mut s = C::accept(t(0), &buf[..n], Options::default(), 200).unwrap();
        assert_eq!(s.options().window, 4);
        let sa = out(&mut s, 0);
        let (body, h) = RdpHeader::split(&sa[0]).unwrap();
        assert_eq!(h.flags(), Flags::SYN | Flags::ACK);
        assert_eq!(SynOptions::parse(body).unwrap().window, 4);
        c.handle_segment(t(1), &sa[0]);
        assert_eq!(c.options().window, 4);
        // The client now sends at most 4 unacknowledged segments.
        for i in 0..4u8 {
            c.send(t(1), &[i]).unwrap();
        }
        assert_eq!(c.send(t(1), b"x"), Err(SendError::WouldBlock));
        // A server that holds what was asked answers as libcsp does: no options.
        let mut c4 = C::connect(t(0), Options::default(), 1).unwrap();
        let syn = out(&mut c4, 0);
        let mut s8 = Big::accept(t(0), &syn[0], Options::default(), 2).unwrap();
        let n = s8.poll_transmit(t(0), &mut buf).unwrap().len;
        assert_eq!(n, 5);
    }

    #[test]
    fn owner_not_reading_is_not_acknowledged_past_the_store() {
        let (mut c, mut s) = open_pair(
            Options {
                delayed_acks: false,
                ..Options::default()
            },
            1,
            2,
        );
        for i in 0..4u8 {
            c.send(t(0), &[i]).unwrap();
        }
        deliver(&mut c, &mut s, 0);
        deliver(&mut s, &mut c, 0);
        assert_eq!(c.unacknowledged(), 0);
        // The server's owner reads nothing: its 4 slots are full.
        for i in 4..8u8 {
            c.send(t(0), &[i]).unwrap();
        }
        deliver(&mut c, &mut s, 0);
        assert_eq!(s.counters().rx_no_room, 4);
        assert!(
            out(&mut s, 0).is_empty(),
            "nothing acknowledged that is not held"
        );
        assert_eq!(data(&events(&mut s)), [0, 1, 2, 3]);
        // Room again: the retransmissions are taken.
        c.handle_timeout(t(1000));
        deliver(&mut c, &mut s, 1000);
        assert_eq!(data(&events(&mut s)), [4, 5, 6, 7]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Raw(Vec<u8>),
        Near {
            flags: u8,
            dseq: i8,
            dack: i8,
            body: u8,
        },
        Send(u8),
        Wait(u16),
        Close,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Op::Raw),
            (any::<u8>(), any::<i8>(), any::<i8>(), 0u8..40).prop_map(
                |(flags, dseq, dack, body)| {
                    Op::Near {
                        flags,
                        dseq,
                        dack,
                        body,
                    }
                }
            ),
            (0u8..20).prop_map(Op::Send),
            any::<u16>().prop_map(Op::Wait),
            Just(Op::Close),
        ]
    }

    proptest::proptest! {
        /// Whatever arrives, in whatever state: no panic, bounded output,
        /// the window respected, and a closed connection stays quiet.
        #[test]
        fn any_input_sequence_is_survived(
            server in proptest::bool::ANY,
            ops in proptest::collection::vec(op(), 1..60),
        ) {
            let (c, s) = open_pair(Options::default(), 0xfff0, 0x7ff0);
            let mut conn = if server { s } else { c };
            let mut now = 0u64;
            let mut buf = [0u8; C::MAX_SEGMENT_LEN];
            for op in ops {
                match op {
                    Op::Raw(b) => conn.handle_segment(t(now), &b),
                    Op::Near { flags, dseq, dack, body } => {
                        let seq_nr = conn.rcv_cur.wrapping_add(dseq as u16);
                        let ack = conn.snd_una.wrapping_add(dack as u16);
                        let mut seg = std::vec![0x5a; usize::from(body)];
                        seg.extend(RdpHeader { wire_flags: flags, seq: seq_nr, ack }.to_be_bytes());
                        conn.handle_segment(t(now), &seg);
                    }
                    Op::Send(n) => {
                        let _ = conn.send(t(now), &[7; 20][..usize::from(n)]);
                    }
                    Op::Wait(ms) => {
                        now += u64::from(ms);
                        if conn.poll_timeout().is_some_and(|d| d <= t(now)) {
                            conn.handle_timeout(t(now));
                        }
                    }
                    Op::Close => conn.close(t(now)),
                }
                let mut sent = 0;
                while conn.poll_transmit(t(now), &mut buf).is_some() {
                    sent += 1;
                    proptest::prop_assert!(sent <= 4 + 4, "transmits unbounded");
                }
                let mut evs = 0;
                while conn.poll_event().is_some() {
                    evs += 1;
                    proptest::prop_assert!(evs <= 4 + 4, "events unbounded");
                }
                proptest::prop_assert!(conn.tx.len() <= 4);
                if conn.is_closed() {
                    proptest::prop_assert_eq!(conn.poll_timeout(), None);
                }
                if let Some(d) = conn.poll_timeout() {
                    proptest::prop_assert!(d.as_millis() <= now + 3_600_000);
                }
            }
        }
    }
}
